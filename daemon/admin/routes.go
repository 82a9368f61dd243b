package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/ironclaw/ironclaw/daemon/api"
)

// Binder returns the api bound to an authenticated peer.
type Binder func(Peer) api.Operator

// Routes serves daemon/api over HTTP on mux: the admin socket's whole
// surface. Every handler gets the api bound to the connection's peer; no
// request names who acts.
func Routes(mux *http.ServeMux, bind Binder) {
	op := func(r *http.Request) api.Operator {
		p, _ := PeerFrom(r.Context()) // Listen refuses requests without a peer
		return bind(p)
	}
	get := func(pattern string, fn func(r *http.Request, o api.Operator) (any, error)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			v, err := fn(r, op(r))
			if err != nil {
				Fail(w, err)
				return
			}
			Reply(w, v)
		})
	}
	get("GET /v1/status", func(r *http.Request, o api.Operator) (any, error) { return o.Status(r.Context()) })
	get("POST /v1/agent/pin", func(r *http.Request, o api.Operator) (any, error) { return o.PinAgent(r.Context()) })
	get("POST /v1/chat", func(r *http.Request, o api.Operator) (any, error) {
		var req api.ChatRequest
		if err := Decode(r, &req); err != nil {
			return nil, err
		}
		return o.Chat(r.Context(), req)
	})
	get("GET /v1/sessions", func(r *http.Request, o api.Operator) (any, error) { return o.ListSessions(r.Context()) })
	get("GET /v1/sessions/{id}/profile", func(r *http.Request, o api.Operator) (any, error) {
		return o.Profile(r.Context(), r.PathValue("id"))
	})
	get("DELETE /v1/sessions/{id}", func(r *http.Request, o api.Operator) (any, error) {
		return map[string]string{"id": r.PathValue("id"), "result": "erased"}, o.EraseSession(r.Context(), r.PathValue("id"))
	})
	get("POST /v1/sessions/{id}/restart", func(r *http.Request, o api.Operator) (any, error) {
		return map[string]string{"id": r.PathValue("id"), "result": "restarted"}, o.RestartSession(r.Context(), r.PathValue("id"))
	})
	get("POST /v1/sessions", func(r *http.Request, o api.Operator) (any, error) {
		var req struct {
			Binding string `json:"binding"`
		}
		if err := Decode(r, &req); err != nil {
			return nil, err
		}
		return o.CreateSession(r.Context(), req.Binding)
	})
	get("POST /v1/sessions/{id}/stop", func(r *http.Request, o api.Operator) (any, error) {
		return map[string]string{"id": r.PathValue("id"), "result": "stopped"}, o.StopSession(r.Context(), r.PathValue("id"))
	})
	get("POST /v1/sessions/{id}/reset-outbox", func(r *http.Request, o api.Operator) (any, error) {
		return map[string]string{"id": r.PathValue("id"), "result": "outbox reset"}, o.ResetOutbox(r.Context(), r.PathValue("id"))
	})
	get("GET /v1/sessions/{id}/records", func(r *http.Request, o api.Operator) (any, error) {
		return o.SessionRecords(r.Context(), r.PathValue("id"))
	})
	get("GET /v1/sessions/{id}/transcript", func(r *http.Request, o api.Operator) (any, error) {
		return o.Transcript(r.Context(), r.PathValue("id"))
	})
	get("GET /v1/sessions/{id}/profile/versions", func(r *http.Request, o api.Operator) (any, error) {
		return o.ProfileHistory(r.Context(), r.PathValue("id"))
	})
	get("GET /v1/sessions/{id}/profile/versions/{version}", func(r *http.Request, o api.Operator) (any, error) {
		v, err := strconv.ParseUint(r.PathValue("version"), 10, 64)
		if err != nil || v == 0 {
			return nil, &api.Error{Code: api.CodeInvalid, Message: "not a profile version", Hint: "versions are numbers from 1; list them with the profile history"}
		}
		return o.ProfileAt(r.Context(), r.PathValue("id"), v)
	})
	get("GET /v1/changes", func(r *http.Request, o api.Operator) (any, error) {
		return o.ListChanges(r.Context(), api.ChangeFilter{All: r.URL.Query().Get("all") != ""})
	})
	get("GET /v1/changes/{id}", func(r *http.Request, o api.Operator) (any, error) {
		return o.Change(r.Context(), r.PathValue("id"))
	})
	decide := func(approve bool) func(r *http.Request, o api.Operator) (any, error) {
		return func(r *http.Request, o api.Operator) (any, error) {
			var req api.DecideRequest
			if err := Decode(r, &req); err != nil {
				return nil, err
			}
			if approve {
				return o.Approve(r.Context(), r.PathValue("id"), req)
			}
			return o.Deny(r.Context(), r.PathValue("id"), req)
		}
	}
	get("POST /v1/changes/{id}/approve", decide(true))
	get("POST /v1/changes/{id}/deny", decide(false))
	get("POST /v1/changes", func(r *http.Request, o api.Operator) (any, error) {
		var req api.ChangeRequest
		if err := Decode(r, &req); err != nil {
			return nil, err
		}
		return o.Propose(r.Context(), req)
	})
	get("GET /v1/audit", func(r *http.Request, o api.Operator) (any, error) {
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		return o.AuditEntries(r.Context(), api.AuditQuery{Contains: r.URL.Query().Get("contains"), Limit: limit})
	})
	get("POST /v1/audit/verify", func(r *http.Request, o api.Operator) (any, error) { return o.VerifyAudit(r.Context()) })
	// Events stream as JSON lines until the client goes away.
	mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, r *http.Request) {
		fl, ok := w.(http.Flusher)
		if !ok {
			Fail(w, errors.New("admin: streaming unsupported"))
			return
		}
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		ch := op(r).Subscribe(ctx)
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		fl.Flush()
		enc := json.NewEncoder(w)
		for e := range ch {
			if enc.Encode(e) != nil {
				return
			}
			fl.Flush()
		}
	})
}

// statusOf maps an api error code to an HTTP status.
func statusOf(c api.Code) int {
	switch c {
	case api.CodeInvalid:
		return http.StatusBadRequest
	case api.CodeNotFound:
		return http.StatusNotFound
	case api.CodeConflict:
		return http.StatusConflict
	case api.CodeForbidden:
		return http.StatusForbidden
	case api.CodeUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
