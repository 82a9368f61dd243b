package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ironclaw/ironclaw/daemon"
	"github.com/ironclaw/ironclaw/daemon/admin"
	"github.com/ironclaw/ironclaw/daemon/api"
	"github.com/ironclaw/ironclaw/daemon/audit"
	"github.com/ironclaw/ironclaw/daemon/config"
	"github.com/ironclaw/ironclaw/daemon/hostcheck"
)

// InitCmd creates a state directory.
type InitCmd struct {
	OperatorKey string `help:"SSH public key file of the first console operator (e.g. ~/.ssh/id_ed25519.pub)." placeholder:"FILE" type:"existingfile"`
}

// Run initialises.
func (c InitCmd) Run(ctx context.Context, g *Globals) error {
	cfg, pass, done, err := g.loadWithKey(true)
	if err != nil {
		return err
	}
	defer done()
	return daemon.Init(ctx, cfg, daemon.InitOptions{OperatorKeyFile: c.OperatorKey, Passphrase: pass, Out: g.stdout})
}

// ServeCmd runs the daemon.
type ServeCmd struct{}

// Run serves until the context ends (SIGTERM or SIGINT).
func (ServeCmd) Run(ctx context.Context, g *Globals) error {
	// Before a passphrase is read: no core file, no reading our memory.
	if err := hostcheck.LockDownProcess(); err != nil {
		return err
	}
	cfg, pass, done, err := g.loadWithKey(false)
	if err != nil {
		return err
	}
	d, err := daemon.Open(ctx, cfg, pass, logger(g.stderr, cfg.LogLevel))
	done()
	if err != nil {
		return err
	}
	return d.Serve(ctx)
}

func adminClient(g *Globals) (*admin.Client, error) {
	cfg, err := g.load()
	if err != nil {
		return nil, err
	}
	return admin.NewClient(filepath.Join(cfg.RuntimeDir, daemon.AdminSocket)), nil
}

// StatusCmd asks the daemon for its status.
type StatusCmd struct{}

// Run prints the status.
func (StatusCmd) Run(ctx context.Context, g *Globals) error {
	c, err := adminClient(g)
	if err != nil {
		return err
	}
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "ironclaw %s running\n  state: %s\n  sessions: %d\n  agent installed: %s\n  agent pinned for new sessions: %s\n",
		st.Version, st.StateDir, st.Sessions, st.AgentInstalled, st.AgentPinned)
	if st.ModelHealth != "" {
		fmt.Fprintf(g.stdout, "  model %s: %s\n", api.SanitizeLine(st.Model), api.SanitizeLine(st.ModelHealth))
		if st.ModelHint != "" {
			fmt.Fprintf(g.stdout, "    %s\n", api.SanitizeLine(st.ModelHint))
		}
	}
	if st.AuditFailures > 0 {
		fmt.Fprintf(g.stdout, "  AUDIT WRITES FAILED: %d since the start (see the daemon's log; check the disk holding %s)\n", st.AuditFailures, st.StateDir)
	} else {
		fmt.Fprintf(g.stdout, "  audit write failures: 0\n")
	}
	return nil
}

// AgentCmd manages which agent binary new sessions pin.
type AgentCmd struct {
	Pin AgentPinCmd `cmd:"" help:"Pin the installed agentd for NEW sessions (existing ones move only through approved software changes)."`
}

// AgentPinCmd pins the installed agent for new sessions.
type AgentPinCmd struct{}

// Run pins after the operator types "pin".
func (AgentPinCmd) Run(ctx context.Context, g *Globals) error {
	cl, err := adminClient(g)
	if err != nil {
		return err
	}
	st, err := cl.Status(ctx)
	if err != nil {
		return err
	}
	if st.AgentInstalled == st.AgentPinned {
		fmt.Fprintf(g.stdout, "new sessions already pin the installed agent %s\n", st.AgentInstalled)
		return nil
	}
	fmt.Fprintf(g.stdout, "New sessions will run the installed agent\n  %s\ninstead of\n  %s\nType \"pin\" to go on: ", st.AgentInstalled, st.AgentPinned)
	answer, _ := daemon.ReadLine(g.stdin)
	if strings.TrimSpace(answer) != "pin" {
		return errors.New("not confirmed; nothing changed")
	}
	after, err := cl.PinAgent(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "new sessions pin %s\n", after.AgentPinned)
	return nil
}

// ChatCmd sends messages to the local console session.
type ChatCmd struct {
	Wait    time.Duration `help:"How long to wait for each reply." default:"60s"`
	Message []string      `arg:"" optional:"" help:"The message. Without one, each line of standard input is sent."`
}

// Run chats.
func (c ChatCmd) Run(ctx context.Context, g *Globals) error {
	cl, err := adminClient(g)
	if err != nil {
		return err
	}
	send := func(text string) error {
		rep, err := cl.Chat(ctx, api.ChatRequest{Text: text, WaitSeconds: int(c.Wait / time.Second)})
		if err != nil {
			return err
		}
		for _, e := range rep.Earlier {
			fmt.Fprintln(g.stdout, "(earlier) "+api.SanitizeText(e))
		}
		if !rep.Replied {
			return fmt.Errorf("no reply within %s (message %d of session %s is queued; its reply comes with your next chat)", c.Wait, rep.Seq, rep.Session)
		}
		fmt.Fprintln(g.stdout, api.SanitizeText(rep.Reply))
		return nil
	}
	if len(c.Message) > 0 {
		return send(strings.Join(c.Message, " "))
	}
	sc := bufio.NewScanner(g.stdin)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		if line := strings.TrimRight(sc.Text(), "\r"); line != "" {
			if err := send(line); err != nil {
				return err
			}
		}
	}
	return sc.Err()
}

// AuditCmd inspects the audit log.
type AuditCmd struct {
	Verify AuditVerifyCmd `cmd:"" help:"Verify the audit log's hash chain, MACs and anchor; name the first bad entry."`
}

// AuditVerifyCmd verifies the audit log.
type AuditVerifyCmd struct {
	File string `help:"Audit log to verify (default: the state directory's)." placeholder:"FILE"`
}

// Run verifies.
func (c AuditVerifyCmd) Run(ctx context.Context, g *Globals) error {
	cfg, pass, done, err := g.loadWithKey(false)
	if err != nil {
		return err
	}
	defer done()
	v, err := daemon.OpenVerifier(ctx, cfg, pass)
	if err != nil {
		return err
	}
	path := c.File
	if path == "" {
		path = filepath.Join(cfg.StateDir, daemon.AuditFile)
	}
	rep, err := v.Verify(path)
	if err != nil {
		var ve *audit.VerifyError
		if errors.As(err, &ve) {
			fmt.Fprintf(g.stdout, "audit: FAILED at entry %d (line %d): %s\n", ve.Seq, ve.Line, ve.Reason)
			return exitCode(1)
		}
		return err
	}
	// Say exactly what was proved, no more.
	proved := []string{"hash chain"}
	if rep.MACVerified {
		proved = append(proved, "MACs")
	}
	if rep.Anchored {
		proved = append(proved, "anchor")
	}
	fmt.Fprintf(g.stdout, "audit: OK, %d entries; verified: %s\n", rep.Entries, strings.Join(proved, ", "))
	return nil
}

// loadWithKey loads the configuration and, for custody "passphrase"
// without a passphrase file, asks for the passphrase on the terminal.
func (g *Globals) loadWithKey(confirm bool) (config.Config, io.Reader, func(), error) {
	cfg, err := g.load()
	if err != nil {
		return cfg, nil, nil, err
	}
	pass, done, err := passphraseReader(cfg, confirm)
	return cfg, pass, done, err
}

// passphraseReader returns where the passphrase comes from for a custody
// "passphrase" without a passphrase file: the terminal, with echo off. It
// returns a nil interface otherwise (never a typed nil).
func passphraseReader(cfg config.Config, confirm bool) (io.Reader, func(), error) {
	if cfg.Keys.Custody != config.CustodyPassphrase || cfg.Keys.PassphraseFile != "" {
		return nil, func() {}, nil
	}
	return askPassphrase("IronClaw master passphrase: ", confirm)
}

// askPassphrase reads a passphrase on the terminal with echo off (twice
// with confirm).
func askPassphrase(prompt string, confirm bool) (io.Reader, func(), error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("custody is passphrase but there is no terminal to ask on: set keys.passphrase_file (see docs/keys.md)")
	}
	defer tty.Close()
	p, err := readHidden(tty, prompt)
	if err != nil {
		return nil, nil, err
	}
	if confirm {
		again, err := readHidden(tty, "Again: ")
		if err != nil {
			return nil, nil, err
		}
		if again != p {
			return nil, nil, errors.New("the passphrases differ; nothing was written")
		}
	}
	r := strings.NewReader(p + "\n")
	return r, func() { r.Reset("") }, nil
}
