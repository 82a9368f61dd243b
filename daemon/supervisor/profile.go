package supervisor

import (
	"context"
	"fmt"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/store"
)

// CursorProfileSent is the store cursor naming the last profile version
// written to a session's inbox.
const CursorProfileSent = "profile.sent"

// ChangeSink receives the change requests agents write to their outboxes.
// The session comes from where the row was found, never from the row.
type ChangeSink interface {
	SubmitAgentChange(ctx context.Context, session wire.SessionID, req wire.ChangeRequest) error
}

// syncProfile writes the session's current profile version to its inbox if
// the agent has not been sent it yet. The store is the record; this makes
// sure the agent catches up after a crash between an approval and its
// delivery, and hands a new session its first profile.
func (s *Supervisor) syncProfile(ctx context.Context, c *conv) error {
	c.profileMu.Lock()
	defer c.profileMu.Unlock()
	version, p, err := s.cfg.Store.CurrentProfile(ctx, c.id)
	if err != nil {
		return err
	}
	sent, err := s.cfg.Store.Cursor(ctx, c.id, CursorProfileSent)
	if err != nil {
		return err
	}
	if version <= sent {
		return nil
	}
	seq, err := c.wall.Send(ctx, wire.ProfileUpdate{Version: version, Canonical: string(p.Canonical())})
	if err != nil {
		return fmt.Errorf("supervisor: sending profile v%d: %w", version, err)
	}
	c.noteWork(seq)
	return s.cfg.Store.SetCursor(ctx, c.id, CursorProfileSent, version)
}

// ProfileApplied is the gateway's notice that a new profile version of
// session was approved and committed. The agent gets it as a sealed inbox
// row; when the change needs it (tools, model, limits, software) the
// sandbox is restarted so the new limits and binary take effect. The
// restart runs in the background: the gateway may call this from the
// delivery path of the session's own outbox.
func (s *Supervisor) ProfileApplied(ctx context.Context, session wire.SessionID, version uint64, canonical []byte, restart bool) error {
	sess, err := s.cfg.Store.GetSession(ctx, session)
	if err != nil {
		return err
	}
	if sess.State != store.StateActive {
		return nil
	}
	// The change is committed whatever happens here: neither a cancelled
	// request nor a failed notice may leave the old sandbox running with the
	// old tools, limits or binary.
	ctx = context.WithoutCancel(ctx)
	c, err := s.conversation(ctx, sess.Binding)
	if err != nil {
		return err
	}
	syncErr := s.syncProfile(ctx, c)
	if !restart {
		return syncErr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		c.mu.Lock()
		running := c.box != nil
		err := s.stopLocked(s.ctx, c, fmt.Sprintf("profile v%d applied", version))
		c.mu.Unlock()
		if err != nil {
			s.cfg.Log.Warn("stopping the sandbox for a new profile", "session", session.String(), "err", err)
		}
		if running {
			if err := s.ensureSandbox(s.ctx, c, false); err != nil {
				s.cfg.Log.Warn("restarting the sandbox with a new profile", "session", session.String(), "err", err)
			}
		}
	}()
	return syncErr
}
