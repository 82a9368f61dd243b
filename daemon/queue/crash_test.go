package queue

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ironclaw/ironclaw/agentd/inbox"
	"github.com/ironclaw/ironclaw/agentd/outbox"
	"github.com/ironclaw/ironclaw/agentd/queuedb"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/lease"
	"zombiezen.com/go/sqlite"
)

// crashEnv makes the test binary act as a writer that dies mid-transaction.
const crashEnv = "IRONCLAW_TEST_CRASH_WRITER"

// TestMain lets a child copy of the test binary play the crashing writer.
func TestMain(m *testing.M) {
	if spec := os.Getenv(crashEnv); spec != "" {
		crashWriter(spec)
		os.Exit(3) // never reached: crashWriter dies first
	}
	os.Exit(m.Run())
}

// crashWriter opens path, starts a transaction big enough to spill pages
// into the database file, and dies without committing or rolling back:
// what a power cut or kill -9 leaves behind (a hot journal).
func crashWriter(path string) {
	conn, err := sqlite.OpenConn(path, sqlite.OpenReadWrite|sqlite.OpenNoMutex)
	if err != nil {
		panic(err)
	}
	if err := queuedb.Pragmas(conn, "PRAGMA journal_mode=DELETE", "PRAGMA cache_size=2", "BEGIN IMMEDIATE"); err != nil {
		panic(err)
	}
	stmt := conn.Prep("INSERT INTO rows (seq, sealed) VALUES (?, zeroblob(4000))")
	for i := 1000; i < 1400; i++ {
		stmt.BindInt64(1, int64(i))
		if _, err := stmt.Step(); err != nil {
			panic(err)
		}
		stmt.Reset()
	}
	os.Exit(9) // no commit, no rollback
}

func crash(t *testing.T, path string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 9 {
		t.Fatalf("crash writer: %v\n%s", err, out)
	}
	if fi, err := os.Stat(path + "-journal"); err != nil || fi.Size() == 0 {
		t.Fatalf("the crash left no hot journal: %v", err)
	}
}

// The daemon owns the inbox: a crash mid-write leaves a hot journal that
// OpenInbox rolls back; the agent then reads exactly the committed rows.
func TestInboxCrashRecovery(t *testing.T) {
	s := newSession(t)
	in, err := OpenInbox(s.inboxPath(), s.id, s.key, lease.NewManager(0))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		in.Append(context.Background(), wire.Message{Text: fmt.Sprint("kept ", i)})
	}
	in.Close()
	crash(t, s.inboxPath())

	in, err = OpenInbox(s.inboxPath(), s.id, s.key, lease.NewManager(0))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if _, err := os.Stat(s.inboxPath() + "-journal"); !os.IsNotExist(err) {
		t.Fatalf("hot journal still there after the daemon reopened the inbox: %v", err)
	}
	if in.Head() != 5 {
		t.Fatalf("head %d after recovery, want 5", in.Head())
	}
	if _, err := in.Append(context.Background(), wire.Message{Text: "after"}); err != nil {
		t.Fatal(err)
	}
	r, err := inbox.Open(s.inboxPath(), s.id, s.key)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rows, err := r.Read(0, 0)
	if err != nil || len(rows) != 6 || rows[5].Body.(wire.Message).Text != "after" {
		t.Fatalf("after recovery read %d rows, %v", len(rows), err)
	}
}

// The agent owns the outbox: the daemon refuses to read past a hot journal
// (it cannot know what is committed), and the agent's next open recovers it.
func TestOutboxCrashRecovery(t *testing.T) {
	s := newSession(t)
	writeOutboxN(t, s, 3)
	crash(t, s.outboxPath())
	if _, err := s.reader().Snapshot(0, 0); err == nil || !strings.Contains(err.Error(), "unfinished transaction") {
		t.Fatalf("daemon read an outbox with a hot journal: %v", err)
	}
	w, err := outbox.Open(s.outboxPath(), s.id, s.key)
	if err != nil {
		t.Fatal(err)
	}
	if w.Head() != 3 {
		t.Fatalf("agent's head %d after recovery, want 3", w.Head())
	}
	w.Close()
	// The agent keeps its journal (PERSIST), but never a hot one.
	if j := filepath.Join(s.dir, wire.OutboxDir, wire.OutboxFile+"-journal"); journalIsHot(j) {
		t.Fatalf("hot journal left after the agent recovered")
	}
	rows, err := s.reader().Snapshot(0, 0)
	if err != nil || len(rows) != 3 {
		t.Fatalf("after recovery: %d rows, %v", len(rows), err)
	}
}
