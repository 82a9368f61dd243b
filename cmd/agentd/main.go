// Command agentd is the whole content of a sandbox: one static binary that
// reads its session's inbox, answers with the model (through the daemon's
// proxy) and its compiled-in tools, and writes its outbox. It learns its
// session id and key from its stdin at start — never from argv, the
// environment or a file — and its only way out is the session socket.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/ironclaw/ironclaw/agentd/agent"
	"github.com/ironclaw/ironclaw/agentd/coord"
	"github.com/ironclaw/ironclaw/agentd/inbox"
	"github.com/ironclaw/ironclaw/agentd/model"
	"github.com/ironclaw/ironclaw/agentd/outbox"
	"github.com/ironclaw/ironclaw/agentd/wire"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, log); err != nil && ctx.Err() == nil {
		log.Error("agentd stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger) error {
	buf := make([]byte, wire.HandshakeSize)
	if _, err := io.ReadFull(os.Stdin, buf); err != nil {
		return fmt.Errorf("reading the handshake from stdin: %w", err)
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
	// The model is reached through the daemon's proxy on the session socket,
	// the sandbox's only way out; the daemon decides where a call goes.
	brain := &agent.Brain{Model: model.NewOllama(wire.SandboxSocket), Log: log}
	l := &agent.Loop{Inbox: in, Outbox: out, Coord: coord.New(wire.SandboxSocket), Handle: brain.Handle, Log: log,
		Resume: agent.Resume{Handled: hs.Handled, OutboxTaken: hs.OutboxTaken, State: hs.State}}
	log.Info("agentd ready", "session", hs.Session.String())
	return l.Run(ctx)
}
