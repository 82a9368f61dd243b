package cli

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/ironclaw/ironclaw/daemon"
)

// MatrixCmd groups the Matrix channel's commands.
type MatrixCmd struct {
	Login MatrixLoginCmd `cmd:"" help:"Create the bot's Matrix device, cross-sign it and start its key backup (stop the daemon first)."`
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
	// The running daemon holds the same stores: refuse rather than race it.
	if conn, err := net.DialTimeout("unix", filepath.Join(cfg.RuntimeDir, daemon.AdminSocket), time.Second); err == nil {
		conn.Close()
		return fmt.Errorf("the daemon is running; stop it first (the daemon also logs in by itself on its first start)")
	}
	return daemon.MatrixLogin(ctx, cfg, pass, g.stdout)
}
