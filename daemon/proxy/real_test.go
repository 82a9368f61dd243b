package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/ironclaw/ironclaw/agentd/model"
	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/daemon/proxy/ollamatest"
)

// TestRealOllama runs the real path against the real Ollama server serving
// the tiny model: a streamed turn end to end, a model Ollama does not have,
// a model without tool support offered tools, and the server going away.
func TestRealOllama(t *testing.T) {
	real := ollamatest.StartReal(t)
	h := newHarness(t, harnessOpt{upstream: real.URL, model: ollamatest.TinyModel})

	t.Run("streamed turn", func(t *testing.T) {
		resp, err := h.provider.Chat(context.Background(), model.Request{
			Model: ollamatest.TinyModel, NumCtx: 512, NumPredict: 12,
			Messages: []model.Message{{Role: model.RoleSystem, Content: "be brief"}, {Role: model.RoleUser, Content: "hello there"}},
		})
		if err != nil {
			t.Fatalf("%v\n%s", err, real.Logs())
		}
		if resp.PromptTokens == 0 || resp.EvalTokens == 0 || resp.EvalTokens > 12 {
			t.Fatalf("tokens %d+%d, want a prompt and 1..12 generated", resp.PromptTokens, resp.EvalTokens)
		}
	})
	t.Run("tools on a model without tool support", func(t *testing.T) {
		_, err := h.provider.Chat(context.Background(), model.Request{
			Model: ollamatest.TinyModel, NumCtx: 512,
			Messages: []model.Message{{Role: model.RoleUser, Content: "hi"}},
			Tools:    []model.Tool{{Name: "reply", Description: "reply", Parameters: json.RawMessage(`{"type":"object","properties":{"text":{"type":"string"}}}`)}},
		})
		if !errors.Is(err, model.ErrNoTools) {
			t.Fatalf("got %v, want ErrNoTools", err)
		}
	})
	t.Run("unknown model", func(t *testing.T) {
		h.setProfile(func(p *profile.Profile) { p.Model = "not-pulled:1b" })
		defer h.setProfile(func(p *profile.Profile) { p.Model = ollamatest.TinyModel })
		_, err := h.chatAs("not-pulled:1b", "hi")
		if !errors.Is(err, model.ErrUnknownModel) || !strings.Contains(err.Error(), "not found") {
			t.Fatalf("got %v, want ErrUnknownModel", err)
		}
	})
	t.Run("refused endpoints never reach it", func(t *testing.T) {
		for _, p := range []string{"/api/pull", "/api/create", "/api/delete", "/api/generate"} {
			if code, _ := h.raw("POST", p, `{"model":"x"}`); code != 404 {
				t.Errorf("%s: %d", p, code)
			}
		}
	})
	t.Run("preflight", func(t *testing.T) {
		c := NewUpstreamClient(Limits{})
		if err := Preflight(context.Background(), c, real.URL, ollamatest.TinyModel); err != nil {
			t.Fatalf("the tiny model: %v", err)
		}
		if err := Preflight(context.Background(), c, real.URL, "qwen3:4b"); err == nil || !strings.Contains(err.Error(), "ollama pull qwen3:4b") {
			t.Fatalf("a missing model: %v", err)
		}
	})
	t.Run("upstream down", func(t *testing.T) {
		real.Stop()
		if err := Preflight(context.Background(), NewUpstreamClient(Limits{}), real.URL, ollamatest.TinyModel); err == nil || !strings.Contains(err.Error(), "ollama serve") {
			t.Fatalf("preflight with the server down: %v", err)
		}
		_, err := h.chat("hi")
		if !errors.Is(err, model.ErrUnavailable) {
			t.Fatalf("got %v, want ErrUnavailable", err)
		}
	})
	es := h.entries()
	cs := calls(es)
	if len(cs) != 4 {
		t.Fatalf("%d call records, want 4 (turn, no tools, unknown, down): %+v", len(cs), cs)
	}
	if !strings.Contains(cs[0].Result, "status=200") || !strings.Contains(cs[1].Result, "status=400") ||
		!strings.Contains(cs[2].Result, "status=404") || !strings.Contains(cs[3].Result, "status=502") {
		t.Fatalf("call records %+v", cs)
	}
	if r := refusals(es); r[RefusedEndpoint] != 4 {
		t.Fatalf("refusals %v", r)
	}
}
