package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"

	"github.com/ironclaw/ironclaw/agentd/coord"
	"github.com/ironclaw/ironclaw/agentd/inbox"
	"github.com/ironclaw/ironclaw/agentd/outbox"
	"github.com/ironclaw/ironclaw/agentd/wire"
)

// RunSandboxed is the start of every agent binary inside a sandbox: it reads
// the handshake from stdin (the session id and key arrive there, never in
// argv, the environment or a file), opens the inbox read-only and the outbox
// at their fixed sandbox paths, and runs the loop with handle until ctx ends.
//
// It runs the Go scheduler on one thread of execution: inside gVisor every
// system call traps to the sandbox kernel, and with more than one P the
// runtime hands Ps between threads around each of them (futex wakes,
// spinning Ms), which measured as half of a warm turn's CPU in the sandbox
// (docs/benchmarks.md). The agent is sequential anyway.
func RunSandboxed(ctx context.Context, stdin io.Reader, log *slog.Logger, handle Handler) error {
	runtime.GOMAXPROCS(1)
	buf := make([]byte, wire.HandshakeSize)
	if _, err := io.ReadFull(stdin, buf); err != nil {
		return fmt.Errorf("reading the handshake from stdin: %w", err)
	}
	hs, err := wire.ParseHandshake(buf)
	clear(buf)
	if err != nil {
		return err
	}
	defer clear(hs.Key[:])
	in, err := inbox.Open(wire.SandboxInbox, hs.Session, &hs.Key)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := outbox.Open(wire.SandboxOutbox, hs.Session, &hs.Key)
	if err != nil {
		return err
	}
	defer out.Close()
	out.Log = log
	l := &Loop{Inbox: in, Outbox: out, Coord: coord.New(wire.SandboxSocket), Handle: handle, Log: log,
		Resume: Resume{Handled: hs.Handled, OutboxTaken: hs.OutboxTaken, State: hs.State}}
	log.Info("agent ready", "session", hs.Session.String())
	return l.Run(ctx)
}
