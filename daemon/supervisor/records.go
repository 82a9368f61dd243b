package supervisor

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/agentd/tools"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/queue"
	"github.com/ironclaw/ironclaw/daemon/scheduler"
	"github.com/ironclaw/ironclaw/daemon/store"
)

// The sandbox is disposable; the daemon is the record. What the agent keeps
// (memory, notes, schedules) arrives as outbox rows and is kept sealed in the
// store under the session's key; the history the model sees is what the
// daemon wrote (user messages, schedule firings) and what it delivered
// (echoed back into the inbox as Delivered rows). At every sandbox start the
// daemon writes a State row with all of it, and the handshake tells the
// agent where to resume, so a lost outbox loses nothing.

// applyRecords applies the record operations among rows, in one store
// transaction, before the outbox cursor moves past them: each is
// idempotent, so a failure leaves the rows to be offered again and nothing
// is lost. Only the last operation on each name counts (a flood of writes to
// one key costs one), and puts past a session's cap are refused and audited,
// not retried.
//
// The agent's own check of its tools is not trusted: an operation the
// session's current approved profile does not permit (the tool that writes
// it granted, and its permission on) is dropped and audited, so a
// compromised agent cannot keep memory, notes or schedules the owner never
// approved.
func (s *Supervisor) applyRecords(ctx context.Context, c *conv, rows []queue.Row) error {
	type name struct{ kind, name string }
	last := map[name]int{}
	var ops []store.RecordOp
	added := false
	var p *profile.Profile
	for _, r := range rows {
		op, ok := store.OpFromBody(r.Body)
		if !ok {
			continue
		}
		if p == nil {
			_, cur, err := s.cfg.Store.CurrentProfile(ctx, c.id)
			if err != nil {
				return err
			}
			p = &cur
		}
		if tool := opTool(r.Body); !tools.Granted(*p, tool) {
			// A fixed class: the tool's name, never what the agent wrote.
			if err := s.cfg.Audit.Refuse("agent:"+c.id.String(), "records.refused", c.id.String(), "not permitted by the profile: "+tool); err != nil {
				return err
			}
			continue
		}
		if i, seen := last[name{op.Kind, op.Name}]; seen {
			ops[i] = store.RecordOp{} // superseded
		}
		last[name{op.Kind, op.Name}] = len(ops)
		ops = append(ops, op)
		added = added || op.Kind == store.RecordSchedule && op.Value != nil
	}
	kept := ops[:0]
	for _, op := range ops {
		if op.Kind != "" {
			kept = append(kept, op)
		}
	}
	if len(kept) == 0 {
		return nil
	}
	refused, err := s.cfg.Store.UpdateRecords(ctx, c.id, c.key, kept)
	if err != nil {
		return err
	}
	if refused > 0 {
		if err := s.cfg.Audit.Refuse("agent:"+c.id.String(), "records.refused", c.id.String(), "records at the session's cap"); err != nil {
			return err
		}
	}
	if added && s.cfg.Schedules != nil {
		s.cfg.Schedules.Changed()
	}
	return nil
}

// Refusal classes of an outbox whose replies the daemon will not take
// (docs/agent.md, "Caps"): fixed words for the audit log, like queue's.
const (
	RefusedBacklog    = "too many undelivered replies"
	RefusedInboxAhead = "too far ahead of its recorded progress"
)

// MaxEchoesAhead caps the Delivered echoes in the inbox past the progress
// the agent recorded (store cursor inbox.consumed). Every reply is echoed
// into the inbox, and compaction only removes rows the agent reported
// consumed: an agent that replies and never reports would grow the inbox
// without bound. Only echoes count, never the user's own messages, so a
// flood of messages cannot fail an honest agent; and an honest agent
// reports its progress in the same outbox transaction as its replies.
const MaxEchoesAhead = 8192

// checkBacklog refuses the outbox (the session fails alone, as for any
// hostile outbox) if echoing the replies among rows would leave more than
// MaxEchoesAhead echoes past the agent's recorded progress. The undelivered
// replies' own cap is enforced where they are taken (store.TakeReplies,
// ErrBacklog).
func (s *Supervisor) checkBacklog(ctx context.Context, c *conv, rows []queue.Row) error {
	replies := 0
	head := c.inboxHead.Load()
	var reported uint64
	for _, r := range rows {
		switch b := r.Body.(type) {
		case wire.Reply:
			replies++
		case wire.Progress:
			reported = max(reported, min(b.Inbox, head))
		}
	}
	if replies == 0 {
		return nil
	}
	consumed, err := s.cfg.Store.Cursor(ctx, c.id, store.CursorInboxConsumed)
	if err != nil {
		return err
	}
	if !c.echoesLoaded {
		// Once per conversation: the echoes an earlier daemon run wrote.
		var echoes []uint64
		err := c.wall.EachInboxRow(consumed, func(r queue.Row) bool {
			if _, ok := r.Body.(wire.Delivered); ok {
				echoes = append(echoes, r.Header.Seq)
			}
			return true
		})
		if err != nil {
			return fmt.Errorf("supervisor: counting the echoes of session %s: %w", c.id, err)
		}
		c.echoes, c.echoesLoaded = echoes, true
	}
	consumed = max(consumed, reported)
	i := 0
	for i < len(c.echoes) && c.echoes[i] <= consumed {
		i++
	}
	c.echoes = c.echoes[i:]
	if len(c.echoes)+replies <= MaxEchoesAhead {
		return nil
	}
	return &queue.HostileError{Class: RefusedInboxAhead,
		Err: fmt.Errorf("%d echoes past the recorded progress %d, and %d more replies (at most %d)", len(c.echoes), consumed, replies, MaxEchoesAhead)}
}

// opTool names the tool whose grant (and permission) a record operation
// row needs: the tool that writes it.
func opTool(b wire.Body) string {
	switch op := b.(type) {
	case wire.MemoryOp:
		if op.Op == wire.OpRemove {
			return "forget"
		}
		return "remember"
	case wire.NoteOp:
		return "note_write"
	case wire.ScheduleOp:
		return "schedule"
	}
	return ""
}

// echoReplies writes the replies among rows back into the inbox as
// Delivered rows and records them as history, so the next turns' context is
// rebuilt from what the daemon accepted, never from the agent's own record.
// The echoes do not wake the agent (Wall.Note): it reads them with its next
// message or firing, just before it.
func (s *Supervisor) echoReplies(ctx context.Context, c *conv, rows []queue.Row) error {
	var echoes []wire.Body
	for _, r := range rows {
		if b, ok := r.Body.(wire.Reply); ok {
			echoes = append(echoes, wire.Delivered{Text: b.Text, InReplyTo: b.InReplyTo})
		}
	}
	if len(echoes) == 0 {
		return nil
	}
	last, err := c.wall.Note(ctx, echoes...)
	if err != nil {
		return fmt.Errorf("supervisor: echoing replies: %w", err)
	}
	c.noteInbox(last)
	first := last - uint64(len(echoes)) + 1
	if c.echoesLoaded {
		for seq := first; seq <= last; seq++ {
			c.echoes = append(c.echoes, seq)
		}
	}
	turns := make([]wire.Turn, len(echoes))
	for i, e := range echoes {
		turns[i] = wire.Turn{Seq: first + uint64(i), Role: wire.TurnAssistant, Text: e.(wire.Delivered).Text}
	}
	return s.cfg.Store.AppendHistory(ctx, c.id, c.key, turns...)
}

// refusedTools audits the tool calls the agent reports it refused. The
// reason is a fixed class: the tool's name only if it is compiled in.
func (s *Supervisor) refusedTools(c *conv, rows []queue.Row) {
	for _, r := range rows {
		b, ok := r.Body.(wire.ToolRefused)
		if !ok {
			continue
		}
		reason := "tool not compiled in"
		if slices.Contains(wire.Tools(), b.Tool) {
			reason = "tool not granted: " + b.Tool
		}
		if err := s.cfg.Audit.Refuse("agent:"+c.id.String(), "tool.refused", c.id.String(), reason); err != nil {
			s.cfg.Log.Error("audit write failed", "session", c.id.String(), "err", err)
		}
	}
}

// MaxUnreadForFiring is how many inbox rows past the agent's recorded
// progress a session may have and still get schedule firings (Fire).
const MaxUnreadForFiring = MaxEchoesAhead

// MaxStartsAhead caps the State rows in the inbox past the progress the
// agent recorded. Every start writes one (up to ~900 KiB), and compaction
// only removes rows the agent reported consumed: an agent that never
// reports and exits (paced under the crash-loop limit) would grow the
// inbox by a State row per restart, without bound. An honest agent reports
// its progress past the start rows as soon as it has read them.
const MaxStartsAhead = 64

// errStartsAhead: the session is stopped (resume).
var errStartsAhead = errors.New("too many starts without recorded progress")

// resume writes the session's current profile and State row into its inbox and returns the
// handshake that tells a starting agent where to resume. Call it after the
// outbox was collected (so every operation the agent wrote is applied).
func (s *Supervisor) resume(ctx context.Context, c *conv) ([]byte, error) {
	recs, err := s.cfg.Store.Records(ctx, c.id, c.key)
	if err != nil {
		return nil, err
	}
	hist, err := s.cfg.Store.History(ctx, c.id, c.key, wire.MaxHistoryTurns)
	if err != nil {
		return nil, err
	}
	handled, err := s.cfg.Store.Cursor(ctx, c.id, store.CursorInboxConsumed)
	if err != nil {
		return nil, err
	}
	i := 0
	for i < len(c.starts) && c.starts[i] <= handled {
		i++
	}
	c.starts = c.starts[i:]
	if len(c.starts) >= MaxStartsAhead {
		return nil, fmt.Errorf("supervisor: session %s: %w (%d State rows past %d)", c.id, errStartsAhead, len(c.starts), handled)
	}
	version, p, err := s.cfg.Store.CurrentProfile(ctx, c.id)
	if err != nil {
		return nil, err
	}
	_, st, err := wire.EncodeState(wire.State{Handled: handled, Memory: recs.Memory, Notes: recs.Notes, Schedules: recs.Schedules, History: hist})
	if err != nil {
		return nil, err
	}
	// The current profile goes first: the agent may resume after the row
	// that first carried it.
	seq, err := c.wall.Send(ctx, wire.ProfileUpdate{Version: version, Canonical: string(p.Canonical())}, st)
	if err != nil {
		return nil, fmt.Errorf("supervisor: writing the start rows: %w", err)
	}
	c.noteInbox(seq)
	c.starts = append(c.starts, seq)
	hs := wire.Handshake{Session: c.id, Key: *c.key, Handled: handled, OutboxTaken: c.wall.Taken(), State: seq - 1}
	return hs.Marshal(), nil
}

// recordTurn records a message (wire.TurnUser) or schedule firing
// (wire.TurnFired) the daemon wrote at inbox row seq in the history. A
// firing keeps its own role: its text is the agent's, and recorded as the
// user's it would come back after a restart as words the user never said.
func (s *Supervisor) recordTurn(ctx context.Context, c *conv, seq uint64, role, text string) error {
	return s.cfg.Store.AppendHistory(ctx, c.id, c.key, wire.Turn{Seq: seq, Role: role, Text: text})
}

// Fire writes a schedule firing into a session's inbox (audited first) and
// makes sure its sandbox runs: a stopped one is woken. written says the
// firing reached the inbox, even if the sandbox could not start (it will
// handle it when it next runs).
func (s *Supervisor) Fire(ctx context.Context, id wire.SessionID, f wire.Fired) (written bool, err error) {
	sess, err := s.cfg.Store.GetSession(ctx, id)
	if err != nil {
		return false, err
	}
	if sess.State != store.StateActive {
		return false, store.ErrErased
	}
	// The profile decides, not the agent that wrote the schedule: one set
	// while permitted (or forged) does not fire once the owner has not
	// approved schedules. Audited, then skipped for good (not retried).
	if _, p, err := s.cfg.Store.CurrentProfile(ctx, id); err != nil {
		return false, err
	} else if !tools.Granted(p, "schedule") {
		if err := s.cfg.Audit.Refuse("daemon", "schedule.skipped", id.String(), "not permitted by the profile: schedule"); err != nil {
			return false, fmt.Errorf("supervisor: audit: %w", err)
		}
		return false, fmt.Errorf("supervisor: session %s: %w", id, scheduler.ErrNotPermitted)
	}
	c, err := s.conversation(ctx, sess.Binding)
	if err != nil {
		return false, err
	}
	// Firings are the agent's own doing (it set the schedules), and only
	// rows it reports handled are compacted: past MaxUnreadForFiring unread
	// rows a firing is skipped for good, audited, so an agent that never
	// reads cannot grow its inbox by firings without bound.
	consumed, err := s.cfg.Store.Cursor(ctx, id, store.CursorInboxConsumed)
	if err != nil {
		return false, err
	}
	if head := c.inboxHead.Load(); head > consumed && head-consumed > MaxUnreadForFiring {
		if err := s.cfg.Audit.Refuse("daemon", "schedule.skipped", id.String(), "the agent is too far behind its inbox"); err != nil {
			return false, fmt.Errorf("supervisor: audit: %w", err)
		}
		return false, fmt.Errorf("supervisor: session %s: %d unread rows: %w", id, head-consumed, scheduler.ErrBehind)
	}
	result := "on time"
	if f.Late {
		result = "late: the daemon was not running at its time"
	}
	if err := s.audit("daemon", "schedule.fire", id.String(), "", result); err != nil {
		return false, fmt.Errorf("supervisor: audit: %w", err)
	}
	seq, err := c.wall.Send(ctx, f)
	if err != nil {
		return false, err
	}
	c.noteWork(seq)
	if err := s.recordTurn(ctx, c, seq, wire.TurnFired, f.Text); err != nil {
		s.cfg.Log.Error("recording a schedule firing in the history", "session", id.String(), "err", err)
	}
	return true, s.ensureSandbox(ctx, c, false)
}

// SessionKey returns a session's key for the scheduler to unseal its
// schedules (the caller clears it).
func (s *Supervisor) SessionKey(ctx context.Context, id wire.SessionID) (*wire.Key, error) {
	sess, err := s.cfg.Store.GetSession(ctx, id)
	if err != nil {
		return nil, err
	}
	if sess.State != store.StateActive {
		return nil, store.ErrErased
	}
	return s.cfg.Master.Unwrap(sess.ID, sess.WrappedKey)
}

// ScheduleWaker is told when an agent adds a schedule, so the scheduler
// recomputes its next wake-up.
type ScheduleWaker interface{ Changed() }

// WakeUnread starts the sandbox of every active session whose inbox holds
// rows its agent has not recorded as handled: messages written just before
// a daemon crash (or while no sandbox could start) are answered after a
// restart without waiting for the next message. Failures are logged per
// session; the rest still start.
func (s *Supervisor) WakeUnread(ctx context.Context) error {
	sessions, err := s.cfg.Store.ListSessions(ctx)
	if err != nil {
		return err
	}
	for _, sess := range sessions {
		if sess.State != store.StateActive {
			continue
		}
		c, err := s.conversation(ctx, sess.Binding)
		if err != nil {
			s.cfg.Log.Warn("opening a session at start", "session", sess.ID.String(), "err", err)
			continue
		}
		if !c.unread() || !s.awaitsAnswer(c) {
			continue
		}
		if err := s.ensureSandbox(ctx, c, false); err != nil {
			s.cfg.Log.Warn("starting a session with unread messages", "session", sess.ID.String(), "err", err)
		}
	}
	return nil
}

// awaitsAnswer reports whether the rows the agent has not handled include a
// message or a schedule firing (echoes and start rows alone wait for the
// next start).
func (s *Supervisor) awaitsAnswer(c *conv) bool {
	found := false
	err := c.wall.EachInboxRow(c.progress.Load(), func(r queue.Row) bool {
		switch r.Body.(type) {
		case wire.Message, wire.Fired:
			found = true
		}
		return !found
	})
	return found || err != nil // on an error, let the agent find out
}
