package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ironclaw/ironclaw/agentd/inbox"
	"github.com/ironclaw/ironclaw/agentd/outbox"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/lease"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

type session struct {
	dir string
	id  wire.SessionID
	key *wire.Key
}

func newSession(t testing.TB) session {
	t.Helper()
	id, err := wire.NewSessionID()
	if err != nil {
		t.Fatal(err)
	}
	var key wire.Key
	copy(key[:], bytes.Repeat(id[:], 2))
	dir := filepath.Join(t.TempDir(), id.String())
	if err := Create(dir, NoChown); err != nil {
		t.Fatal(err)
	}
	return session{dir: dir, id: id, key: &key}
}

func (s session) inboxPath() string  { return filepath.Join(s.dir, wire.InboxDir, wire.InboxFile) }
func (s session) outboxPath() string { return filepath.Join(s.dir, wire.OutboxDir, wire.OutboxFile) }
func (s session) reader() *OutboxReader {
	return &OutboxReader{Path: s.outboxPath(), Session: s.id, Key: s.key}
}

func TestInboxRoundTrip(t *testing.T) {
	s := newSession(t)
	in, err := OpenInbox(s.inboxPath(), s.id, s.key, lease.NewManager(0))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	ctx := context.Background()
	if _, err := in.Append(ctx, wire.Message{From: "@a:b", Text: "one"}); err != nil {
		t.Fatal(err)
	}
	last, err := in.Append(ctx, wire.Message{Text: "two"}, wire.Message{Text: "three"})
	if err != nil || last != 3 {
		t.Fatalf("append: %d %v", last, err)
	}
	r, err := inbox.Open(s.inboxPath(), s.id, s.key)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rows, err := r.Read(1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Body.(wire.Message).Text != "two" || rows[1].Header.Seq != 3 {
		t.Fatalf("read %+v", rows)
	}
	// Reopening continues the sequence.
	in.Close()
	in2, err := OpenInbox(s.inboxPath(), s.id, s.key, lease.NewManager(0))
	if err != nil {
		t.Fatal(err)
	}
	defer in2.Close()
	if in2.Head() != 3 {
		t.Fatalf("head after reopen %d", in2.Head())
	}
}

func TestOutboxRoundTrip(t *testing.T) {
	s := newSession(t)
	w, err := outbox.Open(s.outboxPath(), s.id, s.key)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := w.Append(wire.Reply{Text: fmt.Sprint("reply ", i)}); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	rows, err := s.reader().Snapshot(2, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Header.Seq != 3 || rows[1].Body.(wire.Reply).Text != "reply 3" {
		t.Fatalf("snapshot %+v", rows)
	}
}

// An inbox made by Create refuses writes through a connection opened with
// SQLite's read-only flag. This is a check of the file and the flag, not of
// the agent's code: layer (b) itself, the connection agentd/inbox.Open hands
// the agent, is agentd/inbox's TestOpenIsReadOnly.
func TestInboxReaderCannotWrite(t *testing.T) {
	s := newSession(t)
	conn, err := sqlite.OpenConn(s.inboxPath(), sqlite.OpenReadOnly|sqlite.OpenNoMutex)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	err = sqlitex.ExecuteTransient(conn, "INSERT INTO rows (seq, sealed) VALUES (1, x'00')", nil)
	if sqlite.ErrCode(err) != sqlite.ResultReadOnly {
		t.Fatalf("write through a read-only inbox connection: got %v, want SQLITE_READONLY", err)
	}
}

func writeOutbox(t *testing.T, s session, n int) { writeOutboxN(t, s, n) }

func writeOutboxN(t testing.TB, s session, n int) {
	t.Helper()
	w, err := outbox.Open(s.outboxPath(), s.id, s.key)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := range n {
		if _, err := w.Append(wire.Reply{Text: fmt.Sprint("r", i)}); err != nil {
			t.Fatal(err)
		}
	}
}

// exec runs SQL directly on the outbox file, as a hostile agent could.
func execSQL(t *testing.T, path, sql string) {
	t.Helper()
	conn, err := sqlite.OpenConn(path, sqlite.OpenReadWrite|sqlite.OpenNoMutex)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if strings.HasPrefix(sql, "PRAGMA") {
		err = sqlitex.ExecuteTransient(conn, sql, nil)
	} else {
		err = sqlitex.ExecScript(conn, sql)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestHostileOutbox(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "host-secret.db")
	other := newSession(t)
	writeOutbox(t, other, 3)
	if err := os.WriteFile(secret, []byte("host secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		setup func(t *testing.T, s session)
	}{
		{"symlink to a host file", func(t *testing.T, s session) {
			os.Remove(s.outboxPath())
			os.Symlink(secret, s.outboxPath())
		}},
		{"symlink to another session's outbox", func(t *testing.T, s session) {
			os.Remove(s.outboxPath())
			os.Symlink(other.outboxPath(), s.outboxPath())
		}},
		// The target is a valid outbox of this very session, written by the agent's own
		// writer with the same session and key but kept outside the outbox directory: every
		// row verifies, so only O_NOFOLLOW stands between the daemon and a file the agent
		// chose (the other symlink cases would fail anyway, on their content).
		{"symlink to a valid outbox of the same session", func(t *testing.T, s session) {
			writeOutbox(t, s, 3)
			if rows, err := s.reader().Snapshot(0, 0); err != nil || len(rows) != 3 {
				t.Fatalf("the target does not read as a valid outbox: %d rows, %v", len(rows), err)
			}
			elsewhere := filepath.Join(t.TempDir(), "elsewhere.db")
			if err := os.Rename(s.outboxPath(), elsewhere); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(elsewhere, s.outboxPath()); err != nil {
				t.Fatal(err)
			}
		}},
		{"fifo", func(t *testing.T, s session) {
			os.Remove(s.outboxPath())
			if err := syscall.Mkfifo(s.outboxPath(), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"directory", func(t *testing.T, s session) {
			os.Remove(s.outboxPath())
			os.Mkdir(s.outboxPath(), 0o700)
		}},
		{"huge file", func(t *testing.T, s session) {
			f, _ := os.OpenFile(s.outboxPath(), os.O_WRONLY, 0)
			f.Truncate(DefaultMaxOutboxBytes + 1)
			f.Close()
		}},
		{"garbage", func(t *testing.T, s session) {
			os.WriteFile(s.outboxPath(), bytes.Repeat([]byte("garbage!"), 1000), 0o600)
		}},
		{"empty", func(t *testing.T, s session) { os.WriteFile(s.outboxPath(), nil, 0o600) }},
		{"truncated", func(t *testing.T, s session) {
			writeOutbox(t, s, 50)
			data, _ := os.ReadFile(s.outboxPath())
			os.WriteFile(s.outboxPath(), data[:len(data)/2], 0o600)
		}},
		{"view", func(t *testing.T, s session) { execSQL(t, s.outboxPath(), "CREATE VIEW v AS SELECT * FROM rows;") }},
		{"trigger", func(t *testing.T, s session) {
			execSQL(t, s.outboxPath(), "CREATE TABLE log (x); CREATE TRIGGER tr AFTER INSERT ON rows BEGIN INSERT INTO log VALUES (1); END;")
		}},
		{"index", func(t *testing.T, s session) { execSQL(t, s.outboxPath(), "CREATE INDEX i ON rows (sealed);") }},
		{"changed table", func(t *testing.T, s session) {
			execSQL(t, s.outboxPath(), "DROP TABLE rows; CREATE TABLE rows (seq INTEGER PRIMARY KEY, sealed BLOB NOT NULL, target TEXT);")
		}},
		{"wal mode", func(t *testing.T, s session) { execSQL(t, s.outboxPath(), "PRAGMA journal_mode=WAL;") }},
		{"text instead of blob", func(t *testing.T, s session) {
			execSQL(t, s.outboxPath(), "INSERT INTO rows VALUES (1, 'hello');")
		}},
		{"gap", func(t *testing.T, s session) {
			writeOutbox(t, s, 3)
			execSQL(t, s.outboxPath(), "DELETE FROM rows WHERE seq = 2;")
		}},
		{"replayed row", func(t *testing.T, s session) {
			writeOutbox(t, s, 2)
			execSQL(t, s.outboxPath(), "INSERT INTO rows SELECT 3, sealed FROM rows WHERE seq = 1;")
		}},
		{"swapped rows", func(t *testing.T, s session) {
			writeOutbox(t, s, 2)
			execSQL(t, s.outboxPath(), "UPDATE rows SET seq = -seq; UPDATE rows SET seq = 3 + seq;")
		}},
		{"row from another session", func(t *testing.T, s session) {
			data, _ := os.ReadFile(other.outboxPath())
			os.WriteFile(s.outboxPath(), data, 0o600)
		}},
		{"hot journal", func(t *testing.T, s session) {
			os.WriteFile(s.outboxPath()+"-journal", []byte("journal"), 0o600)
		}},
		{"journal is a symlink", func(t *testing.T, s session) {
			os.Symlink(secret, s.outboxPath()+"-journal")
		}},
		{"oversized row", func(t *testing.T, s session) {
			execSQL(t, s.outboxPath(), fmt.Sprintf("INSERT INTO rows VALUES (1, zeroblob(%d));", wire.MaxRowSize+1))
		}},
	}
	// The reason some cases must be refused for: the guard under test, not a later check
	// that happens to catch the same file.
	reasons := map[string]string{
		"symlink to a host file":                        "symbolic link",
		"symlink to another session's outbox":           "symbolic link",
		"symlink to a valid outbox of the same session": "symbolic link",
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newSession(t)
			c.setup(t, s)
			rows, err := s.reader().Snapshot(0, 0)
			if err == nil {
				t.Fatalf("hostile outbox accepted: %d rows", len(rows))
			}
			if !errors.Is(err, ErrHostile) && !errors.Is(err, ErrHotJournal) {
				t.Fatalf("error %v is neither ErrHostile nor ErrHotJournal", err)
			}
			if want := reasons[c.name]; want != "" && (!errors.Is(err, ErrHostile) || !strings.Contains(err.Error(), want)) {
				t.Fatalf("refused with %v, want ErrHostile for %q", err, want)
			}
			t.Logf("refused: %v", err)
			// The other session is untouched and still reads.
			if rows, err := other.reader().Snapshot(0, 0); err != nil || len(rows) != 3 {
				t.Fatalf("other session affected: %d %v", len(rows), err)
			}
		})
	}
	if data, _ := os.ReadFile(secret); string(data) != "host secret" {
		t.Fatal("host file changed")
	}
}

// Disk theft: after known messages went through both queues, their
// plaintext appears nowhere under the state directory.
func TestNoPlaintextOnDisk(t *testing.T) {
	s := newSession(t)
	in, err := OpenInbox(s.inboxPath(), s.id, s.key, lease.NewManager(0))
	if err != nil {
		t.Fatal(err)
	}
	const inMark, outMark = "INBOX-MARKER-d41d8cd98f", "OUTBOX-MARKER-e3b0c4429"
	for i := range 20 {
		if _, err := in.Append(context.Background(), wire.Message{From: "@owner:localhost", Text: fmt.Sprint(inMark, i)}); err != nil {
			t.Fatal(err)
		}
	}
	in.Close()
	w, err := outbox.Open(s.outboxPath(), s.id, s.key)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		w.Append(wire.Reply{Text: fmt.Sprint(outMark, i)})
	}
	w.Close()
	var files int
	filepath.WalkDir(filepath.Dir(s.dir), func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		files++
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range []string{inMark, outMark, "@owner:localhost", "MARKER"} {
			if bytes.Contains(data, []byte(m)) || bytes.Contains(bytes.ToLower(data), []byte(strings.ToLower(m))) {
				t.Errorf("%s holds plaintext %q", p, m)
			}
		}
		return nil
	})
	if files < 2 {
		t.Fatalf("walked %d files", files)
	}
}
