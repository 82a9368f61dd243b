package containment

import (
	"strings"
	"testing"
	"time"

	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/daemon/audit"
	"github.com/ironclaw/ironclaw/daemon/proxy"
	"github.com/ironclaw/ironclaw/daemon/proxy/ollamatest"
	"github.com/ironclaw/ironclaw/daemon/supervisor"
	"github.com/ironclaw/ironclaw/policy"
)

const scriptedModel = "scripted:1b"

func withModel(upstream, name string) daemonOpts {
	return func(c *supervisor.Config) { c.ModelUpstream, c.Model = upstream, name }
}

// TestModelProxyFromSandbox: from inside a real gVisor sandbox, agentd's own provider
// gets an answer through the proxy, and every request the proxy must refuse is refused,
// never reaches the upstream, and is audited by class (floods folded).
func TestModelProxyFromSandbox(t *testing.T) {
	slow := ollamatest.Text("slow answer")
	slow.Delay = 500 * time.Millisecond
	// The honest call, the call with forged headers, then slow answers for three calls at once.
	up := ollamatest.NewScripted(t, ollamatest.Text("pong from the model"), ollamatest.Text("x"), slow, slow, slow)
	d := newDaemon(t, evilPath, withModel(up.URL, scriptedModel))
	reply := d.ask("m", "model:"+scriptedModel, 3*time.Minute)
	if !strings.Contains(reply, `model said: "pong from the model"`) {
		t.Fatalf("reply %q: the honest call did not come through", reply)
	}
	id, _ := d.sessionKey("m")
	st, _ := d.sup.Status(id)
	results, _ := parseReport(t, st.Stdout)
	if len(results) < 20 {
		t.Fatalf("only %d results; stdout:\n%s", len(results), tailStr(st.Stdout, 4000))
	}
	for _, r := range results {
		if r.OK {
			t.Errorf("BREACH: %s was forwarded (HTTP %d, %.200s)", r.Attack, r.N, r.Detail)
		}
	}
	// What reached the upstream: only chat calls for the allowed model, with no header
	// the agent chose.
	for i, req := range up.Requests() {
		if req.Model != scriptedModel {
			t.Errorf("call %d for model %q reached the upstream", i, req.Model)
		}
	}
	for i, h := range up.Headers() {
		if h.Get("Authorization") != "" || h.Get("X-Forwarded-For") != "" || strings.Contains(h.Get("User-Agent"), "ollama") {
			t.Errorf("call %d carried agent headers to the upstream: %v", i, h)
		}
	}
	if o := up.Others(); len(o) != 0 {
		t.Errorf("refused endpoints reached the upstream: %v", o)
	}
	// Audit: each refusal class, counted; one record per forwarded call.
	want := map[string]uint64{
		proxy.RefusedEndpoint: 8, proxy.RefusedModel: 1, proxy.RefusedMalformed: 6,
		proxy.RefusedTooLarge: 1, proxy.RefusedTooMany: 1, proxy.RefusedSlow: 1, proxy.RefusedRate: 1,
		proxy.RefusedConcurrency: 1,
	}
	var got map[string]uint64
	var entries, callRecords int
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, entries, callRecords = map[string]uint64{}, 0, 0
		for _, e := range d.auditEntries() {
			if e.Actor != "agent:"+id.String() {
				continue
			}
			switch e.Action {
			case proxy.ActionRefused:
				got[e.Result] += e.Count
				entries++
			case proxy.ActionCall:
				callRecords++
				for _, leak := range []string{"ping", "pong", "hi"} {
					if strings.Contains(e.Result, leak) {
						t.Errorf("call record carries content: %q", e.Result)
					}
				}
			}
		}
		ok := true
		for class, n := range want {
			ok = ok && got[class] >= n
		}
		if ok || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for class, n := range want {
		if got[class] < n {
			t.Errorf("audit: %d %q refusals, want at least %d (all: %v)", got[class], class, n, got)
		}
	}
	if callRecords != len(up.Requests()) {
		t.Errorf("%d call records for %d forwarded calls", callRecords, len(up.Requests()))
	}
	var total uint64
	for _, n := range got {
		total += n
	}
	if entries >= int(total) {
		t.Errorf("%d refusal entries for %d refusals: repeats were not folded", entries, total)
	}
	if got := d.ask("m", "echo:still here", 30*time.Second); got != "still here" {
		t.Errorf("after the attacks the session answered %q", got)
	}
}

// TestModelBudgetSurvivesSandboxRestart: the day's tokens are the supervisor's, so a
// sandbox that crashes and restarts does not get a fresh budget.
func TestModelBudgetSurvivesSandboxRestart(t *testing.T) {
	rep := ollamatest.Text("costly")
	rep.PromptTokens, rep.EvalTokens = 40, 30
	up := ollamatest.NewScripted(t, rep, ollamatest.Text("never sent"))
	d := newDaemon(t, evilPath, withModel(up.URL, scriptedModel))
	if got := d.ask("b", "echo:up", time.Minute); got != "up" {
		t.Fatalf("echo: %q", got)
	}
	id, _ := d.sessionKey("b")
	first, _ := d.sup.Status(id)
	d.approveChange(id, policy.KindLimits, func(p *profile.Profile) { p.Limits.TokensPerDay = 50 })
	// A limits change restarts the sandbox in the background: wait for the new one, or
	// the old one may take the next message and be stopped mid-turn (its call then
	// counts, and the new sandbox's retry meets the spent budget).
	d.waitStatus(id, time.Minute, "the restart for the new limits", func(st supervisor.Status) bool {
		return st.Running && st.Started.After(first.Started)
	})
	if got := d.ask("b", "chat:"+scriptedModel, time.Minute); !strings.Contains(got, "costly") {
		t.Fatalf("first call: %q", got)
	}
	before, _ := d.sup.Status(id)
	if got := d.ask("b", "crashonce", time.Minute); got != "survived" {
		t.Fatalf("crashonce: %q", got)
	}
	after, _ := d.sup.Status(id)
	if !after.Started.After(before.Started) {
		t.Fatalf("the sandbox did not restart (started %v, then %v)", before.Started, after.Started)
	}
	got := d.ask("b", "chat:"+scriptedModel, time.Minute)
	if !strings.Contains(got, "budget") {
		t.Fatalf("after a restart the spent budget answered %q", got)
	}
	if n := len(up.Requests()); n != 1 {
		t.Fatalf("%d calls reached the upstream, want 1", n)
	}
	d.waitAudit(10*time.Second, "the token refusal", func(e audit.Entry) bool {
		return e.Action == proxy.ActionRefused && e.Result == proxy.RefusedTokens
	})
}

// TestRealOllamaTurnFromSandbox: agentd's provider inside gVisor streams a turn from the
// real Ollama server through the proxy; a model Ollama lacks comes back as a clear error.
func TestRealOllamaTurnFromSandbox(t *testing.T) {
	real := ollamatest.StartReal(t)
	d := newDaemon(t, evilPath, withModel(real.URL, ollamatest.TinyModel))
	got := d.ask("r", "chat:"+ollamatest.TinyModel, 2*time.Minute)
	if !strings.HasPrefix(got, "model said:") {
		t.Fatalf("reply %q\nollama logs:\n%s", got, tailStr([]byte(real.Logs()), 3000))
	}
	d.waitAudit(10*time.Second, "the call record", func(e audit.Entry) bool {
		return e.Action == proxy.ActionCall && strings.Contains(e.Result, "model="+ollamatest.TinyModel) && strings.Contains(e.Result, "status=200")
	})
	// The profile allows only the tiny model; asking for another is refused by the proxy
	// (the agent learns the model is unavailable).
	if got := d.ask("r", "chat:qwen3:4b", time.Minute); !strings.Contains(got, "not available") {
		t.Fatalf("another model: %q", got)
	}
	real.Stop()
	if got := d.ask("r", "chat:"+ollamatest.TinyModel, time.Minute); !strings.Contains(got, "unavailable") {
		t.Fatalf("with Ollama down: %q", got)
	}
}
