package ollamatest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
)

// Reply is one scripted answer to one /api/chat call.
type Reply struct {
	// Status, when not 0 or 200, answers with that status and
	// {"error": Error} before any line.
	Status int
	// Chunks are the streamed lines before the final one, in order. A
	// non-streaming call gets them merged into one message.
	Chunks []Chunk
	// Error, with Status 0 or 200, is sent as an {"error": …} line after
	// the chunks, as Ollama reports a failure mid-stream; no final line
	// follows.
	Error string
	// DoneReason is the final line's done_reason ("stop" if empty).
	DoneReason string
	// PromptTokens and EvalTokens are the final line's prompt_eval_count
	// and eval_count (EvalTokens defaults to the number of chunks).
	PromptTokens, EvalTokens int
	// Delay is slept before each line.
	Delay time.Duration
	// Raw, if set, is written as the whole body under Status (or 200),
	// bypassing everything above: for malformed answers.
	Raw string
}

// Chunk is one streamed line's message.
type Chunk struct {
	Content   string
	Thinking  string
	ToolCalls []ToolCall
}

// ToolCall is a tool call the scripted model makes. Arguments is a JSON
// object, in the order written (Ollama sends an object, not a string).
type ToolCall struct {
	Name      string
	Arguments string
}

// Text is a plain answer streamed a word at a time.
func Text(s string) Reply {
	var r Reply
	words := strings.SplitAfter(s, " ")
	for _, w := range words {
		if w != "" {
			r.Chunks = append(r.Chunks, Chunk{Content: w})
		}
	}
	return r
}

// Calls is an answer that makes tool calls, on one line, with no content.
func Calls(calls ...ToolCall) Reply {
	return Reply{Chunks: []Chunk{{ToolCalls: calls}}}
}

// Call is shorthand for a ToolCall.
func Call(name, arguments string) ToolCall { return ToolCall{Name: name, Arguments: arguments} }

// Fail answers with an HTTP error status and Ollama's error body.
func Fail(status int, msg string) Reply { return Reply{Status: status, Error: msg} }

// NoTools is Ollama's answer when the model's template has no tools.
func NoTools(model string) Reply {
	return Fail(http.StatusBadRequest, fmt.Sprintf("registry.ollama.ai/library/%s does not support tools", model))
}

// NotFound is Ollama's answer for a model it does not have.
func NotFound(model string) Reply {
	return Fail(http.StatusNotFound, fmt.Sprintf("model '%s' not found", model))
}

// Scripted is a scripted Ollama server on a loopback port.
type Scripted struct {
	// URL is the server's base URL (for model.ollama_url or a proxy's
	// upstream).
	URL string
	srv *httptest.Server

	mu       sync.Mutex
	replies  []Reply           // guarded by mu: not yet given
	requests []api.ChatRequest // guarded by mu: every /api/chat call, in order
	headers  []http.Header     // guarded by mu
	others   []string          // guarded by mu: "METHOD /path" of any other call
	echo     bool              // with no scripted reply left, answer with the last user message
}

// NewScripted starts a scripted server that answers calls with replies in
// order (more can be added with Push); it is closed when t ends. A call
// with no reply left is answered 500.
func NewScripted(t testing.TB, replies ...Reply) *Scripted {
	s := &Scripted{replies: replies}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	t.Cleanup(s.Close)
	return s
}

// Push adds replies to the end of the script.
func (s *Scripted) Push(replies ...Reply) {
	s.mu.Lock()
	s.replies = append(s.replies, replies...)
	s.mu.Unlock()
}

// Left returns how many scripted replies were not used.
func (s *Scripted) Left() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.replies)
}

// Requests returns the /api/chat requests received so far, decoded.
func (s *Scripted) Requests() []api.ChatRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]api.ChatRequest(nil), s.requests...)
}

// Headers returns the headers of the /api/chat requests received so far.
func (s *Scripted) Headers() []http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]http.Header(nil), s.headers...)
}

// Others returns "METHOD /path" of every call that was not POST /api/chat
// (each answered 404).
func (s *Scripted) Others() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.others...)
}

// Close stops the server.
func (s *Scripted) Close() { s.srv.Close() }

func (s *Scripted) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/api/chat" {
		s.mu.Lock()
		s.others = append(s.others, r.Method+" "+r.URL.Path)
		s.mu.Unlock()
		writeErr(w, http.StatusNotFound, "404 page not found")
		return
	}
	var req api.ChatRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	s.mu.Lock()
	s.requests = append(s.requests, req)
	s.headers = append(s.headers, r.Header.Clone())
	var rep Reply
	ok := len(s.replies) > 0
	if ok {
		rep, s.replies = s.replies[0], s.replies[1:]
	} else if s.echo {
		rep, ok = Text(lastUser(req)), true
	}
	s.mu.Unlock()
	if !ok {
		writeErr(w, http.StatusInternalServerError, "ollamatest: no scripted reply left")
		return
	}
	s.answer(w, r, req, rep)
}

func writeErr(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func (s *Scripted) answer(w http.ResponseWriter, r *http.Request, req api.ChatRequest, rep Reply) {
	status := rep.Status
	if status == 0 {
		status = http.StatusOK
	}
	if rep.Raw != "" {
		w.WriteHeader(status)
		w.Write([]byte(rep.Raw))
		return
	}
	if status != http.StatusOK {
		writeErr(w, status, rep.Error)
		return
	}
	stream := req.Stream == nil || *req.Stream
	msg := func(c Chunk) api.Message {
		m := api.Message{Role: "assistant", Content: c.Content, Thinking: c.Thinking}
		for i, tc := range c.ToolCalls {
			var args api.ToolCallFunctionArguments
			if err := json.Unmarshal([]byte(tc.Arguments), &args); err != nil {
				panic("ollamatest: tool call arguments are not a JSON object: " + tc.Arguments)
			}
			m.ToolCalls = append(m.ToolCalls, api.ToolCall{
				ID:       fmt.Sprintf("call_%d", i),
				Function: api.ToolCallFunction{Index: i, Name: tc.Name, Arguments: args},
			})
		}
		return m
	}
	evals := rep.EvalTokens
	if evals == 0 {
		evals = len(rep.Chunks)
	}
	final := api.ChatResponse{
		Model: req.Model, CreatedAt: time.Now().UTC(), Message: api.Message{Role: "assistant"},
		Done: true, DoneReason: rep.DoneReason,
		Metrics: api.Metrics{PromptEvalCount: rep.PromptTokens, EvalCount: evals, TotalDuration: time.Millisecond},
	}
	if final.DoneReason == "" {
		final.DoneReason = "stop"
	}
	flusher, _ := w.(http.Flusher)
	if !stream {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		time.Sleep(rep.Delay * time.Duration(len(rep.Chunks)+1))
		if rep.Error != "" {
			writeErr(w, http.StatusInternalServerError, rep.Error)
			return
		}
		var merged Chunk
		for _, c := range rep.Chunks {
			merged.Content += c.Content
			merged.Thinking += c.Thinking
			merged.ToolCalls = append(merged.ToolCalls, c.ToolCalls...)
		}
		final.Message = msg(merged)
		json.NewEncoder(w).Encode(final)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	if flusher != nil {
		flusher.Flush() // Ollama's header goes out before the first token
	}
	enc := json.NewEncoder(w)
	for _, c := range rep.Chunks {
		time.Sleep(rep.Delay)
		if r.Context().Err() != nil {
			return
		}
		enc.Encode(api.ChatResponse{Model: req.Model, CreatedAt: time.Now().UTC(), Message: msg(c)})
		if flusher != nil {
			flusher.Flush()
		}
	}
	time.Sleep(rep.Delay)
	if rep.Error != "" {
		enc.Encode(map[string]string{"error": rep.Error})
		return
	}
	enc.Encode(final)
}
