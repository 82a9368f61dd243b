// Package agent is the agent's loop: wait for inbox rows under a lease, check
// them, handle them, write the results to the outbox, ring the doorbell. It
// runs inside the sandbox and trusts nothing but its session key.
//
// The handler is Brain (brain.go), which asks the model through a
// model.Provider and runs the compiled-in tools; Echo stays for the wall's
// stress tests. The loop around it — leases, progress, doorbells, resuming
// from the daemon's record — is the same for both.
package agent

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/ironclaw/ironclaw/agentd/coord"
	"github.com/ironclaw/ironclaw/agentd/inbox"
	"github.com/ironclaw/ironclaw/agentd/outbox"
	"github.com/ironclaw/ironclaw/agentd/queuedb"
	"github.com/ironclaw/ironclaw/agentd/wire"
)

// Handler turns inbox rows into outbox bodies.
type Handler func(ctx context.Context, rows []queuedb.Row) ([]wire.Body, error)

// Loop is one agent's main loop.
type Loop struct {
	Inbox  *inbox.Reader
	Outbox *outbox.Writer
	Coord  *coord.Client
	Handle Handler
	Log    *slog.Logger
	Batch  int           // rows per lease; 256 if zero
	Wait   time.Duration // how long one lease request waits for rows; 25 s if zero
	// Resume is where the daemon's record says to start (from the
	// handshake). The outbox is disposable: when it was lost, this keeps the
	// agent from answering old messages again or reusing outbox sequence
	// numbers; when it survived, its own progress is at least as far.
	Resume Resume
}

// Resume says where to start, from the daemon's record.
type Resume struct {
	Handled     uint64 // last inbox row recorded as handled
	OutboxTaken uint64 // last outbox row the daemon took
	// State is the first of the rows the daemon writes at every start: the
	// current profile, then the session's State. They are handed to the
	// handler first, before any row after Handled.
	State uint64
}

// Run loops until ctx ends or something fails. A failure ends the agent: the
// daemon restarts it, and it resumes from its last recorded progress.
func (l *Loop) Run(ctx context.Context) error {
	err := l.run(ctx)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

func (l *Loop) run(ctx context.Context) error {
	if l.Batch <= 0 {
		l.Batch = 256
	}
	if l.Wait <= 0 {
		l.Wait = 25 * time.Second
	}
	cursor, err := l.Outbox.Progress()
	if err != nil {
		return err
	}
	cursor = max(cursor, l.Resume.Handled)
	l.Outbox.Continue(l.Resume.OutboxTaken)
	if l.Resume.State > cursor {
		// The handler learns its memory, notes, schedules and history before
		// it answers anything; it meets the row again in order and skips it.
		rows, err := l.readStart(ctx, l.Resume.State)
		if err != nil {
			return err
		}
		if _, err := l.Handle(ctx, rows); err != nil {
			return err
		}
	}
	// Anything committed before a crash but not yet announced is announced
	// now, so the daemon never waits on a doorbell that was lost.
	if l.Outbox.Head() > 0 {
		if err := l.announce(ctx); err != nil {
			return err
		}
	}
	for ctx.Err() == nil {
		rows, err := l.read(ctx, cursor)
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			continue
		}
		out, err := l.Handle(ctx, rows)
		if err != nil {
			return err
		}
		cursor = rows[len(rows)-1].Header.Seq
		out = append(out, wire.Progress{Inbox: cursor})
		if _, err := l.Outbox.Append(out...); err != nil {
			return err
		}
		if err := l.announce(ctx); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// announce rings the daemon's doorbell for the outbox head and notes what
// the daemon says it has taken: the next commit deletes those rows (keeping
// the last Progress row), so the outbox holds only what the daemon has not
// taken, each doorbell copies only that, and a turn costs one commit.
func (l *Loop) announce(ctx context.Context) error {
	taken, err := l.Coord.OutboxCommitted(ctx, l.Outbox.Head())
	if err != nil {
		return err
	}
	l.Outbox.Taken(taken)
	return nil
}

// read takes a lease, reads the rows after cursor, and releases the lease.
// Rows read under a lease that expired are discarded and read again.
func (l *Loop) read(ctx context.Context, cursor uint64) ([]queuedb.Row, error) {
	for {
		g, err := l.Coord.Lease(ctx, cursor, l.Wait)
		if err != nil {
			return nil, err
		}
		if g.Lease == 0 {
			return nil, nil
		}
		rows, readErr := l.Inbox.Read(cursor, l.Batch)
		valid, err := l.Coord.Release(ctx, g.Lease)
		if err != nil {
			return nil, err
		}
		if !valid {
			l.Log.Warn("read lease expired before release; reading again")
			continue
		}
		if readErr != nil {
			// Read under a valid lease: the inbox really is bad. Stop.
			return nil, fmt.Errorf("agent: %w", readErr)
		}
		return rows, nil
	}
}

// readStart reads the start rows from seq (under a lease): up to and
// including the first State row, at most a few.
func (l *Loop) readStart(ctx context.Context, seq uint64) ([]queuedb.Row, error) {
	for {
		rows, err := l.read(ctx, seq-1)
		if err != nil {
			return nil, err
		}
		for i, r := range rows {
			if r.Header.Kind == wire.KindState || i == 3 {
				return rows[:i+1], nil
			}
		}
	}
}

// Echo answers every message with its own text: the minimal agent used until
// the model-backed handler exists, and by the wall's stress tests.
func Echo(_ context.Context, rows []queuedb.Row) ([]wire.Body, error) {
	var out []wire.Body
	for _, r := range rows {
		if m, ok := r.Body.(wire.Message); ok {
			text := m.Text
			if text == "" {
				text = "(empty)"
			}
			out = append(out, wire.Reply{Text: text, InReplyTo: r.Header.Seq})
		}
	}
	return out, nil
}
