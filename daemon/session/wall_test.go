package session

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ironclaw/ironclaw/agentd/agent"
	"github.com/ironclaw/ironclaw/agentd/coord"
	"github.com/ironclaw/ironclaw/agentd/inbox"
	"github.com/ironclaw/ironclaw/agentd/outbox"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/queue"
)

// rig is one session's wall with a checker on the delivery side.
type rig struct {
	id   wire.SessionID
	key  wire.Key
	dir  string
	sock string
	wall *Wall

	mu      sync.Mutex
	replies []wire.Reply // delivered, in order
	bad     error
}

// shortDir returns a private directory with a short path: unix socket paths
// are limited to 107 bytes and t.TempDir() can exceed that.
func shortDir(t testing.TB) string {
	d, err := os.MkdirTemp("/tmp", "icw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func newRig(t testing.TB, owner queue.Owner) *rig {
	t.Helper()
	r := &rig{}
	var err error
	if r.id, err = wire.NewSessionID(); err != nil {
		t.Fatal(err)
	}
	rand.Read(r.key[:])
	base := shortDir(t)
	r.dir = filepath.Join(base, "s", r.id.String())
	if err := queue.Create(r.dir, owner); err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(base, "r")
	os.Mkdir(run, 0o700)
	r.sock = filepath.Join(run, r.id.String()[:16]+".sock")
	r.wall, err = Open(Config{ID: r.id, Key: &r.key, Dir: r.dir, Socket: r.sock, Deliver: r.deliver, Agent: owner})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.wall.Close() })
	return r
}

// deliver checks that replies arrive in order, each exactly once.
func (r *rig) deliver(_ context.Context, rows []queue.Row) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, row := range rows {
		rep, ok := row.Body.(wire.Reply)
		if !ok {
			continue
		}
		if r.bad == nil && len(r.replies) > 0 && rep.InReplyTo != r.replies[len(r.replies)-1].InReplyTo+1 {
			r.bad = fmt.Errorf("reply to %d after reply to %d", rep.InReplyTo, r.replies[len(r.replies)-1].InReplyTo)
		}
		r.replies = append(r.replies, rep)
	}
	return nil
}

func (r *rig) delivered() (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.replies), r.bad
}

// message returns the text of inbox message i, sized to make transactions
// large.
func message(i, size int) string {
	s := fmt.Sprintf("m%07d:", i)
	return s + strings.Repeat("x", max(0, size-len(s)))
}

// verify checks every delivered reply against what was sent.
func (r *rig) verify(t testing.TB, n, size int) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bad != nil {
		t.Fatal(r.bad)
	}
	if len(r.replies) != n {
		t.Fatalf("delivered %d replies, want %d", len(r.replies), n)
	}
	for i, rep := range r.replies {
		if rep.InReplyTo != uint64(i+1) || rep.Text != message(i+1, size) {
			t.Fatalf("reply %d: in reply to %d, text %.20q", i, rep.InReplyTo, rep.Text)
		}
	}
}

// send writes messages from..to in transactions of batch rows.
func (r *rig) send(t testing.TB, from, to, batch, size int) {
	t.Helper()
	ctx := context.Background()
	n := to
	for i := from; i <= n; {
		var bodies []wire.Body
		for j := 0; j < batch && i <= n; j++ {
			bodies = append(bodies, wire.Message{Text: message(i, size)})
			i++
		}
		if _, err := r.wall.Send(ctx, bodies...); err != nil {
			t.Fatal(err)
		}
	}
}

func (r *rig) waitDelivered(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if got, err := r.delivered(); err != nil || got >= n {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// runAgent runs the real agent loop in-process against the rig's files and
// socket: the protocol without the sandbox.
func runAgent(ctx context.Context, t testing.TB, r *rig) <-chan error {
	in, err := inbox.Open(filepath.Join(r.dir, wire.InboxDir, wire.InboxFile), r.id, &r.key)
	if err != nil {
		t.Fatal(err)
	}
	out, err := outbox.Open(filepath.Join(r.dir, wire.OutboxDir, wire.OutboxFile), r.id, &r.key)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		defer in.Close()
		defer out.Close()
		l := &agent.Loop{Inbox: in, Outbox: out, Coord: coord.New(r.sock), Handle: agent.Echo, Log: slog.New(slog.DiscardHandler), Wait: time.Second}
		done <- l.Run(ctx)
	}()
	return done
}

func TestWallInProcess(t *testing.T) {
	r := newRig(t, queue.NoChown)
	ctx, cancel := context.WithCancel(context.Background())
	done := runAgent(ctx, t, r)
	const n, size = 2000, 600
	r.send(t, 1, n, 100, size)
	r.waitDelivered(t, n, 30*time.Second)
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("agent: %v", err)
	}
	r.verify(t, n, size)

	// A restarted agent resumes from its recorded progress: no duplicates.
	ctx, cancel = context.WithCancel(context.Background())
	done = runAgent(ctx, t, r)
	r.send(t, n+1, n+10, 3, size)
	r.waitDelivered(t, n+10, 10*time.Second)
	cancel()
	<-done
	r.verify(t, n+10, size)
}

// A lease holder that never releases cannot stall the daemon: the write goes
// ahead once the lease expires, and the late release is answered "expired".
func TestStuckLeaseDoesNotStallDaemon(t *testing.T) {
	r := newRig(t, queue.NoChown)
	c := coord.New(r.sock)
	ctx := context.Background()
	r.wall.Send(ctx, wire.Message{Text: "first"})
	g, err := c.Lease(ctx, 0, time.Second)
	if err != nil || g.Lease == 0 {
		t.Fatalf("lease: %+v %v", g, err)
	}
	start := time.Now()
	if _, err := r.wall.Send(ctx, wire.Message{Text: "second"}); err != nil {
		t.Fatal(err)
	}
	waited := time.Since(start)
	if waited > time.Second {
		t.Fatalf("daemon stalled %v behind a stuck lease", waited)
	}
	if waited < r.wall.Leases().TTL()/2 {
		t.Fatalf("daemon wrote after %v while a lease was held (TTL %v)", waited, r.wall.Leases().TTL())
	}
	valid, err := c.Release(ctx, g.Lease)
	if err != nil || valid {
		t.Fatalf("late release: valid=%v err=%v, want expired", valid, err)
	}
}

func TestSocketRefusesJunk(t *testing.T) {
	var mu sync.Mutex
	var refused []string
	r := newRig(t, queue.NoChown)
	// Reopen with a refusal hook.
	cfg := r.wall.cfg
	r.wall.Close()
	cfg.Refused = func(s string) { mu.Lock(); refused = append(refused, s); mu.Unlock() }
	w, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, c := range []struct{ path, body string }{
		{"/api/pull", `{}`},
		{"/etc/passwd", ``},
		{wire.PathInboxLease, `{"after":0,"wait_ms":0,"session":"other"}`},
		{wire.PathInboxLease, `{"After":0}`},
		{wire.PathInboxLease, `{"after":0,"wait_ms":99999999}`},
		{wire.PathInboxRelease, strings.Repeat(" ", wire.MaxCoordBody+10) + `{}`},
	} {
		if err := postRaw(r.sock, c.path, c.body); err == nil {
			t.Errorf("%s %s accepted", c.path, c.body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(refused) != 6 {
		t.Fatalf("refusals reported: %d %q", len(refused), refused)
	}
}
