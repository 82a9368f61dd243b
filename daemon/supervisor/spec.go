package supervisor

import (
	"fmt"
	"path/filepath"

	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/sandbox"
)

// Plan is everything a session's sandbox is started with: the sandbox spec and the outbox
// filesystem it needs mounted first.
type Plan struct {
	Spec sandbox.Spec
	// OutboxDir gets a filesystem of OutboxMiB MiB and OutboxInodes inodes
	// (sandbox.PrepareOutbox) before Spec starts.
	OutboxDir    string
	OutboxMiB    int64
	OutboxInodes int64
}

// SandboxPlan builds the plan for session id under profile p, with handshake as the agent's
// stdin. It is the one place a Spec is made: the supervisor starts every sandbox from it, and
// the containment tests and benchmarks use it so that they test the real wall. Every limit
// is the smaller of the profile's and the host's maximum.
func (s *Supervisor) SandboxPlan(id wire.SessionID, p profile.Profile, handshake []byte) (Plan, error) {
	installed, err := s.installed()
	if err != nil {
		return Plan{}, err
	}
	if p.AgentDigest != installed {
		return Plan{}, fmt.Errorf("supervisor: session %s pins agent %s but the installed %s is %s: running another binary is a software change; propose it with `ironclaw changes propose --session %s --kind software`", id, p.AgentDigest, s.cfg.AgentBinary, installed, id)
	}
	l := p.Limits
	return Plan{
		Spec: sandbox.Spec{
			// Fixed length: IDPrefix + the session id's 32 hex digits.
			ID:          sandbox.IDPrefix + id.String(),
			BundleDir:   filepath.Join(s.cfg.StateDir, "bundles", id.String()),
			AgentPath:   s.cfg.AgentBinary,
			AgentSHA256: trimDigest(installed),
			InboxDir:    filepath.Join(s.sessionDir(id), wire.InboxDir),
			OutboxDir:   s.outboxDir(id),
			SocketPath:  s.socketPath(id),
			Stdin:       handshake,
			MemoryBytes: min(l.MemoryMiB, s.cfg.MemoryMiB) << 20,
			CPUMillis:   min(l.CPUMillis, s.cfg.CPUMillis),
			TmpBytes:    min(l.TmpMiB, s.cfg.TmpMiB) << 20,
		},
		OutboxDir:    s.outboxDir(id),
		OutboxMiB:    min(l.OutboxMiB, s.cfg.OutboxMiB),
		OutboxInodes: min(l.OutboxInodes, s.cfg.OutboxInodes),
	}, nil
}
