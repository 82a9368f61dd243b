package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"time"

	"github.com/ironclaw/ironclaw/agentd/outbox"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"zombiezen.com/go/sqlite"
)

// hostileOutbox leaves outbox.db in one of the shapes that would make a careless daemon
// read too much or too long, then rings the doorbell (again and again) until stopped.
func (a *agent) hostileOutbox(ctx context.Context, shape string) {
	head := a.out.Head()
	a.out.Close()
	var err error
	switch shape {
	case "sparse":
		// Far past the filesystem's own size, with a SQLite-looking header.
		err = os.Truncate(wire.SandboxOutbox, 1000<<20)
	case "freepages":
		err = rawSQL("CREATE TABLE pad (b BLOB)",
			"INSERT INTO pad SELECT zeroblob(1<<20) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 10) SELECT x FROM c)",
			"DROP TABLE pad")
	case "grow":
		// Keep growing the file by odd amounts, and cut it back, while the daemon reads.
		go func() {
			junk := bytes.Repeat([]byte{0xa5}, 4093)
			fi, _ := os.Stat(wire.SandboxOutbox)
			base := fi.Size()
			for {
				f, err := os.OpenFile(wire.SandboxOutbox, os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					return
				}
				for i := 0; i < 256; i++ {
					f.Write(junk)
				}
				f.Close()
				os.Truncate(wire.SandboxOutbox, base+4093)
			}
		}()
	case "rows":
		// A million tiny rows, contiguous after the last real one.
		err = rawSQL(fmt.Sprintf("INSERT INTO rows SELECT %d + x, x'00' FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 1000000) SELECT x FROM c)", head))
	case "hugerow":
		err = rawSQL(fmt.Sprintf("INSERT INTO rows VALUES (%d, zeroblob(8<<20))", head+1))
	case "slowschema":
		err = rawSQL("PRAGMA writable_schema=ON",
			"INSERT INTO sqlite_schema SELECT 'table', 't'||x, 't'||x, 2, 'CREATE TABLE t'||x||' (a, b, c, d, e, f, g, h)' FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 100000) SELECT x FROM c)")
	case "panic":
		// A valid row the test's decode hook panics on.
		var out *outbox.Writer
		if out, err = outbox.Open(wire.SandboxOutbox, hs.Session, &hs.Key); err == nil {
			_, err = out.Append(wire.Reply{Text: "PANIC-HOOK"})
			out.Close()
		}
	default:
		err = fmt.Errorf("unknown shape %q", shape)
	}
	if err != nil {
		emit(Result{Attack: "hostile." + shape + ".plant", Err: err.Error(), Detail: "could not plant: the test must notice"})
		return
	}
	for i := 0; ; i++ {
		_, err := a.co.OutboxCommitted(ctx, head+1)
		if i == 0 {
			r := Result{Attack: "hostile." + shape, OK: err == nil}
			if err != nil {
				r.Err = err.Error()
			}
			emit(r)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rawSQL runs statements on outbox.db through a plain read-write connection, as any
// code in the sandbox could.
func rawSQL(stmts ...string) error {
	conn, err := sqlite.OpenConn(wire.SandboxOutbox, sqlite.OpenReadWrite|sqlite.OpenNoMutex)
	if err != nil {
		return err
	}
	defer conn.Close()
	for _, q := range stmts {
		st, _, err := conn.PrepareTransient(q)
		if err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
		for {
			row, err := st.Step()
			if err != nil {
				st.Finalize()
				return fmt.Errorf("%s: %w", q, err)
			}
			if !row {
				break
			}
		}
		st.Finalize()
	}
	return nil
}

// flood rings the outbox doorbell and asks for inbox leases as fast as the socket
// answers, from several goroutines that run until the sandbox ends: the daemon must slow
// only this agent.
func (a *agent) flood(ctx context.Context) {
	head := a.out.Head()
	for range 4 {
		go func() {
			for {
				a.co.OutboxCommitted(ctx, head)
			}
		}()
	}
	go func() {
		for {
			if g, err := a.co.Lease(ctx, 0, time.Millisecond); err == nil && g.Lease != 0 {
				a.co.Release(ctx, g.Lease)
			}
		}
	}()
}
