package session

import (
	"context"
	"crypto/rand"
	"path/filepath"
	"testing"
	"time"

	"github.com/ironclaw/ironclaw/agentd/coord"
	"github.com/ironclaw/ironclaw/agentd/outbox"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/queue"
)

// While a delivery is held up (store and gateway work an agent can trigger,
// here a Deliver that blocks), the wall's state — what the supervisor's
// status, stop and failure paths read — answers at once: the state lock is
// never held across a delivery.
func TestStateLockNotHeldAcrossDelivery(t *testing.T) {
	r := &rig{}
	rand.Read(r.key[:])
	var err error
	if r.id, err = wire.NewSessionID(); err != nil {
		t.Fatal(err)
	}
	base := shortDir(t)
	r.dir = filepath.Join(base, "s", r.id.String())
	if err := queue.Create(r.dir, queue.NoChown); err != nil {
		t.Fatal(err)
	}
	r.sock = filepath.Join(base, r.id.String()[:16]+".sock")
	entered, release := make(chan struct{}), make(chan struct{})
	r.wall, err = Open(Config{ID: r.id, Key: &r.key, Dir: r.dir, Socket: r.sock, Agent: queue.NoChown,
		Deliver: func(ctx context.Context, rows []queue.Row) error {
			close(entered)
			<-release
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.wall.Close()
	w, err := outbox.Open(filepath.Join(r.dir, wire.OutboxDir, wire.OutboxFile), r.id, &r.key)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	head, err := w.Append(wire.Reply{Text: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	rang := make(chan error, 1)
	go func() {
		_, err := coord.New(r.sock).OutboxCommitted(context.Background(), head)
		rang <- err
	}()
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the delivery never started")
	}
	done := make(chan struct{})
	go func() {
		r.wall.Failed()
		r.wall.Taken()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		close(release)
		t.Fatal("Failed/Taken waited for a delivery in progress: the state lock is held across it")
	}
	close(release)
	if err := <-rang; err != nil {
		t.Fatal(err)
	}
	if got := r.wall.Taken(); got != head {
		t.Fatalf("taken %d after the delivery, want %d", got, head)
	}
}

// A panic while handling an agent's rows (here in delivery) is recovered at
// the session's wall: this wall is failed with the fixed class, reported
// once, and the process goes on.
func TestPanicFailsOnlyThisWall(t *testing.T) {
	var r rig
	rand.Read(r.key[:])
	var err error
	if r.id, err = wire.NewSessionID(); err != nil {
		t.Fatal(err)
	}
	base := shortDir(t)
	r.dir = filepath.Join(base, "s", r.id.String())
	if err := queue.Create(r.dir, queue.NoChown); err != nil {
		t.Fatal(err)
	}
	var refused []string
	r.wall, err = Open(Config{ID: r.id, Key: &r.key, Dir: r.dir, Socket: filepath.Join(base, "p.sock"), Agent: queue.NoChown,
		Deliver: func(context.Context, []queue.Row) error { panic("delivery blew up") },
		Refused: func(what string) { refused = append(refused, what) }})
	if err != nil {
		t.Fatal(err)
	}
	defer r.wall.Close()
	w, err := outbox.Open(filepath.Join(r.dir, wire.OutboxDir, wire.OutboxFile), r.id, &r.key)
	if err != nil {
		t.Fatal(err)
	}
	w.Append(wire.Reply{Text: "hi"})
	w.Close()
	if _, err := r.wall.Collect(context.Background()); queue.HostileClass(err) != queue.RefusedPanic {
		t.Fatalf("Collect = %v, want a refusal of class %q", err, queue.RefusedPanic)
	}
	if queue.HostileClass(r.wall.Failed()) != queue.RefusedPanic {
		t.Fatalf("Failed = %v", r.wall.Failed())
	}
	if len(refused) != 1 || refused[0] != HostileOutbox+queue.RefusedPanic {
		t.Fatalf("reported %q, want one %q", refused, HostileOutbox+queue.RefusedPanic)
	}
}
