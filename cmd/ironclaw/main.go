// Command ironclaw is the IronClaw daemon and its command line. It parses
// flags and hands over to daemon/cli; everything else lives under daemon/.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/ironclaw/ironclaw/daemon/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
