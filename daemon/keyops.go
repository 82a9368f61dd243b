package daemon

import (
	"context"
	"io"
	"path/filepath"

	"github.com/ironclaw/ironclaw/daemon/audit"
	"github.com/ironclaw/ironclaw/daemon/config"
	"github.com/ironclaw/ironclaw/daemon/keys"
	"github.com/ironclaw/ironclaw/daemon/rotate"
	"github.com/ironclaw/ironclaw/daemon/store"
)

// RotateOptions say where the new master key goes.
type RotateOptions struct {
	// To is the custody after the rotation (keyfile, passphrase or
	// systemd-credential).
	To string
	// KeyFile is where the new key is written for keyfile and
	// systemd-credential custody (LoadCredential= then loads it).
	KeyFile string
	// OldPassphrase and NewPassphrase are read when the old or new custody
	// is a passphrase without a passphrase file.
	OldPassphrase, NewPassphrase io.Reader
	// NewPassphraseFile, if set, holds the new passphrase.
	NewPassphraseFile string
	Actor             string
}

// RotateKeys replaces the master key of cfg's state directory, with the
// daemon stopped (see package rotate).
func RotateKeys(ctx context.Context, cfg config.Config, o RotateOptions) (rotate.Result, error) {
	if err := cfg.Validate(); err != nil {
		return rotate.Result{}, err
	}
	dst := keys.Source{Custody: keys.Custody(o.To), StateDir: cfg.StateDir, KeyFile: o.KeyFile,
		PassphraseFile: o.NewPassphraseFile, CredentialName: cfg.Keys.CredentialName}
	if dst.Custody == keys.CustodyPassphrase && dst.PassphraseFile == "" {
		dst.Passphrase = o.NewPassphrase
	}
	return rotate.Rotate(ctx, rotate.Options{
		StateDir: cfg.StateDir, StorePath: filepath.Join(cfg.StateDir, StoreFile),
		Old: keySource(cfg, o.OldPassphrase), New: dst, Actor: o.Actor,
		Open: func(m *keys.Master) (*store.Store, *audit.Log, error) { return openStores(cfg, m) },
	})
}

// RecoverKeys finishes or undoes an interrupted rotation (Open does this
// too, before it loads the key).
func RecoverKeys(cfg config.Config) (string, error) {
	return rotate.Recover(cfg.StateDir, filepath.Join(cfg.StateDir, StoreFile))
}
