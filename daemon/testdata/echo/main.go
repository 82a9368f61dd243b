// Command echo is agentd's loop with agent.Echo for a handler: it answers
// every message with its own text. The wall's stress tests and the sandbox
// lifecycle tests and benchmarks run it, so that they measure the wall and
// the sandbox, not a model. It reads its handshake exactly as agentd does.
package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/ironclaw/ironclaw/agentd/agent"
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
	return agent.RunSandboxed(ctx, os.Stdin, log, agent.Echo)
}
