// Package sessionsock serves the one unix socket a sandbox can reach: its
// session's only way out. It speaks HTTP/1.1 and today carries only queue
// coordination — inbox read leases and the doorbells in both directions —
// which holds sequence numbers, never content — and, under /api/, the model
// proxy (Session.Model), which this package routes to but never imports.
//
// Everything arriving here comes from a possibly compromised agent: bodies
// are size-capped, time-limited and strictly decoded, unknown paths and
// methods are refused and reported, and nothing a request says can name
// another session. What one agent can make the daemon hold is bounded:
// MaxConns connections per socket, one lease request waiting at a time, and
// a refusal is reported as one of a few fixed classes (never the agent's
// text), so a flood folds into counted audit entries.
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
	"sync/atomic"
	"time"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/lease"
)

// MaxPathLen is the longest unix socket path the kernel accepts (sun_path
// holds 108 bytes including the terminating NUL).
const MaxPathLen = 107

// Limits on what one agent can make its socket hold.
const (
	// DefaultMaxConns caps open connections per socket. An honest agent
	// uses one or two; further connections wait, unaccepted, in the
	// kernel's backlog until one closes.
	DefaultMaxConns = 8
	// DefaultReadTimeout bounds reading one request, body included, so a
	// request cannot be trickled forever.
	DefaultReadTimeout = 10 * time.Second
	// MaxAcquireWait bounds how long a lease request waits for the lease
	// itself once rows are there (normally well under the lease TTL).
	MaxAcquireWait = 5 * time.Second
	// WriteTimeout bounds a whole request from the end of its headers to
	// the end of its answer: longer than the longest lease wait.
	WriteTimeout = wire.MaxLeaseWaitMillis*time.Millisecond + MaxAcquireWait + 5*time.Second
)

// Refusal classes: the only strings Session.Refused is ever given. The
// agent's own text (its path, what failed to decode) never reaches the audit
// log, so distinct junk cannot defeat its aggregation; the agent gets the
// detail back in its answer.
const (
	RefusedUnknownEndpoint = "unknown endpoint"
	RefusedMalformed       = "malformed request"
	RefusedLeaseWait       = "lease wait out of range"
	RefusedTooManyConns    = "too many connections"
	RefusedTooManyLeases   = "too many lease requests"
	RefusedNoOutbox        = "no outbox"
)

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
	// Model serves the model proxy's paths (everything under
	// wire.ModelPathPrefix; it refuses and audits all but the one it
	// forwards). Nil refuses them like any unknown path. The handler sets
	// its own deadlines for a long answer.
	Model http.Handler
	// Refused is told about every refused request (for the audit log, which
	// aggregates repeats), with one of the Refused* classes. It must not
	// block for long.
	Refused func(class string)
	// AgentUID and AgentGID own the socket file (mode 0600), so that the
	// agent, running as that user inside the sandbox, may connect. Nobody
	// else on the host can reach it: its directory is the daemon's, 0700.
	// -1 keeps the daemon's own user (tests that do not run as root).
	AgentUID, AgentGID int
	// MaxConns caps open connections (DefaultMaxConns if zero).
	MaxConns int
	// ReadTimeout bounds reading a request (DefaultReadTimeout if zero).
	ReadTimeout time.Duration
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
	maxConns := s.MaxConns
	if maxConns <= 0 {
		maxConns = DefaultMaxConns
	}
	readTimeout := s.ReadTimeout
	if readTimeout <= 0 {
		readTimeout = DefaultReadTimeout
	}
	h := &handler{s: s}
	ln = newLimitListener(ln, maxConns, func() { h.report(RefusedTooManyConns) })
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+wire.PathInboxLease, h.lease)
	mux.HandleFunc("POST "+wire.PathInboxRelease, h.release)
	mux.HandleFunc("POST "+wire.PathOutboxCommitted, h.outbox)
	if s.Model != nil {
		mux.Handle(wire.ModelPathPrefix, s.Model)
	}
	mux.HandleFunc("/", h.refuse)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: min(5*time.Second, readTimeout),
		ReadTimeout:       readTimeout,
		WriteTimeout:      WriteTimeout,
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

type handler struct {
	s *Session
	// leaseWaiting is set while a lease request waits: one at a time.
	leaseWaiting atomic.Bool
}

func (h *handler) report(class string) {
	if h.s.Refused != nil {
		h.s.Refused(class)
	}
}

// refused reports class and answers the agent with class and detail (its
// own text, truncated).
func (h *handler) refused(w http.ResponseWriter, code int, class, detail string) {
	h.report(class)
	msg := "sessionsock: " + class
	if detail != "" {
		msg += ": " + truncate(detail, 128)
	}
	http.Error(w, msg, code)
}

func (h *handler) refuse(w http.ResponseWriter, r *http.Request) {
	h.refused(w, http.StatusNotFound, RefusedUnknownEndpoint, r.Method+" "+truncate(r.URL.Path, 64))
}

// decode reads a capped body strictly into v. (The read timeout bounds only
// reading the request: net/http lifts the deadline once the body is in, so
// a lease request may then wait its full wait_ms.)
func (h *handler) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, wire.MaxCoordBody))
	if err == nil {
		err = wire.StrictUnmarshal(body, v)
	}
	if err != nil {
		h.refused(w, http.StatusBadRequest, RefusedMalformed, r.URL.Path+": "+err.Error())
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
		h.refused(w, http.StatusBadRequest, RefusedLeaseWait, err.Error())
		return
	}
	// An honest agent asks for one lease at a time; a second request while
	// one waits would only park another goroutine.
	if !h.leaseWaiting.CompareAndSwap(false, true) {
		h.refused(w, http.StatusTooManyRequests, RefusedTooManyLeases, "another lease request is waiting")
		return
	}
	defer h.leaseWaiting.Store(false)
	ctx, cancel := context.WithTimeout(r.Context(), time.Duration(req.WaitMillis)*time.Millisecond)
	defer cancel()
	head, err := h.s.InboxBell.Wait(ctx, req.After)
	if err != nil {
		reply(w, wire.LeaseGrant{Head: head})
		return
	}
	actx, acancel := context.WithTimeout(r.Context(), MaxAcquireWait)
	defer acancel()
	id, _, err := h.s.Inbox.Acquire(actx)
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
		h.refused(w, http.StatusNotFound, RefusedNoOutbox, "")
		return
	}
	// OnOutbox gets the request's context to wait on (the agent may give
	// up waiting); it must not let a hang-up cut a delivery short.
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

// limitListener accepts at most n connections at a time. When a connection
// arrives while n are open it reports full once and holds that one
// connection, unserved, until a slot frees; the rest wait in the kernel's
// backlog and cost the daemon nothing.
type limitListener struct {
	net.Listener
	slots  chan struct{}
	full   func()
	closed chan struct{}
	once   sync.Once
}

func newLimitListener(ln net.Listener, n int, full func()) *limitListener {
	return &limitListener{Listener: ln, slots: make(chan struct{}, n), full: full, closed: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	select {
	case l.slots <- struct{}{}:
	default:
		l.full()
		select {
		case l.slots <- struct{}{}:
		case <-l.closed:
			c.Close()
			return nil, net.ErrClosed
		}
	}
	return &limitConn{Conn: c, release: func() { <-l.slots }}, nil
}

func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// limitConn gives its slot back when closed (once).
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// CloseWrite half-closes like the connection it wraps, which the HTTP server
// uses to end a refused request cleanly.
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
