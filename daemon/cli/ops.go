package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/user"
	"path/filepath"

	"github.com/ironclaw/ironclaw/daemon"
	"github.com/ironclaw/ironclaw/daemon/config"
	"github.com/ironclaw/ironclaw/daemon/doctor"
	"github.com/ironclaw/ironclaw/daemon/sandbox"
	"github.com/ironclaw/ironclaw/images"
)

// The owner's running-it-for-real commands: doctor, backup and restore, key
// rotation. Each is registered in CLI (cli.go).

// DoctorCmd checks the machine and says what to fix.
type DoctorCmd struct {
	JSON bool `help:"Print the report as JSON."`
}

// Run prints every check; it exits 1 when something a conversation needs is
// broken.
func (c DoctorCmd) Run(ctx context.Context, g *Globals) error {
	cfg, err := g.load()
	if err != nil {
		return err
	}
	runscPin, err := sandbox.ParseDigest(bytes.NewReader(images.RunscPin), "images/runsc.sha256")
	if err != nil {
		return err
	}
	agentdPin, err := sandbox.ParseDigest(bytes.NewReader(images.AgentdPin), "images/agentd.sha256")
	if err != nil {
		return err
	}
	r := doctor.Run(ctx, doctor.Options{Config: cfg, UID: os.Geteuid(), RunscDigest: runscPin, AgentdDigest: agentdPin})
	if c.JSON {
		err = r.JSON(g.stdout)
	} else {
		err = r.Text(g.stdout)
	}
	if err != nil {
		return err
	}
	if r.Broken {
		return exitCode(1)
	}
	return nil
}

// KeysCmd manages the master key over time.
type KeysCmd struct {
	Rotate  KeysRotateCmd  `cmd:"" help:"Replace the master key (and move custody); the daemon must be stopped."`
	Recover KeysRecoverCmd `cmd:"" help:"Finish or undo a key rotation that was interrupted (serve does this by itself)."`
}

// KeysRotateCmd replaces the master key.
type KeysRotateCmd struct {
	To             string `help:"Custody after the rotation: keyfile, passphrase or systemd-credential." enum:"keyfile,passphrase,systemd-credential" required:""`
	KeyFile        string `help:"Where the new key is written (keyfile, systemd-credential). Default: keys.key_file from the config." placeholder:"FILE"`
	PassphraseFile string `help:"File holding the NEW passphrase (--to passphrase); without it you are asked on the terminal." placeholder:"FILE"`
}

// Run rotates and says what to change in the config.
func (c KeysRotateCmd) Run(ctx context.Context, g *Globals) error {
	cfg, oldPass, done, err := g.loadWithKey(false)
	if err != nil {
		return err
	}
	defer done()
	o := daemon.RotateOptions{To: c.To, KeyFile: c.KeyFile, OldPassphrase: oldPass, NewPassphraseFile: c.PassphraseFile, Actor: localActor()}
	if o.KeyFile == "" && c.To != config.CustodyPassphrase {
		o.KeyFile = cfg.Keys.KeyFile
	}
	if c.To == config.CustodyPassphrase && c.PassphraseFile == "" {
		p, pdone, err := askPassphrase("New IronClaw master passphrase: ", true)
		if err != nil {
			return err
		}
		defer pdone()
		o.NewPassphrase = p
	}
	res, err := daemon.RotateKeys(ctx, cfg, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "master key rotated: %d session keys rewrapped; custody is now %s\n", res.Sessions, res.Custody)
	switch c.To {
	case config.CustodyPassphrase:
		fmt.Fprintf(g.stdout, "  set in %s:  [keys] custody = \"passphrase\"", DefaultConfigFile)
		if c.PassphraseFile != "" {
			fmt.Fprintf(g.stdout, "  passphrase_file = %q", c.PassphraseFile)
		}
		fmt.Fprintln(g.stdout)
	case config.CustodySystemdCredential:
		fmt.Fprintf(g.stdout, "  set in %s:  [keys] custody = \"systemd-credential\"\n  in the unit: LoadCredential=%s:%s  (or encrypt it: systemd-creds encrypt --name=%s %s /etc/credstore.encrypted/%s, then LoadCredentialEncrypted=%s and shred %s)\n",
			DefaultConfigFile, cfg.Keys.CredentialName, o.KeyFile, cfg.Keys.CredentialName, o.KeyFile, cfg.Keys.CredentialName, cfg.Keys.CredentialName, o.KeyFile)
	default:
		fmt.Fprintf(g.stdout, "  set in %s:  [keys] custody = \"keyfile\"  key_file = %q\n", DefaultConfigFile, o.KeyFile)
	}
	if cfg.Keys.Custody == config.CustodyKeyFile && o.KeyFile != cfg.Keys.KeyFile {
		fmt.Fprintf(g.stdout, "  the old key file %s opens nothing written from now on, but still opens backups taken before this rotation: shred it (shred -u %s) once you no longer need them\n", cfg.Keys.KeyFile, cfg.Keys.KeyFile)
	}
	fmt.Fprintln(g.stdout, "  take a new backup now: backups are sealed under the key they were taken with")
	return nil
}

// KeysRecoverCmd finishes or undoes an interrupted rotation.
type KeysRecoverCmd struct{}

// Run recovers.
func (KeysRecoverCmd) Run(g *Globals) error {
	cfg, err := g.load()
	if err != nil {
		return err
	}
	what, err := daemon.RecoverKeys(cfg)
	if err != nil {
		return err
	}
	if what == "" {
		what = "nothing to do: no rotation was interrupted"
	} else {
		what = "the interrupted rotation was " + what
	}
	fmt.Fprintln(g.stdout, what)
	return nil
}

// localActor names the operator running the command, for the audit log.
func localActor() string {
	if u, err := user.Current(); err == nil {
		return "operator:local:" + u.Username
	}
	return fmt.Sprintf("operator:local:uid%d", os.Geteuid())
}

// BackupCmd takes a backup from the running daemon.
type BackupCmd struct {
	File string `arg:"" help:"Archive to write (must not exist); it holds no plaintext and no key, but keep it like the state directory." type:"path"`
}

// Run streams the archive into a temporary file beside File and renames it
// into place only when the daemon finished it.
func (c BackupCmd) Run(ctx context.Context, g *Globals) (err error) {
	cl, err := adminClient(g)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(c.File); err == nil {
		return fmt.Errorf("%s already exists; choose a new file name", c.File)
	}
	f, err := os.CreateTemp(filepath.Dir(c.File), "."+filepath.Base(c.File)+".partial-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = cl.Stream(ctx, "POST", "/v1/backup", f); err != nil {
		return fmt.Errorf("backup failed, nothing was written: %w", err)
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Link(f.Name(), c.File); err != nil {
		return fmt.Errorf("putting the backup at %s: %w", c.File, err)
	}
	os.Remove(f.Name())
	fi, _ := os.Stat(c.File)
	fmt.Fprintf(g.stdout, "backup written to %s (%d bytes); restore with `ironclaw restore %s` and the master key in force now\n", c.File, fi.Size(), c.File)
	return nil
}

// RestoreCmd restores a backup into an empty state directory.
type RestoreCmd struct {
	File string `arg:"" help:"Archive written by ironclaw backup." type:"path"`
}

// Run restores with the configured key custody.
func (c RestoreCmd) Run(ctx context.Context, g *Globals) error {
	cfg, pass, done, err := g.loadWithKey(false)
	if err != nil {
		return err
	}
	defer done()
	return daemon.Restore(ctx, cfg, c.File, daemon.RestoreOptions{Passphrase: pass, Actor: localActor(), Out: g.stdout})
}
