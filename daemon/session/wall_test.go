package session

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
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
	"github.com/ironclaw/ironclaw/daemon/sessionsock"
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
	written []time.Time  // when the agent wrote each reply (its sealed header)
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
		r.written = append(r.written, row.Header.Time)
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
	for _, class := range refused {
		switch class {
		case sessionsock.RefusedUnknownEndpoint, sessionsock.RefusedMalformed, sessionsock.RefusedLeaseWait:
		default:
			t.Errorf("refusal reported as %q, not a fixed class", class)
		}
	}
}

// reopen closes the rig's wall and opens it again with cfg changed by mod.
func (r *rig) reopen(t testing.TB, mod func(*Config)) {
	t.Helper()
	cfg := r.wall.cfg
	r.wall.Close()
	mod(&cfg)
	w, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.wall = w
	t.Cleanup(func() { w.Close() })
}

// A long-lived honest session does not grow its outbox: the agent prunes
// what the daemon took, so 20,000 replies in small transactions fit in a
// file the size of the backlog, and each arrives once, in order.
func TestOutboxStaysBounded(t *testing.T) {
	r := newRig(t, queue.NoChown)
	ctx, cancel := context.WithCancel(context.Background())
	done := runAgent(ctx, t, r)
	defer func() { cancel(); <-done }()
	const n, size, limit = 20000, 200, 2 << 20
	path := filepath.Join(r.dir, wire.OutboxDir, wire.OutboxFile)
	var biggest int64
	checkSize := func() {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		biggest = max(biggest, fi.Size())
		if fi.Size() > limit {
			got, _ := r.delivered()
			t.Fatalf("outbox is %d bytes after %d replies", fi.Size(), got)
		}
	}
	start := time.Now()
	for i := 1; i <= n; i += 10 {
		r.send(t, i, i+9, 10, size)
		if i%500 == 1 {
			// Keep the backlog small, as a live conversation would.
			r.waitDelivered(t, i-1, 10*time.Second)
			checkSize()
		}
	}
	r.waitDelivered(t, n, time.Minute)
	checkSize()
	r.verify(t, n, size)
	t.Logf("%d replies in %v; outbox peaked at %d bytes", n, time.Since(start), biggest)
}

// An agent that rings its doorbell and hangs up cannot make a delivery fail
// halfway and be repeated: the collection runs to the end regardless.
func TestHangUpDoesNotRepeatDelivery(t *testing.T) {
	r := newRig(t, queue.NoChown)
	var mu sync.Mutex
	seen := map[uint64]int{}
	started := make(chan struct{}, 1)
	// A deliverer that honours its context, as any that does I/O would.
	r.reopen(t, func(c *Config) {
		c.Deliver = func(ctx context.Context, rows []queue.Row) error {
			select {
			case started <- struct{}{}:
			default:
			}
			for _, row := range rows {
				if err := ctx.Err(); err != nil {
					return err
				}
				mu.Lock()
				seen[row.Header.Seq]++
				mu.Unlock()
				if row.Header.Seq%100 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
			return nil
		}
	})
	out, err := outbox.Open(filepath.Join(r.dir, wire.OutboxDir, wire.OutboxFile), r.id, &r.key)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	const n = 3000
	for i := 0; i < n; i += 100 {
		var bodies []wire.Body
		for j := range 100 {
			bodies = append(bodies, wire.Reply{Text: "r", InReplyTo: uint64(i + j + 1)})
		}
		if _, err := out.Append(bodies...); err != nil {
			t.Fatal(err)
		}
	}
	// Ring, and hang up as soon as delivery has begun.
	ring := fmt.Sprintf(`{"seq":%d}`, n)
	for range 5 {
		conn, err := net.Dial("unix", r.sock)
		if err != nil {
			t.Fatal(err)
		}
		answered := make(chan struct{})
		go func() {
			if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err == nil {
				io.Copy(io.Discard, resp.Body)
			}
			close(answered)
		}()
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", wire.PathOutboxCommitted, len(ring), ring)
		select {
		case <-started:
		case <-answered:
		case <-time.After(10 * time.Second):
			t.Fatal("the doorbell was neither answered nor delivered")
		}
		conn.Close()
		<-answered
		time.Sleep(20 * time.Millisecond) // let the handler finish
	}
	c := coord.New(r.sock)
	taken, err := c.OutboxCommitted(context.Background(), n)
	if err != nil || taken != n {
		t.Fatalf("final doorbell: taken %d, %v", taken, err)
	}
	mu.Lock()
	defer mu.Unlock()
	for seq := uint64(1); seq <= n; seq++ {
		if seen[seq] != 1 {
			t.Fatalf("row %d delivered %d times", seq, seen[seq])
		}
	}
}

// Doorbells that bring nothing new are rate-limited per session: a flood
// of them slows only the agent that rings.
func TestIdleDoorbellsAreThrottled(t *testing.T) {
	r := newRig(t, queue.NoChown)
	c := coord.New(r.sock)
	const rings = DoorbellBurst + 150
	start := time.Now()
	for range rings {
		if _, err := c.OutboxCommitted(context.Background(), 0); err != nil {
			t.Fatal(err)
		}
	}
	took := time.Since(start)
	want := time.Duration(rings-DoorbellBurst) * time.Second / DoorbellRate
	t.Logf("%d empty doorbells took %v", rings, took)
	if took < want*8/10 {
		t.Fatalf("%d empty doorbells answered in %v; the limit allows them no sooner than %v", rings, took, want)
	}
}

// An agent that keeps a big outbox and rings after every one-row commit
// pays for what each doorbell makes the daemon copy: a token per MiB.
func TestBigOutboxDoorbellsAreThrottled(t *testing.T) {
	r := newRig(t, queue.NoChown)
	w, err := outbox.Open(filepath.Join(r.dir, wire.OutboxDir, wire.OutboxFile), r.id, &r.key)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	big := strings.Repeat("x", wire.MaxTextSize)
	var pad []wire.Body
	for range 8 << 20 / wire.MaxTextSize { // ~8 MiB that it never prunes
		pad = append(pad, wire.Reply{Text: big})
	}
	if _, err := w.Append(pad...); err != nil {
		t.Fatal(err)
	}
	c := coord.New(r.sock)
	const rings = 30
	start := time.Now()
	for range rings {
		head, err := w.Append(wire.Reply{Text: "one more"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.OutboxCommitted(context.Background(), head); err != nil {
			t.Fatal(err)
		}
	}
	took := time.Since(start)
	// ~8 tokens a ring: the burst pays for ~12, the rest at DoorbellRate.
	want := time.Duration(rings*8-DoorbellBurst) * time.Second / DoorbellRate
	t.Logf("%d doorbells over an 8 MiB outbox took %v (limit: no sooner than %v)", rings, took, want)
	if took < want*7/10 {
		t.Fatalf("%d doorbells over an 8 MiB outbox answered in %v; the limit allows no sooner than %v", rings, took, want)
	}
}

// An honest agent that once had a big backlog, had it taken and pruned it,
// is not throttled afterwards: pruning gives the pages back and the
// doorbell charges only live data.
func TestHonestAgentAfterBacklogIsNotThrottled(t *testing.T) {
	// A session with the backlog and a fresh one without, rung in
	// alternating batches so that a busy machine slows both alike: the
	// baseline is measured in this run, beside the measurement (the
	// agent's fsyncs dominate, and vary with the machine's load).
	type agent struct {
		r    *rig
		path string
		w    *outbox.Writer
		c    *coord.Client
		took time.Duration
	}
	open := func() *agent {
		r := newRig(t, queue.NoChown)
		a := &agent{r: r, path: filepath.Join(r.dir, wire.OutboxDir, wire.OutboxFile), c: coord.New(r.sock)}
		var err error
		if a.w, err = outbox.Open(a.path, r.id, &r.key); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.w.Close() })
		return a
	}
	ring := func(a *agent, n int) {
		start := time.Now()
		for range n {
			head, err := a.w.Append(wire.Reply{Text: "hi"}, wire.Progress{Inbox: 0})
			if err != nil {
				t.Fatal(err)
			}
			taken, err := a.c.OutboxCommitted(context.Background(), head)
			if err != nil {
				t.Fatal(err)
			}
			a.w.Prune(taken)
		}
		a.took += time.Since(start)
	}
	backlogged, fresh := open(), open()
	big := strings.Repeat("x", wire.MaxTextSize)
	var backlog []wire.Body
	for range 16 << 20 / wire.MaxTextSize {
		backlog = append(backlog, wire.Reply{Text: big})
	}
	backlog = append(backlog, wire.Progress{Inbox: 0})
	head, err := backlogged.w.Append(backlog...)
	if err != nil {
		t.Fatal(err)
	}
	taken, err := backlogged.c.OutboxCommitted(context.Background(), head)
	if err != nil || taken != head {
		t.Fatalf("doorbell: %d %v (wall: %v)", taken, err, backlogged.r.wall.Failed())
	}
	if err := backlogged.w.Prune(taken); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(backlogged.path); fi.Size() > 1<<20 {
		t.Fatalf("outbox is %d bytes after pruning a 16 MiB backlog", fi.Size())
	}
	const rings, batch = 150, 10
	for range rings / batch {
		ring(backlogged, batch)
		ring(fresh, batch)
	}
	t.Logf("%d one-row doorbells after a pruned 16 MiB backlog: %v (a fresh session, alternately: %v)", rings, backlogged.took, fresh.took)
	// Charged for the 16 MiB backlog on every ring (a file whose pages were
	// not given back), 150 rings would wait ~24 s for tokens on top of the
	// baseline (16 tokens a ring, refilled at 100 a second); the debt the
	// backlog itself left costs ~0.2 s once. A ratio with a floor: load
	// scales both sides, throttling adds seconds to one.
	if backlogged.took > 3*fresh.took+time.Second {
		t.Fatalf("an honest agent was throttled after its backlog: %d doorbells took %v, %v on a fresh session", rings, backlogged.took, fresh.took)
	}
}

// TestNoteDoesNotWakeTheAgent: rows written with Note (the echoes of
// delivered replies) wake no lease, so they cost the agent no turn of its
// own; the next Send wakes it and it reads both, the note first.
func TestNoteDoesNotWakeTheAgent(t *testing.T) {
	r := newRig(t, queue.NoChown)
	ctx := t.Context()
	c := coord.New(r.sock)
	first, err := r.wall.Send(ctx, wire.Message{Text: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	note, err := r.wall.Note(ctx, wire.Delivered{Text: "hi", InReplyTo: first})
	if err != nil || note != first+1 {
		t.Fatalf("note at %d (%v), want %d", note, err, first+1)
	}
	g, err := c.Lease(ctx, first, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if g.Lease != 0 {
		c.Release(ctx, g.Lease)
		t.Fatalf("a note woke the agent (lease %d, head %d)", g.Lease, g.Head)
	}
	// The wait ends as soon as a message arrives, not at its deadline.
	got := make(chan wire.LeaseGrant, 1)
	go func() {
		g, err := c.Lease(ctx, first, 20*time.Second)
		if err != nil {
			t.Error(err)
		}
		got <- g
	}()
	time.Sleep(50 * time.Millisecond)
	next, err := r.wall.Send(ctx, wire.Message{Text: "again"})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case g = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("a message after a note did not wake the agent")
	}
	if g.Lease == 0 || g.Head != next {
		t.Fatalf("grant %+v, want a lease at head %d", g, next)
	}
	in, err := inbox.Open(filepath.Join(r.dir, wire.InboxDir, wire.InboxFile), r.id, &r.key)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	rows, err := in.Read(first, 0)
	if valid, rerr := c.Release(ctx, g.Lease); rerr != nil || !valid {
		t.Fatalf("release: %v %v", valid, rerr)
	}
	if err != nil || len(rows) != 2 {
		t.Fatalf("read %d rows (%v), want the note and the message", len(rows), err)
	}
	if d, ok := rows[0].Body.(wire.Delivered); !ok || d.Text != "hi" {
		t.Fatalf("first row %T, want the note", rows[0].Body)
	}
	if m, ok := rows[1].Body.(wire.Message); !ok || m.Text != "again" {
		t.Fatalf("second row %T, want the message", rows[1].Body)
	}
}
