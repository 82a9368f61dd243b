package cli

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/ironclaw/ironclaw/daemon"
	"github.com/ironclaw/ironclaw/daemon/config"
)

// MatrixCmd groups the Matrix channel's commands.
type MatrixCmd struct {
	Login MatrixLoginCmd `cmd:"" help:"Create the bot's Matrix device, cross-sign it and start its key backup (stop the daemon first)."`
	Trust MatrixTrustCmd `cmd:"" help:"Trust a user's new cross-signing master key after they reset it, once you compared it with their client (stop the daemon first)."`
}

// MatrixTrustCmd accepts a user's changed master key.
type MatrixTrustCmd struct {
	User string `arg:"" help:"The user's exact Matrix id, such as @you:example.org."`
	Yes  bool   `help:"Do not ask; trust the key the homeserver serves now (for scripts that compared it themselves)."`
}

// Run shows the keys and, confirmed, trusts the new one.
func (c MatrixTrustCmd) Run(ctx context.Context, g *Globals) error {
	cfg, pass, done, err := g.loadWithKey(false)
	if err != nil {
		return err
	}
	defer done()
	if err := refuseWhileRunning(cfg, "it holds the Matrix crypto store"); err != nil {
		return err
	}
	confirm := func() bool {
		if c.Yes {
			return true
		}
		fmt.Fprint(g.stdout, "Type yes to trust it: ")
		answer, _ := daemon.ReadLine(g.stdin)
		return answer == "yes"
	}
	return daemon.MatrixTrustKey(ctx, cfg, pass, c.User, localActor(), confirm, g.stdout)
}

// MatrixLoginCmd logs the bot in with matrix.password_file.
type MatrixLoginCmd struct{}

// Run logs in.
func (MatrixLoginCmd) Run(ctx context.Context, g *Globals) error {
	cfg, pass, done, err := g.loadWithKey(false)
	if err != nil {
		return err
	}
	defer done()
	if err := refuseWhileRunning(cfg, "the daemon also logs in by itself on its first start"); err != nil {
		return err
	}
	return daemon.MatrixLogin(ctx, cfg, pass, g.stdout)
}

// refuseWhileRunning refuses a command that opens the daemon's stores while
// the daemon runs (it holds them too): why says what would clash.
func refuseWhileRunning(cfg config.Config, why string) error {
	if conn, err := net.DialTimeout("unix", filepath.Join(cfg.RuntimeDir, daemon.AdminSocket), time.Second); err == nil {
		conn.Close()
		return fmt.Errorf("the daemon is running; stop it first (%s)", why)
	}
	return nil
}
