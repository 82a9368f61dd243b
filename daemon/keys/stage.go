package keys

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// stagedSuffix marks key material written for a rotation that is not in
// force yet.
const stagedSuffix = ".new"

// Move is one staged file and the name it takes when a rotation commits.
type Move struct {
	Staged string `json:"staged"`
	Final  string `json:"final"`
}

// Plan returns the files Stage(dst) will write, so that a rotation can
// record them in its journal before the first one exists. For custody
// systemd-credential the new key is written to dst.KeyFile, which the unit
// then loads with LoadCredential= (or encrypts with systemd-creds).
func Plan(dst Source) ([]Move, error) {
	dst, err := dst.normaliseForStage()
	if err != nil {
		return nil, err
	}
	var moves []Move
	add := func(final string) { moves = append(moves, Move{Staged: final + stagedSuffix, Final: final}) }
	switch dst.Custody {
	case CustodyKeyFile, CustodySystemdCredential:
		add(dst.KeyFile)
	case CustodyPassphrase:
		add(filepath.Join(dst.StateDir, KDFFileName))
	}
	add(filepath.Join(dst.StateDir, CheckFileName)) // last: the check names the key in force
	return moves, nil
}

// normaliseForStage is normalise, except that the systemd-credential custody
// also needs KeyFile: where the new credential's bytes are written.
func (src Source) normaliseForStage() (Source, error) {
	if src.Custody == CustodySystemdCredential {
		if src.KeyFile == "" {
			return src, errors.New("keys: moving to systemd-credential custody needs a key file path for the new credential (e.g. /etc/ironclaw/master.key, loaded with LoadCredential=)")
		}
		k := src
		k.Custody = CustodyKeyFile
		k, err := k.normalise()
		if err != nil {
			return src, err
		}
		src.KeyFile, src.StateDir = k.KeyFile, k.StateDir
		return src, nil
	}
	return src.normalise()
}

// Stage writes new key material for dst under the staging names of Plan(dst)
// and returns the new master. Nothing in force changes: Load still loads the
// old key until CommitStaged. Every staged file is created exclusively, so a
// leftover from an earlier attempt must be cleared first (AbortStaged).
//
// A key file is never written over an existing file other than replace
// (the key file now in force, which a rotation in place replaces at commit;
// "" allows none): that file may be the only key to other data.
func Stage(dst Source, replace string) (*Master, error) {
	dst, err := dst.normaliseForStage()
	if err != nil {
		return nil, err
	}
	moves, err := Plan(dst)
	if err != nil {
		return nil, err
	}
	var root [MasterKeySize]byte
	defer clear(root[:])
	switch dst.Custody {
	case CustodyKeyFile, CustodySystemdCredential:
		if dst.KeyFile != "" {
			if _, err := os.Lstat(dst.KeyFile); err == nil && dst.KeyFile != replace {
				return nil, fmt.Errorf("keys: %s already exists; rotate into a new path or the current key file (nothing was changed)", dst.KeyFile)
			}
		}
		if _, err := rand.Read(root[:]); err != nil {
			return nil, fmt.Errorf("keys: reading randomness for the master key: %w", err)
		}
		if _, err := writeExclusive(moves[0].Staged, root[:], 0o600); err != nil {
			return nil, fmt.Errorf("keys: staging the new key file: %w", err)
		}
	case CustodyPassphrase:
		pass, err := readPassphrase(dst)
		if err != nil {
			return nil, err
		}
		defer clear(pass)
		if len(pass) < MinPassphraseLen {
			return nil, fmt.Errorf("keys: passphrase is %d bytes; use at least %d", len(pass), MinPassphraseLen)
		}
		p, err := newKDFParams()
		if err != nil {
			return nil, err
		}
		if _, err := writeKDFFile(moves[0].Staged, p); err != nil {
			return nil, err
		}
		root = p.derive(pass)
	}
	if err := writeCheckFile(moves[len(moves)-1].Staged, dst.Custody, &root); err != nil {
		return nil, err
	}
	return newMaster(dst.Custody, &root), nil
}

// CommitStaged puts staged files in force by renaming each over its final
// name, then fsyncs the directories. It is idempotent: a move whose staged
// file is gone and whose final file exists was already made (a crash between
// two renames is finished by the next call).
func CommitStaged(moves []Move) error {
	for _, m := range moves {
		_, serr := os.Lstat(m.Staged)
		if errors.Is(serr, fs.ErrNotExist) {
			if _, ferr := os.Lstat(m.Final); ferr == nil {
				continue
			}
			return fmt.Errorf("keys: neither %s nor %s exists: the rotation cannot be finished; restore the state directory from a backup", m.Staged, m.Final)
		}
		if serr != nil {
			return fmt.Errorf("keys: %w", serr)
		}
		if err := os.Rename(m.Staged, m.Final); err != nil {
			return fmt.Errorf("keys: putting %s in force: %w", m.Final, err)
		}
		if err := syncDir(filepath.Dir(m.Final)); err != nil {
			return err
		}
	}
	return nil
}

// AbortStaged removes staged files that exist; the key in force is untouched.
func AbortStaged(moves []Move) error {
	var errs []error
	for _, m := range moves {
		if err := os.Remove(m.Staged); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("keys: removing %s: %w", m.Staged, err))
			continue
		}
		if err := syncDir(filepath.Dir(m.Staged)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
