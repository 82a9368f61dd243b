package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/ironclaw/ironclaw/daemon/audit"
	"github.com/ironclaw/ironclaw/daemon/config"
	"github.com/ironclaw/ironclaw/daemon/keys"
	"github.com/ironclaw/ironclaw/daemon/matrix"
	"github.com/ironclaw/ironclaw/daemon/store"
	"github.com/ironclaw/ironclaw/policy"
	"maunium.net/go/mautrix/id"
)

// purposeMatrixPickle derives the key that pickles the Matrix crypto store's
// Olm and Megolm secrets. It is never written down.
const purposeMatrixPickle = "ironclaw matrix pickle v1"

// MatrixDir holds the Matrix crypto store, in the state directory.
const MatrixDir = "matrix"

// matrixConfig builds the channel's config from the daemon's: the secret
// comes from the file the config names, never from argv or environment.
func matrixConfig(ctx context.Context, cfg config.Config, master *keys.Master, st *store.Store) (matrix.Config, error) {
	m := cfg.Matrix
	mc := matrix.Config{
		Homeserver: m.Homeserver,
		UserID:     id.UserID(m.UserID),
		CryptoDB:   filepath.Join(cfg.StateDir, MatrixDir, "crypto.db"),
		Store:      st,
	}
	for _, o := range m.Owners {
		mc.Owners = append(mc.Owners, id.UserID(o))
	}
	path, what := m.PasswordFile, "matrix.password_file"
	if path == "" {
		path, what = m.AccessTokenFile, "matrix.access_token_file"
	}
	secret, err := keys.ReadSecretFile(path, what)
	if err != nil {
		return mc, err
	}
	line, _, _ := strings.Cut(string(secret), "\n")
	clear(secret)
	line = strings.TrimRight(line, "\r")
	if line == "" {
		return mc, fmt.Errorf("matrix: %s %s is empty; put the bot's %s on its first line", what, path, strings.TrimPrefix(what, "matrix."))
	}
	if m.PasswordFile != "" {
		mc.Password = line
	} else {
		mc.AccessToken = line
	}
	// Kept wrapped in the store like the other daemon keys, so a master key
	// rotation rewraps it instead of orphaning every pickled secret; a
	// store from before adopts the subkey it was derived as.
	legacy := master.SubKey(purposeMatrixPickle)
	pk, err := st.DaemonKey(ctx, master, purposeMatrixPickle, &legacy)
	clear(legacy[:])
	if err != nil {
		return mc, err
	}
	mc.PickleKey = pk[:]
	return mc, nil
}

// openMatrix checks the Matrix channel's config and secret at Open: a
// mistake there stops the daemon from starting, with a message. Reaching
// the homeserver is runMatrix's job.
func (d *Daemon) openMatrix(ctx context.Context) error {
	if d.cfg.Matrix.Homeserver == "" {
		return nil
	}
	mc, err := matrixConfig(ctx, d.cfg, d.master, d.store)
	if err != nil {
		return err
	}
	mc.Sup, mc.Gate, mc.Audit, mc.Log = d.sup, d.gw, d.audit, d.log.With("channel", "matrix")
	d.matrixCfg = &mc
	return nil
}

// runMatrix connects the Matrix channel and runs it until ctx ends. A
// homeserver that cannot be reached (or refuses the bot) at start is tried
// again with backoff: the daemon and its other channels run meanwhile.
func (d *Daemon) runMatrix(ctx context.Context) error {
	backoff := 5 * time.Second
	for {
		ch, err := matrix.New(ctx, *d.matrixCfg)
		if err == nil {
			d.matrix.Store(ch)
			defer ch.Close()
			return ch.Run(ctx)
		}
		d.log.Error("the Matrix channel could not start; retrying", "in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Minute)
	}
}

// MatrixTrust is the Matrix channel's device view for the console: the
// bot's device and trust, and its contacts' devices. ok is false while the
// channel is off or not connected yet.
func (d *Daemon) MatrixTrust(ctx context.Context) (t matrix.Trust, ok bool, err error) {
	ch := d.matrix.Load()
	if ch == nil {
		return matrix.Trust{}, false, nil
	}
	t, err = ch.Devices(ctx)
	return t, true, err
}

// offlineMatrix opens what the Matrix channel needs with the daemon stopped
// (keys, store, audit log, the channel itself), runs fn, and anchors the
// audit log after it. The commands below share it.
func offlineMatrix(ctx context.Context, cfg config.Config, passphrase io.Reader, fn func(ch *matrix.Channel, lg *audit.Log) error) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.Matrix.Homeserver == "" {
		return errors.New("matrix: the config has no [matrix] section; add homeserver, user_id, password_file and owners (docs/matrix.md)")
	}
	master, err := keys.Load(keySource(cfg, passphrase))
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
	mc, err := matrixConfig(ctx, cfg, master, st)
	if err != nil {
		return err
	}
	mc.Audit = lg
	ch, err := matrix.New(ctx, mc)
	if err != nil {
		return err
	}
	defer ch.Close()
	if err := fn(ch, lg); err != nil {
		return err
	}
	return anchor(ctx, st, lg)
}

// MatrixLogin creates the bot's device (password login), sets up
// cross-signing and key backup, and prints what it did. The daemon must not
// be running: it holds the same stores.
func MatrixLogin(ctx context.Context, cfg config.Config, passphrase io.Reader, out io.Writer) error {
	return offlineMatrix(ctx, cfg, passphrase, func(ch *matrix.Channel, _ *audit.Log) error {
		t, err := ch.Devices(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "logged in as %s\n  device: %s\n  fingerprint: %s\n  cross-signed: %v (%s)\n  key backup: version %s\n",
			t.Bot.User, t.Bot.Device, t.Bot.Fingerprint, t.CrossSigned, t.Bot.Trust, orNone(t.BackupVersion))
		return nil
	})
}

// MatrixTrustKey shows user's master key as the homeserver serves it now
// beside the one the bot trusts (the one it saw first) and, when they
// differ and the operator confirms (confirm returns true), trusts the new
// one: the way back for a user who reset their cross-signing. Audited
// before it acts. The daemon must not be running.
func MatrixTrustKey(ctx context.Context, cfg config.Config, passphrase io.Reader, user, actor string, confirm func() bool, out io.Writer) error {
	if err := policy.CheckMatrixUserID(user); err != nil {
		return fmt.Errorf("matrix: %w", err)
	}
	return offlineMatrix(ctx, cfg, passphrase, func(ch *matrix.Channel, lg *audit.Log) error {
		first, current, err := ch.MasterKey(ctx, id.UserID(user))
		if err != nil {
			return err
		}
		if first == current {
			fmt.Fprintf(out, "%s's master key is the one the bot trusts already:\n  %s\nnothing to do.\n", user, current)
			return nil
		}
		fmt.Fprintf(out, "%s's master key has changed.\n  trusted (first seen): %s\n  served now:           %s\n"+
			"Trust the new key only if it is the one the user's own client shows (Element: Settings → Security & Privacy → Cryptography);\n"+
			"a homeserver that swapped it could speak as them.\n", user, first, current)
		if !confirm() {
			return errors.New("not trusted: nothing changed")
		}
		if _, err := lg.Append(audit.Record{Actor: actor, Action: "matrix.trust", Subject: user,
			Result: fmt.Sprintf("master key %s replaces %s", current, first)}); err != nil {
			return fmt.Errorf("audit: %w (nothing changed)", err)
		}
		if err := ch.TrustMasterKey(ctx, id.UserID(user), current); err != nil {
			return err
		}
		fmt.Fprintf(out, "trusted: the bot reads %s's sessions signed under %s from now on.\n", user, current)
		return nil
	})
}

func orNone(s string) string {
	if s == "" {
		return "none (log in with a password_file to create one)"
	}
	return s
}
