// Package sessionsock serves the one unix socket a sandbox can reach: its
// session's only way out. It speaks HTTP/1.1 and today carries only queue
// coordination — inbox read leases and the doorbells in both directions —
// which holds sequence numbers, never content. The model proxy will share it.
//
// Everything arriving here comes from a possibly compromised agent: bodies
// are size-capped and strictly decoded, unknown paths and methods are refused
// and reported, and nothing a request says can name another session.
package sessionsock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/lease"
)

// MaxPathLen is the longest unix socket path the kernel accepts (sun_path
// holds 108 bytes including the terminating NUL).
const MaxPathLen = 107

// Session is what one socket serves.
type Session struct {
	// Inbox orders the agent's reads with the daemon's inbox writes.
	Inbox *lease.Manager
	// InboxBell announces the inbox head.
	InboxBell *lease.Bell
	// OnOutbox is called when the agent says its outbox holds rows up to
	// seq. The agent holds off writing until it returns, so this is when the
	// daemon copies the outbox. It returns the highest seq it took.
	OnOutbox func(ctx context.Context, seq uint64) (uint64, error)
	// Refused is told about every refused request (for the audit log, which
	// aggregates repeats). It must not block for long.
	Refused func(what string)
	// AgentUID and AgentGID own the socket file (mode 0600), so that the
	// agent, running as that user inside the sandbox, may connect. Nobody
	// else on the host can reach it: its directory is the daemon's, 0700.
	// -1 keeps the daemon's own user (tests that do not run as root).
	AgentUID, AgentGID int
}

// Server is a listening session socket.
type Server struct {
	path string
	ln   net.Listener
	srv  *http.Server
	done chan error

	closeOnce sync.Once
	closeErr  error
}

// Listen creates the socket at path (its directory must exist and be
// private to the daemon) and serves s on it until Close.
func Listen(path string, s *Session) (*Server, error) {
	if len(path) > MaxPathLen {
		return nil, fmt.Errorf("sessionsock: socket path %q is %d bytes, over the kernel's %d-byte limit: choose a shorter runtime directory", path, len(path), MaxPathLen)
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("sessionsock: %w", err)
	} else if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("sessionsock: %s is open to other users (mode %o): chmod 700 it", filepath.Dir(path), fi.Mode().Perm())
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("sessionsock: removing a stale socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("sessionsock: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("sessionsock: %w", err)
	}
	if s.AgentUID >= 0 || s.AgentGID >= 0 {
		if err := os.Lchown(path, s.AgentUID, s.AgentGID); err != nil {
			ln.Close()
			return nil, fmt.Errorf("sessionsock: handing the socket to the agent user: %w", err)
		}
	}
	mux := http.NewServeMux()
	h := &handler{s: s}
	mux.HandleFunc("POST "+wire.PathInboxLease, h.lease)
	mux.HandleFunc("POST "+wire.PathInboxRelease, h.release)
	mux.HandleFunc("POST "+wire.PathOutboxCommitted, h.outbox)
	mux.HandleFunc("/", h.refuse)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		MaxHeaderBytes:    4 << 10,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          nil,
	}
	sv := &Server{path: path, ln: ln, srv: srv, done: make(chan error, 1)}
	go func() { sv.done <- srv.Serve(ln) }()
	return sv, nil
}

// Path is where the socket listens.
func (sv *Server) Path() string { return sv.path }

// Close stops serving, interrupts waiting requests and removes the socket.
func (sv *Server) Close() error {
	sv.closeOnce.Do(func() {
		sv.closeErr = sv.srv.Close()
		<-sv.done
		os.Remove(sv.path)
	})
	return sv.closeErr
}

type handler struct{ s *Session }

func (h *handler) refused(w http.ResponseWriter, code int, what string) {
	if h.s.Refused != nil {
		h.s.Refused(what)
	}
	http.Error(w, what, code)
}

func (h *handler) refuse(w http.ResponseWriter, r *http.Request) {
	h.refused(w, http.StatusNotFound, "sessionsock: refused "+r.Method+" "+truncate(r.URL.Path, 64))
}

// decode reads a capped body strictly into v.
func (h *handler) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, wire.MaxCoordBody))
	if err == nil {
		err = wire.StrictUnmarshal(body, v)
	}
	if err != nil {
		h.refused(w, http.StatusBadRequest, "sessionsock: malformed "+r.URL.Path+" request: "+truncate(err.Error(), 128))
		return false
	}
	return true
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func (h *handler) lease(w http.ResponseWriter, r *http.Request) {
	var req wire.LeaseRequest
	if !h.decode(w, r, &req) {
		return
	}
	if err := req.Validate(); err != nil {
		h.refused(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Duration(req.WaitMillis)*time.Millisecond)
	defer cancel()
	head, err := h.s.InboxBell.Wait(ctx, req.After)
	if err != nil {
		reply(w, wire.LeaseGrant{Head: head})
		return
	}
	id, _, err := h.s.Inbox.Acquire(r.Context())
	if err != nil {
		http.Error(w, "sessionsock: no lease: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	// The head may have moved while waiting for the lease; the bell holds
	// the latest committed value and no write can start while we hold it.
	reply(w, wire.LeaseGrant{Lease: id, Head: h.s.InboxBell.Seq(), TTLMillis: h.s.Inbox.TTL().Milliseconds()})
}

func (h *handler) release(w http.ResponseWriter, r *http.Request) {
	var req wire.ReleaseRequest
	if !h.decode(w, r, &req) {
		return
	}
	reply(w, wire.ReleaseResult{Valid: h.s.Inbox.Release(req.Lease)})
}

func (h *handler) outbox(w http.ResponseWriter, r *http.Request) {
	var req wire.OutboxCommitted
	if !h.decode(w, r, &req) {
		return
	}
	if h.s.OnOutbox == nil {
		h.refused(w, http.StatusNotFound, "sessionsock: this session takes no outbox")
		return
	}
	taken, err := h.s.OnOutbox(r.Context(), req.Seq)
	if err != nil {
		// The agent learns only that it failed; the daemon logs the detail.
		http.Error(w, "outbox refused", http.StatusUnprocessableEntity)
		return
	}
	reply(w, wire.OutboxTaken{Taken: taken})
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
