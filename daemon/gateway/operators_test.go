package gateway

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/ironclaw/ironclaw/policy"
)

// memOperators is an operators set in memory.
type memOperators struct {
	mu   sync.Mutex
	text []byte
	fail error
}

func (m *memOperators) Current() ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return bytes.Clone(m.text), nil
}

func (m *memOperators) Replace(c []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.text = bytes.Clone(c)
	return nil
}

const (
	keyA = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice"
	keyB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBY8qd0hdhZJ4QqNrOkgnLi+Cm8P0hC52kChwOkdGkwP bob"
)

func canonOps(t *testing.T, lines ...string) []byte {
	t.Helper()
	c, err := policy.CanonicalOperators([]byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// An operator adds an operator; only a human operator's approval applies
// it — an operator rule that approves everything does not — and exactly
// the approved bytes become the set.
func TestOperatorsChange(t *testing.T) {
	ops := &memOperators{}
	e := newEnv(t, func(c *Config) { c.Operators = ops })
	ops.text = canonOps(t, keyA)
	e.installRules(policy.RuleSpec{Name: "yes", Effect: policy.EffectAutoApprove, Expr: "true"})
	want := canonOps(t, keyA, keyB)

	// Not an agent, not with a session, not in a non-canonical form.
	if _, err := e.gw.Submit(ctx, Request{Kind: policy.KindOperators, Requester: "agent:" + strings.Repeat("0", 32), Proposed: want}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("agent proposed operators: %v", err)
	}
	if _, err := e.gw.Submit(ctx, Request{Kind: policy.KindOperators, Requester: opKey, Proposed: []byte(keyA + "\n" + keyB + "\n")}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("non-canonical operators: %v", err)
	}
	tk := e.mustPending(e.gw.Submit(ctx, Request{Kind: policy.KindOperators, Requester: opKey, Proposed: want, Reason: "bob joins"}))
	if tk.State != StatePending || tk.Outcome != policy.NeedsHuman {
		t.Fatalf("an operators change was decided without a human: %+v", tk)
	}
	v := e.show(tk.ID)
	if !v.BaseIsCurrent || !strings.Contains(v.Diff, "+"+keyB) {
		t.Fatalf("view: %+v", v)
	}
	if err := e.gw.Approve(ctx, tk.ID, opKey, v.Binding); err != nil {
		t.Fatal(err)
	}
	if got, _ := ops.Current(); !bytes.Equal(got, want) {
		t.Fatalf("operators now %q", got)
	}
	if err := e.gw.Approve(ctx, tk.ID, opKey, v.Binding); !errors.Is(err, ErrNotPending) {
		t.Fatalf("second approval: %v", err)
	}
	if len(e.findEntries(entry{Actor: opKey, Action: ActionApply, Result: "applied"})) == 0 {
		t.Fatal("the apply is not audited")
	}

	// Removing every operator is refused by policy.
	tk, err := e.gw.Submit(ctx, Request{Kind: policy.KindOperators, Requester: opKey, Proposed: nil})
	if err != nil || tk.State != StateRefused || tk.Rule != policy.InvOperatorsNotEmpty {
		t.Fatalf("empty operators: %v %+v", err, tk)
	}

	// A request whose base moved is stale, not rebased.
	tk = e.mustPending(e.gw.Submit(ctx, Request{Kind: policy.KindOperators, Requester: opKey, Proposed: canonOps(t, keyA)}))
	v = e.show(tk.ID)
	ops.Replace(canonOps(t, keyB))
	if err := e.gw.Approve(ctx, tk.ID, opKey, v.Binding); !errors.Is(err, ErrStale) {
		t.Fatalf("stale operators change: %v", err)
	}
	if got, _ := ops.Current(); !bytes.Equal(got, canonOps(t, keyB)) {
		t.Fatalf("a stale change was applied: %q", got)
	}

	// If replacing the set fails, the request stays pending and nothing is
	// recorded as applied.
	tk = e.mustPending(e.gw.Submit(ctx, Request{Kind: policy.KindOperators, Requester: opKey, Proposed: canonOps(t, keyA, keyB)}))
	v = e.show(tk.ID)
	ops.fail = errors.New("disk full")
	if err := e.gw.Approve(ctx, tk.ID, opKey, v.Binding); err == nil {
		t.Fatal("a failed replacement reported success")
	}
	if v2 := e.show(tk.ID); v2.State != StatePending {
		t.Fatalf("after a failed replacement the request is %s", v2.State)
	}
}

func TestCanonicalOperators(t *testing.T) {
	c := canonOps(t, "# comment", "", keyB, keyA, keyA+" dup")
	if string(c) != keyB+"\n"+keyA+"\n" { // sorted by key
		t.Fatalf("%q", c)
	}
	for _, bad := range []string{"not a key", `command="x" ` + keyA, keyA + " " + keyB} {
		if _, err := policy.CanonicalOperators([]byte(bad)); err == nil && bad != keyA+" "+keyB {
			t.Errorf("accepted %q", bad)
		}
	}
}
