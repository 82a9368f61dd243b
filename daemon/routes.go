package daemon

import (
	"errors"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/admin"
)

// LocalBinding is the session the local console chat talks to.
const LocalBinding = "console:local"

// StatusReply answers GET /v1/status.
type StatusReply struct {
	Version  string `json:"version"`
	StateDir string `json:"state_dir"`
	Sessions int    `json:"sessions"`
	// AgentInstalled is the digest of the installed agentd; AgentPinned the
	// one new sessions pin.
	AgentInstalled string `json:"agent_installed"`
	AgentPinned    string `json:"agent_pinned"`
	// AuditFailures counts audit writes that failed since the start. An
	// action whose audit fails fails too; a refusal has nothing left to
	// fail, so this count is where such a failure shows.
	AuditFailures uint64 `json:"audit_failures"`
}

// ChatRequest is POST /v1/chat: one message to the local console session.
type ChatRequest struct {
	Text        string `json:"text"`
	WaitSeconds int    `json:"wait_seconds"`
}

// ChatReply is the agent's answer, if it came in time.
type ChatReply struct {
	Session string `json:"session"`
	Seq     uint64 `json:"seq"`
	Reply   string `json:"reply"`
	Replied bool   `json:"replied"`
}

func (d *Daemon) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		ss, err := d.store.ListSessions(r.Context())
		if err != nil {
			admin.Fail(w, http.StatusInternalServerError, err)
			return
		}
		// Hashed now: the binary may have been replaced since the start.
		installed, err := d.agent.Hash()
		if err != nil {
			admin.Fail(w, http.StatusInternalServerError, err)
			return
		}
		admin.Reply(w, StatusReply{Version: Version, StateDir: d.cfg.StateDir, Sessions: len(ss),
			AgentInstalled: installed, AgentPinned: d.NewSessionDigest(), AuditFailures: d.audit.Failures()})
	})
	mux.HandleFunc("POST /v1/agent/pin", func(w http.ResponseWriter, r *http.Request) {
		peer, _ := admin.PeerFrom(r.Context())
		if err := d.PinInstalledAgent(peer.Actor()); err != nil {
			admin.Fail(w, http.StatusInternalServerError, err)
			return
		}
		admin.Reply(w, map[string]string{"pinned": d.NewSessionDigest()})
	})
	mux.HandleFunc("POST /v1/chat", d.chat)
	d.changeRoutes(mux)
}

func (d *Daemon) chat(w http.ResponseWriter, r *http.Request) {
	peer, _ := admin.PeerFrom(r.Context())
	var req ChatRequest
	if err := admin.Decode(r, &req); err != nil {
		admin.Fail(w, http.StatusBadRequest, err)
		return
	}
	if req.Text == "" || len(req.Text) > wire.MaxTextSize || !utf8.ValidString(req.Text) {
		admin.Fail(w, http.StatusBadRequest, errors.New("chat: the message must be 1 byte to 64 KiB of UTF-8 text"))
		return
	}
	wait := time.Duration(min(max(req.WaitSeconds, 0), 300)) * time.Second
	sub := d.sup.Subscribe(LocalBinding)
	defer d.sup.Unsubscribe(sub)
	id, seq, err := d.sup.Send(r.Context(), LocalBinding, peer.Actor(), req.Text)
	if err != nil {
		admin.Fail(w, http.StatusServiceUnavailable, err)
		return
	}
	out := ChatReply{Session: id.String(), Seq: seq}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case rep := <-sub:
			if rep.Session == id && rep.InReplyTo == seq {
				out.Reply, out.Replied = rep.Text, true
				admin.Reply(w, out)
				return
			}
		case <-timer.C:
			admin.Reply(w, out)
			return
		case <-r.Context().Done():
			return
		}
	}
}
