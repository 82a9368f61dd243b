package store

import (
	"context"
	"fmt"
	"time"

	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// profilesTable names the sealed column's table inside its seal binding.
const profilesTable = "profiles"

// canonical renders p and checks that it parses back, so that nothing is
// stored that could not be read again.
func canonical(p profile.Profile) ([]byte, error) {
	canon := p.Canonical()
	if _, err := profile.Parse(canon); err != nil {
		return nil, fmt.Errorf("store: profile does not round-trip: %w", err)
	}
	return canon, nil
}

func insertProfile(c *sqlite.Conn, key *[32]byte, id wire.SessionID, version uint64, canon []byte, now int64) error {
	v, err := i64("profile version", version)
	if err != nil {
		return err
	}
	sealed, err := sealColumn(key, profilesTable, id, version, canon)
	if err != nil {
		return err
	}
	return sqlitex.Execute(c, "INSERT INTO profiles (session_id, version, canonical, created) VALUES (?, ?, ?, ?)", &sqlitex.ExecOptions{
		Args: []any{id.String(), v, sealed, now},
	})
}

// Profile returns version of the session's profile. Every version ever
// stored for an active session can be read (the gateway diffs against old
// ones); an erased session has none (ErrErased).
func (s *Store) Profile(ctx context.Context, id wire.SessionID, version uint64) (profile.Profile, error) {
	var p profile.Profile
	err := s.readTx(ctx, func(c *sqlite.Conn) (err error) {
		if err := activeSession(c, id); err != nil {
			return err
		}
		p, err = s.readProfile(c, id, version)
		return err
	})
	if err != nil {
		return profile.Profile{}, fmt.Errorf("store: reading profile %d of session %s: %w", version, id, err)
	}
	return p, nil
}

// CurrentProfile returns the session's current profile version and profile.
func (s *Store) CurrentProfile(ctx context.Context, id wire.SessionID) (uint64, profile.Profile, error) {
	var (
		version uint64
		p       profile.Profile
	)
	// One read transaction, so the version and the text agree.
	err := s.readTx(ctx, func(c *sqlite.Conn) (err error) {
		if err := activeSession(c, id); err != nil {
			return err
		}
		version, err = currentVersion(c, id)
		if err != nil {
			return err
		}
		p, err = s.readProfile(c, id, version)
		return err
	})
	if err != nil {
		return 0, profile.Profile{}, fmt.Errorf("store: reading current profile of session %s: %w", id, err)
	}
	return version, p, nil
}

// putProfileVersion stores p as version base+1 and makes it current, if and
// only if the current version is still base (else ErrStale). Unexported on
// purpose: outside this package a profile version is written only by
// ApplyChange, for an approved request. Tests move profiles with it.
func (s *Store) putProfileVersion(ctx context.Context, id wire.SessionID, base uint64, p profile.Profile) (uint64, error) {
	canon, err := canonical(p)
	if err != nil {
		return 0, err
	}
	next := base + 1
	if _, err := i64("profile version", next); err != nil || next == 0 {
		return 0, fmt.Errorf("store: profile version %d cannot be followed", base)
	}
	err = s.write(ctx, func(c *sqlite.Conn) error {
		if err := activeSession(c, id); err != nil {
			return err
		}
		cur, err := currentVersion(c, id)
		if err != nil {
			return err
		}
		if cur != base {
			return fmt.Errorf("%w: current version is %d, change was made against %d", ErrStale, cur, base)
		}
		return putProfile(c, &s.key, id, base, next, canon, s.now().UnixNano())
	})
	if err != nil {
		return 0, fmt.Errorf("store: storing profile version %d of session %s: %w", next, id, err)
	}
	return next, nil
}

// putProfile inserts version next and moves the session to it from cur.
func putProfile(c *sqlite.Conn, key *[32]byte, id wire.SessionID, cur, next uint64, canon []byte, now int64) error {
	if err := insertProfile(c, key, id, next, canon, now); err != nil {
		return err
	}
	err := sqlitex.Execute(c, "UPDATE sessions SET profile_version = ? WHERE id = ? AND profile_version = ?", &sqlitex.ExecOptions{
		Args: []any{int64(next), id.String(), int64(cur)},
	})
	if err == nil && c.Changes() != 1 {
		err = fmt.Errorf("%w: the session moved from version %d", ErrStale, cur)
	}
	return err
}

func currentVersion(c *sqlite.Conn, id wire.SessionID) (uint64, error) {
	var v int64
	found := false
	err := sqlitex.Execute(c, "SELECT profile_version FROM sessions WHERE id = ?", &sqlitex.ExecOptions{
		Args:       []any{id.String()},
		ResultFunc: func(st *sqlite.Stmt) error { v = st.ColumnInt64(0); found = true; return nil },
	})
	if err != nil {
		return 0, err
	}
	if !found {
		return 0, ErrNotFound
	}
	return uint64(v), nil
}

func (s *Store) readProfile(c *sqlite.Conn, id wire.SessionID, version uint64) (profile.Profile, error) {
	v, err := i64("profile version", version)
	if err != nil {
		return profile.Profile{}, err
	}
	var sealed []byte
	found := false
	err = sqlitex.Execute(c, "SELECT canonical FROM profiles WHERE session_id = ? AND version = ?", &sqlitex.ExecOptions{
		Args: []any{id.String(), v},
		ResultFunc: func(st *sqlite.Stmt) error {
			if st.ColumnLen(0) > maxSealed {
				return ErrSealed
			}
			sealed = make([]byte, st.ColumnLen(0))
			st.ColumnBytes(0, sealed)
			found = true
			return nil
		},
	})
	if err != nil {
		return profile.Profile{}, err
	}
	if !found {
		return profile.Profile{}, ErrNotFound
	}
	canon, err := openColumn(&s.key, profilesTable, id, version, sealed)
	if err != nil {
		return profile.Profile{}, err
	}
	p, err := profile.Parse(canon)
	clear(canon)
	if err != nil {
		return profile.Profile{}, fmt.Errorf("stored profile does not parse: %w", err)
	}
	return p, nil
}

// ProfileVersionInfo is one stored version of a session's profile: when it
// was stored and, for a version made by an approved change, that change.
type ProfileVersionInfo struct {
	Version   uint64
	Created   time.Time
	Change    ChangeID // zero for the first version
	HasChange bool
}

// ProfileVersions lists the session's profile versions, oldest first. It
// reads no sealed text.
func (s *Store) ProfileVersions(ctx context.Context, id wire.SessionID) ([]ProfileVersionInfo, error) {
	var out []ProfileVersionInfo
	err := s.readTx(ctx, func(c *sqlite.Conn) error {
		if err := activeSession(c, id); err != nil {
			return err
		}
		return sqlitex.Execute(c, `SELECT p.version, p.created, (SELECT r.id FROM change_requests r
			WHERE r.session_id = p.session_id AND r.state = 'applied' AND r.applied_version = p.version LIMIT 1)
			FROM profiles p WHERE p.session_id = ? ORDER BY p.version`, &sqlitex.ExecOptions{
			Args: []any{id.String()},
			ResultFunc: func(st *sqlite.Stmt) error {
				v := ProfileVersionInfo{Version: uint64(st.ColumnInt64(0)), Created: time.Unix(0, st.ColumnInt64(1)).UTC()}
				if st.ColumnType(2) != sqlite.TypeNull {
					cid, err := ParseChangeID(st.ColumnText(2))
					if err != nil {
						return err
					}
					v.Change, v.HasChange = cid, true
				}
				out = append(out, v)
				return nil
			},
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: listing profile versions of session %s: %w", id, err)
	}
	return out, nil
}
