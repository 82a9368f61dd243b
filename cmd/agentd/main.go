// Command agentd is the whole content of a sandbox: one static binary that
// reads its session's inbox, answers with the model (through the daemon's
// proxy) and its compiled-in tools, and writes its outbox. It learns its
// session id and key from its stdin at start — never from argv, the
// environment or a file — and its only way out is the session socket.
package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/ironclaw/ironclaw/agentd/agent"
	"github.com/ironclaw/ironclaw/agentd/model"
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
	// The model is reached through the daemon's proxy on the session socket,
	// the sandbox's only way out; the daemon decides where a call goes.
	brain := &agent.Brain{Model: model.NewOllama(wire.SandboxSocket), Log: log}
	return agent.RunSandboxed(ctx, os.Stdin, log, brain.Handle)
}
