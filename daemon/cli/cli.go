// Package cli is the `ironclaw` command line: flag parsing (kong) and the
// thin commands that call into package daemon. Errors reach the user as
// "ironclaw: error: …" with a hint on what to do next; secrets never come
// from flags or the environment.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"

	"github.com/alecthomas/kong"
	"github.com/ironclaw/ironclaw/daemon"
	"github.com/ironclaw/ironclaw/daemon/api"
	"github.com/ironclaw/ironclaw/daemon/config"
)

// DefaultConfigFile is read when it exists and --config is not given.
const DefaultConfigFile = "/etc/ironclaw/ironclaw.toml"

// Globals are the flags every command takes.
type Globals struct {
	Config     string `help:"Config file (TOML). Default: ${default_config} if it exists, else built-in defaults." placeholder:"FILE"`
	StateDir   string `help:"Override the state directory." placeholder:"DIR"`
	RuntimeDir string `help:"Override the runtime directory (sockets)." placeholder:"DIR"`

	stdin          io.Reader
	stdout, stderr io.Writer
}

// load builds the effective configuration: defaults, file, env, flags.
func (g *Globals) load() (config.Config, error) {
	path := g.Config
	if path == "" {
		if _, err := os.Stat(DefaultConfigFile); err == nil {
			path = DefaultConfigFile
		}
	}
	cfg, err := config.Load(path, os.Getenv)
	if err != nil {
		return cfg, err
	}
	if g.StateDir != "" {
		cfg.StateDir = g.StateDir
	}
	if g.RuntimeDir != "" {
		cfg.RuntimeDir = g.RuntimeDir
	}
	return cfg, cfg.Validate()
}

// CLI is the command tree.
type CLI struct {
	Globals

	Init     InitCmd     `cmd:"" help:"Create the state directory, master key and audit log."`
	Serve    ServeCmd    `cmd:"" help:"Run the daemon until SIGTERM."`
	Status   StatusCmd   `cmd:"" help:"Ask the running daemon how it is."`
	Chat     ChatCmd     `cmd:"" help:"Talk to the local console session of the running daemon."`
	Changes  ChangesCmd  `cmd:"" help:"Review and decide change requests (the change gateway)."`
	Sessions SessionsCmd `cmd:"" help:"List sessions and show their profiles."`
	Agent    AgentCmd    `cmd:"" help:"Which agent binary new sessions run."`
	Audit    AuditCmd    `cmd:"" help:"Inspect the audit log."`
	Config   ConfigCmd   `cmd:"" name:"config" help:"Show the effective configuration."`
	Matrix   MatrixCmd   `cmd:"" help:"The Matrix channel: log the bot in."`
	Version  VersionCmd  `cmd:"" help:"Print the version."`

	Doctor  DoctorCmd  `cmd:"" help:"Check this machine can run conversations; say exactly what to fix (exit 1 if broken)."`
	Keys    KeysCmd    `cmd:"" help:"Rotate the master key and move its custody."`
	Backup  BackupCmd  `cmd:"" help:"Write a consistent backup of the running daemon's state (sealed; no key)."`
	Restore RestoreCmd `cmd:"" help:"Restore a backup into an empty state directory (daemon stopped)."`
}

// Main runs the command line and returns the process exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var c CLI
	c.stdin, c.stdout, c.stderr = stdin, stdout, stderr
	exit := -1
	parser, err := kong.New(&c,
		kong.Name("ironclaw"),
		kong.Description("IronClaw: a personal AI assistant whose agents cannot hurt you."),
		kong.Vars{"default_config": DefaultConfigFile},
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { exit = code }),
		kong.BindTo(ctx, (*context.Context)(nil)),
		kong.UsageOnError(),
	)
	if err != nil {
		fmt.Fprintf(stderr, "ironclaw: error: %v\n", err)
		return 2
	}
	kctx, err := parser.Parse(args)
	if exit >= 0 {
		return exit
	}
	if err != nil {
		// A parse error quotes the argument it could not parse.
		fmt.Fprintf(stderr, "ironclaw: error: %s\n", api.SanitizeText(err.Error()))
		return 2
	}
	if err := kctx.Run(&c.Globals); err != nil {
		var ec exitCode
		if errors.As(err, &ec) {
			return int(ec)
		}
		// Errors can quote what a hostile agent wrote (an outbox it
		// corrupted, a reason it gave): never let it drive the terminal.
		var ae *api.Error
		if errors.As(err, &ae) && ae.Hint != "" {
			fmt.Fprintf(stderr, "ironclaw: error: %s\nironclaw: hint: %s\n", api.SanitizeLine(ae.Message), api.SanitizeLine(ae.Hint))
			return 1
		}
		fmt.Fprintf(stderr, "ironclaw: error: %s\n", api.SanitizeText(err.Error()))
		return 1
	}
	return 0
}

// exitCode ends a command with a code after it has printed its own message.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit %d", int(e)) }

func logger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

// VersionCmd prints the version.
type VersionCmd struct{}

// Run prints the version.
func (VersionCmd) Run(g *Globals) error {
	fmt.Fprintf(g.stdout, "ironclaw %s (%s, %s/%s)\n", daemon.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

// ConfigCmd shows the effective configuration.
type ConfigCmd struct {
	Show struct{} `cmd:"" default:"1" help:"Print the effective configuration as TOML."`
}

// Run prints the configuration.
func (ConfigCmd) Run(g *Globals) error {
	cfg, err := g.load()
	if err != nil {
		return err
	}
	out, err := cfg.Render()
	if err != nil {
		return err
	}
	_, err = g.stdout.Write(out)
	return err
}
