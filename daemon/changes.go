package daemon

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/admin"
	"github.com/ironclaw/ironclaw/daemon/gateway"
	"github.com/ironclaw/ironclaw/daemon/store"
)

// The admin socket's change endpoints. Who decides is the peer's local
// account (admin.Peer), never a field of the request; an approval must carry
// the binding hash of what the operator was shown.

// ChangeSummary is one line of `ironclaw changes list`.
type ChangeSummary struct {
	ID          string    `json:"id"`
	Session     string    `json:"session"`
	Kind        string    `json:"kind"`
	Requester   string    `json:"requester"`
	State       string    `json:"state"`
	Outcome     string    `json:"outcome"`
	Rule        string    `json:"rule"`
	Created     time.Time `json:"created"`
	DecidedBy   string    `json:"decided_by"`
	Result      string    `json:"result"`
	BaseVersion uint64    `json:"base_version"`
}

// ChangeView is `ironclaw changes show`: everything needed to decide.
type ChangeView struct {
	ChangeSummary
	Binding         string   `json:"binding"`
	Diff            string   `json:"diff"`
	Base            string   `json:"base"`
	Proposed        string   `json:"proposed"`
	UntrustedReason string   `json:"untrusted_reason"`
	PolicyReasons   []string `json:"policy_reasons"`
	ChangedFields   []string `json:"changed_fields"`
	Restart         bool     `json:"restart"`
	BaseIsCurrent   bool     `json:"base_is_current"`
	Note            string   `json:"note"`
}

// DecideRequest approves or denies: Binding is the hash the operator saw.
type DecideRequest struct {
	Binding string `json:"binding"`
	Note    string `json:"note,omitempty"`
}

// ProposeRequest is an operator-initiated change of a session's profile.
type ProposeRequest struct {
	Session     string `json:"session"`
	Kind        string `json:"kind"`
	Proposed    string `json:"proposed"`
	Reason      string `json:"reason"`
	BaseVersion uint64 `json:"base_version"`
}

// ProposeReply says what the gateway made of a proposal.
type ProposeReply struct {
	ID        string `json:"id"`
	State     string `json:"state"`
	Outcome   string `json:"outcome"`
	Rule      string `json:"rule"`
	Duplicate bool   `json:"duplicate"`
}

// ProfileReply is a session's current profile.
type ProfileReply struct {
	Session   string `json:"session"`
	Version   uint64 `json:"version"`
	Canonical string `json:"canonical"`
}

// SessionSummary is one line of `ironclaw sessions`.
type SessionSummary struct {
	ID             string    `json:"id"`
	Binding        string    `json:"binding"`
	State          string    `json:"state"`
	Created        time.Time `json:"created"`
	ProfileVersion uint64    `json:"profile_version"`
}

func summary(s gateway.Summary) ChangeSummary {
	out := ChangeSummary{
		ID: s.ID.String(), Kind: s.Kind, Requester: s.Requester, State: string(s.State),
		Outcome: s.Outcome, Rule: s.Rule, Created: s.Created, DecidedBy: s.DecidedBy,
		Result: s.Result, BaseVersion: s.BaseVersion,
	}
	if s.Session != (wire.SessionID{}) {
		out.Session = s.Session.String()
	}
	return out
}

func (d *Daemon) changeRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/sessions", func(w http.ResponseWriter, r *http.Request) {
		ss, err := d.store.ListSessions(r.Context())
		if err != nil {
			admin.Fail(w, http.StatusInternalServerError, err)
			return
		}
		out := []SessionSummary{}
		for _, s := range ss {
			out = append(out, SessionSummary{ID: s.ID.String(), Binding: s.Binding, State: string(s.State), Created: s.Created, ProfileVersion: s.ProfileVersion})
		}
		admin.Reply(w, out)
	})
	mux.HandleFunc("GET /v1/sessions/{id}/profile", func(w http.ResponseWriter, r *http.Request) {
		id, err := wire.ParseSessionID(r.PathValue("id"))
		if err != nil {
			admin.Fail(w, http.StatusBadRequest, err)
			return
		}
		v, p, err := d.store.CurrentProfile(r.Context(), id)
		if err != nil {
			admin.Fail(w, http.StatusNotFound, err)
			return
		}
		admin.Reply(w, ProfileReply{Session: id.String(), Version: v, Canonical: string(p.Canonical())})
	})
	mux.HandleFunc("DELETE /v1/sessions/{id}", func(w http.ResponseWriter, r *http.Request) {
		peer, _ := admin.PeerFrom(r.Context())
		id, err := wire.ParseSessionID(r.PathValue("id"))
		if err != nil {
			admin.Fail(w, http.StatusBadRequest, err)
			return
		}
		if _, err := d.store.GetSession(r.Context(), id); err != nil {
			admin.Fail(w, http.StatusNotFound, err)
			return
		}
		if err := d.sup.Erase(r.Context(), id, peer.Actor()); err != nil {
			admin.Fail(w, http.StatusInternalServerError, err)
			return
		}
		admin.Reply(w, map[string]string{"id": id.String(), "result": "erased"})
	})
	mux.HandleFunc("GET /v1/changes", func(w http.ResponseWriter, r *http.Request) {
		f := gateway.Filter{}
		if r.URL.Query().Get("all") == "" {
			f.States = []store.ChangeState{store.ChangePending}
		}
		list, err := d.gw.List(r.Context(), f)
		if err != nil {
			admin.Fail(w, http.StatusInternalServerError, err)
			return
		}
		out := []ChangeSummary{}
		for _, s := range list {
			out = append(out, summary(s))
		}
		admin.Reply(w, out)
	})
	mux.HandleFunc("GET /v1/changes/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, err := gateway.ParseID(r.PathValue("id"))
		if err != nil {
			admin.Fail(w, http.StatusBadRequest, err)
			return
		}
		v, err := d.gw.Show(r.Context(), id)
		if err == nil {
			err = v.Check()
		}
		if err != nil {
			admin.Fail(w, http.StatusNotFound, err)
			return
		}
		admin.Reply(w, ChangeView{
			ChangeSummary: summary(v.Summary), Binding: fmt.Sprintf("%x", v.Binding), Diff: v.Diff,
			Base: string(v.Base), Proposed: string(v.Proposed), UntrustedReason: v.UntrustedReason,
			PolicyReasons: v.PolicyReasons, ChangedFields: v.ChangedFields, Restart: v.Restart,
			BaseIsCurrent: v.BaseIsCurrent, Note: v.Note,
		})
	})
	decide := func(approve bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			peer, _ := admin.PeerFrom(r.Context())
			id, err := gateway.ParseID(r.PathValue("id"))
			if err != nil {
				admin.Fail(w, http.StatusBadRequest, err)
				return
			}
			var req DecideRequest
			if err := admin.Decode(r, &req); err != nil {
				admin.Fail(w, http.StatusBadRequest, err)
				return
			}
			hash, err := gateway.ParseBinding(req.Binding)
			if err != nil {
				admin.Fail(w, http.StatusBadRequest, err)
				return
			}
			if approve {
				err = d.gw.Approve(r.Context(), id, peer.Actor(), hash)
			} else {
				err = d.gw.Deny(r.Context(), id, peer.Actor(), hash, req.Note)
			}
			if err != nil && !errors.Is(err, gateway.ErrNotify) {
				admin.Fail(w, http.StatusConflict, err)
				return
			}
			admin.Reply(w, map[string]string{"id": id.String(), "result": decisionWord(approve, err)})
		}
	}
	mux.HandleFunc("POST /v1/changes/{id}/approve", decide(true))
	mux.HandleFunc("POST /v1/changes/{id}/deny", decide(false))
	mux.HandleFunc("POST /v1/changes", func(w http.ResponseWriter, r *http.Request) {
		peer, _ := admin.PeerFrom(r.Context())
		var req ProposeRequest
		if err := admin.Decode(r, &req); err != nil {
			admin.Fail(w, http.StatusBadRequest, err)
			return
		}
		id, err := wire.ParseSessionID(req.Session)
		if err != nil {
			admin.Fail(w, http.StatusBadRequest, err)
			return
		}
		t, err := d.gw.Submit(r.Context(), gateway.Request{
			Session: id, Kind: req.Kind, Requester: peer.Actor(), Reason: req.Reason,
			Proposed: []byte(req.Proposed), BaseVersion: req.BaseVersion,
		})
		if err != nil {
			admin.Fail(w, http.StatusConflict, err)
			return
		}
		admin.Reply(w, ProposeReply{ID: t.ID.String(), State: string(t.State), Outcome: t.Outcome.String(), Rule: t.Rule, Duplicate: t.Duplicate})
	})
}

func decisionWord(approve bool, err error) string {
	switch {
	case approve && err != nil:
		return "applied; the daemon will deliver it at its next start (" + err.Error() + ")"
	case approve:
		return "applied"
	}
	return "denied"
}
