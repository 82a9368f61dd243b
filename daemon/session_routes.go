package daemon

import (
	"context"
	"errors"
	"net/http"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/admin"
	"github.com/ironclaw/ironclaw/daemon/store"
)

// CreateSessionRequest is POST /v1/sessions: a new session for a binding
// (for example "console:work") that has none.
type CreateSessionRequest struct {
	Binding string `json:"binding"`
}

// SessionRecords answers GET /v1/sessions/{id}/records: what the session's
// agent keeps. Sealed content: the request is audited.
type SessionRecords struct {
	Session   string          `json:"session"`
	Memory    []wire.Memory   `json:"memory"`
	Notes     []wire.Note     `json:"notes"`
	Schedules []wire.Schedule `json:"schedules"`
}

// sessionRoutes are the operator's session commands. Each action is audited
// by the supervisor with the connection's operator as the actor.
func (d *Daemon) sessionRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/sessions", func(w http.ResponseWriter, r *http.Request) {
		peer, _ := admin.PeerFrom(r.Context())
		var req CreateSessionRequest
		if err := admin.Decode(r, &req); err != nil {
			admin.Fail(w, http.StatusBadRequest, err)
			return
		}
		id, err := d.sup.CreateSession(r.Context(), req.Binding, peer.Actor())
		if err != nil {
			admin.Fail(w, sessionErrCode(err), err)
			return
		}
		admin.Reply(w, map[string]string{"id": id.String(), "binding": req.Binding})
	})
	op := func(name string, fn func(ctx context.Context, id wire.SessionID, actor string) error) {
		mux.HandleFunc("POST /v1/sessions/{id}/"+name, func(w http.ResponseWriter, r *http.Request) {
			peer, _ := admin.PeerFrom(r.Context())
			id, err := wire.ParseSessionID(r.PathValue("id"))
			if err != nil {
				admin.Fail(w, http.StatusBadRequest, err)
				return
			}
			if err := fn(r.Context(), id, peer.Actor()); err != nil {
				admin.Fail(w, sessionErrCode(err), err)
				return
			}
			admin.Reply(w, map[string]string{"id": id.String(), "result": name})
		})
	}
	op("stop", d.sup.Stop)
	op("restart", d.sup.Restart)
	op("reset-outbox", d.sup.ResetOutbox)
	mux.HandleFunc("GET /v1/sessions/{id}/records", func(w http.ResponseWriter, r *http.Request) {
		peer, _ := admin.PeerFrom(r.Context())
		id, err := wire.ParseSessionID(r.PathValue("id"))
		if err != nil {
			admin.Fail(w, http.StatusBadRequest, err)
			return
		}
		recs, err := d.sup.Records(r.Context(), id, peer.Actor())
		if err != nil {
			admin.Fail(w, sessionErrCode(err), err)
			return
		}
		admin.Reply(w, SessionRecords{Session: id.String(), Memory: recs.Memory, Notes: recs.Notes, Schedules: recs.Schedules})
	})
}

func sessionErrCode(err error) int {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, store.ErrErased), errors.Is(err, store.ErrBindingTaken):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}
