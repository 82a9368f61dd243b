package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"

	"github.com/ironclaw/ironclaw/agentd/wire"
)

// chatRequest is the part of Ollama's ChatRequest the proxy forwards. It is
// decoded strictly (wire.StrictUnmarshal): a key that is not named here —
// images, raw templates, runner options such as num_gpu or num_thread,
// debug switches — refuses the whole request, so nothing the agent sends
// reaches the upstream unless this proxy understood it.
type chatRequest struct {
	Model    string        `json:"model"`
	Messages []chatMessage `json:"messages"`
	Stream   *bool         `json:"stream,omitempty"`
	// Format is "json" or a JSON schema object.
	Format    json.RawMessage `json:"format,omitempty"`
	KeepAlive json.RawMessage `json:"keep_alive,omitempty"`
	Tools     []chatTool      `json:"tools,omitempty"`
	Options   *chatOptions    `json:"options"`
	// Think is true, false, or "low"/"medium"/"high".
	Think json.RawMessage `json:"think,omitempty"`
}

type chatMessage struct {
	Role       string         `json:"role"`
	Content    string         `json:"content"`
	Thinking   string         `json:"thinking,omitempty"`
	ToolCalls  []chatToolCall `json:"tool_calls,omitempty"`
	ToolName   string         `json:"tool_name,omitempty"`
	ToolCallID string         `json:"tool_call_id,omitempty"`
}

type chatToolCall struct {
	ID       string           `json:"id,omitempty"`
	Function chatCallFunction `json:"function"`
}

type chatCallFunction struct {
	Index     int             `json:"index"`
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
}

type chatTool struct {
	Type     string          `json:"type"`
	Items    json.RawMessage `json:"items,omitempty"`
	Function chatFunction    `json:"function"`
}

type chatFunction struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters"`
}

// chatOptions are the sampling options the proxy passes on. Runner options
// (GPU, threads, mmap, batch) shape the host's resources and are refused.
type chatOptions struct {
	NumCtx           *int64   `json:"num_ctx,omitempty"`
	NumPredict       *int64   `json:"num_predict,omitempty"`
	NumKeep          *int64   `json:"num_keep,omitempty"`
	Seed             *int64   `json:"seed,omitempty"`
	TopK             *int64   `json:"top_k,omitempty"`
	TopP             *float64 `json:"top_p,omitempty"`
	MinP             *float64 `json:"min_p,omitempty"`
	TypicalP         *float64 `json:"typical_p,omitempty"`
	RepeatLastN      *int64   `json:"repeat_last_n,omitempty"`
	Temperature      *float64 `json:"temperature,omitempty"`
	RepeatPenalty    *float64 `json:"repeat_penalty,omitempty"`
	PresencePenalty  *float64 `json:"presence_penalty,omitempty"`
	FrequencyPenalty *float64 `json:"frequency_penalty,omitempty"`
	Stop             []string `json:"stop,omitempty"`
}

// upstreamRequest is what the proxy sends: built field by field from a
// checked chatRequest, with the proxy's own options and keep_alive.
type upstreamRequest struct {
	Model     string          `json:"model"`
	Messages  []chatMessage   `json:"messages"`
	Stream    bool            `json:"stream"`
	Format    json.RawMessage `json:"format,omitempty"`
	KeepAlive string          `json:"keep_alive"`
	Tools     []chatTool      `json:"tools,omitempty"`
	Options   chatOptions     `json:"options"`
	Think     json.RawMessage `json:"think,omitempty"`
}

// requestError is a refusal of a request: its class goes to the audit log,
// its detail (which may quote the agent) only back to the agent.
type requestError struct {
	status int
	class  string
	detail string
}

func (e *requestError) Error() string { return e.class + ": " + e.detail }

func refusal(status int, class, format string, args ...any) *requestError {
	return &requestError{status: status, class: class, detail: fmt.Sprintf(format, args...)}
}

var (
	// Ollama model names: name[:tag], optionally namespace/ and host/ (the
	// same shape daemon/config accepts for model.default).
	modelName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._:/-]{0,199}$`)
	// Tool names as the agent's compiled-in tools are named.
	toolName = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_.-]{0,63}$`)
)

// Caps on single fields, beyond the body cap.
const (
	maxToolSchema   = 16 << 10 // one tool's parameters schema
	maxToolCalls    = 32       // tool calls in one message
	maxStops        = 8
	maxStopLen      = 64
	maxToolDescSize = 4 << 10
)

// decodeChat decodes and checks an agent's chat request and builds the
// upstream request from it. It never looks at the profile: the caller
// checks the model against it.
func decodeChat(body []byte, lim Limits) (*chatRequest, *upstreamRequest, error) {
	var req chatRequest
	if err := wire.StrictUnmarshal(body, &req); err != nil {
		return nil, nil, refusal(400, RefusedMalformed, "%v", err)
	}
	if !modelName.MatchString(req.Model) {
		return nil, nil, refusal(400, RefusedMalformed, "model %q is not an Ollama model name", truncate(req.Model, 64))
	}
	if len(req.Messages) == 0 {
		return nil, nil, refusal(400, RefusedMalformed, "no messages")
	}
	if len(req.Messages) > lim.MaxMessages {
		return nil, nil, refusal(wire.ModelStatusTooLarge, RefusedTooMany, "%d messages, at most %d", len(req.Messages), lim.MaxMessages)
	}
	if len(req.Tools) > lim.MaxTools {
		return nil, nil, refusal(wire.ModelStatusTooLarge, RefusedTooMany, "%d tools, at most %d", len(req.Tools), lim.MaxTools)
	}
	for i, m := range req.Messages {
		if err := checkMessage(m); err != nil {
			return nil, nil, refusal(400, RefusedMalformed, "message %d: %v", i, err)
		}
	}
	for i, t := range req.Tools {
		if err := checkTool(t); err != nil {
			return nil, nil, refusal(400, RefusedMalformed, "tool %d: %v", i, err)
		}
	}
	if len(req.Format) > 0 && !isJSONString(req.Format, "json") && !isObject(req.Format) {
		return nil, nil, refusal(400, RefusedMalformed, `format must be "json" or a JSON schema object`)
	}
	if len(req.Think) > 0 {
		switch string(req.Think) {
		case "true", "false", `"low"`, `"medium"`, `"high"`:
		default:
			return nil, nil, refusal(400, RefusedMalformed, `think must be true, false, "low", "medium" or "high"`)
		}
	}
	keepAlive, err := parseKeepAlive(req.KeepAlive)
	if err != nil {
		return nil, nil, refusal(400, RefusedMalformed, "keep_alive: %v", err)
	}
	opts, err := clampOptions(req.Options, lim)
	if err != nil {
		return nil, nil, refusal(400, RefusedMalformed, "options: %v", err)
	}
	up := &upstreamRequest{
		Model:     req.Model,
		Messages:  req.Messages,
		Stream:    req.Stream == nil || *req.Stream, // Ollama streams unless told not to
		Format:    req.Format,
		KeepAlive: fmt.Sprintf("%ds", int64(min(keepAlive, lim.MaxKeepAlive)/time.Second)),
		Tools:     req.Tools,
		Options:   opts,
		Think:     req.Think,
	}
	return &req, up, nil
}

func checkMessage(m chatMessage) error {
	switch m.Role {
	case "system", "user", "assistant", "tool":
	default:
		return fmt.Errorf("role %q is not system, user, assistant or tool", truncate(m.Role, 32))
	}
	if len(m.ToolCalls) > maxToolCalls {
		return fmt.Errorf("%d tool calls, at most %d", len(m.ToolCalls), maxToolCalls)
	}
	if len(m.ToolCalls) > 0 && m.Role != "assistant" {
		return errors.New("only assistant messages carry tool calls")
	}
	for _, c := range m.ToolCalls {
		if !toolName.MatchString(c.Function.Name) {
			return fmt.Errorf("tool call name %q", truncate(c.Function.Name, 64))
		}
		if !isObject(c.Function.Arguments) {
			return errors.New("tool call arguments must be a JSON object")
		}
		if len(c.ID) > 64 {
			return errors.New("tool call id over 64 bytes")
		}
	}
	if m.ToolName != "" && (m.Role != "tool" || !toolName.MatchString(m.ToolName)) {
		return fmt.Errorf("tool_name %q", truncate(m.ToolName, 64))
	}
	if len(m.ToolCallID) > 64 {
		return errors.New("tool_call_id over 64 bytes")
	}
	return nil
}

func checkTool(t chatTool) error {
	if t.Type != "function" {
		return fmt.Errorf("type %q, want \"function\"", truncate(t.Type, 32))
	}
	if len(t.Items) > 0 {
		return errors.New("items is not supported on a tool")
	}
	if !toolName.MatchString(t.Function.Name) {
		return fmt.Errorf("name %q", truncate(t.Function.Name, 64))
	}
	if len(t.Function.Description) > maxToolDescSize {
		return fmt.Errorf("description over %d bytes", maxToolDescSize)
	}
	if !isObject(t.Function.Parameters) {
		return errors.New("parameters must be a JSON schema object")
	}
	if len(t.Function.Parameters) > maxToolSchema {
		return fmt.Errorf("parameters over %d bytes", maxToolSchema)
	}
	return nil
}

// clampOptions keeps the agent's sampling options and bounds the ones that
// cost the host: the context length (memory) and the prediction length
// (time). A missing num_ctx gets the proxy's default, never Ollama's short
// one, which silently cuts off tool schemas.
func clampOptions(o *chatOptions, lim Limits) (chatOptions, error) {
	var out chatOptions
	if o != nil {
		out = *o
	}
	clamp := func(p **int64, def, hi int64) {
		v := def
		if *p != nil && **p > 0 {
			v = min(**p, hi)
		}
		*p = &v
	}
	clamp(&out.NumCtx, lim.DefaultNumCtx, lim.MaxNumCtx)
	// num_predict <= 0 means "no limit" (-1) or "fill the context" (-2)
	// to Ollama: both become the cap.
	clamp(&out.NumPredict, lim.MaxNumPredict, lim.MaxNumPredict)
	if out.NumKeep != nil && (*out.NumKeep < 0 || *out.NumKeep > *out.NumCtx) {
		return out, errors.New("num_keep out of range")
	}
	for _, f := range []*float64{out.TopP, out.MinP, out.TypicalP, out.Temperature, out.RepeatPenalty, out.PresencePenalty, out.FrequencyPenalty} {
		if f != nil && (math.IsNaN(*f) || *f < -100 || *f > 100) {
			return out, errors.New("a sampling option is out of range")
		}
	}
	for _, i := range []*int64{out.TopK, out.RepeatLastN} {
		if i != nil && (*i < -1 || *i > 1<<20) {
			return out, errors.New("a sampling option is out of range")
		}
	}
	if len(out.Stop) > maxStops {
		return out, fmt.Errorf("more than %d stop sequences", maxStops)
	}
	for _, s := range out.Stop {
		if len(s) == 0 || len(s) > maxStopLen {
			return out, fmt.Errorf("a stop sequence must be 1..%d bytes", maxStopLen)
		}
	}
	return out, nil
}

// parseKeepAlive reads Ollama's keep_alive: a duration string ("5m") or a
// number of seconds. Missing, zero or negative ("forever") values become
// the proxy's default; the caller caps the result.
func parseKeepAlive(raw json.RawMessage) (time.Duration, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return math.MaxInt64, nil
	}
	var d time.Duration
	var s string
	var n float64
	switch {
	case json.Unmarshal(raw, &s) == nil:
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, errors.New("not a duration")
		}
	case json.Unmarshal(raw, &n) == nil:
		if math.IsNaN(n) || math.Abs(n) > 1e9 {
			return 0, errors.New("out of range")
		}
		d = time.Duration(n * float64(time.Second))
	default:
		return 0, errors.New("want a duration string or seconds")
	}
	if d <= 0 {
		return math.MaxInt64, nil
	}
	return d, nil
}

func isObject(raw json.RawMessage) bool {
	for _, c := range raw {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c == '{'
	}
	return false
}

func isJSONString(raw json.RawMessage, want string) bool {
	var s string
	return json.Unmarshal(raw, &s) == nil && s == want
}

// sameModel reports whether two Ollama model names name the same model
// (Ollama reads a missing tag as ":latest").
func sameModel(a, b string) bool {
	norm := func(s string) string {
		s = strings.ToLower(s)
		if i := strings.LastIndex(s, "/"); !strings.Contains(s[i+1:], ":") {
			s += ":latest"
		}
		return s
	}
	return a != "" && b != "" && norm(a) == norm(b)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
