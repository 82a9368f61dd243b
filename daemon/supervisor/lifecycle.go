package supervisor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ironclaw/ironclaw/daemon/queue"
	"github.com/ironclaw/ironclaw/daemon/sandbox"
)

// ErrStopped wraps the reason a session's sandbox will not start until Resume.
var ErrStopped = errors.New("supervisor: session stopped")

// ensureSandbox starts the session's sandbox unless it runs, is scheduled to restart
// (restart is true only for the scheduled restart itself), or the session is stopped.
func (s *Supervisor) ensureSandbox(ctx context.Context, c *conv, restart bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failed != nil {
		return fmt.Errorf("%w: %s: %v; an operator must look at it and resume it", ErrStopped, c.id, c.failed)
	}
	if c.box != nil {
		// Running, or exited and about to be handled by its watcher (which restarts it
		// if rows are unread, as they now are).
		return nil
	}
	if !restart && !c.restartAt.IsZero() {
		return nil // the scheduled restart will pick the new rows up
	}
	c.restartAt = time.Time{}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("supervisor: shutting down")
	}
	if s.boxes >= s.cfg.MaxRunning {
		n := s.boxes
		s.mu.Unlock()
		return fmt.Errorf("supervisor: %d sandboxes already run, the limit (limits.max_running_sandboxes): session %s waits until one stops or the limit is raised", n, c.id)
	}
	s.boxes++
	s.mu.Unlock()
	started := false
	defer func() {
		if !started {
			s.mu.Lock()
			s.boxes--
			s.mu.Unlock()
		}
	}()

	_, p, err := s.cfg.Store.CurrentProfile(ctx, c.id)
	if err != nil {
		return err
	}
	// The handshake is made in startPlan, once the outbox is collected.
	plan, err := s.SandboxPlan(c.id, p, nil)
	if err != nil {
		return err
	}
	// Audit before acting: the start is recorded ("sandbox.starting") before
	// runsc is called, and no sandbox starts if it cannot be; the outcome is
	// "sandbox.start".
	result := "started"
	if restart {
		result = fmt.Sprintf("restarted after %d exit(s) within %v", len(c.exits), s.cfg.CrashLoopWindow)
	}
	if aerr := s.audit("daemon", "sandbox.starting", c.id.String(), "", strings.Replace(result, "started", "starting", 1)); aerr != nil {
		return fmt.Errorf("supervisor: audit: %w", aerr)
	}
	box, err := s.startPlan(ctx, c, plan)
	if err != nil {
		result = "failed: " + auditReason(err)
	}
	if aerr := s.audit("daemon", "sandbox.start", c.id.String(), "", result); aerr != nil {
		if box != nil {
			s.teardown(context.WithoutCancel(ctx), c, box)
		}
		return fmt.Errorf("supervisor: audit: %w", aerr)
	}
	if errors.Is(err, errStartsAhead) {
		s.failLocked(c, err, "sandbox.failed")
	}
	if err != nil {
		return err
	}
	c.box, c.started, started = box, time.Now(), true
	c.touch()
	s.wg.Add(1)
	go s.watch(c, box)
	return nil
}

// startPlan mounts the outbox filesystem, collects what the agent left there and starts the
// sandbox; on failure it leaves nothing mounted.
func (s *Supervisor) startPlan(ctx context.Context, c *conv, plan Plan) (box *sandbox.Sandbox, err error) {
	if err := s.resetAfterHostRestart(c); err != nil {
		return nil, err
	}
	if err := sandbox.PrepareOutbox(plan.OutboxDir, plan.OutboxMiB, plan.OutboxInodes); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if rerr := sandbox.ReleaseOutbox(plan.OutboxDir); rerr != nil {
				s.cfg.Log.Error("releasing the outbox after a failed start", "session", c.id.String(), "err", rerr)
			}
		}
	}()
	// Before the agent runs it cannot be writing: collect anything left (only now, with the
	// outbox filesystem mounted, is outbox.db where the reader looks).
	if _, err := c.wall.Collect(ctx); err != nil && !errors.Is(err, queue.ErrHotJournal) {
		return nil, err
	}
	// Everything the agent wrote is applied: hand it the record.
	hs, err := s.resume(ctx, c)
	if err != nil {
		return nil, err
	}
	defer clear(hs)
	// From here the agent may be writing its outbox (hostboot.go).
	if err := s.markOutboxBoot(c); err != nil {
		return nil, err
	}
	plan.Spec.Stdin = hs
	return s.cfg.Runsc.Start(ctx, plan.Spec)
}

// watch owns one running sandbox: it reacts to its exit and stops it when idle. It returns
// when the sandbox is no longer c's, or when the supervisor closes (Close stops it then).
func (s *Supervisor) watch(c *conv, box *sandbox.Sandbox) {
	defer s.wg.Done()
	t := time.NewTimer(s.cfg.IdleTimeout)
	defer t.Stop()
	for {
		select {
		case <-box.Done():
			s.exited(c, box)
			return
		case <-t.C:
			next, done := s.idleCheck(c, box)
			if done {
				return
			}
			t.Reset(next)
		case <-s.ctx.Done():
			return
		}
	}
}

// idleCheck stops box if the session has been idle for IdleTimeout with nothing unread;
// otherwise it returns how long to wait before checking again.
func (s *Supervisor) idleCheck(c *conv, box *sandbox.Sandbox) (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.box != box {
		return 0, true
	}
	idle := time.Since(time.Unix(0, c.lastActive.Load()))
	if left := s.cfg.IdleTimeout - idle; left > 0 {
		return left, false
	}
	// Activity is a message in or progress recorded, never mere outbox rows:
	// an agent cannot keep its sandbox (and a running slot) by chattering.
	// One that handles nothing for a whole IdleTimeout with rows unread is
	// stuck, not busy; the next message starts it afresh.
	why := "idle"
	if c.unread() {
		why = "no progress with rows unread for " + s.cfg.IdleTimeout.String()
	}
	if err := s.stopLocked(s.ctx, c, why); err != nil {
		s.cfg.Log.Error("stopping an idle sandbox", "session", c.id.String(), "err", err)
	}
	return 0, true
}

// stopLocked stops c's sandbox (if any) on request, collects the outbox, releases its
// filesystem and audits why. c.mu is held.
func (s *Supervisor) stopLocked(ctx context.Context, c *conv, why string) error {
	box := c.box
	if box == nil {
		return nil
	}
	err := s.teardown(ctx, c, box)
	st, _ := box.Wait()
	c.keepLast(box, st)
	if aerr := s.audit("daemon", "sandbox.stop", c.id.String(), "", why+"; "+st.String()); aerr != nil {
		err = errors.Join(err, fmt.Errorf("supervisor: audit: %w", aerr))
	}
	return err
}

// teardown stops box, collects what its agent committed, unmounts the outbox filesystem and
// forgets the box. c.mu is held (or c does not own box yet).
func (s *Supervisor) teardown(ctx context.Context, c *conv, box *sandbox.Sandbox) error {
	err := box.Stop(ctx)
	if c.box == box {
		c.box = nil
		s.mu.Lock()
		s.boxes--
		s.mu.Unlock()
	}
	// The agent is gone: nothing writes the outbox now. A hostile one fails the session.
	if _, cerr := c.wall.Collect(context.WithoutCancel(ctx)); cerr != nil && !errors.Is(cerr, queue.ErrHotJournal) {
		s.cfg.Log.Warn("collecting the outbox after stop", "session", c.id.String(), "err", cerr)
	}
	if rerr := sandbox.ReleaseOutbox(s.outboxDir(c.id)); rerr != nil {
		err = errors.Join(err, rerr)
	} else if cerr := s.clearOutboxBoot(c); cerr != nil {
		// A mark left behind costs, after a host restart, only a reset
		// of an outbox that was intact.
		s.cfg.Log.Warn("clearing the sandbox's start mark", "session", c.id.String(), "err", cerr)
	}
	return err
}

func (c *conv) keepLast(box *sandbox.Sandbox, st sandbox.ExitStatus) {
	c.lastExit = &st
	c.lastOut, c.lastErr = box.Stdout(), box.Stderr()
}

// exited handles a sandbox that ended without being asked to: it is a crash (an agent only
// ends on its own when something failed). Restart with backoff while rows are unread; stop
// the session on a crash loop or a refused outbox.
func (s *Supervisor) exited(c *conv, box *sandbox.Sandbox) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.box != box {
		return // stopped on request; stopLocked did the bookkeeping
	}
	st, werr := box.Wait()
	c.keepLast(box, st)
	if err := s.teardown(s.ctx, c, box); err != nil {
		s.cfg.Log.Error("cleaning up after a sandbox exit", "session", c.id.String(), "err", err)
	}
	status := st.String()
	if werr != nil {
		status += " (" + werr.Error() + ")"
	}
	s.cfg.Log.Warn("sandbox exited", "session", c.id.String(), "status", status,
		"stderr", string(tail(c.lastErr, 512)))
	now := time.Now()
	kept := c.exits[:0]
	for _, t := range c.exits {
		if now.Sub(t) < s.cfg.CrashLoopWindow {
			kept = append(kept, t)
		}
	}
	c.exits = append(kept, now)
	if err := s.audit("daemon", "sandbox.exit", c.id.String(), "", fmt.Sprintf("%s; exit %d within %v", status, len(c.exits), s.cfg.CrashLoopWindow)); err != nil {
		s.cfg.Log.Error("audit write failed", "session", c.id.String(), "err", err)
	}
	if ferr := c.wall.Failed(); ferr != nil {
		s.failLocked(c, fmt.Errorf("its outbox was refused: %w", ferr), "sandbox.failed")
		return
	}
	if len(c.exits) >= s.cfg.CrashLoopCount {
		s.failLocked(c, fmt.Errorf("crash loop: %d exits within %v, the last with %s", len(c.exits), s.cfg.CrashLoopWindow, status), "sandbox.crashloop")
		return
	}
	if !c.unread() || s.ctx.Err() != nil {
		return // started again on demand by the next message
	}
	delay := s.backoff(len(c.exits))
	c.restartAt = now.Add(delay)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-s.ctx.Done():
			return
		}
		if err := s.ensureSandbox(s.ctx, c, true); err != nil {
			s.cfg.Log.Error("restarting a sandbox", "session", c.id.String(), "err", err)
		}
	}()
}

// backoff is BackoffMin doubled for each earlier exit in the window, at most BackoffMax.
func (s *Supervisor) backoff(exits int) time.Duration {
	d := s.cfg.BackoffMin
	for i := 1; i < exits && d < s.cfg.BackoffMax; i++ {
		d *= 2
	}
	return min(d, s.cfg.BackoffMax)
}

// failLocked stops the session for good (until Resume) and audits why. c.mu is held.
func (s *Supervisor) failLocked(c *conv, why error, action string) {
	if c.failed != nil {
		return
	}
	c.failed = why
	c.restartAt = time.Time{}
	result := auditReason(why)
	if err := s.stopLocked(s.ctx, c, "session stopped: "+result); err != nil {
		s.cfg.Log.Error("stopping a failed session", "session", c.id.String(), "err", err)
	}
	if err := s.audit("daemon", action, c.id.String(), "stopped", result); err != nil {
		s.cfg.Log.Error("audit write failed", "session", c.id.String(), "err", err)
	}
	s.cfg.Log.Error("session stopped", "session", c.id.String(), "reason", why.Error())
}

// goFailHostile stops c's sandbox once its wall has refused the outbox. It runs apart: the
// wall reports the refusal with its own lock held, possibly under c.mu.
func (s *Supervisor) goFailHostile(c *conv) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ferr := c.wall.Failed()
		if ferr == nil {
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		s.failLocked(c, fmt.Errorf("its outbox was refused: %w", ferr), "sandbox.failed")
	}()
}

// auditReason is what the audit log may say about err: for a refused outbox
// only its fixed class, never the detail (which can quote what the agent
// wrote); other errors are the daemon's own words.
func auditReason(err error) string {
	if class := queue.HostileClass(err); class != "" {
		return "outbox refused: " + class
	}
	return err.Error()
}
