package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/sandbox"
)

// errErased marks a conversation whose session was erased while open.
var errErased = errors.New("supervisor: the session was erased")

// Erase crypto-erases a session: it stops its sandbox, closes its wall,
// deletes its wrapped key (after which no copy of its queues can be opened,
// by anyone), and removes its files. The request is audited first; if the
// audit write fails nothing is erased. The session id is never reused.
func (s *Supervisor) Erase(ctx context.Context, id wire.SessionID, actor string) error {
	if err := s.audit(actor, "session.erase", id.String(), "", "requested"); err != nil {
		return fmt.Errorf("supervisor: audit: %w", err)
	}
	// From here on no message can reopen the session, even one that read it
	// as active from the store a moment ago.
	s.mu.Lock()
	s.erased[id] = true
	c := s.running[id]
	delete(s.running, id)
	delete(s.budgets, id) // never reopened: its model budget goes with it
	s.mu.Unlock()
	var errs []error
	if c != nil {
		c.mu.Lock()
		c.failed = errErased // no scheduled restart may bring it back
		errs = append(errs, s.stopLocked(ctx, c, "erase"))
		c.mu.Unlock()
		errs = append(errs, c.wall.Close())
		clear(c.key[:])
	}
	if err := s.cfg.Store.EraseSession(ctx, id); err != nil {
		return errors.Join(append(errs, err)...)
	}
	// The key is gone: what remains on disk is undecryptable. Remove it too.
	errs = append(errs, sandbox.ReleaseOutbox(s.outboxDir(id)))
	errs = append(errs, os.RemoveAll(s.sessionDir(id)))
	result := "erased"
	if err := errors.Join(errs...); err != nil {
		result = "erased; cleanup: " + err.Error()
	}
	if err := s.audit(actor, "session.erase", id.String(), "", result); err != nil {
		errs = append(errs, fmt.Errorf("supervisor: audit: %w", err))
	}
	return errors.Join(errs...)
}
