// Package admin serves the daemon's local admin socket: how the `ironclaw`
// command line talks to the running daemon. It is an HTTP binding of
// daemon/api (routes.go) and its client side (client.go), which the command
// line uses as an api.Operator. The socket lives in the
// daemon's private runtime directory, is mode 0600, and every connection's
// peer credentials (SO_PEERCRED) are checked: only root or the daemon's own
// user gets an answer. The peer's account — never anything in a request —
// is the actor recorded in the audit log.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"strconv"
	"sync"
	"time"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/api"
	"golang.org/x/sys/unix"
)

// MaxRequestBody caps an admin request.
const MaxRequestBody = 1 << 20

type peerKey struct{}

// Peer is the authenticated local account on the other end of a request.
type Peer struct {
	UID  int
	Name string // "root", or "uid:<n>" when the name cannot be looked up
}

// Actor is how the audit log names this peer.
func (p Peer) Actor() string { return "operator:local:" + p.Name }

// PeerFrom returns the peer of a request served by Server.
func PeerFrom(ctx context.Context) (Peer, bool) {
	p, ok := ctx.Value(peerKey{}).(Peer)
	return p, ok
}

// Server is a listening admin socket.
type Server struct {
	ln        net.Listener
	srv       *http.Server
	done      chan error
	closeOnce sync.Once
	path      string
}

// Listen serves mux on a unix socket at path, admitting only root and the
// daemon's own uid.
func Listen(path string, mux *http.ServeMux) (*Server, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("admin: removing a stale socket: %w", err)
	}
	old := unix.Umask(0o177)
	ln, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	self := os.Geteuid()
	srv := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		MaxHeaderBytes:    8 << 10,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			p, err := peerOf(c)
			if err != nil || (p.UID != 0 && p.UID != self) {
				return ctx // no peer: refused below
			}
			return context.WithValue(ctx, peerKey{}, p)
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, ok := PeerFrom(r.Context()); !ok {
				http.Error(w, "admin: only root or the daemon's user may use this socket", http.StatusForbidden)
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, MaxRequestBody)
			mux.ServeHTTP(w, r)
		}),
	}
	s := &Server{ln: ln, srv: srv, done: make(chan error, 1), path: path}
	go func() { s.done <- srv.Serve(ln) }()
	return s, nil
}

func peerOf(c net.Conn) (Peer, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return Peer{}, errors.New("not a unix connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Peer{}, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Peer{}, err
	}
	if cerr != nil {
		return Peer{}, cerr
	}
	p := Peer{UID: int(cred.Uid), Name: "uid:" + strconv.Itoa(int(cred.Uid))}
	if u, err := user.LookupId(strconv.Itoa(p.UID)); err == nil {
		p.Name = u.Username
	}
	return p, nil
}

// Close stops serving and removes the socket.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		err = s.srv.Close()
		<-s.done
		os.Remove(s.path)
	})
	return err
}

// Decode strictly decodes a JSON request body into v.
func Decode(r *http.Request, v any) error {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return fmt.Errorf("reading request: %w", err)
	}
	return wire.StrictUnmarshal(data, v)
}

// Reply writes v as JSON.
func Reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// Fail writes a user-facing error: an *api.Error as it is, anything else
// as an invalid request (Decode's errors) or an internal error.
func Fail(w http.ResponseWriter, err error) {
	var e *api.Error
	if !errors.As(err, &e) {
		e = &api.Error{Code: api.CodeInvalid, Message: err.Error()}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(statusOf(e.Code))
	json.NewEncoder(w).Encode(e)
}
