package queue

import (
	"context"
	"crypto/rand"
	"testing"

	"github.com/ironclaw/ironclaw/agentd/queuedb"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/lease"
	"zombiezen.com/go/sqlite"
)

// The sealed append is measured against a plain SQLite insert of the same
// payload into the same kind of database (DELETE journal, synchronous=FULL,
// one transaction per row), in the same run: sealing, header and the lease
// gate are what the ratio shows. Target: ≤ 1.5×.

const benchPayload = 512

func BenchmarkAppendPerRow(b *testing.B) {
	text := make([]byte, benchPayload)
	rand.Read(text)
	for i := range text {
		text[i] = 'a' + text[i]%26
	}
	b.Run("plain-insert", func(b *testing.B) {
		s := newSession(b)
		conn, err := sqlite.OpenConn(s.inboxPath(), sqlite.OpenReadWrite|sqlite.OpenNoMutex)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		if err := queuedb.Pragmas(conn, "PRAGMA journal_mode=DELETE", "PRAGMA synchronous=FULL"); err != nil {
			b.Fatal(err)
		}
		body, _ := wire.Encode(wire.Message{Text: string(text)})
		stmt := conn.Prep("INSERT INTO rows (seq, sealed) VALUES (?, ?)")
		b.SetBytes(int64(len(body)))
		b.ResetTimer()
		for i := range b.N {
			stmt.BindInt64(1, int64(i+1))
			stmt.BindBytes(2, body)
			if _, err := stmt.Step(); err != nil {
				b.Fatal(err)
			}
			stmt.Reset()
		}
	})
	b.Run("sealed-append", func(b *testing.B) {
		s := newSession(b)
		in, err := OpenInbox(s.inboxPath(), s.id, s.key, lease.NewManager(0))
		if err != nil {
			b.Fatal(err)
		}
		defer in.Close()
		msg := wire.Message{Text: string(text)}
		body, _ := wire.Encode(msg)
		b.SetBytes(int64(len(body)))
		ctx := context.Background()
		b.ResetTimer()
		for range b.N {
			if _, err := in.Append(ctx, msg); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkSnapshot measures the daemon's hostile-outbox read: copy, open in
// memory defensively, verify and decode 1,000 rows.
func BenchmarkSnapshot(b *testing.B) {
	s := newSession(b)
	writeOutboxN(b, s, 1000)
	b.ResetTimer()
	for range b.N {
		rows, err := s.reader().Snapshot(0, 0)
		if err != nil || len(rows) != 1000 {
			b.Fatal(len(rows), err)
		}
	}
}
