package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"

	"github.com/ironclaw/ironclaw/daemon/admin"
	"github.com/ironclaw/ironclaw/daemon/api"
	"github.com/ironclaw/ironclaw/daemon/audit"
	"github.com/ironclaw/ironclaw/daemon/config"
	"github.com/ironclaw/ironclaw/daemon/console"
	"github.com/ironclaw/ironclaw/daemon/durable"
	"github.com/ironclaw/ironclaw/daemon/operator"
	"github.com/ironclaw/ironclaw/daemon/proxy"
	"github.com/ironclaw/ironclaw/daemon/sandbox"
	"github.com/ironclaw/ironclaw/policy"
)

// LocalBinding is the session the local console chat talks to.
const LocalBinding = "console:local"

// operatorService builds the one implementation of daemon/api that every
// operator surface (admin socket, SSH console) binds its operator to.
func (d *Daemon) operatorService(hub *operator.Hub) (*operator.Service, error) {
	return operator.New(operator.Config{
		Gateway: d.gw, Store: d.store, Supervisor: d.sup, Audit: d.audit,
		AuditPath: filepath.Join(d.cfg.StateDir, AuditFile),
		Anchor: func(ctx context.Context) (*audit.Anchor, error) {
			seq, hash, ok, err := d.store.AuditAnchor(ctx)
			if err != nil || !ok {
				return nil, err
			}
			return &audit.Anchor{Seq: seq, Hash: hash}, nil
		},
		Status:   d.status,
		PinAgent: d.PinInstalledAgent,
		Usage:    cgroupUsage(),
		ModelProbe: func(ctx context.Context) error {
			return proxy.Preflight(ctx, proxy.NewUpstreamClient(proxy.Limits{}), d.cfg.Model.OllamaURL, d.cfg.Model.Default)
		},
		LocalBinding: LocalBinding,
		Hub:          hub,
	})
}

// cgroupUsage reads running sandboxes' usage for the sessions list; nil
// (no usage shown) on a host whose cgroups cannot be found.
func cgroupUsage() func(string) (sandbox.CgroupUsage, error) {
	h, err := sandbox.DiscoverCgroups()
	if err != nil {
		return nil
	}
	return h.Usage
}

// status is what only the daemon knows about itself.
func (d *Daemon) status(ctx context.Context) api.Status {
	tailnet := "off (console on " + d.cfg.Console.Listen + ")"
	if d.cfg.Console.Tailnet {
		tailnet = "on (" + d.cfg.Console.Hostname + ")"
	}
	// Hashed now: the binary may have been replaced since the start.
	installed, err := d.agent.Hash()
	if err != nil {
		installed = "unreadable: " + err.Error()
	}
	return api.Status{
		Version: Version, StateDir: d.cfg.StateDir,
		AgentInstalled: installed, AgentPinned: d.NewSessionDigest(),
		AuditFailures: d.audit.Failures(),
		Runsc:         "ok (pinned build checked at start)", Model: d.cfg.Model.OllamaURL, Tailnet: tailnet,
	}
}

// adminRoutes serves daemon/api on the admin socket, bound to the socket
// peer's local account.
func (d *Daemon) adminRoutes() *http.ServeMux {
	mux := http.NewServeMux()
	admin.Routes(mux, func(p admin.Peer) api.Operator { return d.ops.For(p.Actor(), "admin") })
	// A backup is a stream, not a JSON value: it has a route of its own.
	mux.HandleFunc("POST /v1/backup", d.backupRoute)
	return mux
}

// consoleOperators are where the console's operator keys come from.
func (d *Daemon) consoleOperators() console.Operators {
	return console.Operators{
		Files: []string{filepath.Join(d.cfg.StateDir, OperatorsFile), d.cfg.Console.OperatorKeysFile},
		Keys:  d.cfg.Console.OperatorKeys,
	}
}

// startConsole serves the SSH console until ctx ends. The console is a
// convenience, not a guard: if its port is taken the daemon runs on without
// it (logged and audited), so the admin socket still works.
func (d *Daemon) startConsole(ctx context.Context) (wait func(), err error) {
	hostKey := filepath.Join(d.cfg.StateDir, console.HostKeyFile)
	if _, err := os.Stat(hostKey); errors.Is(err, os.ErrNotExist) {
		// A state directory made before the console: make its key now.
		if _, err := d.audit.Append(audit.Record{Actor: "daemon", Action: "console.hostkey", Subject: hostKey, Result: "created"}); err != nil {
			return nil, err
		}
		if _, err := console.MakeHostKey(hostKey); err != nil {
			return nil, err
		}
	}
	srv, err := console.New(console.Config{
		HostKeyPath: hostKey,
		Operators:   d.consoleOperators(),
		Bind:        func(actor string) api.Operator { return d.ops.For(actor, "console") },
		Audit: func(actor, action, subject, result string) error {
			_, err := d.audit.Append(audit.Record{Actor: actor, Action: action, Subject: subject, Result: result})
			return err
		},
		Log: d.log,
	})
	if err != nil {
		return nil, err
	}
	ln, where, err := d.consoleListener(ctx)
	if err != nil {
		d.log.Warn("the SSH console is not available", "err", err)
		if _, aerr := d.audit.Append(audit.Record{Actor: "daemon", Action: "console.listen", Subject: d.cfg.Console.Listen, Decision: "refused", Result: err.Error()}); aerr != nil {
			return nil, aerr
		}
		return func() {}, nil
	}
	d.log.Info("console listening", "addr", where)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ctx, ln); err != nil {
			d.log.Error("console stopped", "err", err)
		}
	}()
	return func() { srv.Close(); <-done }, nil
}

// consoleListener opens the console's listener: loopback by default, the
// tailnet node with console.tailnet. Whatever it is, it is never a public
// or wildcard address (checked again here, after config validation).
func (d *Daemon) consoleListener(ctx context.Context) (net.Listener, string, error) {
	if d.cfg.Console.Tailnet {
		return d.tailnetListener(ctx)
	}
	ln, err := net.Listen("tcp", d.cfg.Console.Listen)
	if err != nil {
		return nil, "", fmt.Errorf("console: %w", err)
	}
	if err := CheckPrivateListener(ln.Addr()); err != nil {
		ln.Close()
		return nil, "", err
	}
	return ln, ln.Addr().String(), nil
}

// CheckPrivateListener refuses a listening address that is not loopback.
func CheckPrivateListener(a net.Addr) error {
	ta, ok := a.(*net.TCPAddr)
	if !ok || !ta.IP.IsLoopback() {
		return fmt.Errorf("console: refusing to listen on %s: not a loopback address", a)
	}
	return nil
}

func consolePort(cfg config.Config) string {
	_, port, err := net.SplitHostPort(cfg.Console.Listen)
	if err != nil {
		return "2222"
	}
	return port
}

func consoleHost(cfg config.Config) string {
	if cfg.Console.Tailnet {
		return cfg.Console.Hostname
	}
	host, _, err := net.SplitHostPort(cfg.Console.Listen)
	if err != nil {
		return "127.0.0.1"
	}
	return host
}

// tailnetListener puts the console on the tailnet node only.
func (d *Daemon) tailnetListener(ctx context.Context) (net.Listener, string, error) {
	ln, stop, err := console.ListenTailnet(ctx, console.Tailnet{
		Dir: filepath.Join(d.cfg.StateDir, "tailnet"), Hostname: d.cfg.Console.Hostname, Port: consolePort(d.cfg),
		AuthKeyFile: d.cfg.Console.TailnetAuthKeyFile, Users: d.cfg.Console.TailnetUsers,
		Logf: func(format string, args ...any) { d.log.Info("tailnet: " + fmt.Sprintf(format, args...)) },
	})
	if err != nil {
		return nil, "", err
	}
	return &closeBoth{Listener: ln, also: stop}, d.cfg.Console.Hostname + ":" + consolePort(d.cfg) + " on the tailnet", nil
}

// closeBoth closes the listener and then the node it lives on.
type closeBoth struct {
	net.Listener
	also func() error
}

func (c *closeBoth) Close() error { return errors.Join(c.Listener.Close(), c.also()) }

// operatorsFile is the state directory's operators file as the gateway's
// operator set: an approved "operators" change replaces it, and the console
// reads it at every login.
type operatorsFile string

func (f operatorsFile) Current() ([]byte, error) {
	data, err := os.ReadFile(string(f))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	canon, err := policy.CanonicalOperators(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (fix it by hand; the console refuses everyone meanwhile)", f, err)
	}
	return canon, nil
}

func (f operatorsFile) Replace(canonical []byte) error {
	return durable.WriteFile(string(f), canonical, 0o600)
}
