package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/ironclaw/ironclaw/agentd/model"
	"github.com/ironclaw/ironclaw/daemon/proxy/ollamatest"
)

// sessionID returns a distinct session id for test session i.
func sessionID(i int) string { return fmt.Sprintf("%032x", i+1) }

// Calls from many sessions share the upstream's slots: with every slot
// taken, another session's call waits; one that waits past its queue
// timeout is refused as busy (the agent hears "unavailable") and never
// reaches the upstream, and one whose slot frees in time goes through.
func TestGateCapsUpstreamCallsAcrossSessions(t *testing.T) {
	gate := NewGate(2)
	slow := func() ollamatest.Reply {
		r := ollamatest.Text("a b c d")
		r.Delay = 300 * time.Millisecond // 1.5 s per call
		return r
	}
	// Two sessions take both slots.
	var holders []*harness
	for i := range 2 {
		holders = append(holders, newHarness(t, harnessOpt{gate: gate, session: sessionID(i)}, slow()))
	}
	// A third waits at most 200 ms; a fourth long enough.
	impatient := newHarness(t, harnessOpt{gate: gate, session: sessionID(2), limits: Limits{QueueTimeout: 200 * time.Millisecond}}, ollamatest.Text("never"))
	patient := newHarness(t, harnessOpt{gate: gate, session: sessionID(3), limits: Limits{QueueTimeout: time.Minute}}, ollamatest.Text("waited"))

	var wg sync.WaitGroup
	errs := make([]error, len(holders))
	for i, h := range holders {
		wg.Add(1)
		go func() { defer wg.Done(); _, errs[i] = h.chat("x") }()
	}
	for i := 0; len(holders[0].up.Requests())+len(holders[1].up.Requests()) < 2; i++ {
		if i > 500 {
			t.Fatal("the first calls never reached the upstream")
		}
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	if _, err := impatient.chat("x"); !errors.Is(err, model.ErrUnavailable) {
		t.Fatalf("a call with every slot taken: %v, want ErrUnavailable", err)
	}
	if waited := time.Since(start); waited < 150*time.Millisecond {
		t.Fatalf("refused after %v: it did not wait for a slot", waited)
	}
	if n := len(impatient.up.Requests()); n != 0 {
		t.Fatalf("%d refused calls reached the upstream", n)
	}
	resp, err := patient.chat("x")
	if err != nil || resp.Message.Content != "waited" {
		t.Fatalf("a call that waited for a slot: %+v %v", resp, err)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("holder %d: %v", i, err)
		}
	}
	// The refused call cost its session nothing and was audited by class.
	if u := impatient.proxy.Used(); u != 0 {
		t.Fatalf("a call refused as busy charged %d tokens", u)
	}
	if r := refusals(impatient.entries()); r[RefusedBusy] != 1 {
		t.Fatalf("refusals %v", r)
	}
}

// Sixteen sessions, each with two calls at once (its own cap), never have
// more than the gate's calls at the upstream at once.
func TestGateBoundsSixteenSessions(t *testing.T) {
	gate := NewGate(0)
	if gate.Size() != DefaultMaxUpstreamCalls {
		t.Fatalf("default gate %d", gate.Size())
	}
	var (
		mu            sync.Mutex
		inflight, top int
	)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		inflight++
		top = max(top, inflight)
		mu.Unlock()
		time.Sleep(100 * time.Millisecond)
		mu.Lock()
		inflight--
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"model":"`+testModel+`","message":{"role":"assistant","content":"ok"},"done":true,"prompt_eval_count":1,"eval_count":1}`)
	}))
	t.Cleanup(up.Close)
	var wg sync.WaitGroup
	for i := range 16 {
		h := newHarness(t, harnessOpt{gate: gate, session: sessionID(i), upstream: up.URL})
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := h.chat("x"); err != nil {
					t.Error(err)
				}
			}()
		}
	}
	wg.Wait()
	if top > DefaultMaxUpstreamCalls {
		t.Fatalf("%d calls at the upstream at once, want at most %d", top, DefaultMaxUpstreamCalls)
	}
	t.Logf("at most %d calls at once", top)
}

// A freed slot goes to the waiting session that holds the fewest, not to
// the earliest waiter: a session that keeps its calls queued behind its own
// held slots cannot keep another session out. (First come, first served,
// A's queued call would take the slot B is waiting for.)
func TestGateSharesSlotsFairly(t *testing.T) {
	gate := NewGate(2)
	ctx := t.Context()
	var leaves []func()
	for range 2 { // A holds every slot
		l, err := gate.enter(ctx, "A")
		if err != nil {
			t.Fatal(err)
		}
		leaves = append(leaves, l)
	}
	type got struct {
		who   string
		leave func()
	}
	order := make(chan got, 3)
	wait := func(who, session string) {
		l, err := gate.enter(ctx, session)
		if err != nil {
			t.Error(err)
			return
		}
		order <- got{who, l}
	}
	go wait("A's third", "A")
	waitQueued(t, gate, 1)
	go wait("A's fourth", "A")
	waitQueued(t, gate, 2)
	go wait("B", "B")
	waitQueued(t, gate, 3)
	leaves[0]()
	first := <-order
	if first.who != "B" {
		t.Fatalf("the freed slot went to %s, want B (it holds none; A holds one)", first.who)
	}
	// Equals are served in arrival order: A and B now hold one each, A's
	// third waited longest.
	leaves[1]()
	if next := <-order; next.who != "A's third" {
		t.Fatalf("next slot went to %s, want A's third", next.who)
	}
	first.leave()
	if last := <-order; last.who != "A's fourth" {
		t.Fatalf("last slot went to %s", last.who)
	}
	// A waiter that gives up leaves the queue; a late leave is harmless.
	c, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := gate.enter(c, "C"); err == nil {
		t.Fatal("a full gate let C in")
	}
	gate.mu.Lock()
	n := len(gate.waiting)
	gate.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d waiters left after C gave up", n)
	}
}

func waitQueued(t *testing.T, g *Gate, n int) {
	t.Helper()
	for i := 0; ; i++ {
		g.mu.Lock()
		k := len(g.waiting)
		g.mu.Unlock()
		if k == n {
			return
		}
		if i > 1000 {
			t.Fatalf("%d waiting, want %d", k, n)
		}
		time.Sleep(time.Millisecond)
	}
}
