package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/admin"
	"github.com/ironclaw/ironclaw/daemon/audit"
	"github.com/ironclaw/ironclaw/daemon/backup"
	"github.com/ironclaw/ironclaw/daemon/config"
	"github.com/ironclaw/ironclaw/daemon/durable"
	"github.com/ironclaw/ironclaw/daemon/keys"
	"github.com/ironclaw/ironclaw/daemon/queue"
	"github.com/ironclaw/ironclaw/daemon/store"
	"github.com/ironclaw/ironclaw/daemon/supervisor"
)

// purposeBackup derives the key that authenticates backup archives. It is
// derived from the master key itself (not kept wrapped in the store), so a
// restore checks an archive before it parses anything in it but the key
// check files.
const purposeBackup = "ironclaw backup mac v1"

// manifest is backup.json, the archive's own description (authenticated
// with the rest; nothing secret).
type manifest struct {
	Format   int       `json:"format"`
	Created  time.Time `json:"created"`
	Version  string    `json:"version"`
	Sessions int       `json:"sessions"`
	AuditSeq uint64    `json:"audit_seq"`
}

// Backup writes a consistent backup archive of the running daemon's state
// to w: the store as of one commit, then each session's inbox (taken after
// the store, so every cursor the store holds is covered by its inbox), then
// the Matrix crypto store if the channel ever ran, then the audit log's
// durable entries (after the store, so the store's audit anchor is inside
// the copy), the key check files and the pins. Nothing in
// it is plaintext conversation and the master key is not in it. The backup
// is audited before it starts; if that fails, there is no backup.
func (d *Daemon) Backup(ctx context.Context, w io.Writer, actor string) (err error) {
	d.backupMu.Lock()
	defer d.backupMu.Unlock()
	// Copies a crashed daemon left half-made (sealed, but not ours to keep).
	removeStale(d.cfg.StateDir, ".backup-")
	if _, err := d.audit.Append(audit.Record{Actor: actor, Action: "backup", Subject: d.cfg.StateDir, Decision: "approved", Result: "started"}); err != nil {
		return err
	}
	defer func() {
		result := "taken"
		if err != nil {
			result = "failed: " + err.Error()
		}
		if _, aerr := d.audit.Append(audit.Record{Actor: actor, Action: "backup", Subject: d.cfg.StateDir, Result: result}); aerr != nil && err == nil {
			err = aerr
		}
	}()
	tmp, err := os.MkdirTemp(d.cfg.StateDir, ".backup-")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := d.store.BackupTo(ctx, filepath.Join(tmp, StoreFile)); err != nil {
		return err
	}
	all, err := d.store.ListSessions(ctx)
	if err != nil {
		return err
	}
	var ids []wire.SessionID
	for _, s := range all {
		if s.State == store.StateActive {
			ids = append(ids, s.ID)
		}
	}
	inboxCopy := func(id wire.SessionID) string { return filepath.Join(tmp, "inbox-"+id.String()) }
	if err := d.sup.BackupInboxes(ids, inboxCopy); err != nil {
		return err
	}
	// The Matrix crypto store (its secrets pickled under a daemon key), if
	// the channel ever ran.
	crypto := filepath.Join(d.cfg.StateDir, MatrixDir, "crypto.db")
	haveCrypto := false
	if _, err := os.Lstat(crypto); err == nil {
		if err := store.SnapshotFile(ctx, crypto, filepath.Join(tmp, "crypto.db")); err != nil {
			return err
		}
		haveCrypto = true
	}
	af, err := os.OpenFile(filepath.Join(tmp, AuditFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	head, err := d.audit.CopyDurable(af)
	if cerr := af.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	mk := d.master.SubKey(purposeBackup)
	defer clear(mk[:])
	bw, err := backup.NewWriter(w, &mk)
	if err != nil {
		return err
	}
	m, _ := json.Marshal(manifest{Format: 1, Created: time.Now().UTC(), Version: Version, Sessions: len(ids), AuditSeq: head.Seq})
	steps := []func() error{
		func() error { return bw.Bytes("backup.json", m) },
		func() error { return bw.File(StoreFile, filepath.Join(tmp, StoreFile)) },
		func() error { return bw.File(AuditFile, filepath.Join(tmp, AuditFile)) },
	}
	for _, name := range []string{keys.CheckFileName, keys.KDFFileName, AgentDigestFile, OperatorsFile} {
		p := filepath.Join(d.cfg.StateDir, name)
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		steps = append(steps, func() error { return bw.File(name, p) })
	}
	if haveCrypto {
		steps = append(steps, func() error { return bw.Dir(MatrixDir) },
			func() error { return bw.File(MatrixDir+"/crypto.db", filepath.Join(tmp, "crypto.db")) })
	}
	steps = append(steps, func() error { return bw.Dir("sessions") })
	for _, id := range ids {
		dir := "sessions/" + id.String()
		steps = append(steps,
			func() error { return bw.Dir(dir) },
			func() error { return bw.Dir(dir + "/inbox") },
			func() error { return bw.File(dir+"/inbox/"+wire.InboxFile, inboxCopy(id)) })
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return bw.Close()
}

// backupRoute streams a backup archive. The archive is complete only if the
// response ends normally: a failure midway aborts the connection, so the
// client sees a cut-short answer, never a short archive that looks whole.
func (d *Daemon) backupRoute(w http.ResponseWriter, r *http.Request) {
	peer, _ := admin.PeerFrom(r.Context())
	w.Header().Set("Content-Type", "application/octet-stream")
	if err := d.Backup(r.Context(), w, peer.Actor()); err != nil {
		d.log.Error("backup failed", "err", err)
		panic(http.ErrAbortHandler)
	}
}

// RestoreOptions are the choices of `ironclaw restore`.
type RestoreOptions struct {
	// Passphrase is read for custody "passphrase" without a passphrase file.
	Passphrase io.Reader
	Actor      string
	Out        io.Writer
}

// Restore puts the backup archive at path into cfg's state directory, which
// must not exist or be empty. The master key comes from cfg's custody as
// for serve. The archive is authenticated in full before anything is
// extracted, and what is extracted is exactly what was authenticated (each
// file's size and hash, read under the MAC), into a private directory
// beside the target that becomes the state directory only when everything
// checked: a truncated, tampered or foreign archive writes nothing, and one
// rewritten during the restore writes no more than the authentic one holds. Each
// session gets a fresh outbox that continues where its delivered outbox
// ended (queue.SeedOutbox); the audit log is verified against the store's
// anchor and records the restore.
func Restore(ctx context.Context, cfg config.Config, path string, o RestoreOptions) (err error) {
	if err := cfg.Validate(); err != nil {
		return err
	}
	target := cfg.StateDir
	if ents, err := os.ReadDir(target); err == nil && len(ents) > 0 {
		return fmt.Errorf("restore: %s is not empty; restore only into an empty or new state directory (move the old one away first)", target)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("restore: %w", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer f.Close()
	parent := filepath.Dir(target)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	removeStale(parent, "."+filepath.Base(target)+".restore-")
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(target)+".restore-")
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	// The key: its check file (and Argon2id parameters) come from the
	// archive, unauthenticated until the MAC below, which a wrong or
	// tampered one fails.
	keyDir := filepath.Join(tmp, ".keys")
	if err := os.Mkdir(keyDir, 0o700); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := backup.ReadKeyFiles(f, keyDir); err != nil {
		return err
	}
	kcfg := cfg
	kcfg.StateDir = keyDir
	master, err := keys.Load(keySource(kcfg, o.Passphrase))
	if err != nil {
		if errors.Is(err, keys.ErrWrongMaster) {
			return fmt.Errorf("restore: this backup was taken under another master key than the configured one (before a rotation?): configure the key that was in force when it was taken; nothing was restored: %w", err)
		}
		return fmt.Errorf("restore: %w", err)
	}
	defer master.Destroy()
	if err := os.RemoveAll(keyDir); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	mk := master.SubKey(purposeBackup)
	defer clear(mk[:])
	// Extract reads f again but writes only what Verify authenticated, so
	// an archive rewritten meanwhile fails without filling the disk.
	v, err := backup.Verify(f, &mk)
	if err != nil {
		return err
	}
	if _, err := v.Extract(tmp); err != nil {
		return err
	}
	for _, name := range []string{keys.CheckFileName, StoreFile, AuditFile, AgentDigestFile} {
		if _, err := os.Lstat(filepath.Join(tmp, name)); err != nil {
			return fmt.Errorf("restore: the backup has no %s: it is not a whole state directory", name)
		}
	}
	os.Remove(filepath.Join(tmp, "backup.json")) // described the archive; not state
	n, err := seedRestored(ctx, cfg, tmp, master, o.Actor)
	if err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o700); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("restore: %w", err)
	}
	if err := os.Rename(tmp, target); err != nil {
		return fmt.Errorf("restore: moving the restored state into %s: %w", target, err)
	}
	if err := durable.SyncDir(parent); err != nil {
		return err
	}
	if o.Out != nil {
		fmt.Fprintf(o.Out, "restored %s: %d sessions, audit chain verified\n", target, n)
	}
	return nil
}

// seedRestored gives each active session the directories and fresh outbox
// a running daemon expects, verifies the audit log against the store's
// anchor (by opening both as serve would) and records the restore in it.
func seedRestored(ctx context.Context, cfg config.Config, dir string, master *keys.Master, actor string) (int, error) {
	rcfg := cfg
	rcfg.StateDir = dir
	st, lg, err := openStores(rcfg, master)
	if err != nil {
		return 0, fmt.Errorf("restore: the restored state does not open: %w", err)
	}
	defer st.Close()
	defer lg.Close()
	all, err := st.ListSessions(ctx)
	if err != nil {
		return 0, err
	}
	sessions := filepath.Join(dir, "sessions")
	if err := os.MkdirAll(sessions, 0o700); err != nil {
		return 0, err
	}
	n := 0
	for _, s := range all {
		if s.State != store.StateActive {
			continue
		}
		sdir := filepath.Join(sessions, s.ID.String())
		inbox := filepath.Join(sdir, wire.InboxDir)
		if _, err := os.Stat(filepath.Join(inbox, wire.InboxFile)); err != nil {
			return 0, fmt.Errorf("restore: session %s has no inbox in the backup", s.ID)
		}
		key, err := master.Unwrap(s.ID, s.WrappedKey)
		if err != nil {
			return 0, fmt.Errorf("restore: session %s: %w", s.ID, err)
		}
		delivered, err := st.Cursor(ctx, s.ID, store.CursorOutboxDelivered)
		if err == nil {
			var consumed uint64
			consumed, err = st.Cursor(ctx, s.ID, store.CursorInboxConsumed)
			if err == nil {
				err = queue.SeedOutbox(sdir, s.ID, key, delivered, consumed, queue.Owner{UID: supervisor.AgentUID, GID: supervisor.AgentUID}, time.Now())
			}
		}
		clear(key[:])
		if err != nil {
			return 0, fmt.Errorf("restore: session %s: %w", s.ID, err)
		}
		// The modes queue.Create gives: the sandbox user reads the inbox
		// through its read-only mount and traverses the session directory.
		for _, m := range []struct {
			p    string
			mode os.FileMode
		}{{filepath.Join(inbox, wire.InboxFile), 0o644}, {inbox, 0o755}, {sdir, 0o711}} {
			if err := os.Chmod(m.p, m.mode); err != nil {
				return 0, err
			}
		}
		n++
	}
	if err := os.Chmod(sessions, 0o700); err != nil {
		return 0, err
	}
	if _, err := lg.Append(audit.Record{Actor: actor, Action: "backup.restore", Subject: cfg.StateDir, Result: fmt.Sprintf("restored %d sessions", n)}); err != nil {
		return 0, err
	}
	if err := anchor(ctx, st, lg); err != nil {
		return 0, err
	}
	return n, nil
}

// removeStale removes the directories in dir whose names start with prefix:
// staging directories of a backup or restore that a crash interrupted.
func removeStale(dir, prefix string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), prefix) {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}
