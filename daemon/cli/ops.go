package cli

import (
	"bytes"
	"context"
	"os"

	"github.com/ironclaw/ironclaw/daemon/doctor"
	"github.com/ironclaw/ironclaw/daemon/sandbox"
	"github.com/ironclaw/ironclaw/images"
)

// The owner's running-it-for-real commands: doctor, backup and restore, key
// rotation. Each is registered in CLI (cli.go).

// DoctorCmd checks the machine and says what to fix.
type DoctorCmd struct {
	JSON bool `help:"Print the report as JSON."`
}

// Run prints every check; it exits 1 when something a conversation needs is
// broken.
func (c DoctorCmd) Run(ctx context.Context, g *Globals) error {
	cfg, err := g.load()
	if err != nil {
		return err
	}
	runscPin, err := sandbox.ParseDigest(bytes.NewReader(images.RunscPin), "images/runsc.sha256")
	if err != nil {
		return err
	}
	agentdPin, err := sandbox.ParseDigest(bytes.NewReader(images.AgentdPin), "images/agentd.sha256")
	if err != nil {
		return err
	}
	r := doctor.Run(ctx, doctor.Options{Config: cfg, UID: os.Geteuid(), RunscDigest: runscPin, AgentdDigest: agentdPin})
	if c.JSON {
		err = r.JSON(g.stdout)
	} else {
		err = r.Text(g.stdout)
	}
	if err != nil {
		return err
	}
	if r.Broken {
		return exitCode(1)
	}
	return nil
}
