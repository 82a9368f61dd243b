// Package rotate replaces the master key, and with it moves between
// custodies (key file → passphrase → systemd credential), without losing a
// session: every wrapped session key and every daemon key (the store's
// content key, the audit MAC key) is rewrapped under the new master in ONE
// store transaction.
//
// Crash safety. The new key material is written under staging names
// (keys.Plan) after a journal (rotate.json) that names them and a fresh
// epoch. The store transaction that rewraps the keys also records that
// epoch; it is the commit point. Recover, run before anything loads the key,
// reads the journal and the store's epoch: equal means the rewrap committed,
// so the staged files are renamed into force (roll forward); different means
// it did not, so they are removed (roll back). Either way exactly one master
// key opens everything.
//
// What rotation does not change, on purpose: the session keys, the store's
// content key and the audit MAC key are rewrapped, not replaced. Replacing
// them would mean re-sealing every queue row and re-MACing the append-only
// audit log (which would stop being append-only, and could no longer be
// checked against entries already shown or exported). The consequence, said
// plainly in docs/operations.md: someone who already held the old master key
// AND copied the old state can still read what that copy holds; rotation
// protects what is written from now on against a lost old key custody, and
// moves custody. It is not a remedy for a key that has already been used by
// someone else together with the data.
//
// This package must never print or log key material; it reads passphrases
// only through keys.Source.
package rotate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/audit"
	"github.com/ironclaw/ironclaw/daemon/durable"
	"github.com/ironclaw/ironclaw/daemon/keys"
	"github.com/ironclaw/ironclaw/daemon/store"
)

// JournalName is the rotation journal in the state directory, and
// LockName the lock a rotation and a recovery hold (flock), so that a daemon
// starting during a rotation never "recovers" it from under it.
const (
	JournalName = "rotate.json"
	LockName    = "rotate.lock"
)

// lock takes the rotation lock without waiting; release closes it.
func lock(stateDir string) (release func(), err error) {
	p := filepath.Join(stateDir, LockName)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("rotate: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("rotate: a key rotation is running on %s (it holds %s); wait for it to finish: %w", stateDir, p, err)
	}
	return func() { f.Close() }, nil
}

// journal records a rotation in progress. Nothing in it is secret.
type journal struct {
	Format int         `json:"format"`
	Epoch  string      `json:"epoch"`
	To     string      `json:"to"`
	Moves  []keys.Move `json:"moves"`
}

// Opener opens the state's store and audit log with a master key: the
// daemon's own opener, so that rotation sees exactly what serve would.
type Opener func(m *keys.Master) (*store.Store, *audit.Log, error)

// Options say what to rotate from and to.
type Options struct {
	StateDir  string
	StorePath string
	Old, New  keys.Source
	Open      Opener
	// Actor is recorded in the audit log (the operator's local account).
	Actor string
	// step, if set, is called between the steps (tests kill the process at
	// random points; it is never set in production).
	step func(name string)
}

// Result says what happened.
type Result struct {
	Sessions int    // session keys rewrapped
	Custody  string // the custody now in force
}

// Rotate replaces the master key per o. It refuses while the daemon runs
// (the audit log is locked by it) and finishes or undoes an interrupted
// earlier rotation first.
func Rotate(ctx context.Context, o Options) (Result, error) {
	step := o.step
	if step == nil {
		step = func(string) {}
	}
	unlock, err := lock(o.StateDir)
	if err != nil {
		return Result{}, err
	}
	defer unlock()
	if _, err := recoverLocked(o.StateDir, o.StorePath); err != nil {
		return Result{}, err
	}
	old, err := keys.Load(o.Old)
	if err != nil {
		return Result{}, err
	}
	defer old.Destroy()
	// Opening the audit log takes its lock: a running daemon holds it, and
	// a rotation under a running daemon would leave it with the old key.
	st, lg, err := o.Open(old)
	if err != nil {
		return Result{}, fmt.Errorf("rotate: %w (stop the daemon first: systemctl stop ironclaw)", err)
	}
	defer st.Close()
	defer lg.Close()
	moves, err := keys.Plan(o.New)
	if err != nil {
		return Result{}, err
	}
	var rnd [16]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return Result{}, err
	}
	j := journal{Format: 1, Epoch: hex.EncodeToString(rnd[:]), To: string(o.New.Custody), Moves: moves}
	// Audit before acting: a rotation that cannot be recorded does not run.
	if _, err := lg.Append(audit.Record{Actor: o.Actor, Action: "keys.rotate", Subject: o.StateDir, Decision: "approved",
		Result: "requested custody " + string(o.Old.Custody) + " -> " + j.To + " epoch " + j.Epoch}); err != nil {
		return Result{}, err
	}
	b, _ := json.MarshalIndent(j, "", "  ")
	if err := durable.WriteFile(filepath.Join(o.StateDir, JournalName), append(b, '\n'), 0o600); err != nil {
		return Result{}, fmt.Errorf("rotate: writing the journal: %w", err)
	}
	step("journal")
	fail := func(err error) (Result, error) {
		// Nothing committed: undo the staged files and the journal.
		if _, rerr := recoverLocked(o.StateDir, o.StorePath); rerr != nil {
			err = errors.Join(err, rerr)
		}
		_, _ = lg.Append(audit.Record{Actor: o.Actor, Action: "keys.rotate", Subject: o.StateDir, Result: "failed, old key kept: " + err.Error()})
		return Result{}, err
	}
	replace := ""
	if o.Old.Custody == keys.CustodyKeyFile {
		if replace, err = filepath.Abs(o.Old.KeyFile); err != nil {
			return fail(err)
		}
	}
	nm, err := keys.Stage(o.New, replace)
	if err != nil {
		return fail(err)
	}
	defer nm.Destroy()
	step("staged")
	n, err := st.Rewrap(ctx, j.Epoch,
		func(id wire.SessionID, wrapped []byte) ([]byte, error) {
			k, err := old.Unwrap(id, wrapped)
			if err != nil {
				return nil, err
			}
			defer clear(k[:])
			return nm.Wrap(id, k)
		},
		func(purpose string, wrapped []byte) ([]byte, error) {
			k, err := old.UnwrapDaemonKey(purpose, wrapped)
			if err != nil {
				return nil, err
			}
			defer clear(k[:])
			return nm.WrapDaemonKey(purpose, k)
		})
	if err != nil {
		return fail(err)
	}
	step("rewrapped")
	// The store is under the new key from here: finish, never undo.
	if err := finish(o.StateDir, moves); err != nil {
		return Result{Sessions: n}, fmt.Errorf("rotate: the keys were rewrapped but putting the new key in force failed: %w (run `ironclaw keys recover` to finish)", err)
	}
	step("done")
	if _, err := lg.Append(audit.Record{Actor: o.Actor, Action: "keys.rotate", Subject: o.StateDir,
		Result: fmt.Sprintf("rotated to custody %s, %d session keys rewrapped, epoch %s", j.To, n, j.Epoch)}); err != nil {
		return Result{Sessions: n, Custody: j.To}, fmt.Errorf("rotate: done, but recording it failed: %w", err)
	}
	return Result{Sessions: n, Custody: j.To}, nil
}

func finish(stateDir string, moves []keys.Move) error {
	if err := keys.CommitStaged(moves); err != nil {
		return err
	}
	return durable.Remove(filepath.Join(stateDir, JournalName))
}

// Recover finishes or undoes a rotation a crash interrupted, deciding by the
// store's key epoch (see the package comment). It returns what it did: ""
// (no rotation was pending), "rolled forward" or "rolled back".
func Recover(stateDir, storePath string) (string, error) {
	p := filepath.Join(stateDir, JournalName)
	if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
		return "", nil // the common case: no lock file is created for nothing
	}
	unlock, err := lock(stateDir)
	if err != nil {
		return "", err
	}
	defer unlock()
	return recoverLocked(stateDir, storePath)
}

// recoverLocked is Recover with the rotation lock held.
func recoverLocked(stateDir, storePath string) (string, error) {
	p := filepath.Join(stateDir, JournalName)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("rotate: reading %s: %w", p, err)
	}
	var j journal
	if err := json.Unmarshal(b, &j); err != nil || j.Format != 1 || j.Epoch == "" || len(j.Moves) == 0 {
		return "", fmt.Errorf("rotate: %s is damaged; compare the store with the staged *.new key files by hand, or restore from a backup", p)
	}
	for _, m := range j.Moves {
		// The journal is ours, but check anyway that it only names staged
		// files beside their finals.
		if m.Staged != m.Final+".new" || !filepath.IsAbs(m.Final) {
			return "", fmt.Errorf("rotate: %s names unexpected files; refusing to act on it", p)
		}
	}
	epoch, err := store.ReadEpoch(storePath)
	if err != nil {
		return "", fmt.Errorf("rotate: an interrupted rotation is pending and the store's key epoch cannot be read: %w", err)
	}
	if epoch == j.Epoch {
		if err := finish(stateDir, j.Moves); err != nil {
			return "", err
		}
		return "rolled forward", nil
	}
	if err := keys.AbortStaged(j.Moves); err != nil {
		return "", err
	}
	if err := durable.Remove(p); err != nil {
		return "", err
	}
	return "rolled back", nil
}
