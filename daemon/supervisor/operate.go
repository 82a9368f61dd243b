package supervisor

import (
	"context"
	"errors"
	"fmt"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/queue"
	"github.com/ironclaw/ironclaw/daemon/sandbox"
	"github.com/ironclaw/ironclaw/daemon/store"
)

// Operator commands on one session. Each is audited before it acts, with the
// operator as the actor; if the audit write fails, nothing happens.

// CreateSession creates a session bound to binding (one that has none yet)
// without sending it anything.
func (s *Supervisor) CreateSession(ctx context.Context, binding, actor string) (wire.SessionID, error) {
	if _, err := s.cfg.Store.SessionByBinding(ctx, binding); err == nil {
		return wire.SessionID{}, fmt.Errorf("supervisor: %q already has a session: %w", binding, store.ErrBindingTaken)
	} else if !errors.Is(err, store.ErrNotFound) {
		return wire.SessionID{}, err
	}
	if err := s.audit(actor, "session.create", binding, "", "requested"); err != nil {
		return wire.SessionID{}, fmt.Errorf("supervisor: audit: %w", err)
	}
	c, err := s.conversation(ctx, binding)
	if err != nil {
		return wire.SessionID{}, err
	}
	return c.id, nil
}

// open returns the open conversation of session id, opening it if needed.
func (s *Supervisor) open(ctx context.Context, id wire.SessionID) (*conv, error) {
	sess, err := s.cfg.Store.GetSession(ctx, id)
	if err != nil {
		return nil, err
	}
	if sess.State != store.StateActive {
		return nil, fmt.Errorf("supervisor: session %s: %w", id, store.ErrErased)
	}
	return s.conversation(ctx, sess.Binding)
}

// Stop stops a session's sandbox now. The next message starts it again.
func (s *Supervisor) Stop(ctx context.Context, id wire.SessionID, actor string) error {
	c, err := s.open(ctx, id)
	if err != nil {
		return err
	}
	if err := s.audit(actor, "sandbox.stop", id.String(), "", "requested"); err != nil {
		return fmt.Errorf("supervisor: audit: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return s.stopLocked(ctx, c, "stopped by "+actor)
}

// Restart stops a session's sandbox and starts a fresh one, which resumes
// from the daemon's record.
func (s *Supervisor) Restart(ctx context.Context, id wire.SessionID, actor string) error {
	if err := s.Stop(ctx, id, actor); err != nil {
		return err
	}
	c, err := s.open(ctx, id)
	if err != nil {
		return err
	}
	return s.ensureSandbox(ctx, c, false)
}

// ResetOutbox replaces a session's outbox (its filesystem image and
// database) with a fresh one: the way out for an outbox the daemon refused
// as broken or hostile. Nothing is lost — memory, notes, schedules and
// history are the daemon's record — and the session may run again (on its
// next message, or now if messages wait).
func (s *Supervisor) ResetOutbox(ctx context.Context, id wire.SessionID, actor string) error {
	c, err := s.open(ctx, id)
	if err != nil {
		return err
	}
	if err := s.audit(actor, "outbox.reset", id.String(), "", "requested"); err != nil {
		return fmt.Errorf("supervisor: audit: %w", err)
	}
	// Take the conversation out of service: a fresh wall is opened for it
	// below, without the old one's refusal.
	s.mu.Lock()
	if s.running[id] == c {
		delete(s.running, id)
	}
	s.mu.Unlock()
	c.mu.Lock()
	c.failed = errors.New("outbox being reset") // no scheduled restart may run meanwhile
	err = s.stopLocked(ctx, c, "outbox reset by "+actor)
	c.mu.Unlock()
	err = errors.Join(err, c.wall.Close())
	clear(c.key[:])
	if err == nil {
		err = sandbox.ReleaseOutbox(s.outboxDir(id))
	}
	if err == nil {
		err = queue.ResetOutbox(s.sessionDir(id), queue.Owner{UID: AgentUID, GID: AgentUID})
	}
	result := "reset"
	if err != nil {
		result = "failed: " + err.Error()
	}
	if aerr := s.audit(actor, "outbox.reset", id.String(), "", result); aerr != nil {
		err = errors.Join(err, fmt.Errorf("supervisor: audit: %w", aerr))
	}
	if err != nil {
		return err
	}
	fresh, err := s.open(ctx, id)
	if err != nil {
		return err
	}
	if fresh.unread() {
		return s.ensureSandbox(ctx, fresh, false)
	}
	return nil
}

// Records returns what a session's agent keeps (memory, notes, schedules):
// sealed content, shown only on this explicit request, which is audited.
func (s *Supervisor) Records(ctx context.Context, id wire.SessionID, actor string) (store.Records, error) {
	if err := s.audit(actor, "session.show", id.String(), "", "memory, notes and schedules"); err != nil {
		return store.Records{}, fmt.Errorf("supervisor: audit: %w", err)
	}
	key, err := s.SessionKey(ctx, id)
	if err != nil {
		return store.Records{}, err
	}
	defer clear(key[:])
	return s.cfg.Store.Records(ctx, id, key)
}

// Transcript returns session id's conversation as the daemon keeps it to
// rebuild the model's context (the newest store.KeptHistory turns, oldest
// first), for actor. The read is audited before the key is even unwrapped:
// if the audit fails, nothing is read.
func (s *Supervisor) Transcript(ctx context.Context, id wire.SessionID, actor string) ([]wire.Turn, error) {
	if err := s.audit(actor, "session.show", id.String(), "", "transcript"); err != nil {
		return nil, fmt.Errorf("supervisor: audit: %w", err)
	}
	key, err := s.SessionKey(ctx, id)
	if err != nil {
		return nil, err
	}
	defer clear(key[:])
	return s.cfg.Store.History(ctx, id, key, store.KeptHistory)
}
