package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ironclaw/ironclaw/agentd/model"
	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/audit"
	"github.com/ironclaw/ironclaw/daemon/proxy/ollamatest"
)

func TestStreamedTurnThroughTheSocket(t *testing.T) {
	rep := ollamatest.Text("the secret answer is 42")
	rep.PromptTokens, rep.EvalTokens = 11, 5
	h := newHarness(t, harnessOpt{}, rep)
	resp, err := h.chat("what is the secret plan")
	if err != nil {
		t.Fatal(err)
	}
	if resp.Message.Content != "the secret answer is 42" || resp.PromptTokens != 11 || resp.EvalTokens != 5 {
		t.Fatalf("got %+v", resp)
	}
	reqs := h.up.Requests()
	if len(reqs) != 1 || reqs[0].Model != testModel || reqs[0].Messages[0].Content != "what is the secret plan" {
		t.Fatalf("upstream saw %+v", reqs)
	}
	if reqs[0].Stream == nil || !*reqs[0].Stream {
		t.Fatal("the stream was not forwarded as a stream")
	}
	if reqs[0].Think == nil || reqs[0].Think.Bool() {
		t.Fatal("think was not forwarded as an explicit false")
	}
	if got := reqs[0].Options["num_ctx"]; got != float64(4096) {
		t.Fatalf("num_ctx %v, want the agent's 4096", got)
	}
	if got := reqs[0].Options["num_predict"]; got != float64(DefaultMaxNumPredict) {
		t.Fatalf("num_predict %v, want the cap %d when the agent names none", got, DefaultMaxNumPredict)
	}
	if reqs[0].KeepAlive == nil || reqs[0].KeepAlive.Duration != DefaultMaxKeepAlive {
		t.Fatalf("keep_alive %v, want %v", reqs[0].KeepAlive, DefaultMaxKeepAlive)
	}
	// Nothing the agent's client sent is forwarded: Ollama's client sets
	// its own User-Agent and Accept.
	hdr := h.up.Headers()[0]
	if strings.Contains(hdr.Get("User-Agent"), "ollama") || hdr.Get("Accept") != "" {
		t.Fatalf("agent headers reached the upstream: %v", hdr)
	}
	es := h.entries()
	cs := calls(es)
	if len(cs) != 1 {
		t.Fatalf("%d call records, want 1: %+v", len(cs), es)
	}
	r := cs[0].Result
	for _, want := range []string{"model=" + testModel, "status=200", "prompt_tokens=11", "eval_tokens=5", "charged=16", "duration_ms=", "outcome=done"} {
		if !strings.Contains(r, want) {
			t.Errorf("call record %q lacks %q", r, want)
		}
	}
	for _, e := range es {
		for _, secret := range []string{"secret", "42", "plan"} {
			if strings.Contains(e.Result+e.Subject+e.Actor, secret) {
				t.Errorf("audit entry carries content %q: %+v", secret, e)
			}
		}
	}
	if h.proxy.Used() != 16 {
		t.Fatalf("budget charged %d, want 16", h.proxy.Used())
	}
}

func TestToolCallsOnAnyLine(t *testing.T) {
	rep := ollamatest.Reply{Chunks: []ollamatest.Chunk{
		{Content: "let me "},
		{ToolCalls: []ollamatest.ToolCall{ollamatest.Call("remember", `{"key":"k","value":{"nested":[1,2]},"a":true}`)}},
		{Content: "see"},
		{ToolCalls: []ollamatest.ToolCall{ollamatest.Call("reply", `{"text":"hi"}`)}},
	}}
	h := newHarness(t, harnessOpt{}, rep)
	ctx := context.Background()
	resp, err := h.provider.Chat(ctx, model.Request{
		Model: testModel,
		Messages: []model.Message{
			{Role: model.RoleUser, Content: "x"},
			{Role: model.RoleAssistant, ToolCalls: []model.ToolCall{{Name: "recall", Arguments: json.RawMessage(`{"key":"k"}`)}}},
			{Role: model.RoleTool, ToolName: "recall", Content: "v"},
		},
		Tools: []model.Tool{{Name: "remember", Description: "remember a fact", Parameters: json.RawMessage(`{"type":"object","properties":{"key":{"type":"string"}},"required":["key"]}`)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Message.Content != "let me see" || len(resp.Message.ToolCalls) != 2 {
		t.Fatalf("got %+v", resp.Message)
	}
	if tc := resp.Message.ToolCalls[0]; tc.Name != "remember" || string(tc.Arguments) != `{"key":"k","value":{"nested":[1,2]},"a":true}` {
		t.Fatalf("first tool call %s %s", tc.Name, tc.Arguments)
	}
	req := h.up.Requests()[0]
	if len(req.Tools) != 1 || req.Tools[0].Function.Name != "remember" || len(req.Messages) != 3 || req.Messages[1].ToolCalls[0].Function.Name != "recall" {
		t.Fatalf("upstream saw %+v", req)
	}
}

func TestErrorsMapToTheAgentsErrors(t *testing.T) {
	cases := map[string]struct {
		rep  ollamatest.Reply
		want error
	}{
		"no tools":          {ollamatest.NoTools(testModel), model.ErrNoTools},
		"unknown model":     {ollamatest.NotFound(testModel), model.ErrUnknownModel},
		"upstream 500":      {ollamatest.Fail(500, "llama runner process has terminated"), model.ErrUnavailable},
		"mid-stream error":  {ollamatest.Reply{Chunks: []ollamatest.Chunk{{Content: "a"}}, Error: "an error was encountered while running the model"}, model.ErrUnavailable},
		"ends without done": {ollamatest.Reply{Raw: `{"message":{"role":"assistant","content":"a"},"done":false}` + "\n"}, model.ErrUnavailable},
		"malformed answer":  {ollamatest.Reply{Raw: "<html>oops</html>\n"}, model.ErrUnavailable},
		"upstream 401":      {ollamatest.Fail(401, "unauthorized"), model.ErrUnavailable},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, harnessOpt{}, c.rep)
			_, err := h.chat("x")
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if len(calls(h.entries())) != 1 {
				t.Fatal("the forwarded call was not audited once")
			}
		})
	}
}

func TestUpstreamDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	h := newHarness(t, harnessOpt{upstream: "http://" + addr})
	_, err = h.chat("x")
	if !errors.Is(err, model.ErrUnavailable) || !strings.Contains(err.Error(), "model.ollama_url") {
		t.Fatalf("got %v, want ErrUnavailable saying what to check", err)
	}
	cs := calls(h.entries())
	if len(cs) != 1 || !strings.Contains(cs[0].Result, "status=502") || !strings.Contains(cs[0].Result, "outcome=unreachable") {
		t.Fatalf("call records %+v", cs)
	}
}

func TestModelNotAllowed(t *testing.T) {
	h := newHarness(t, harnessOpt{}, ollamatest.Text("never"))
	h.setProfile(func(p *profile.Profile) { p.Model = "other:7b" })
	_, err := h.chatAs(testModel, "x")
	if !errors.Is(err, model.ErrUnknownModel) || !strings.Contains(err.Error(), "other:7b") {
		t.Fatalf("got %v", err)
	}
	if len(h.up.Requests()) != 0 {
		t.Fatal("a call for a model the profile does not allow reached the upstream")
	}
	if r := refusals(h.entries()); r[RefusedModel] != 1 {
		t.Fatalf("refusals %v", r)
	}
}

func TestSameModelName(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"qwen3", "qwen3:latest", true}, {"Qwen3:4B", "qwen3:4b", true}, {"qwen3:4b", "qwen3:8b", false},
		{"ns/m", "ns/m:latest", true}, {"host:5000/m", "host:5000/m:latest", true}, {"", "", false},
	} {
		if got := sameModel(c.a, c.b); got != c.want {
			t.Errorf("sameModel(%q, %q) = %v", c.a, c.b, got)
		}
	}
}

func TestRefusedEndpoints(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	for _, c := range []struct{ method, path string }{
		{"POST", "/api/pull"}, {"POST", "/api/create"}, {"POST", "/api/generate"}, {"GET", "/api/tags"},
		{"DELETE", "/api/delete"}, {"POST", "/api/push"}, {"GET", "/api/chat"}, {"PUT", "/api/chat"},
		{"POST", "/api/chat/"}, {"POST", "/api/blobs/sha256:00"}, {"POST", "/api/embed"}, {"POST", "/api/show"},
		{"POST", "/api/copy"}, {"GET", "/api/ps"},
	} {
		code, body := h.raw(c.method, c.path, chatBody(""))
		if code != http.StatusNotFound || !strings.Contains(body, RefusedEndpoint) {
			t.Errorf("%s %s: %d %s", c.method, c.path, code, body)
		}
	}
	if o := h.up.Others(); len(o) != 0 || len(h.up.Requests()) != 0 {
		t.Fatalf("refused requests reached the upstream: %v", o)
	}
	// Refusals are folded: fourteen refusals, counted, in at most two entries.
	es := h.entries()
	if r := refusals(es); r[RefusedEndpoint] != 14 {
		t.Fatalf("refusals %v", r)
	}
	if len(es) > 2 {
		t.Fatalf("%d audit entries for one repeated refusal, want them aggregated", len(es))
	}
}

func TestMalformedRequestsAreRefused(t *testing.T) {
	h := newHarness(t, harnessOpt{limits: Limits{MaxMessages: 4, MaxBody: 8 << 10}})
	many := strings.Repeat(`{"role":"user","content":"x"},`, 5)
	cases := map[string]struct {
		body   string
		status int
		class  string
	}{
		"not json":          {`{"model":`, 400, RefusedMalformed},
		"unknown key":       {chatBody(`,"raw":true`), 400, RefusedMalformed},
		"case variant key":  {`{"Model":"` + testModel + `","messages":[{"role":"user","content":"hi"}]}`, 400, RefusedMalformed},
		"duplicate key":     {`{"model":"` + testModel + `","model":"other","messages":[{"role":"user","content":"hi"}]}`, 400, RefusedMalformed},
		"nested duplicate":  {chatBody(`,"tools":[{"type":"function","function":{"name":"t","parameters":{"type":"object","type":"x"}}}]`), 400, RefusedMalformed},
		"images":            {`{"model":"` + testModel + `","messages":[{"role":"user","content":"hi","images":["AAAA"]}]}`, 400, RefusedMalformed},
		"runner option":     {chatBody(`,"options":{"num_gpu":99}`), 400, RefusedMalformed},
		"bad role":          {`{"model":"` + testModel + `","messages":[{"role":"root","content":"hi"}]}`, 400, RefusedMalformed},
		"no messages":       {`{"model":"` + testModel + `","messages":[]}`, 400, RefusedMalformed},
		"args not object":   {`{"model":"` + testModel + `","messages":[{"role":"assistant","content":"","tool_calls":[{"function":{"index":0,"name":"t","arguments":"{}"}}]}]}`, 400, RefusedMalformed},
		"trailing data":     {chatBody("") + "{}", 400, RefusedMalformed},
		"bad model name":    {`{"model":"../../etc","messages":[{"role":"user","content":"hi"}]}`, 400, RefusedMalformed},
		"think string":      {chatBody(`,"think":"max"`), 400, RefusedMalformed},
		"too many messages": {`{"model":"` + testModel + `","messages":[` + many + `{"role":"user","content":"x"}]}`, 413, RefusedTooMany},
		"oversized":         {chatBody(`,"format":"` + strings.Repeat("a", 9<<10) + `"`), 413, RefusedTooLarge},
		"invalid utf-8":     {"{\"model\":\"" + testModel + "\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}", 400, RefusedMalformed},
	}
	want := map[string]uint64{}
	for name, c := range cases {
		code, body := h.raw("POST", "/api/chat", c.body)
		if code != c.status || !strings.Contains(body, c.class) {
			t.Errorf("%s: %d %s", name, code, body)
		}
		want[c.class]++
	}
	if len(h.up.Requests()) != 0 {
		t.Fatal("a refused request reached the upstream")
	}
	got := refusals(h.entries())
	for class, n := range want {
		if got[class] != n {
			t.Errorf("class %q: %d audited, want %d", class, got[class], n)
		}
	}
}

func TestOptionsAreClamped(t *testing.T) {
	h := newHarness(t, harnessOpt{limits: Limits{MaxNumCtx: 16384, MaxNumPredict: 100, MaxKeepAlive: time.Minute}},
		ollamatest.Text("a"), ollamatest.Text("b"))
	code, body := h.raw("POST", "/api/chat", chatBody(`,"keep_alive":-1,"options":{"num_ctx":1000000,"num_predict":-1,"temperature":0.2}`))
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	code, body = h.raw("POST", "/api/chat", chatBody(`,"keep_alive":"99h","options":null`))
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	reqs := h.up.Requests()
	for i, r := range reqs {
		if r.Options["num_ctx"] != float64(16384) && !(i == 1 && r.Options["num_ctx"] == float64(DefaultNumCtx)) {
			t.Errorf("call %d: num_ctx %v", i, r.Options["num_ctx"])
		}
		if r.Options["num_predict"] != float64(100) {
			t.Errorf("call %d: num_predict %v", i, r.Options["num_predict"])
		}
		if r.KeepAlive == nil || r.KeepAlive.Duration != time.Minute {
			t.Errorf("call %d: keep_alive %v", i, r.KeepAlive)
		}
	}
	if reqs[0].Options["temperature"] != 0.2 {
		t.Errorf("temperature %v was not passed on", reqs[0].Options["temperature"])
	}
	if reqs[1].Stream == nil || *reqs[1].Stream {
		t.Error("stream:false was not passed on")
	}
}

func TestCallRateBudget(t *testing.T) {
	h := newHarness(t, harnessOpt{}, ollamatest.Text("a"), ollamatest.Text("b"), ollamatest.Text("c"))
	h.setProfile(func(p *profile.Profile) { p.Limits.CallsPerMinute = 2 })
	for i := range 2 {
		if _, err := h.chat("x"); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if _, err := h.chat("x"); !errors.Is(err, model.ErrBudget) {
		t.Fatalf("third call in a minute: %v, want ErrBudget", err)
	}
	if len(h.up.Requests()) != 2 {
		t.Fatal("a call over the rate reached the upstream")
	}
	if r := refusals(h.entries()); r[RefusedRate] != 1 {
		t.Fatalf("refusals %v", r)
	}
}

func TestTokenBudgetOutlivesTheProxy(t *testing.T) {
	budget := &Budget{}
	rep := ollamatest.Text("a b")
	rep.PromptTokens, rep.EvalTokens = 60, 50
	h := newHarness(t, harnessOpt{budget: budget}, rep)
	h.setProfile(func(p *profile.Profile) { p.Limits.TokensPerDay = 100 })
	if _, err := h.chat("x"); err != nil {
		t.Fatal(err)
	}
	// A new proxy for the same session (a restarted sandbox) shares the
	// supervisor's budget: the day's tokens are spent.
	h2 := newHarness(t, harnessOpt{budget: budget}, ollamatest.Text("never"))
	h2.setProfile(func(p *profile.Profile) { p.Limits.TokensPerDay = 100 })
	if _, err := h2.chat("x"); !errors.Is(err, model.ErrBudget) {
		t.Fatalf("got %v, want ErrBudget", err)
	}
	if len(h2.up.Requests()) != 0 {
		t.Fatal("a call over the day's tokens reached the upstream")
	}
	// The next day starts afresh.
	tomorrow := time.Now().Add(24 * time.Hour)
	if release, _, class := budget.admit(tomorrow, budgetLimits{callsPerMinute: 10, tokensPerDay: 100, concurrent: 1}); class != "" {
		t.Fatalf("next day refused: %s", class)
	} else {
		release()
	}
}

func TestNumPredictNeverExceedsTheDaysTokens(t *testing.T) {
	budget := &Budget{}
	budget.charge(time.Now(), 970)
	h := newHarness(t, harnessOpt{budget: budget}, ollamatest.Text("a"))
	h.setProfile(func(p *profile.Profile) { p.Limits.TokensPerDay = 1000 })
	if _, err := h.chat("x"); err != nil {
		t.Fatal(err)
	}
	if got := h.up.Requests()[0].Options["num_predict"]; got != float64(30) {
		t.Fatalf("num_predict %v, want the 30 tokens left today", got)
	}
}

func TestConcurrencyBudget(t *testing.T) {
	slow := ollamatest.Text("a b c d")
	slow.Delay = 200 * time.Millisecond
	h := newHarness(t, harnessOpt{limits: Limits{MaxConcurrent: 1}}, slow, ollamatest.Text("x"))
	var wg sync.WaitGroup
	wg.Add(1)
	var firstErr error
	go func() { defer wg.Done(); _, firstErr = h.chat("x") }()
	// Wait until the first call is at the upstream.
	for i := 0; len(h.up.Requests()) == 0; i++ {
		if i > 500 {
			t.Fatal("the first call never reached the upstream")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := h.chat("x"); !errors.Is(err, model.ErrBudget) {
		t.Fatalf("a second call at once: %v, want ErrBudget", err)
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	if _, err := h.chat("x"); err != nil {
		t.Fatalf("after the first call ended: %v", err)
	}
	if r := refusals(h.entries()); r[RefusedConcurrency] != 1 {
		t.Fatalf("refusals %v", r)
	}
}

func TestResponseCaps(t *testing.T) {
	t.Run("total", func(t *testing.T) {
		h := newHarness(t, harnessOpt{limits: Limits{MaxResponse: 2000}}, ollamatest.Text(strings.Repeat("word ", 200)))
		_, err := h.chat("x")
		if !errors.Is(err, model.ErrRefused) || !strings.Contains(err.Error(), "too large") {
			t.Fatalf("got %v", err)
		}
		es := h.entries()
		if r := refusals(es); r[RefusedResponse] != 1 {
			t.Fatalf("refusals %v", r)
		}
		if cs := calls(es); len(cs) != 1 || !strings.Contains(cs[0].Result, "outcome=too large") {
			t.Fatalf("calls %+v", cs)
		}
	})
	t.Run("line", func(t *testing.T) {
		long := `{"message":{"role":"assistant","content":"` + strings.Repeat("a", 5000) + `"},"done":false}` + "\n"
		h := newHarness(t, harnessOpt{limits: Limits{MaxLine: 1000}}, ollamatest.Reply{Raw: long})
		if _, err := h.chat("x"); !errors.Is(err, model.ErrRefused) {
			t.Fatalf("got %v", err)
		}
	})
}

// A slow upstream stream outlasts the socket's read timeout and the
// socket's own write timeout: the proxy's deadlines govern a call.
func TestLongAnswerOutlivesSocketTimeouts(t *testing.T) {
	rep := ollamatest.Text("one two three four five six")
	rep.Delay = 150 * time.Millisecond
	h := newHarness(t, harnessOpt{readTimeout: 300 * time.Millisecond}, rep)
	resp, err := h.chat("x")
	if err != nil {
		t.Fatal(err)
	}
	if resp.Message.Content != "one two three four five six" {
		t.Fatalf("got %q", resp.Message.Content)
	}
}

func TestIdleUpstreamIsCutOff(t *testing.T) {
	rep := ollamatest.Text("a b")
	rep.Delay = 2 * time.Second
	h := newHarness(t, harnessOpt{limits: Limits{IdleTimeout: 300 * time.Millisecond}}, rep)
	start := time.Now()
	_, err := h.chat("x")
	if !errors.Is(err, model.ErrUnavailable) {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Fatalf("an idle upstream held the call %v", d)
	}
}

func TestSlowRequestIsRefused(t *testing.T) {
	h := newHarness(t, harnessOpt{readTimeout: 300 * time.Millisecond})
	c, err := net.Dial("unix", h.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := chatBody("")
	fmt.Fprintf(c, "POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(body), body[:10])
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, _ := io.ReadAll(c)
	if !strings.Contains(string(got), RefusedSlow) && !strings.HasPrefix(string(got), "HTTP/1.1 408") {
		t.Fatalf("a trickled body got %q", got)
	}
	if r := refusals(h.entries()); r[RefusedSlow] != 1 {
		t.Fatalf("refusals %v", r)
	}
}

// failingAppend is an audit log whose call records cannot be written.
type failingAppend struct{ *audit.Log }

func (failingAppend) Append(audit.Record) (audit.Entry, error) {
	return audit.Entry{}, errors.New("disk full")
}

func TestUnauditedAnswerIsWithheld(t *testing.T) {
	h := newHarness(t, harnessOpt{auditor: func(l *audit.Log) Auditor { return failingAppend{l} }}, ollamatest.Text("a b c"))
	_, err := h.chat("x")
	if !errors.Is(err, model.ErrUnavailable) || !strings.Contains(err.Error(), "audited") {
		t.Fatalf("got %v, want the call to fail for want of an audit record", err)
	}
	// Non-streaming: no answer at all.
	h2 := newHarness(t, harnessOpt{auditor: func(l *audit.Log) Auditor { return failingAppend{l} }}, ollamatest.Text("secret words"))
	code, body := h2.raw("POST", "/api/chat", chatBody(""))
	if code == 200 || strings.Contains(body, "secret") {
		t.Fatalf("%d %s", code, body)
	}
}

func TestNewChecksTheUpstream(t *testing.T) {
	for _, u := range []string{"", "ftp://x", "http://", "http://u:p@h", "http://h?x=1", "unix:///x"} {
		_, err := New(Config{Upstream: u, Session: "s", Profile: func(context.Context) (profile.Profile, error) { return profile.Profile{}, nil }, Audit: failingAppend{}})
		if err == nil {
			t.Errorf("upstream %q accepted", u)
		}
	}
}

var _ = wire.PathModelChat
