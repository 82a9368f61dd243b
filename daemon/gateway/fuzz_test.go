package gateway

import (
	"bytes"
	"errors"
	"testing"

	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/policy"
)

// FuzzSubmitAgentRequest feeds arbitrary bytes, as the decrypted body of an
// agent's change-request row, through the production path: the strict
// decoding every outbox row gets, then the function the supervisor's
// ChangeSink calls (SubmitAgentChange). Whatever they are: no panic, and
// nothing is ever applied (there are no operator rules, so only a human
// could apply anything).
func FuzzSubmitAgentRequest(f *testing.F) {
	e := newEnv(f)
	s := e.newSession()
	_, base := e.current(s)
	for _, kind := range policy.Kinds() {
		p := baseProfile()
		p.Instructions = "fuzz " + kind
		f.Add(agentBody(f, kind, p.Canonical(), "seed"))
	}
	f.Add(agentBody(f, policy.KindInstructions, base, ""))
	f.Fuzz(func(t *testing.T, body []byte) {
		tk, err := e.submitAgentBody(s, body)
		if errors.Is(err, errUndecodable) {
			return
		}
		if err == nil && tk.State != StatePending && tk.State != StateRefused {
			t.Fatalf("agent request ended %s", tk.State)
		}
		ver, cur, serr := e.st.CurrentProfile(ctx, s)
		if serr != nil {
			t.Fatal(serr)
		}
		if ver != 1 || !bytes.Equal(cur.Canonical(), base) {
			t.Fatalf("the profile moved to version %d", ver)
		}
		if n := len(e.app.all()); n != 0 {
			t.Fatalf("applier called %d times", n)
		}
		if err == nil {
			v, verr := e.gw.Show(ctx, tk.ID)
			if verr != nil {
				t.Fatal(verr)
			}
			if _, perr := profile.Parse(v.Proposed); perr != nil {
				t.Fatalf("stored a proposal that does not parse: %v", perr)
			}
			if verr := v.Check(); verr != nil {
				t.Fatal(verr)
			}
		}
	})
}
