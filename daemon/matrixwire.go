package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/ironclaw/ironclaw/daemon/config"
	"github.com/ironclaw/ironclaw/daemon/keys"
	"github.com/ironclaw/ironclaw/daemon/matrix"
	"github.com/ironclaw/ironclaw/daemon/store"
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

// openMatrix starts the Matrix channel if the config has one.
func (d *Daemon) openMatrix(ctx context.Context) error {
	if d.cfg.Matrix.Homeserver == "" {
		return nil
	}
	mc, err := matrixConfig(ctx, d.cfg, d.master, d.store)
	if err != nil {
		return err
	}
	mc.Sup, mc.Gate, mc.Audit, mc.Log = d.sup, d.gw, d.audit, d.log.With("channel", "matrix")
	d.matrix, err = matrix.New(ctx, mc)
	if err != nil {
		return fmt.Errorf("%w (the daemon does not start without the Matrix channel its config names; fix it or remove [matrix])", err)
	}
	return nil
}

// MatrixTrust is the Matrix channel's device view for the console (nil
// error and zero value when Matrix is off).
func (d *Daemon) MatrixTrust(ctx context.Context) (matrix.Trust, bool, error) {
	if d.matrix == nil {
		return matrix.Trust{}, false, nil
	}
	t, err := d.matrix.Devices(ctx)
	return t, true, err
}

// MatrixLogin creates the bot's device (password login), sets up
// cross-signing and key backup, and prints what it did. The daemon must not
// be running: it holds the same stores.
func MatrixLogin(ctx context.Context, cfg config.Config, passphrase io.Reader, out io.Writer) error {
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
	t, err := ch.Devices(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "logged in as %s\n  device: %s\n  fingerprint: %s\n  cross-signed: %v (%s)\n  key backup: version %s\n",
		t.Bot.User, t.Bot.Device, t.Bot.Fingerprint, t.CrossSigned, t.Bot.Trust, orNone(t.BackupVersion))
	return anchor(ctx, st, lg)
}

func orNone(s string) string {
	if s == "" {
		return "none (log in with a password_file to create one)"
	}
	return s
}
