package proxy

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ironclaw/ironclaw/agentd/model"
	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/daemon/proxy/ollamatest"
)

// waitSettled waits until no call of b is in flight.
func waitSettled(t *testing.T, b *Budget) {
	t.Helper()
	for i := 0; ; i++ {
		b.mu.Lock()
		n := b.inflight
		b.mu.Unlock()
		if n == 0 {
			return
		}
		if i > 3000 {
			t.Fatal("a call never settled")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// An agent that hangs up after the first streamed line is charged the
// call's whole reservation (its prompt can be as long as its body, up to
// num_ctx), not the one line it read: hanging up early never makes a long
// prompt cheap.
func TestHangingUpEarlyKeepsTheReservation(t *testing.T) {
	long := ollamatest.Text(strings.Repeat("word ", 20))
	long.Delay = 100 * time.Millisecond
	long.PromptTokens, long.EvalTokens = 5000, 20
	budget := &Budget{}
	h := newHarness(t, harnessOpt{budget: budget}, long)
	body := `{"model":"` + testModel + `","messages":[{"role":"user","content":"` + strings.Repeat("z", 20000) + `"}],"stream":true,"options":{"num_ctx":32768}}`
	c := unixClient(h.sock)
	req, _ := http.NewRequest(http.MethodPost, "http://x/api/chat", strings.NewReader(body))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close() // hang up
	c.CloseIdleConnections()
	waitSettled(t, budget)
	want := int64(len(body)) + DefaultMaxNumPredict
	if got := h.proxy.Used(); got != want {
		t.Fatalf("charged %d after hanging up, want the reservation %d (body %d bytes + num_predict %d)", got, want, len(body), DefaultMaxNumPredict)
	}
	cs := calls(h.entries())
	if len(cs) != 1 || !strings.Contains(cs[0].Result, "charged=") || strings.Contains(cs[0].Result, "outcome=done") {
		t.Fatalf("call records %+v", cs)
	}
}

// The estimate of a prompt is capped by the context window the call may
// use, and a call the upstream answers settles to the counts it reported.
func TestReservationSettlesToTheReportedCounts(t *testing.T) {
	rep := ollamatest.Text("ok")
	rep.PromptTokens, rep.EvalTokens = 300, 2
	budget := &Budget{}
	h := newHarness(t, harnessOpt{budget: budget}, rep)
	st, out := h.raw(http.MethodPost, "/api/chat", `{"model":"`+testModel+`","messages":[{"role":"user","content":"`+strings.Repeat("z", 20000)+`"}],"stream":false,"options":{"num_ctx":1024}}`)
	if st != http.StatusOK {
		t.Fatalf("%d %s", st, out)
	}
	if got := budget.Used(time.Now()); got != 302 {
		t.Fatalf("charged %d, want the reported 302", got)
	}
	cs := calls(h.entries())
	if len(cs) != 1 || !strings.Contains(cs[0].Result, "reserved=3072 charged=302") {
		t.Fatalf("want a reservation of num_ctx 1024 + num_predict 2048, settled to 302: %+v", cs)
	}
}

// Concurrent calls reserve from what the day has left after each other's
// reservations: a second call while the first holds the day's remainder is
// refused, and it never reaches the upstream.
func TestConcurrentCallsReserveFromWhatRemains(t *testing.T) {
	slow := ollamatest.Text("a b c d")
	slow.Delay = 200 * time.Millisecond
	slow.PromptTokens, slow.EvalTokens = 10, 4
	budget := &Budget{}
	h := newHarness(t, harnessOpt{budget: budget}, slow, ollamatest.Text("x"))
	h.setProfile(func(p *profile.Profile) { p.Limits.TokensPerDay = 1000 })
	var wg sync.WaitGroup
	wg.Add(1)
	var firstErr error
	go func() { defer wg.Done(); _, firstErr = h.chat("x") }()
	for i := 0; len(h.up.Requests()) == 0; i++ {
		if i > 500 {
			t.Fatal("the first call never reached the upstream")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := h.chat("x"); !errors.Is(err, model.ErrBudget) {
		t.Fatalf("a second call while the first holds the day: %v, want ErrBudget", err)
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	if got := h.up.Requests()[0].Options["num_predict"]; got != float64(1000) {
		t.Fatalf("first call's num_predict %v, want the day's 1000", got)
	}
	if len(h.up.Requests()) != 1 {
		t.Fatal("the second call reached the upstream")
	}
	// Settled to the reported 14, the rest of the day is free again.
	if _, err := h.chat("x"); err != nil {
		t.Fatalf("after the first call settled: %v", err)
	}
	if r := refusals(h.entries()); r[RefusedTokens] != 1 {
		t.Fatalf("refusals %v", r)
	}
}

// Two reservations at once split what is left: the second's prediction is
// cut to what the first left over.
func TestReservationsSplitTheRemainder(t *testing.T) {
	b := &Budget{}
	now := time.Now()
	lim := budgetLimits{callsPerMinute: 10, tokensPerDay: 3000, concurrent: 2}
	ctx := context.Background()
	t1, class, _ := b.admit(ctx, now, lim, 100, 2048)
	if class != "" || t1.numPredict != 2048 || t1.reserved != 2148 {
		t.Fatalf("first: %+v %s", t1, class)
	}
	t2, class, _ := b.admit(ctx, now, lim, 100, 2048)
	if class != "" || t2.numPredict != 3000-2148 {
		t.Fatalf("second: predict %d %s, want %d", t2.numPredict, class, 3000-2148)
	}
	t1.settle(ctx, now, 50)
	t2.settle(ctx, now, t2.reserved)
	if got := b.Used(now); got != 50+100+852 {
		t.Fatalf("used %d", got)
	}
	t2.settle(ctx, now, 0) // a second settle changes nothing
	if got := b.Used(now); got != 1002 {
		t.Fatalf("used %d after a repeated settle", got)
	}
}

// memLedger is a Ledger in memory that can be made to fail.
type memLedger struct {
	mu   sync.Mutex
	days map[string]int64
	fail error
}

func (l *memLedger) ModelTokens(_ context.Context, day string) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.days[day], l.fail
}

func (l *memLedger) SetModelTokens(_ context.Context, day string, n int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail != nil {
		return l.fail
	}
	l.days[day] = n
	return nil
}

// A budget reads the day's tokens from its ledger and records every
// admission and settlement, so a new budget (a restarted daemon) starts
// where the old one stopped; a ledger that fails refuses the call.
func TestBudgetLedger(t *testing.T) {
	led := &memLedger{days: map[string]int64{}}
	today := time.Now().UTC().Format(time.DateOnly)
	led.days[today] = 900
	rep := ollamatest.Text("a")
	rep.PromptTokens, rep.EvalTokens = 60, 50
	h := newHarness(t, harnessOpt{budget: &Budget{Ledger: led}}, rep, ollamatest.Text("never"))
	h.setProfile(func(p *profile.Profile) { p.Limits.TokensPerDay = 1000 })
	if _, err := h.chat("x"); err != nil {
		t.Fatal(err)
	}
	if got := h.up.Requests()[0].Options["num_predict"]; got != float64(100) {
		t.Fatalf("num_predict %v, want the 100 the ledger left", got)
	}
	if led.days[today] != 1010 {
		t.Fatalf("ledger holds %d, want 1010", led.days[today])
	}
	h2 := newHarness(t, harnessOpt{budget: &Budget{Ledger: led}}, ollamatest.Text("never"))
	h2.setProfile(func(p *profile.Profile) { p.Limits.TokensPerDay = 1000 })
	if _, err := h2.chat("x"); !errors.Is(err, model.ErrBudget) {
		t.Fatalf("a fresh budget over a spent ledger: %v, want ErrBudget", err)
	}
	led.fail = errors.New("disk gone")
	h3 := newHarness(t, harnessOpt{budget: &Budget{Ledger: led}}, ollamatest.Text("never"))
	if _, err := h3.chat("x"); !errors.Is(err, model.ErrUnavailable) {
		t.Fatalf("with the ledger failing: %v, want ErrUnavailable", err)
	}
	if len(h2.up.Requests())+len(h3.up.Requests()) != 0 {
		t.Fatal("a refused call reached the upstream")
	}
	if r := refusals(h3.entries()); r[RefusedLedger] != 1 {
		t.Fatalf("refusals %v", r)
	}
}
