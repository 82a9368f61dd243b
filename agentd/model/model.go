// Package model is the agent's view of a language model: one Provider
// interface, plain request and response types, and the errors a turn must
// tell apart. The agent loop depends only on this package; the Ollama
// implementation (over the session socket, through the daemon's proxy) lives
// beside it, and a test can hand the loop any other Provider.
//
// Nothing here performs I/O or reaches the network: inside the sandbox the
// only way out is the session socket, and only the daemon decides where a
// call goes.
package model

import (
	"context"
	"encoding/json"
	"errors"
)

// Roles of a chat message, as Ollama names them.
const (
	RoleSystem    = "system"
	RoleUser      = "user"
	RoleAssistant = "assistant"
	RoleTool      = "tool"
)

// Message is one turn of the conversation the model sees.
type Message struct {
	Role    string
	Content string
	// ToolCalls are the calls an assistant message asks for.
	ToolCalls []ToolCall
	// ToolName names the tool a RoleTool message answers.
	ToolName string
}

// ToolCall is one call the model asked for. Arguments is the JSON object the
// model produced, untouched: the tool decodes it strictly.
type ToolCall struct {
	Name      string
	Arguments json.RawMessage
}

// Tool describes a compiled-in tool to the model. Parameters is a JSON
// Schema object.
type Tool struct {
	Name        string
	Description string
	Parameters  json.RawMessage
}

// Request is one chat call.
type Request struct {
	Model    string
	Messages []Message
	// Tools offered for this call; none means a plain chat.
	Tools []Tool
	// NumCtx is the context length to ask for (0: the provider's default).
	// Set it: a short default context silently cuts off tool schemas.
	NumCtx int
	// NumPredict caps the tokens generated (0: the provider's default).
	NumPredict int
}

// Response is the model's answer to one call.
type Response struct {
	// Message is the assistant's message: content, tool calls, or both.
	Message Message
	// PromptTokens and EvalTokens are what the call cost, as reported.
	PromptTokens int
	EvalTokens   int
}

// Provider answers chat calls.
type Provider interface {
	Chat(ctx context.Context, req Request) (Response, error)
}

// Errors a turn tells apart. Providers wrap one of these (errors.Is) so the
// agent can say something useful to the user instead of going silent.
var (
	// ErrNoTools: the model does not support tools. The agent answers
	// without tools and tells the operator.
	ErrNoTools = errors.New("model: the model does not support tools")
	// ErrUnknownModel: the model is not installed upstream (ollama pull it)
	// or the session's profile does not allow it.
	ErrUnknownModel = errors.New("model: the model is not available")
	// ErrUnavailable: the upstream could not be reached or failed.
	ErrUnavailable = errors.New("model: the model server is unavailable")
	// ErrBudget: the session's rate or token budget is spent.
	ErrBudget = errors.New("model: the session's model budget is spent")
	// ErrRefused: the proxy refused the request as malformed or oversized.
	ErrRefused = errors.New("model: the request was refused")
)
