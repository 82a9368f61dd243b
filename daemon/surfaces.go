package daemon

import (
	"context"
	"net/http"
	"path/filepath"

	"github.com/ironclaw/ironclaw/daemon/admin"
	"github.com/ironclaw/ironclaw/daemon/api"
	"github.com/ironclaw/ironclaw/daemon/audit"
	"github.com/ironclaw/ironclaw/daemon/operator"
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
		Status:       d.status,
		PinAgent:     d.PinInstalledAgent,
		LocalBinding: LocalBinding,
		Hub:          hub,
	})
}

// status is what only the daemon knows about itself.
func (d *Daemon) status(ctx context.Context) api.Status {
	tailnet := "off (console on " + d.cfg.Console.Listen + ")"
	if d.cfg.Console.Tailnet {
		tailnet = "on (" + d.cfg.Console.Hostname + ")"
	}
	return api.Status{
		Version: Version, StateDir: d.cfg.StateDir,
		AgentInstalled: d.installed, AgentPinned: d.NewSessionDigest(),
		Runsc: "ok (pinned build checked at start)", Model: d.cfg.Model.OllamaURL, Tailnet: tailnet,
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
