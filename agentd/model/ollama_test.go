package model

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ironclaw/ironclaw/daemon/proxy/ollamatest"
)

// These tests talk to the scripted Ollama server directly (over TCP): they pin how the
// provider reads Ollama's wire format. The daemon's proxy tests run the same provider
// over the session socket.
func direct(t *testing.T, replies ...ollamatest.Reply) (*Ollama, *ollamatest.Scripted) {
	s := ollamatest.NewScripted(t, replies...)
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	return newOllama(u, http.DefaultClient), s
}

func TestChatRequestShape(t *testing.T) {
	o, s := direct(t, ollamatest.Text("ok"))
	_, err := o.Chat(context.Background(), Request{
		Model: "m", NumPredict: 64,
		Messages: []Message{
			{Role: RoleSystem, Content: "sys"},
			{Role: RoleAssistant, ToolCalls: []ToolCall{{Name: "note_read", Arguments: json.RawMessage(`{"name":"a","n":2}`)}, {Name: "note_list"}}},
			{Role: RoleTool, ToolName: "note_read", Content: "text"},
		},
		Tools: []Tool{{Name: "note_read", Description: "read", Parameters: json.RawMessage(`{"type":"object","properties":{"name":{"type":"string","description":"which"}},"required":["name"]}`)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := s.Requests()[0]
	if r.Stream == nil || !*r.Stream || r.Think == nil || r.Think.Bool() {
		t.Fatal("want an explicit stream:true and think:false")
	}
	if r.Options["num_ctx"] != float64(DefaultNumCtx) || r.Options["num_predict"] != float64(64) {
		t.Fatalf("options %v", r.Options)
	}
	tc := r.Messages[1].ToolCalls
	if len(tc) != 2 || tc[0].Function.Name != "note_read" || tc[0].Function.Arguments.String() != `{"name":"a","n":2}` || tc[1].Function.Arguments.String() != `{}` {
		t.Fatalf("tool calls %+v", tc)
	}
	if r.Messages[2].ToolName != "note_read" || len(r.Tools) != 1 || r.Tools[0].Function.Parameters.Required[0] != "name" {
		t.Fatalf("request %+v", r)
	}
	if p, ok := r.Tools[0].Function.Parameters.Properties.Get("name"); !ok || p.Description != "which" {
		t.Fatalf("tool schema lost its properties: %+v", r.Tools[0].Function.Parameters)
	}
}

func TestChatGathersTheStream(t *testing.T) {
	rep := ollamatest.Reply{Chunks: []ollamatest.Chunk{
		{Thinking: "hmm"},
		{Content: "a", ToolCalls: []ollamatest.ToolCall{ollamatest.Call("remember", `{"z":1,"a":"x"}`)}},
		{Content: "b"},
	}, PromptTokens: 7, EvalTokens: 3}
	o, _ := direct(t, rep)
	resp, err := o.Chat(context.Background(), Request{Model: "m", Messages: []Message{{Role: RoleUser, Content: "q"}}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Message.Role != RoleAssistant || resp.Message.Content != "ab" || resp.PromptTokens != 7 || resp.EvalTokens != 3 {
		t.Fatalf("%+v", resp)
	}
	// Arguments keep the model's order: the tool decodes exactly what it wrote.
	if len(resp.Message.ToolCalls) != 1 || string(resp.Message.ToolCalls[0].Arguments) != `{"z":1,"a":"x"}` {
		t.Fatalf("%+v", resp.Message.ToolCalls)
	}
}

func TestChatErrors(t *testing.T) {
	for name, c := range map[string]struct {
		rep  ollamatest.Reply
		want error
	}{
		"no tools":       {ollamatest.NoTools("m"), ErrNoTools},
		"not found":      {ollamatest.NotFound("m"), ErrUnknownModel},
		"not allowed":    {ollamatest.Fail(403, "ironclaw proxy: model not allowed"), ErrUnknownModel},
		"budget":         {ollamatest.Fail(429, "ironclaw proxy: call rate exceeded"), ErrBudget},
		"too large":      {ollamatest.Fail(413, "ironclaw proxy: request too large"), ErrRefused},
		"malformed":      {ollamatest.Fail(400, "ironclaw proxy: malformed request"), ErrRefused},
		"server error":   {ollamatest.Fail(500, "boom"), ErrUnavailable},
		"bad gateway":    {ollamatest.Fail(502, "ollama: gone"), ErrUnavailable},
		"mid-stream":     {ollamatest.Reply{Chunks: []ollamatest.Chunk{{Content: "x"}}, Error: "runner died"}, ErrUnavailable},
		"mid-stream cap": {ollamatest.Reply{Chunks: []ollamatest.Chunk{{Content: "x"}}, Error: "ironclaw proxy: response too large: over 10 bytes"}, ErrRefused},
		"no done line":   {ollamatest.Reply{Raw: `{"message":{"role":"assistant","content":"x"},"done":false}` + "\n"}, ErrUnavailable},
		"not json":       {ollamatest.Reply{Raw: "garbage\n"}, ErrUnavailable},
		"string args":    {ollamatest.Reply{Raw: `{"message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"t","arguments":"{}"}}]},"done":true}` + "\n"}, ErrUnavailable},
	} {
		t.Run(name, func(t *testing.T) {
			o, _ := direct(t, c.rep)
			_, err := o.Chat(context.Background(), Request{Model: "m", Messages: []Message{{Role: RoleUser, Content: "q"}}})
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

func TestChatRefusesBadInputBeforeSending(t *testing.T) {
	o, s := direct(t)
	for _, req := range []Request{
		{Model: "m", Messages: []Message{{Role: RoleAssistant, ToolCalls: []ToolCall{{Name: "t", Arguments: json.RawMessage(`[1]`)}}}}},
		{Model: "m", Tools: []Tool{{Name: "t", Parameters: json.RawMessage(`"nope"`)}}},
	} {
		if _, err := o.Chat(context.Background(), req); !errors.Is(err, ErrRefused) {
			t.Errorf("got %v", err)
		}
	}
	if len(s.Requests()) != 0 {
		t.Fatal("a bad request was sent")
	}
}

func TestNewOllamaOverTheSocketOnly(t *testing.T) {
	dir, _ := os.MkdirTemp("", "ic")
	defer os.RemoveAll(dir)
	// Nothing listens on the socket: the call fails as unavailable, and never tries the
	// network (the URL's host is not resolvable).
	_, err := NewOllama(filepath.Join(dir, "none.sock")).Chat(context.Background(), Request{Model: "m", Messages: []Message{{Role: RoleUser, Content: "q"}}})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "none.sock") {
		t.Fatalf("got %v", err)
	}
}

func TestCancelledCallIsNotAModelError(t *testing.T) {
	o, _ := direct(t, ollamatest.Text("x"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := o.Chat(ctx, Request{Model: "m", Messages: []Message{{Role: RoleUser, Content: "q"}}})
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("got %v", err)
	}
}

// TestLongLines: an answer line longer than the reader's first buffer is
// read whole (the buffer grows); one past maxLine fails the call rather than
// growing without bound.
func TestLongLines(t *testing.T) {
	long := strings.Repeat("é", 100<<10) // 200 KiB of content in one line
	o, _ := direct(t, ollamatest.Text(long))
	r, err := o.Chat(context.Background(), Request{Model: "m"})
	if err != nil || r.Message.Content != long {
		t.Fatalf("long line: %d bytes, %v", len(r.Message.Content), err)
	}
	o, _ = direct(t, ollamatest.Text(strings.Repeat("x", maxLine+1)))
	if _, err := o.Chat(context.Background(), Request{Model: "m"}); err == nil || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a line past %d bytes: %v, want ErrUnavailable", maxLine, err)
	}
}
