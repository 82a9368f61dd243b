package supervisor

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ironclaw/ironclaw/daemon/proxy"
	"github.com/ironclaw/ironclaw/daemon/proxy/ollamatest"
)

// modelCall makes one model call through s's proxy for session id and
// returns the status and answer.
func modelCall(t *testing.T, s *Supervisor, c *conv) (int, string) {
	t.Helper()
	s.mu.Lock()
	h, err := s.modelProxyLocked(c.id)
	s.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/api/chat",
		strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":false}`)))
	return w.Code, w.Body.String()
}

// A session's spent day survives a daemon restart: the new supervisor
// reads the day's tokens from the store, so the spent budget stays spent.
func TestModelBudgetSurvivesDaemonRestart(t *testing.T) {
	costly := ollamatest.Text("costly")
	costly.PromptTokens, costly.EvalTokens = 150000, 60000 // over the default profile's 200000
	up := ollamatest.NewScripted(t, costly, ollamatest.Text("never sent"))
	s, _ := noSandboxSupervisor(t, func(c *Config) { c.ModelUpstream = up.URL })
	ctx := context.Background()
	c, err := s.conversation(ctx, "console:budget")
	if err != nil {
		t.Fatal(err)
	}
	if st, body := modelCall(t, s, c); st != http.StatusOK || !strings.Contains(body, "costly") {
		t.Fatalf("first call: %d %s", st, body)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// The restarted daemon: a new supervisor over the same store.
	s2, err := New(s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s2.Close(context.Background()) })
	c2, err := s2.conversation(ctx, "console:budget")
	if err != nil {
		t.Fatal(err)
	}
	if c2.id != c.id {
		t.Fatal("a new session after the restart")
	}
	st, body := modelCall(t, s2, c2)
	if st != http.StatusTooManyRequests || !strings.Contains(body, proxy.RefusedTokens) {
		t.Fatalf("after a restart the spent day answered %d %s", st, body)
	}
	if n := len(up.Requests()); n != 1 {
		t.Fatalf("%d calls reached the upstream, want 1", n)
	}
}
