package ollamatest

import (
	"testing"

	"github.com/ollama/ollama/api"
)

// NewEcho starts a scripted server that, once its script (if any) is used
// up, answers every call with the text of the last user message: the model
// for end-to-end tests that check a message's round trip through the real
// agent, not what a model says.
func NewEcho(t testing.TB, replies ...Reply) *Scripted {
	s := NewScripted(t, replies...)
	s.mu.Lock()
	s.echo = true
	s.mu.Unlock()
	return s
}

func lastUser(req api.ChatRequest) string {
	for i := len(req.Messages) - 1; i >= 0; i-- {
		if req.Messages[i].Role == "user" {
			return req.Messages[i].Content
		}
	}
	return ""
}
