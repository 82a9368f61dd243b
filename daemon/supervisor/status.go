package supervisor

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/sandbox"
)

// Status is what the supervisor knows about one open conversation's sandbox, for the
// console and for tests.
type Status struct {
	Session wire.SessionID
	// Running is true while a sandbox runs (or has exited and is being handled).
	Running     bool
	ContainerID string    // when Running
	Started     time.Time // when Running
	// RestartAt is when a scheduled restart happens (zero: none).
	RestartAt time.Time
	// Exits counts the exits on its own within the crash-loop window.
	Exits int
	// Stopped is why the session will not start until Resume ("" if it may).
	Stopped string
	// LastExit is how the last sandbox ended (nil before any has).
	LastExit *sandbox.ExitStatus
	// Stdout and Stderr are the tail of the running sandbox's output, or of the last one's.
	// Written by the agent: untrusted, sanitise before display, never parse as a command.
	Stdout, Stderr []byte
	// InboxHead and Progress are the highest inbox row written and the highest the agent
	// recorded as handled, as far as this supervisor has seen.
	InboxHead, Progress uint64
}

// Status returns the state of session id's conversation, if it is open.
func (s *Supervisor) Status(id wire.SessionID) (Status, bool) {
	s.mu.Lock()
	c := s.running[id]
	s.mu.Unlock()
	if c == nil {
		return Status{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := Status{
		Session:   id,
		RestartAt: c.restartAt,
		Exits:     len(c.exits),
		InboxHead: c.inboxHead.Load(),
		Progress:  c.progress.Load(),
		Stdout:    slices.Clone(c.lastOut),
		Stderr:    slices.Clone(c.lastErr),
	}
	if c.failed != nil {
		st.Stopped = c.failed.Error()
	}
	if c.lastExit != nil {
		e := *c.lastExit
		st.LastExit = &e
	}
	if c.box != nil {
		st.Running, st.ContainerID, st.Started = true, c.box.ID(), c.started
		st.Stdout, st.Stderr = c.box.Stdout(), c.box.Stderr()
	}
	return st, true
}

// Resume lets a session that was stopped for a crash loop start again (on its next message,
// or now if rows are unread). A session whose outbox was refused stays stopped: its outbox
// must be looked at first, and the wall keeps refusing it until the daemon restarts.
func (s *Supervisor) Resume(ctx context.Context, id wire.SessionID, operator string) error {
	s.mu.Lock()
	c := s.running[id]
	s.mu.Unlock()
	if c == nil {
		return fmt.Errorf("supervisor: session %s is not open", id)
	}
	if err := c.wall.Failed(); err != nil {
		return fmt.Errorf("supervisor: session %s: its outbox was refused (%v): inspect it before anything runs again", id, err)
	}
	c.mu.Lock()
	was := c.failed
	if was == nil {
		c.exits, c.restartAt, c.starts = nil, time.Time{}, nil
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	// Audited before anything changes: a resume that cannot be recorded does
	// not happen, and no sandbox can start in between.
	if err := s.audit(operator, "sandbox.resume", id.String(), "", "was: "+was.Error()); err != nil {
		return fmt.Errorf("supervisor: audit: %w", err)
	}
	c.mu.Lock()
	if c.failed != was {
		now := c.failed
		c.mu.Unlock()
		if now == nil {
			return nil // resumed meanwhile by another operator
		}
		return fmt.Errorf("supervisor: session %s failed again while resuming (%v): look at `ironclaw status` before resuming again", id, now)
	}
	c.failed, c.exits, c.restartAt, c.starts = nil, nil, time.Time{}, nil
	c.mu.Unlock()
	if c.unread() {
		return s.ensureSandbox(ctx, c, false)
	}
	return nil
}
