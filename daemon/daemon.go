// Package daemon wires the control plane together: configuration, master key,
// store, audit log, runsc, the session supervisor and the admin socket. It
// holds no policy of its own; each concern lives in its own package under
// daemon/. cmd/ironclaw only parses flags and calls into here (through
// daemon/cli).
package daemon

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/admin"
	"github.com/ironclaw/ironclaw/daemon/api"
	"github.com/ironclaw/ironclaw/daemon/audit"
	"github.com/ironclaw/ironclaw/daemon/config"
	"github.com/ironclaw/ironclaw/daemon/console"
	"github.com/ironclaw/ironclaw/daemon/gateway"
	"github.com/ironclaw/ironclaw/daemon/hostcheck"
	"github.com/ironclaw/ironclaw/daemon/keys"
	"github.com/ironclaw/ironclaw/daemon/matrix"
	"github.com/ironclaw/ironclaw/daemon/operator"
	"github.com/ironclaw/ironclaw/daemon/proxy"
	"github.com/ironclaw/ironclaw/daemon/rotate"
	"github.com/ironclaw/ironclaw/daemon/sandbox"
	"github.com/ironclaw/ironclaw/daemon/scheduler"
	"github.com/ironclaw/ironclaw/daemon/store"
	"github.com/ironclaw/ironclaw/daemon/supervisor"
	"github.com/ironclaw/ironclaw/images"
	"github.com/ironclaw/ironclaw/policy"
	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// Files in the state directory (besides the keys package's master.check and
// master.kdf, and sessions/).
const (
	StoreFile       = "ironclaw.db"
	AuditFile       = "audit.log"
	OperatorsFile   = "operators"     // authorized_keys lines of the console's operators
	AgentDigestFile = "agentd.digest" // "sha256:<hex>" pinned at init for new sessions
	AdminSocket     = "admin.sock"    // in the runtime directory
)

// AnchorInterval is how often a running daemon records the audit log's head
// in its store.
const AnchorInterval = 5 * time.Second

// Subkey purposes derived from the master key.
const (
	purposeStore = "ironclaw store content v1"
	purposeAudit = "ironclaw audit mac v1"
)

// Version is set at build time (-ldflags "-X ...daemon.Version=...").
var Version = "dev"

func keySource(cfg config.Config, passphrase io.Reader) keys.Source {
	return keys.Source{
		Custody:        keys.Custody(cfg.Keys.Custody),
		StateDir:       cfg.StateDir,
		KeyFile:        cfg.Keys.KeyFile,
		PassphraseFile: cfg.Keys.PassphraseFile,
		Passphrase:     passphrase,
		CredentialName: cfg.Keys.CredentialName,
	}
}

// InitOptions are the choices `ironclaw init` takes.
type InitOptions struct {
	// OperatorKeyFile is an SSH public key (authorized_keys format) enrolled
	// as the first console operator. Empty enrols none.
	OperatorKeyFile string
	// Passphrase is read for custody "passphrase" without a passphrase file.
	Passphrase io.Reader
	Out        io.Writer
}

// Init creates a state directory: master key (per the configured custody),
// store, audit log, the pinned agent digest and the first operator key. It
// refuses to touch an initialised state directory.
func Init(ctx context.Context, cfg config.Config, opt InitOptions) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	digest, err := supervisor.FileDigest(cfg.Sandbox.AgentBinary)
	if err != nil {
		return fmt.Errorf("init: the agent binary: %w (build it with `just build`, or set sandbox.agent_binary)", err)
	}
	var opKey string
	if opt.OperatorKeyFile != "" {
		if opKey, err = readOperatorKey(opt.OperatorKeyFile); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("init: creating the state directory: %w", err)
	}
	if err := os.Chmod(cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	if err := hostcheck.LockDownProcess(); err != nil {
		return err
	}
	if err := checkDirs(cfg); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	if cfg.Keys.Custody == config.CustodyKeyFile {
		if err := os.MkdirAll(filepath.Dir(cfg.Keys.KeyFile), 0o700); err != nil {
			return fmt.Errorf("init: creating the key file's directory: %w", err)
		}
	}
	master, err := keys.Init(keySource(cfg, opt.Passphrase))
	if err != nil {
		return err
	}
	defer master.Destroy()
	st, lg, err := openStores(cfg, master)
	if err != nil {
		return err
	}
	defer st.Close()
	defer lg.Close()
	if err := writeNew(filepath.Join(cfg.StateDir, AgentDigestFile), digest+"\n"); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	if opKey != "" {
		if err := writeNew(filepath.Join(cfg.StateDir, OperatorsFile), opKey+"\n"); err != nil {
			return fmt.Errorf("init: %w", err)
		}
	}
	hostKey, err := console.MakeHostKey(filepath.Join(cfg.StateDir, console.HostKeyFile))
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	if _, err := lg.Append(audit.Record{Actor: "operator:local:init", Action: "daemon.init", Subject: cfg.StateDir,
		Result: "custody=" + cfg.Keys.Custody + " agent=" + digest}); err != nil {
		return err
	}
	if err := anchor(ctx, st, lg); err != nil {
		return err
	}
	if opt.Out != nil {
		fmt.Fprintf(opt.Out, "initialised %s\n  master key custody: %s\n  agent pinned: %s\n", cfg.StateDir, cfg.Keys.Custody, digest)
		fmt.Fprintf(opt.Out, "  console host key: %s\n", ssh.FingerprintSHA256(hostKey))
		if opKey != "" {
			pk, _, _, _, _ := ssh.ParseAuthorizedKey([]byte(opKey))
			fmt.Fprintf(opt.Out, "  operator key: %s (ssh -p %s %s)\n", ssh.FingerprintSHA256(pk), consolePort(cfg), consoleHost(cfg))
		} else {
			fmt.Fprintf(opt.Out, "  no console operator yet: run init with --operator-key ~/.ssh/id_ed25519.pub, or list keys in console.operator_keys\n")
		}
		if cfg.Keys.Custody == config.CustodyKeyFile {
			fmt.Fprintf(opt.Out, "  note: the key file %s protects copies of the state directory, not a stolen disk that holds both; see docs/keys.md\n", cfg.Keys.KeyFile)
		}
	}
	return nil
}

func readOperatorKey(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("init: operator key: %w", err)
	}
	line := strings.TrimSpace(string(data))
	if strings.Contains(line, "\n") {
		return "", fmt.Errorf("init: operator key %s holds more than one line: give one public key", path)
	}
	if _, _, opts, rest, err := ssh.ParseAuthorizedKey([]byte(line)); err != nil || len(opts) > 0 || len(rest) > 0 {
		return "", fmt.Errorf("init: %s is not a single SSH public key (e.g. ~/.ssh/id_ed25519.pub)", path)
	}
	return line, nil
}

// writeNew writes a small file that must not exist yet, 0600, durably.
func writeNew(path, content string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(content)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func openStores(cfg config.Config, master *keys.Master) (*store.Store, *audit.Log, error) {
	// The store's content key and the audit MAC key are kept wrapped in the
	// store (so the master key can rotate, daemon/rotate); a store made
	// before that adopts the master-derived subkeys it has always used.
	ck := master.SubKey(purposeStore)
	defer clear(ck[:])
	st, err := store.OpenWrapped(filepath.Join(cfg.StateDir, StoreFile), master, purposeStore, &ck)
	if err != nil {
		return nil, nil, err
	}
	legacy := master.SubKey(purposeAudit)
	defer clear(legacy[:])
	ak, err := st.DaemonKey(context.Background(), master, purposeAudit, &legacy)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	defer clear(ak[:])
	opts := []audit.Option{audit.WithKey(ak[:])}
	seq, hash, ok, err := st.AuditAnchor(context.Background())
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	if ok {
		opts = append(opts, audit.WithAnchor(audit.Anchor{Seq: seq, Hash: hash}))
	}
	lg, err := audit.Open(filepath.Join(cfg.StateDir, AuditFile), opts...)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return st, lg, nil
}

// anchor records the audit log's head in the store, so that a truncated log
// is caught at the next start.
func anchor(ctx context.Context, st *store.Store, lg *audit.Log) error {
	seq, hash := lg.Head()
	return st.SetAuditAnchor(ctx, seq, hash)
}

// checkDirs makes the runtime directory if missing and checks that it and
// the state directory can be trusted (hostcheck.CheckDir).
func checkDirs(cfg config.Config) error {
	if err := os.MkdirAll(cfg.RuntimeDir, 0o700); err != nil {
		return fmt.Errorf("creating the runtime directory: %w", err)
	}
	for _, d := range []string{cfg.StateDir, cfg.RuntimeDir} {
		if err := hostcheck.CheckDir(d, os.Geteuid()); err != nil {
			return err
		}
	}
	return nil
}

// Daemon is a running control plane.
type Daemon struct {
	cfg    config.Config
	log    *slog.Logger
	master *keys.Master
	store  *store.Store
	audit  *audit.Log
	sup    *supervisor.Supervisor
	gw     *gateway.Gateway
	sched  *scheduler.Scheduler
	ops    *operator.Service
	// matrixCfg is the Matrix channel's checked config (nil without
	// [matrix]); matrix the connected channel, once runMatrix has it.
	matrixCfg *matrix.Config
	matrix    atomic.Pointer[matrix.Channel]

	agent            *supervisor.InstalledAgent // the installed agent binary, hashed when asked
	pinMu            sync.Mutex                 // serialises PinInstalledAgent
	newSessionDigest atomic.Value               // string: the agent digest new sessions pin
	backupMu         sync.Mutex                 // serialises Backup (one staging directory at a time)
}

// NewSessionDigest is the agent digest a new session's first profile pins.
func (d *Daemon) NewSessionDigest() string { return d.newSessionDigest.Load().(string) }

// PinInstalledAgent makes new sessions pin the installed agent binary. It
// changes no existing session: each moves to a new binary only through an
// approved software change. The request is audited before anything changes
// and the result after; the pin file is replaced atomically and durably.
func (d *Daemon) PinInstalledAgent(actor string) error {
	d.pinMu.Lock()
	defer d.pinMu.Unlock()
	// The binary as it is now, not as it was at start: the owner may have
	// replaced it since.
	installed, err := d.agent.Hash()
	if err != nil {
		return err
	}
	old := d.NewSessionDigest()
	if old == installed {
		return nil
	}
	subject := d.cfg.Sandbox.AgentBinary
	if _, err := d.audit.Append(audit.Record{Actor: actor, Action: "agent.pin", Subject: subject,
		Decision: "approved", Result: "requested " + old + " -> " + installed}); err != nil {
		return err
	}
	err = replaceFile(filepath.Join(d.cfg.StateDir, AgentDigestFile), installed+"\n")
	result := "pinned"
	if err != nil {
		result = "failed: " + err.Error()
	} else {
		d.newSessionDigest.Store(installed)
		// Software changes may now name the installed binary.
		d.gw.SetHost(hostFacts(d.cfg, installed))
	}
	if _, aerr := d.audit.Append(audit.Record{Actor: actor, Action: "agent.pin", Subject: subject, Result: result}); aerr != nil {
		return errors.Join(err, aerr)
	}
	return err
}

// replaceFile atomically replaces path with content: a new file, fsynced,
// renamed over the old one, and the directory fsynced.
func replaceFile(path, content string) error {
	tmp := path + ".new"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := writeNew(tmp, content); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("replacing %s: %w", path, err)
	}
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync()
}

// Open loads the master key and opens the store and audit log, checks runsc
// and the agent binary. Any failure is fatal: no part of the daemon runs
// half-configured.
func Open(ctx context.Context, cfg config.Config, passphrase io.Reader, log *slog.Logger) (_ *Daemon, err error) {
	// Before any secret is in memory: no core file, no reading our memory.
	if err := hostcheck.LockDownProcess(); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, keys.CheckFileName)); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s is not initialised: run `ironclaw init` first", cfg.StateDir)
	}
	if err := checkDirs(cfg); err != nil {
		return nil, err
	}
	// A key rotation a crash interrupted is finished or undone first, so
	// that exactly one master key opens the state (daemon/rotate).
	if done, err := rotate.Recover(cfg.StateDir, filepath.Join(cfg.StateDir, StoreFile)); err != nil {
		return nil, err
	} else if done != "" {
		log.Warn("an interrupted master key rotation was "+done, "state", cfg.StateDir)
	}
	master, err := keys.Load(keySource(cfg, passphrase))
	if err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, log: log, master: master}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	if d.store, d.audit, err = openStores(cfg, master); err != nil {
		return nil, err
	}
	// The runsc digest is pinned at build time (images/runsc.sha256); the
	// config may pin another build explicitly, never none.
	want := cfg.Sandbox.RunscDigest
	if want == "" {
		if want, err = sandbox.ParseDigest(bytes.NewReader(images.RunscPin), "images/runsc.sha256"); err != nil {
			return nil, err
		}
	}
	// One runsc state root per daemon, under its own runtime directory: a
	// second daemon on the host neither sees nor reaps this one's sandboxes.
	runsc := &sandbox.Runsc{Path: cfg.Sandbox.Runsc, Root: filepath.Join(cfg.RuntimeDir, "rs"), Platform: cfg.Sandbox.Platform, WantDigest: want}
	if err := runsc.Check(ctx); err != nil {
		// The start fails either way; a failed record is counted and logged.
		if _, aerr := d.audit.Append(audit.Record{Actor: "daemon", Action: "runsc.check", Subject: cfg.Sandbox.Runsc, Decision: "refused", Result: err.Error()}); aerr != nil {
			log.Error("audit write failed", "err", aerr)
		}
		return nil, fmt.Errorf("no sandbox, no agents: %w", err)
	}
	pinned, err := os.ReadFile(filepath.Join(cfg.StateDir, AgentDigestFile))
	if err != nil {
		return nil, fmt.Errorf("reading the pinned agent digest: %w", err)
	}
	d.newSessionDigest.Store(strings.TrimSpace(string(pinned)))
	// What is installed is what can run. A session runs it only if its
	// profile names exactly this digest; anything else is a software change
	// the owner approves per session (docs/sandbox.md, "Upgrading agentd").
	d.agent = &supervisor.InstalledAgent{Path: cfg.Sandbox.AgentBinary}
	installed, err := d.agent.Hash()
	if err != nil {
		return nil, fmt.Errorf("%w (install it with `just setup`)", err)
	}
	if installed != d.NewSessionDigest() {
		log.Warn("the installed agent is not the one pinned for new sessions; sessions pinned to another binary will not start until a software change is approved",
			"installed", installed, "pinned", d.NewSessionDigest(), "binary", cfg.Sandbox.AgentBinary)
		if _, err := d.audit.Append(audit.Record{Actor: "daemon", Action: "agent.installed", Subject: cfg.Sandbox.AgentBinary,
			Result: "installed " + installed + " differs from the pin " + d.NewSessionDigest()}); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(cfg.RuntimeDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the runtime directory: %w", err)
	}
	if err := os.Chmod(cfg.RuntimeDir, 0o700); err != nil {
		return nil, err
	}
	sink := &changeSink{hub: operator.NewHub()}
	wake := &scheduleWaker{}
	d.sup, err = supervisor.New(supervisor.Config{
		StateDir: cfg.StateDir, RuntimeDir: cfg.RuntimeDir,
		Master: master, Store: d.store, Audit: d.audit, Runsc: runsc,
		AgentBinary: cfg.Sandbox.AgentBinary, AgentDigest: installed, Installed: d.agent, NewSessionDigest: d.NewSessionDigest, Model: cfg.Model.Default,
		ModelUpstream: cfg.Model.OllamaURL,
		MemoryMiB:     cfg.Limits.MaxMemoryMiB, CPUMillis: cfg.Limits.MaxCPUMillis,
		TmpMiB: cfg.Limits.MaxTmpMiB, OutboxMiB: cfg.Limits.MaxOutboxMiB, OutboxInodes: cfg.Limits.MaxOutboxInodes,
		MaxRunning:  int(cfg.Limits.MaxRunningSandboxes),
		MaxSessions: int(cfg.Limits.MaxSessions), CopyBudgetMiB: cfg.Limits.OutboxCopyBudgetMiB,
		Changes:   sink,
		Schedules: wake,
		Log:       log,
	})
	if err != nil {
		return nil, err
	}
	d.sched = scheduler.New(scheduler.Config{Store: d.store, Target: d.sup, Log: log})
	wake.s = d.sched
	// Whatever a previous daemon left running or mounted goes before anything starts.
	if _, err := d.sup.Reap(ctx); err != nil {
		return nil, fmt.Errorf("reaping what a previous daemon left behind: %w", err)
	}
	// Say now what a first chat would otherwise discover. Not fatal: Ollama may start later.
	pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
	if err := proxy.Preflight(pctx, proxy.NewUpstreamClient(proxy.Limits{}), cfg.Model.OllamaURL, cfg.Model.Default); err != nil {
		log.Warn("the model is not ready", "err", err)
	}
	pcancel()
	d.gw, err = gateway.New(ctx, gateway.Config{Store: d.store, Audit: d.audit, Applier: d.sup, Host: hostFacts(cfg, installed)})
	if err != nil {
		return nil, err
	}
	sink.gw = d.gw
	if d.ops, err = d.operatorService(sink.hub); err != nil {
		return nil, err
	}
	if err := d.openMatrix(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

// hostFacts are the bounds every profile is checked against.
func hostFacts(cfg config.Config, digest string) policy.Host {
	l := cfg.Limits
	return policy.Host{
		Tools:        wire.Tools(),
		MaxMemoryMiB: l.MaxMemoryMiB, MaxCPUMillis: l.MaxCPUMillis, MaxTmpMiB: l.MaxTmpMiB,
		MaxOutboxMiB: l.MaxOutboxMiB, MaxOutboxInodes: l.MaxOutboxInodes,
		MaxTokensPerDay: l.MaxTokensPerDay, MaxCallsPerMinute: l.MaxCallsPerMinute,
		MaxInstructionsBytes: 32 << 10,
		Models:               []string{cfg.Model.Default},
		BuiltDigests:         []string{digest},
	}
}

// changeSink hands agents' change requests to the gateway (set once the
// gateway exists; nothing is delivered before Serve) and tells open
// consoles.
type changeSink struct {
	gw  *gateway.Gateway
	hub *operator.Hub
}

func (c *changeSink) SubmitAgentChange(ctx context.Context, session wire.SessionID, req wire.ChangeRequest) error {
	t, err := c.gw.SubmitAgentChange(ctx, session, req)
	if err == nil {
		c.hub.Publish(api.Event{Kind: api.EventChange, ID: t.ID.String(), What: "filed"})
	}
	return err
}

// scheduleWaker tells the scheduler about new schedules (set once the
// scheduler exists, before Serve).
type scheduleWaker struct{ s *scheduler.Scheduler }

func (w *scheduleWaker) Changed() { w.s.Changed() }

func (d *Daemon) close() {
	if d.audit != nil {
		if d.store != nil {
			anchor(context.Background(), d.store, d.audit)
		}
		d.audit.Close()
	}
	if d.store != nil {
		d.store.Close()
	}
	d.master.Destroy()
}

// Serve runs until ctx ends, then stops every sandbox and closes cleanly.
func (d *Daemon) Serve(ctx context.Context) error {
	defer d.close()
	if _, err := d.audit.Append(audit.Record{Actor: "daemon", Action: "daemon.start", Subject: d.cfg.StateDir, Result: "version " + Version}); err != nil {
		return err
	}
	if err := anchor(ctx, d.store, d.audit); err != nil {
		return err
	}
	adm, err := admin.Listen(filepath.Join(d.cfg.RuntimeDir, AdminSocket), d.adminRoutes())
	if err != nil {
		return err
	}
	stopConsole, err := d.startConsole(ctx)
	if err != nil {
		adm.Close()
		return err
	}
	defer stopConsole()
	d.log.Info("ironclaw ready", "state", d.cfg.StateDir, "admin", filepath.Join(d.cfg.RuntimeDir, AdminSocket), "version", Version)
	// Keep the audit anchor close behind the log's head, so that cutting
	// entries off the end after a crash is caught by `audit verify` (all
	// but the last AnchorInterval's worth).
	var matrixDone chan error
	mctx, stopMatrix := context.WithCancel(ctx)
	defer stopMatrix()
	if d.matrixCfg != nil {
		matrixDone = make(chan error, 1)
		go func() { matrixDone <- d.runMatrix(mctx) }()
	}
	tick := time.NewTicker(AnchorInterval)
	defer tick.Stop()
	// Schedules fire from now on; missed ones fire once, marked late.
	schedCtx, stopSched := context.WithCancel(ctx)
	schedDone := make(chan error, 1)
	go func() { schedDone <- d.sched.Run(schedCtx) }()
	// Messages written just before a crash are answered now, not with the
	// next message.
	if err := d.sup.WakeUnread(ctx); err != nil {
		d.log.Warn("waking sessions with unread messages", "err", err)
	}
	var anchored uint64
	for running := true; running; {
		select {
		case <-ctx.Done():
			running = false
		case merr := <-matrixDone:
			// A revoked token stops the channel, not the daemon.
			d.log.Error("the Matrix channel stopped; other channels keep running", "err", merr)
			matrixDone = nil
		case <-tick.C:
			if seq, _ := d.audit.Head(); seq != anchored {
				if err := anchor(ctx, d.store, d.audit); err != nil {
					d.log.Error("anchoring the audit log", "err", err)
				} else {
					anchored = seq
				}
			}
		}
	}
	d.log.Info("ironclaw stopping")
	stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm.Close()
	if matrixDone != nil {
		// The channel stops before the sessions it hands messages to.
		stopMatrix()
		if merr := <-matrixDone; merr != nil {
			d.log.Error("the Matrix channel stopped", "err", merr)
		}
	}
	stopSched()
	<-schedDone
	err = d.sup.Close(stopCtx)
	// runsc bind-mounts an empty network namespace into its state root and
	// never unmounts it; with every sandbox gone, this daemon does.
	if uerr := unix.Unmount(filepath.Join(d.cfg.RuntimeDir, "rs", "null-netns"), unix.MNT_DETACH); uerr != nil && !errors.Is(uerr, unix.EINVAL) && !errors.Is(uerr, unix.ENOENT) {
		d.log.Warn("unmounting runsc's null-netns", "err", uerr)
	}
	if _, aerr := d.audit.Append(audit.Record{Actor: "daemon", Action: "daemon.stop", Subject: d.cfg.StateDir}); aerr != nil {
		err = errors.Join(err, aerr)
	}
	d.log.Info("ironclaw stopped")
	return err
}

// ReadLine reads one line from r (for prompts).
func ReadLine(r io.Reader) (string, error) {
	s, err := bufio.NewReader(r).ReadString('\n')
	return strings.TrimRight(s, "\r\n"), err
}

// Verifier checks the audit log with the MAC key and the anchor from the store.
type Verifier struct {
	key    [32]byte
	anchor *audit.Anchor
}

// OpenVerifier loads what verifying the audit log needs, read-only.
func OpenVerifier(ctx context.Context, cfg config.Config, passphrase io.Reader) (*Verifier, error) {
	master, err := keys.Load(keySource(cfg, passphrase))
	if err != nil {
		return nil, err
	}
	defer master.Destroy()
	ck := master.SubKey(purposeStore)
	defer clear(ck[:])
	st, err := store.OpenWrapped(filepath.Join(cfg.StateDir, StoreFile), master, purposeStore, &ck)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	legacy := master.SubKey(purposeAudit)
	defer clear(legacy[:])
	ak, err := st.DaemonKey(ctx, master, purposeAudit, &legacy)
	if err != nil {
		return nil, err
	}
	v := &Verifier{key: *ak}
	clear(ak[:])
	seq, hash, ok, err := st.AuditAnchor(ctx)
	if err != nil {
		return nil, err
	}
	if ok {
		v.anchor = &audit.Anchor{Seq: seq, Hash: hash}
	}
	return v, nil
}

// Verify verifies the log at path.
func (v *Verifier) Verify(path string) (audit.Report, error) {
	return audit.VerifyFile(path, v.anchor, audit.WithKey(v.key[:]))
}
