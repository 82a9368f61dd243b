// Package session holds the daemon's side of one conversation's wall: its
// inbox writer, the read leases and doorbells, its session socket and the
// reader of its hostile outbox. The sandbox that runs the agent is started
// separately (package sandbox); a Wall is what it is connected to.
//
// Where an outbox row goes is never read from the row: a Wall hands verified
// rows to its Deliver function, which knows the session's binding.
package session

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/lease"
	"github.com/ironclaw/ironclaw/daemon/queue"
	"github.com/ironclaw/ironclaw/daemon/sessionsock"
)

// Config describes one session's wall.
type Config struct {
	ID  wire.SessionID
	Key *wire.Key
	// Dir is the session directory holding inbox/ and outbox/ (created by
	// queue.Create).
	Dir string
	// Socket is the host path of the session socket (short: 107 bytes max).
	Socket string
	// Taken is the last outbox seq already delivered (from the store).
	Taken uint64
	// MaxOutboxBytes caps the outbox copy; queue.DefaultMaxOutboxBytes if 0.
	// The size of the filesystem the outbox sits on caps it further.
	MaxOutboxBytes int64
	// Budget is the memory every session's outbox reads share (one per
	// daemon); nil gives this wall a private one (tests).
	Budget *queue.Budget
	// QueryTimeout bounds SQLite's work on one outbox copy;
	// queue.DefaultQueryTimeout if 0.
	QueryTimeout time.Duration
	// Deliver receives verified outbox rows in order, exactly once per
	// successful return; an error leaves them to be offered again.
	Deliver func(ctx context.Context, rows []queue.Row) error
	// Refused reports refused socket requests, as one of the fixed
	// sessionsock.Refused* classes (never the agent's text), and a hostile
	// outbox, once, as HostileOutbox and one of the fixed queue.Refused*
	// classes (the detail is in Failed).
	Refused func(what string)
	// Agent owns the session socket (see sessionsock.Session.AgentUID).
	Agent queue.Owner
	// Model is the session's model proxy, served on its socket under /api/
	// (see sessionsock.Session.Model). Nil refuses model calls.
	Model http.Handler
}

// Wall is one session's side of the sandbox wall.
type Wall struct {
	cfg    Config
	inbox  *queue.Inbox
	leases *lease.Manager
	bell   *lease.Bell
	sock   *sessionsock.Server
	outbox *queue.OutboxReader

	// collectMu serialises collections (copy, check and delivery). It is
	// held across Deliver, which may do store and gateway work; nothing but
	// another collection of this wall ever waits for it.
	collectMu sync.Mutex
	// mu guards the wall's state. It is only ever held for a moment, never
	// across a copy, a query or a delivery: the supervisor's status, stop
	// and failure paths take it.
	mu     sync.Mutex
	taken  uint64 // guarded by mu
	failed error  // guarded by mu: set once the outbox was found hostile

	idleBells bucket // charged per doorbell: size copied, and idleness
}

// Doorbell limits. Every doorbell makes the daemon copy the agent's outbox.
// A doorbell costs RingCost, a token per MiB of live data copied, plus one
// if it delivered nothing,
// from a bucket of DoorbellBurst refilled at DoorbellRate per second; while
// the bucket is empty the agent's doorbells wait (only that agent is
// slowed). An honest agent rings only after committing rows and prunes what
// the daemon took, so its doorbells cost a small fraction of a token.
const (
	DoorbellRate  = 100 // tokens per second
	DoorbellBurst = 100
	// RingCost is what every doorbell costs, so one-row-per-ring floods
	// are bounded too (1,000 rings a second sustained; an honest agent
	// rings a few hundred times a second at most).
	RingCost = 0.1
)

// bucket is a token bucket; the zero value starts full.
type bucket struct {
	mu     sync.Mutex
	init   bool
	tokens float64
	last   time.Time
}

// refill tops the bucket up for the time passed. Callers hold mu.
func (b *bucket) refill(now time.Time) {
	if !b.init {
		b.init, b.tokens, b.last = true, DoorbellBurst, now
		return
	}
	b.tokens = min(DoorbellBurst, b.tokens+now.Sub(b.last).Seconds()*DoorbellRate)
	b.last = now
}

// wait blocks until a token is free or ctx ends. It does not take it.
func (b *bucket) wait(ctx context.Context) error {
	for {
		b.mu.Lock()
		b.refill(time.Now())
		short := 1 - b.tokens
		b.mu.Unlock()
		if short <= 0 {
			return nil
		}
		t := time.NewTimer(time.Duration(short / DoorbellRate * float64(time.Second)))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// take spends cost tokens (the bucket may go into debt: later doorbells
// then wait longer).
func (b *bucket) take(cost float64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(time.Now())
	b.tokens -= cost
}

// Open opens the session's inbox and starts serving its socket.
func Open(cfg Config) (*Wall, error) {
	if cfg.Deliver == nil {
		return nil, errors.New("session: a wall needs a Deliver function")
	}
	w := &Wall{cfg: cfg, leases: lease.NewManager(0), taken: cfg.Taken}
	var err error
	w.inbox, err = queue.OpenInbox(filepath.Join(cfg.Dir, wire.InboxDir, wire.InboxFile), cfg.ID, cfg.Key, w.leases)
	if err != nil {
		return nil, err
	}
	w.bell = lease.NewBell(w.inbox.Head())
	w.outbox = &queue.OutboxReader{
		Path:         filepath.Join(cfg.Dir, wire.OutboxDir, wire.OutboxFile),
		Session:      cfg.ID,
		Key:          cfg.Key,
		MaxBytes:     cfg.MaxOutboxBytes,
		Budget:       cfg.Budget,
		QueryTimeout: cfg.QueryTimeout,
	}
	w.sock, err = sessionsock.Listen(cfg.Socket, &sessionsock.Session{
		Inbox:     w.leases,
		InboxBell: w.bell,
		OnOutbox:  w.onOutbox,
		Refused:   cfg.Refused,
		Model:     cfg.Model,
		AgentUID:  cfg.Agent.UID,
		AgentGID:  cfg.Agent.GID,
	})
	if err != nil {
		w.inbox.Close()
		return nil, err
	}
	return w, nil
}

// Send appends bodies to the inbox in one transaction and rings the doorbell.
func (w *Wall) Send(ctx context.Context, bodies ...wire.Body) (uint64, error) {
	return w.SendChecked(ctx, nil, bodies...)
}

// SendChecked is Send with check run just before the commit (see
// queue.Check): the supervisor audits a message there.
func (w *Wall) SendChecked(ctx context.Context, check queue.Check, bodies ...wire.Body) (uint64, error) {
	seq, err := w.inbox.AppendChecked(ctx, check, bodies...)
	if err != nil {
		return 0, err
	}
	w.bell.Ring(seq)
	return seq, nil
}

// Note appends rows the agent reads with its next work but need not wake
// for: the echoes of its own delivered replies. The doorbell is not rung, so
// an echo costs the agent no turn of its own (a lease, a read, a commit and
// a doorbell of its own, racing the user's next message); the next Send
// rings past it and the agent reads both, the echo first.
func (w *Wall) Note(ctx context.Context, bodies ...wire.Body) (uint64, error) {
	return w.inbox.Append(ctx, bodies...)
}

// InboxHead is the last inbox seq written.
func (w *Wall) InboxHead() uint64 { return w.inbox.Head() }

// InboxRows reads back the verified inbox rows after seq after (the daemon's
// own writes; for a channel recovering an interrupted hand-off).
func (w *Wall) InboxRows(after uint64) ([]queue.Row, error) { return w.inbox.Read(after) }

// inboxPage is how many rows EachInboxRow reads at once (each at most
// wire.MaxRowSize; in practice a message or echo of at most 64 KiB).
const inboxPage = 64

// EachInboxRow calls fn with each verified inbox row after seq after, in
// order, reading a page at a time so that a long inbox (a hostile agent's
// echoes it never reported reading) is never held in memory at once. It
// stops early when fn returns false.
func (w *Wall) EachInboxRow(after uint64, fn func(queue.Row) bool) error {
	for {
		rows, err := w.inbox.ReadPage(after, inboxPage)
		if err != nil {
			return err
		}
		for _, r := range rows {
			if !fn(r) {
				return nil
			}
		}
		if len(rows) < inboxPage {
			return nil
		}
		after = rows[len(rows)-1].Header.Seq
	}
}

// Leases exposes the inbox lease manager (for measurements).
func (w *Wall) Leases() *lease.Manager { return w.leases }

// Taken is the last outbox seq delivered.
func (w *Wall) Taken() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.taken
}

// Failed returns the reason the outbox was refused, if it was.
func (w *Wall) Failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failed
}

// HostileOutbox prefixes the class Refused reports for a refused outbox.
const HostileOutbox = "hostile outbox: "

// onOutbox runs while the agent waits on its doorbell and so is not writing.
// ctx ends if the agent hangs up: that may stop the wait for a token but
// never a collection under way, which would otherwise fail halfway and
// offer the same rows again.
func (w *Wall) onOutbox(ctx context.Context, seq uint64) (uint64, error) {
	if err := w.idleBells.wait(ctx); err != nil {
		return w.Taken(), err
	}
	taken, n, copied, err := w.collect(context.WithoutCancel(ctx))
	// Copying costs in proportion to the bytes actually copied (never a size
	// the file's own header claims): a token per MiB, so a hostile agent
	// that keeps a huge outbox and rings after every one-row commit is
	// slowed too (an honest agent prunes: ~0.1 token a ring).
	cost := RingCost + float64(copied)/(1<<20)
	if err != nil || n == 0 {
		cost++
	}
	w.idleBells.take(cost)
	return taken, err
}

// Collect reads and delivers outbox rows after the last taken one. Call it
// only while the agent is not writing: from its doorbell, or while no
// sandbox runs. A hostile outbox fails this session for good (until an
// operator looks); nothing else is affected.
func (w *Wall) Collect(ctx context.Context) (uint64, error) {
	taken, _, _, err := w.collect(ctx)
	return taken, err
}

// collect is Collect, also saying how many rows it delivered and how many
// bytes it copied. It reads the whole copy in bounded batches, delivering
// each before decoding the next. A panic anywhere in it (the copy, SQLite,
// decoding, delivery) fails this session only, as RefusedPanic.
func (w *Wall) collect(ctx context.Context) (taken uint64, delivered int, copied int64, err error) {
	w.collectMu.Lock()
	defer w.collectMu.Unlock()
	defer func() {
		if p := recover(); p != nil {
			err = w.fail(&queue.HostileError{Class: queue.RefusedPanic, Err: fmt.Errorf("%v", p)})
			taken = w.Taken()
		}
	}()
	w.mu.Lock()
	failed, from := w.failed, w.taken
	w.mu.Unlock()
	if failed != nil {
		return from, 0, 0, failed
	}
	snap, err := w.outbox.Open(ctx, from)
	if err != nil {
		if errors.Is(err, queue.ErrHostile) {
			err = w.fail(err)
		}
		return from, 0, 0, fmt.Errorf("session %s: %w", w.cfg.ID, err)
	}
	defer snap.Close()
	copied, taken = snap.Copied(), from
	for {
		rows, err := snap.Next()
		if err != nil {
			if errors.Is(err, queue.ErrHostile) {
				err = w.fail(err)
			}
			return taken, delivered, copied, fmt.Errorf("session %s: %w", w.cfg.ID, err)
		}
		if len(rows) == 0 {
			return taken, delivered, copied, nil
		}
		if err := w.cfg.Deliver(ctx, rows); err != nil {
			// Delivery may refuse the outbox too (the session's replies
			// past its caps): it fails this session like any other.
			if errors.Is(err, queue.ErrHostile) {
				err = w.fail(err)
			}
			return taken, delivered, copied, fmt.Errorf("session %s: delivering: %w", w.cfg.ID, err)
		}
		taken = rows[len(rows)-1].Header.Seq
		delivered += len(rows)
		w.mu.Lock()
		w.taken = taken
		w.mu.Unlock()
	}
}

// fail records err as the reason this wall's outbox is refused (once) and
// reports its class. It returns the recorded reason.
func (w *Wall) fail(err error) error {
	w.mu.Lock()
	first := w.failed == nil
	if first {
		w.failed = err
	}
	err = w.failed
	w.mu.Unlock()
	if first && w.cfg.Refused != nil {
		w.cfg.Refused(HostileOutbox + queue.HostileClass(err))
	}
	return err
}

// Close stops the socket and closes the inbox.
func (w *Wall) Close() error {
	w.leases.Close()
	err := w.sock.Close()
	if cerr := w.inbox.Close(); err == nil {
		err = cerr
	}
	return err
}
