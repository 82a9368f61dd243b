package console

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	tea "charm.land/bubbletea/v2"
	"charm.land/ssh"
	"charm.land/wish/v2"
	bm "charm.land/wish/v2/bubbletea"
	"github.com/ironclaw/ironclaw/daemon/api"
	"github.com/ironclaw/ironclaw/tui"
	gossh "golang.org/x/crypto/ssh"
)

// Defaults for Config.
const (
	DefaultIdleTimeout      = 15 * time.Minute
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultMaxFailures failed key offers from one address within
	// DefaultFailWindow block that address for the rest of the window.
	DefaultMaxFailures = 10
	DefaultFailWindow  = time.Minute
	// maxAuthTries caps the keys one connection may offer.
	maxAuthTries = 6
)

// Config configures a Server.
type Config struct {
	// HostKeyPath is the console's host key (MakeHostKey).
	HostKeyPath string
	// Operators are the keys allowed in.
	Operators Operators
	// Bind returns the api bound to an authenticated operator.
	Bind func(actor string) api.Operator
	// Audit records a console event (login, refused command); an error
	// refuses what was being audited.
	Audit func(actor, action, subject, result string) error
	// IdleTimeout closes a connection with no traffic; 0 means
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// MaxFailures and FailWindow rate-limit failed authentication per source
	// address; 0 means the defaults.
	MaxFailures int
	FailWindow  time.Duration
	// Now is the clock of the rate limiter; nil means time.Now.
	Now func() time.Time
	Log *slog.Logger
}

// Server is the console's SSH server.
type Server struct {
	cfg     Config
	srv     *ssh.Server
	limiter *failLimiter

	mu    sync.Mutex // guards conns
	conns int
}

// New makes a Server; Serve starts it on a listener.
func New(cfg Config) (*Server, error) {
	if cfg.Bind == nil || cfg.Audit == nil || cfg.Log == nil {
		return nil, errors.New("console: Bind, Audit and Log are required")
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxFailures <= 0 {
		cfg.MaxFailures = DefaultMaxFailures
	}
	if cfg.FailWindow <= 0 {
		cfg.FailWindow = DefaultFailWindow
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	signer, err := loadHostKey(cfg.HostKeyPath)
	if err != nil {
		return nil, err
	}
	if _, err := cfg.Operators.Fingerprints(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, limiter: newFailLimiter(cfg.MaxFailures, cfg.FailWindow, cfg.Now)}
	srv, err := wish.NewServer(
		wish.WithPublicKeyAuth(s.publicKey),
		wish.WithIdleTimeout(cfg.IdleTimeout),
	)
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	srv.HostSigners = []ssh.Signer{signer}
	srv.HandshakeTimeout = DefaultHandshakeTimeout
	srv.Version = "IronClaw"
	// Only what the console needs: a session channel. No direct-tcpip
	// (local forwarding), no global requests (tcpip-forward), no
	// subsystems; agent and X11 requests and env other than TERM are
	// refused in the session (channel.go).
	srv.ChannelHandlers = map[string]ssh.ChannelHandler{"session": s.sessionChannel}
	srv.RequestHandlers = map[string]ssh.RequestHandler{}
	srv.SubsystemHandlers = map[string]ssh.SubsystemHandler{}
	srv.LocalPortForwardingCallback = func(ssh.Context, string, uint32) bool { return false }
	srv.ReversePortForwardingCallback = func(ssh.Context, string, uint32) bool { return false }
	srv.ServerConfigCallback = func(ssh.Context) *gossh.ServerConfig {
		return &gossh.ServerConfig{MaxAuthTries: maxAuthTries}
	}
	// A source that failed too often gets no handshake at all.
	srv.ConnCallback = func(ctx ssh.Context, c net.Conn) net.Conn {
		// Found once per connection (on loopback it reads /proc/net/tcp)
		// and kept for every key the client offers.
		src := source(c.LocalAddr(), c.RemoteAddr())
		if s.limiter.blocked(src) {
			return nil
		}
		ctx.SetValue(sourceKey{}, src)
		return c
	}
	srv.Handler = s.handle
	s.srv = srv
	return s, nil
}

// sourceKey keeps a connection's limiter key in its context.
type sourceKey struct{}

// publicKey admits operator keys only. It runs for every key a client
// offers (and again for the one it signs with).
func (s *Server) publicKey(ctx ssh.Context, key ssh.PublicKey) bool {
	src, ok := ctx.Value(sourceKey{}).(string)
	if !ok {
		src = source(ctx.LocalAddr(), ctx.RemoteAddr())
	}
	if s.limiter.blocked(src) {
		return false
	}
	if s.isOperator(key) {
		return true
	}
	s.limiter.fail(src)
	return false
}

func (s *Server) isOperator(key ssh.PublicKey) bool {
	if key == nil {
		return false
	}
	fps, err := s.cfg.Operators.Fingerprints()
	if err != nil {
		s.cfg.Log.Error("console: reading operator keys; refusing everyone until it is fixed", "err", err)
		return false
	}
	return fps[gossh.FingerprintSHA256(key)]
}

// Serve serves on ln until ctx ends or Close; it closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { s.srv.Close() })
	defer stop()
	err := s.srv.Serve(ln)
	if errors.Is(err, ssh.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops the server and every connection.
func (s *Server) Close() error { return s.srv.Close() }

// Connections counts open console sessions.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// handle serves one session: a command, or the console on a pty.
func (s *Server) handle(sess ssh.Session) {
	// The key that authenticated, checked again: the auth callback also
	// sees keys a client only offers.
	key := sess.PublicKey()
	if !s.isOperator(key) {
		fmt.Fprintln(sess.Stderr(), "ironclaw: not an operator key")
		sess.Exit(1)
		return
	}
	actor := Actor(key)
	s.mu.Lock()
	s.conns++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.conns--
		s.mu.Unlock()
	}()
	op := s.cfg.Bind(actor)
	remote := sess.RemoteAddr().String()
	if cmd := sess.Command(); len(cmd) > 0 {
		if err := s.cfg.Audit(actor, "console.command", remote, cmd[0]); err != nil {
			fmt.Fprintln(sess.Stderr(), "ironclaw: error: the audit log failed; nothing was done")
			sess.Exit(1)
			return
		}
		sess.Exit(runCommand(sess.Context(), op, cmd, sess, sess.Stderr()))
		return
	}
	if _, _, ok := sess.Pty(); !ok {
		fmt.Fprintln(sess.Stderr(), "ironclaw: the console needs a terminal (ssh -t), or give a command: approvals --json, sessions --json, audit --json")
		sess.Exit(1)
		return
	}
	if err := s.cfg.Audit(actor, "console.login", remote, "console"); err != nil {
		fmt.Fprintln(sess.Stderr(), "ironclaw: error: the audit log failed; nothing was done")
		sess.Exit(1)
		return
	}
	in := newInputSession(sess)
	defer close(in.closed)
	bm.MiddlewareWithProgramHandler(func(sess ssh.Session) *tea.Program {
		pty, _, _ := sess.Pty()
		m := tui.New(sess.Context(), op, tui.Options{Width: pty.Window.Width, Height: pty.Window.Height})
		prog := tea.NewProgram(m, bm.MakeOptions(sess)...)
		go s.quitWhenIdle(in, prog, actor, remote)
		return prog
	})(func(sess ssh.Session) {
		// The console has given the terminal back: say why it ended.
		if in.idled.Load() {
			fmt.Fprintf(sess, "ironclaw: no input for %s, so the console closed. Connect again to go on.\r\n", s.cfg.IdleTimeout)
		}
	})(in)
}
