package model

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/ironclaw/ironclaw/agentd/wire"
)

// DefaultNumCtx is the context length asked for when a Request names none.
// Ollama's own default is short and silently cuts off tool schemas.
const DefaultNumCtx = 8192

// maxLine caps one line of an answer. The proxy cuts lines at 1 MiB by
// default; this is the ceiling the agent accepts whatever it is set to.
const maxLine = 8 << 20

// Ollama is the Provider that calls Ollama's /api/chat, in Ollama's own
// wire types, through the daemon's model proxy on the session socket: the
// only way out of the sandbox. The daemon decides where the call goes.
//
// It reads the streamed answer itself rather than with Ollama's client,
// which allocates an 8 MiB line buffer for every call: inside gVisor each
// fresh page of it is a fault the sandbox's kernel handles, about a
// millisecond a call (docs/benchmarks.md). Lines here start in 64 KiB and
// grow only as far as a line needs, up to maxLine.
type Ollama struct {
	base *url.URL
	hc   *http.Client
}

// NewOllama returns the Ollama provider speaking over the unix socket at
// socketPath (wire.SandboxSocket inside the sandbox).
func NewOllama(socketPath string) Provider {
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socketPath)
	}
	hc := &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         dial,
		DisableCompression:  true,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     time.Minute,
	}}
	// The host part is never resolved: every connection is the socket.
	return newOllama(&url.URL{Scheme: "http", Host: "ironclaw-proxy"}, hc)
}

func newOllama(base *url.URL, hc *http.Client) *Ollama {
	return &Ollama{base: base, hc: hc}
}

// Chat makes one streamed chat call and gathers the answer. Streaming lets
// tool calls arrive on any line and an {"error": …} line end the call
// (both happen with Ollama); thinking is switched off explicitly, because a
// thinking model offered tools may otherwise answer nothing.
func (o *Ollama) Chat(ctx context.Context, req Request) (Response, error) {
	creq, err := toOllama(req)
	if err != nil {
		return Response{}, err
	}
	var resp Response
	resp.Message.Role = RoleAssistant
	var content strings.Builder
	done := false
	err = o.stream(ctx, creq, func(r api.ChatResponse) error {
		content.WriteString(r.Message.Content)
		for _, tc := range r.Message.ToolCalls {
			args, err := json.Marshal(tc.Function.Arguments)
			if err != nil {
				return fmt.Errorf("%w: tool call arguments: %v", ErrUnavailable, err)
			}
			resp.Message.ToolCalls = append(resp.Message.ToolCalls, ToolCall{Name: tc.Function.Name, Arguments: args})
		}
		if r.Done {
			done = true
			resp.PromptTokens, resp.EvalTokens = r.PromptEvalCount, r.EvalCount
		}
		return nil
	})
	if err != nil {
		return Response{}, mapError(ctx, err)
	}
	if !done {
		return Response{}, fmt.Errorf("%w: the answer ended before it was done", ErrUnavailable)
	}
	resp.Message.Content = content.String()
	return resp, nil
}

// stream posts req to /api/chat and calls fn with each line of the answer,
// as Ollama's client does: an HTTP error status becomes an api.StatusError
// with the message the server gave, an {"error": …} line a plain error.
func (o *Ollama) stream(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, o.base.JoinPath(wire.PathModelChat).String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/x-ndjson")
	resp, err := o.hc.Do(hreq)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	for sc.Scan() {
		line := sc.Bytes()
		var r struct {
			api.ChatResponse
			Error string `json:"error,omitempty"`
		}
		if err := json.Unmarshal(line, &r); err != nil {
			if resp.StatusCode >= http.StatusBadRequest {
				return api.StatusError{StatusCode: resp.StatusCode, Status: resp.Status, ErrorMessage: string(line)}
			}
			return errors.New(string(line))
		}
		switch {
		case resp.StatusCode == http.StatusUnauthorized:
			return api.AuthorizationError{StatusCode: resp.StatusCode, Status: resp.Status}
		case resp.StatusCode >= http.StatusBadRequest:
			return api.StatusError{StatusCode: resp.StatusCode, Status: resp.Status, ErrorMessage: r.Error}
		case r.Error != "":
			return errors.New(r.Error)
		}
		if err := fn(r.ChatResponse); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if resp.StatusCode >= http.StatusBadRequest {
		// An error status with no body at all.
		return api.StatusError{StatusCode: resp.StatusCode, Status: resp.Status, ErrorMessage: resp.Status}
	}
	return nil
}

func toOllama(req Request) (*api.ChatRequest, error) {
	stream := true
	numCtx := req.NumCtx
	if numCtx <= 0 {
		numCtx = DefaultNumCtx
	}
	opts := map[string]any{"num_ctx": numCtx}
	if req.NumPredict > 0 {
		opts["num_predict"] = req.NumPredict
	}
	out := &api.ChatRequest{
		Model:   req.Model,
		Stream:  &stream,
		Options: opts,
		Think:   &api.ThinkValue{Value: false},
	}
	for _, m := range req.Messages {
		am := api.Message{Role: m.Role, Content: m.Content, ToolName: m.ToolName}
		for i, tc := range m.ToolCalls {
			var args api.ToolCallFunctionArguments
			raw := tc.Arguments
			if len(raw) == 0 {
				raw = json.RawMessage("{}")
			}
			if err := json.Unmarshal(raw, &args); err != nil {
				return nil, fmt.Errorf("%w: tool call %q: arguments are not a JSON object", ErrRefused, tc.Name)
			}
			am.ToolCalls = append(am.ToolCalls, api.ToolCall{Function: api.ToolCallFunction{Index: i, Name: tc.Name, Arguments: args}})
		}
		out.Messages = append(out.Messages, am)
	}
	for _, t := range req.Tools {
		var params api.ToolFunctionParameters
		if err := json.Unmarshal(t.Parameters, &params); err != nil {
			return nil, fmt.Errorf("%w: tool %q: parameters are not a JSON schema object: %v", ErrRefused, t.Name, err)
		}
		out.Tools = append(out.Tools, api.Tool{Type: "function", Function: api.ToolFunction{Name: t.Name, Description: t.Description, Parameters: params}})
	}
	return out, nil
}

// mapError sorts a failed call into the errors a turn tells apart. The
// message the proxy or Ollama gave is kept as detail (it names the model or
// the limit, never conversation content).
func mapError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("model: %w", ctx.Err())
	}
	var se api.StatusError
	if errors.As(err, &se) {
		msg := detail(se.ErrorMessage)
		switch {
		case strings.Contains(se.ErrorMessage, "does not support tools"):
			return fmt.Errorf("%w: %s", ErrNoTools, msg)
		case se.StatusCode == http.StatusNotFound, se.StatusCode == wire.ModelStatusNotAllowed:
			return fmt.Errorf("%w: %s", ErrUnknownModel, msg)
		case se.StatusCode == wire.ModelStatusBudget:
			return fmt.Errorf("%w: %s", ErrBudget, msg)
		case se.StatusCode >= 500:
			return fmt.Errorf("%w: %s", ErrUnavailable, msg)
		default:
			return fmt.Errorf("%w: %s (HTTP %d)", ErrRefused, msg, se.StatusCode)
		}
	}
	var ae api.AuthorizationError
	if errors.As(err, &ae) {
		return fmt.Errorf("%w: the model server asks for authorisation", ErrUnavailable)
	}
	// An {"error": …} line mid-stream arrives as a plain error, as does a
	// failed connection.
	msg := detail(err.Error())
	switch {
	case strings.Contains(msg, "does not support tools"):
		return fmt.Errorf("%w: %s", ErrNoTools, msg)
	case strings.HasPrefix(msg, wire.ModelErrTooLarge):
		return fmt.Errorf("%w: %s", ErrRefused, msg)
	}
	return fmt.Errorf("%w: %s", ErrUnavailable, msg)
}

func detail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
