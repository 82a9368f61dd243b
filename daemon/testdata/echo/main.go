// Command echo is agentd's loop with agent.Echo for a handler: it answers
// every message with its own text. The wall's stress tests and the sandbox
// lifecycle tests and benchmarks run it, so that they measure the wall and
// the sandbox, not a model. It reads its handshake exactly as agentd does.
package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/ironclaw/ironclaw/agentd/agent"
	"github.com/ironclaw/ironclaw/agentd/coord"
	"github.com/ironclaw/ironclaw/agentd/inbox"
	"github.com/ironclaw/ironclaw/agentd/outbox"
	"github.com/ironclaw/ironclaw/agentd/wire"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, log); err != nil && ctx.Err() == nil {
		log.Error("echo agent stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger) error {
	buf := make([]byte, wire.HandshakeSize)
	if _, err := io.ReadFull(os.Stdin, buf); err != nil {
		return err
	}
	hs, err := wire.ParseHandshake(buf)
	clear(buf)
	if err != nil {
		return err
	}
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
	l := &agent.Loop{Inbox: in, Outbox: out, Coord: coord.New(wire.SandboxSocket), Handle: agent.Echo, Log: log,
		Resume: agent.Resume{Handled: hs.Handled, OutboxTaken: hs.OutboxTaken, State: hs.State}}
	return l.Run(ctx)
}
