package supervisor

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/queue"
)

// BackupInboxes writes a consistent copy of each listed session's inbox to
// dst(id), while conversations go on. An open conversation's inbox is copied
// through its wall (between two appends); any other is copied from its file
// with the supervisor's lock held, so it cannot be opened, and so written,
// during the copy. Erased sessions are skipped.
func (s *Supervisor) BackupInboxes(ids []wire.SessionID, dst func(wire.SessionID) string) error {
	for _, id := range ids {
		if err := s.backupInbox(id, dst(id)); err != nil {
			return fmt.Errorf("supervisor: backing up the inbox of session %s: %w", id, err)
		}
	}
	return nil
}

func (s *Supervisor) backupInbox(id wire.SessionID, dst string) error {
	s.mu.Lock()
	if s.erased[id] {
		s.mu.Unlock()
		return nil
	}
	if c := s.running[id]; c != nil {
		s.mu.Unlock()
		err := c.wall.BackupInbox(dst)
		if err == nil || !errors.Is(err, queue.ErrInboxClosed) {
			return err
		}
		// The conversation closed meanwhile: copy the file instead.
		s.mu.Lock()
		if c := s.running[id]; c != nil {
			s.mu.Unlock()
			return c.wall.BackupInbox(dst)
		}
	}
	defer s.mu.Unlock()
	return queue.BackupInboxFile(filepath.Join(s.sessionDir(id), wire.InboxDir, wire.InboxFile), dst)
}
