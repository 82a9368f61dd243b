package console

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"tailscale.com/client/local"
	"tailscale.com/envknob"
	"tailscale.com/tsnet"
)

// Tailnet configures the console's tailnet node.
type Tailnet struct {
	// Dir holds the node's state (StateDir/tailnet).
	Dir string
	// Hostname is the node's machine name ("ironclaw": ssh ironclaw.<tailnet>).
	Hostname string
	// Port is the console's port on the tailnet.
	Port string
	// AuthKeyFile holds the auth key; empty means TS_AUTHKEY.
	AuthKeyFile string
	// Users are the allowed login names; empty means any identity WhoIs
	// knows.
	Users []string
	// Logf receives the node's user-facing messages (nil: discarded).
	Logf func(format string, args ...any)
}

// ListenTailnet brings the tailnet node up and listens on it only: the
// listener lives in the node's own network stack, so nothing on the host's
// interfaces can reach it. Every accepted connection must be vouched for by
// the tailnet (WhoIs) and, with Users, be one of them. close stops the node.
func ListenTailnet(ctx context.Context, t Tailnet) (_ net.Listener, close func() error, err error) {
	// No log uploads: the console's node tells nobody what it does.
	envknob.SetNoLogsNoSupport()
	if err := os.MkdirAll(t.Dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("console: tailnet state: %w", err)
	}
	s := &tsnet.Server{Dir: t.Dir, Hostname: t.Hostname, UserLogf: t.Logf}
	if t.Logf == nil {
		s.UserLogf = func(string, ...any) {}
	}
	s.Logf = func(string, ...any) {}
	if t.AuthKeyFile != "" {
		data, err := os.ReadFile(t.AuthKeyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("console: tailnet auth key: %w", err)
		}
		s.AuthKey = strings.TrimSpace(strings.SplitN(string(data), "\n", 2)[0])
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	upCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := s.Up(upCtx); err != nil {
		return nil, nil, fmt.Errorf("console: joining the tailnet: %w (set console.tailnet_auth_key_file or TS_AUTHKEY for the first start)", err)
	}
	lc, err := s.LocalClient()
	if err != nil {
		return nil, nil, fmt.Errorf("console: %w", err)
	}
	ln, err := s.Listen("tcp", ":"+t.Port)
	if err != nil {
		return nil, nil, fmt.Errorf("console: listening on the tailnet: %w", err)
	}
	return &whoisListener{Listener: ln, lc: lc, users: t.Users}, s.Close, nil
}

// whoisListener admits only connections the tailnet can name.
type whoisListener struct {
	net.Listener
	lc    *local.Client
	users []string
}

// errNotVouched is why a connection was dropped.
var errNotVouched = errors.New("console: the tailnet does not vouch for this peer")

func (l *whoisListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if err := l.check(c); err != nil {
			c.Close()
			continue
		}
		return c, nil
	}
}

func (l *whoisListener) check(c net.Conn) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	who, err := l.lc.WhoIs(ctx, c.RemoteAddr().String())
	if err != nil || who == nil || who.UserProfile == nil || who.Node == nil {
		return errNotVouched
	}
	if len(l.users) > 0 && !slices.Contains(l.users, who.UserProfile.LoginName) {
		return errNotVouched
	}
	return nil
}
