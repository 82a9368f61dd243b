// Package supervisor runs conversations: for each session it keeps the daemon's side of the
// wall (package session) open and one gVisor sandbox (package sandbox) running the pinned
// agent while there is work. It creates sessions — a fresh random key wrapped by the master
// key, a first profile, two sealed queues — and routes what the agent writes back to where
// the session is bound, never to where a row says.
//
// Lifecycle of a session's sandbox (lifecycle.go): started on demand when a message
// arrives; stopped after IdleTimeout with nothing to do; restarted with exponential backoff
// when it exits on its own while inbox rows are unread; stopped for good — reported as
// "sandbox.crashloop" with its last exit status — after CrashLoopCount exits within
// CrashLoopWindow, or when its outbox is refused as hostile; stopped gracefully on Close.
// Before the first sandbox starts, Reap removes what an earlier daemon left behind.
//
// There is no way here to run an agent outside a sandbox, and no switch that weakens one.
package supervisor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/audit"
	"github.com/ironclaw/ironclaw/daemon/keys"
	"github.com/ironclaw/ironclaw/daemon/proxy"
	"github.com/ironclaw/ironclaw/daemon/queue"
	"github.com/ironclaw/ironclaw/daemon/sandbox"
	"github.com/ironclaw/ironclaw/daemon/session"
	"github.com/ironclaw/ironclaw/daemon/store"
)

// AgentUID is the user the agent runs as inside the sandbox (nobody); the outbox belongs
// to it.
const AgentUID = 65534

// Defaults for the Config fields that may be left zero. Each zero means "this default",
// never "unlimited".
const (
	DefaultIdleTimeout     = 10 * time.Minute
	DefaultBackoffMin      = time.Second
	DefaultBackoffMax      = time.Minute
	DefaultCrashLoopCount  = 5
	DefaultCrashLoopWindow = 2 * time.Minute
	DefaultMaxRunning      = 16
	// The host maxima below match config.Default's limits.
	DefaultMaxTmpMiB       = 256
	DefaultMaxOutboxMiB    = 1024
	DefaultMaxOutboxInodes = 65536
	// DefaultMaxSessions matches config's limits.max_sessions.
	DefaultMaxSessions = 100
	// DefaultCopyBudgetMiB matches config's limits.outbox_copy_budget_mib.
	DefaultCopyBudgetMiB = 128
)

// Config wires a Supervisor.
type Config struct {
	StateDir   string // sessions/ and bundles/ live here
	RuntimeDir string // s/<id>.sock live here (short paths)
	Master     *keys.Master
	Store      *store.Store
	Audit      *audit.Log
	Runsc      *sandbox.Runsc
	// AgentBinary is the agentd the sandboxes run; AgentDigest its pinned "sha256:<hex>".
	// A session whose profile names another digest does not start: a different binary is a
	// software change for the gateway. The digest is checked again on the bytes copied into
	// every sandbox's root (sandbox.Spec.AgentSHA256).
	AgentBinary string
	AgentDigest string
	// Installed, if set, is asked for the installed binary's digest at each
	// session creation and sandbox start instead of AgentDigest, so that a
	// replaced binary is seen without a restart.
	Installed *InstalledAgent
	// NewSessionDigest returns the digest a new session's first profile
	// pins (the owner's pin; it may lag the installed binary until the
	// owner moves it). Nil means AgentDigest.
	NewSessionDigest func() string
	// Model is the model new sessions' profiles start with (config model.default).
	Model string
	// ModelUpstream is the Ollama server every session's model proxy forwards to
	// (config model.ollama_url). Empty: no proxy is served and every model call is
	// refused as an unknown endpoint.
	ModelUpstream string
	// ModelLimits bound each session's model proxy; zero fields take the proxy's
	// defaults (package proxy).
	ModelLimits proxy.Limits
	// ModelCalls caps the model calls all sessions together have at the
	// upstream at once (config limits.max_model_calls); zero means
	// proxy.DefaultMaxUpstreamCalls.
	ModelCalls int64
	// MemoryMiB and CPUMillis are host maxima: a sandbox gets the smaller of these and its
	// profile's limits. Zero refuses every start (there is no "unlimited").
	MemoryMiB int64
	CPUMillis int64
	// TmpMiB, OutboxMiB and OutboxInodes are host maxima for /tmp and the outbox
	// filesystem, applied like MemoryMiB. Zero means DefaultMaxTmpMiB, DefaultMaxOutboxMiB,
	// DefaultMaxOutboxInodes (config's limits.max_tmp_mib, max_outbox_mib,
	// max_outbox_inodes).
	TmpMiB       int64
	OutboxMiB    int64
	OutboxInodes int64
	// MaxSessions caps the sessions that exist (erased ones do not count);
	// a message that would create one more is refused (config's
	// limits.max_sessions). Default: DefaultMaxSessions.
	MaxSessions int
	// CopyBudgetMiB is the memory all sessions' outbox reads share at once
	// (queue.Budget; config's limits.outbox_copy_budget_mib): a read waits
	// for its share, and an outbox larger than half of it is refused.
	// Default: DefaultCopyBudgetMiB.
	CopyBudgetMiB int64
	// OutboxQueryTimeout bounds SQLite's work on one outbox copy.
	// Default: queue.DefaultQueryTimeout.
	OutboxQueryTimeout time.Duration
	// MaxRunning caps sandboxes running at once (config's limits.max_running_sandboxes).
	// Default: DefaultMaxRunning.
	MaxRunning int
	// IdleTimeout stops a sandbox after this long without a message in or a row out, once
	// it has handled every inbox row. Default: DefaultIdleTimeout.
	IdleTimeout time.Duration
	// BackoffMin and BackoffMax bound the delay before restarting a sandbox that exited on
	// its own with inbox rows unread: BackoffMin, doubling with each exit within
	// CrashLoopWindow, at most BackoffMax. Defaults: DefaultBackoffMin, DefaultBackoffMax.
	BackoffMin time.Duration
	BackoffMax time.Duration
	// CrashLoopCount exits within CrashLoopWindow stop the session until an operator calls
	// Resume. Defaults: DefaultCrashLoopCount, DefaultCrashLoopWindow.
	CrashLoopCount  int
	CrashLoopWindow time.Duration
	// InboxKeepRows and InboxCompactEvery are the inbox retention policy
	// (see retention.go). Defaults: DefaultInboxKeepRows,
	// DefaultInboxCompactEvery.
	InboxKeepRows, InboxCompactEvery uint64
	// Changes receives agents' change requests (the gateway). Nil refuses
	// them all, audited.
	Changes ChangeSink
	// Schedules is told when an agent adds a schedule (the scheduler). Nil:
	// nobody is told.
	Schedules ScheduleWaker
	// BootID returns the host's boot id (default: /proc/sys/kernel/random/
	// boot_id), read once by New; it tells a host restart from a daemon
	// restart (hostboot.go). Tests inject one.
	BootID func() (string, error)
	Log    *slog.Logger
}

// withDefaults fills the zero fields that have a default.
func (c Config) withDefaults() Config {
	set := func(p *time.Duration, d time.Duration) {
		if *p <= 0 {
			*p = d
		}
	}
	set(&c.IdleTimeout, DefaultIdleTimeout)
	set(&c.BackoffMin, DefaultBackoffMin)
	set(&c.BackoffMax, DefaultBackoffMax)
	set(&c.CrashLoopWindow, DefaultCrashLoopWindow)
	if c.BackoffMax < c.BackoffMin {
		c.BackoffMax = c.BackoffMin
	}
	if c.CrashLoopCount <= 0 {
		c.CrashLoopCount = DefaultCrashLoopCount
	}
	if c.MaxRunning <= 0 {
		c.MaxRunning = DefaultMaxRunning
	}
	if c.InboxKeepRows == 0 {
		c.InboxKeepRows = DefaultInboxKeepRows
	}
	if c.InboxCompactEvery == 0 {
		c.InboxCompactEvery = DefaultInboxCompactEvery
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.CopyBudgetMiB <= 0 {
		c.CopyBudgetMiB = DefaultCopyBudgetMiB
	}
	for _, f := range []struct {
		p *int64
		d int64
	}{{&c.TmpMiB, DefaultMaxTmpMiB}, {&c.OutboxMiB, DefaultMaxOutboxMiB}, {&c.OutboxInodes, DefaultMaxOutboxInodes}} {
		if *f.p <= 0 {
			*f.p = f.d
		}
	}
	if c.Log == nil {
		c.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.BootID == nil {
		c.BootID = hostBootID
	}
	return c
}

// ErrTooManySessions refuses a new session past Config.MaxSessions.
var ErrTooManySessions = errors.New("supervisor: too many sessions")

// Reply is an agent's answer as delivered to a binding.
type Reply struct {
	Session   wire.SessionID
	InReplyTo uint64
	Text      string
	// Seq is the reply's outbox row. The reply is kept in the store (a
	// delivery intent) until its channel calls Delivered with it; TxnID is
	// the channel transaction id to send it under, the same on every retry.
	Seq   uint64
	TxnID string
}

// ReplyTxnID is the channel transaction id of outbox row seq of session: a
// function of both, so a resend after a crash carries the same id.
func ReplyTxnID(session wire.SessionID, seq uint64) string {
	return fmt.Sprintf("ic.%s.%d", session, seq)
}

// Supervisor owns every running conversation.
type Supervisor struct {
	cfg Config
	// boot is the host's boot id, read once at New (hostboot.go).
	boot string
	// budget is the memory every session's outbox reads share.
	budget *queue.Budget
	// createMu serialises session creation, so that two first messages
	// cannot both pass the MaxSessions check.
	createMu sync.Mutex

	// ctx is cancelled by Close; background work (watchers, scheduled restarts) runs under
	// it and is counted in wg, which Close waits for.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	running map[wire.SessionID]*conv // guarded by mu: open conversations
	waiters map[chan Reply]string    // guarded by mu: reply subscribers → binding
	boxes   int                      // guarded by mu: sandboxes running or starting
	// erased holds the sessions Erase has begun on; they are never opened
	// again (ids are never reused, so this only grows by erasures).
	erased map[wire.SessionID]bool // guarded by mu
	closed bool                    // guarded by mu
	// budgets are the sessions' model budgets. They live here, not with a
	// sandbox or a conversation, so that neither a restart nor reopening a
	// session refills the day's tokens; the store keeps the day's tokens
	// across daemon restarts (budgetLedger).
	budgets     map[wire.SessionID]*proxy.Budget // guarded by mu
	modelClient *http.Client                     // shared by every session's proxy
	modelGate   *proxy.Gate                      // shared by every session's proxy
}

// conv is one open conversation.
type conv struct {
	id      wire.SessionID
	binding string
	key     *wire.Key
	wall    *session.Wall

	// Updated from the outbox delivery path, which may run while mu is held by a start
	// (Collect delivers): atomics, not mu.
	lastActive atomic.Int64  // unix nanoseconds of the last message in or row out
	progress   atomic.Uint64 // highest inbox seq the agent recorded as handled
	inboxHead  atomic.Uint64 // highest inbox seq this supervisor wrote
	// workHead is the highest inbox seq the agent must act on: a message, a
	// schedule firing, a profile. The daemon's echoes of delivered replies
	// and the start rows are not work: a sandbox is not kept, restarted or
	// called stuck for them (the next start's State row carries them).
	workHead  atomic.Uint64
	compacted atomic.Uint64 // inbox rows through this seq were compacted away

	// echoes are the inbox seqs of the Delivered echoes past the agent's
	// recorded progress, oldest first, once loaded (checkBacklog). Only
	// deliver touches them, and the wall runs one delivery at a time.
	echoes       []uint64
	echoesLoaded bool

	profileMu sync.Mutex // serialises syncProfile, so a version is sent once

	mu        sync.Mutex       // guards the fields below
	box       *sandbox.Sandbox // nil when no sandbox runs
	started   time.Time        // when box started
	exits     []time.Time      // exits on its own within CrashLoopWindow, oldest first
	restartAt time.Time        // a restart is scheduled for then (zero: none)
	failed    error            // the session is stopped until Resume (crash loop, hostile outbox)
	lastExit  *sandbox.ExitStatus
	lastOut   []byte // stdout and stderr of the last sandbox that ended (untrusted)
	lastErr   []byte
	// starts are the inbox seqs of the State rows this daemon run wrote past
	// the agent's recorded progress, oldest first (resume, MaxStartsAhead).
	starts []uint64
}

// New returns a supervisor. Call Reap before the first conversation starts.
func New(cfg Config) (*Supervisor, error) {
	cfg = cfg.withDefaults()
	for _, d := range []string{filepath.Join(cfg.StateDir, "sessions"), filepath.Join(cfg.StateDir, "bundles"), filepath.Join(cfg.RuntimeDir, "s")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("supervisor: %w", err)
		}
	}
	// The sessions directory stays 0700: runsc's gofer (root on the host) opens the
	// bind-mounted directories; nobody else needs even to list them.
	boot, err := cfg.BootID()
	if err != nil {
		return nil, fmt.Errorf("supervisor: reading the host's boot id (needed to tell a host restart from a daemon restart): %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Supervisor{
		cfg: cfg, boot: boot, ctx: ctx, cancel: cancel, budget: queue.NewBudget(cfg.CopyBudgetMiB << 20),
		running: map[wire.SessionID]*conv{}, waiters: map[chan Reply]string{}, erased: map[wire.SessionID]bool{},
		budgets: map[wire.SessionID]*proxy.Budget{}, modelClient: proxy.NewUpstreamClient(cfg.ModelLimits),
		modelGate: proxy.NewGate(cfg.ModelCalls),
	}, nil
}

// installed is the digest of the agent binary sandboxes run now.
func (s *Supervisor) installed() (string, error) {
	if s.cfg.Installed != nil {
		return s.cfg.Installed.Digest()
	}
	return s.cfg.AgentDigest, nil
}

// FileDigest returns "sha256:<hex>" of the file at path.
func FileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

func (s *Supervisor) audit(actor, action, subject, decision, result string) error {
	_, err := s.cfg.Audit.Append(audit.Record{Actor: actor, Action: action, Subject: subject, Decision: decision, Result: result})
	return err
}

// Subscribe returns a channel that receives replies for binding until Unsubscribe.
func (s *Supervisor) Subscribe(binding string) chan Reply {
	ch := make(chan Reply, 64)
	s.mu.Lock()
	s.waiters[ch] = binding
	s.mu.Unlock()
	return ch
}

// Unsubscribe stops deliveries to ch.
func (s *Supervisor) Unsubscribe(ch chan Reply) {
	s.mu.Lock()
	delete(s.waiters, ch)
	s.mu.Unlock()
}

// Send delivers a message from a user to the session bound to binding, creating the session
// on first contact, and makes sure its sandbox runs (or is scheduled to restart).
func (s *Supervisor) Send(ctx context.Context, binding, from, text string) (wire.SessionID, uint64, error) {
	c, err := s.conversation(ctx, binding)
	if err != nil {
		return wire.SessionID{}, 0, err
	}
	// Audited as metadata (session, sequence, size; never the text) before
	// it is committed: a message that cannot be audited is not written.
	seq, err := c.wall.SendChecked(ctx, func(first, last uint64, size int) error {
		return s.audit("daemon", "message.in", c.id.String(), "", fmt.Sprintf("seq %d, %d bytes", last, size))
	}, wire.Message{From: from, Text: text})
	if err != nil {
		return c.id, 0, err
	}
	c.noteWork(seq)
	if err := s.recordTurn(ctx, c, seq, wire.TurnUser, text); err != nil {
		return c.id, seq, err
	}
	if err := s.ensureSandbox(ctx, c, false); err != nil {
		return c.id, seq, err
	}
	return c.id, seq, nil
}

func (c *conv) touch() { c.lastActive.Store(time.Now().UnixNano()) }

// noteInbox records an inbox row the daemon wrote. It is not activity: the
// echo of an agent's own reply must not keep its sandbox from an idle stop
// (an agent cannot keep its sandbox by chattering).
func (c *conv) noteInbox(seq uint64) {
	for {
		h := c.inboxHead.Load()
		if seq <= h || c.inboxHead.CompareAndSwap(h, seq) {
			break
		}
	}
}

// noteWork records an inbox row the agent must act on: activity.
func (c *conv) noteWork(seq uint64) {
	c.noteInbox(seq)
	for {
		h := c.workHead.Load()
		if seq <= h || c.workHead.CompareAndSwap(h, seq) {
			break
		}
	}
	c.touch()
}

// unread reports whether the inbox holds rows to act on that the agent has not recorded
// as handled.
func (c *conv) unread() bool { return c.workHead.Load() > c.progress.Load() }

// conversation returns the open conversation for binding, opening or creating its session.
func (s *Supervisor) conversation(ctx context.Context, binding string) (*conv, error) {
	sess, err := s.cfg.Store.SessionByBinding(ctx, binding)
	if errors.Is(err, store.ErrNotFound) {
		sess, err = s.create(ctx, binding)
	}
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("supervisor: shutting down")
	}
	if c := s.running[sess.ID]; c != nil {
		return c, nil
	}
	if s.erased[sess.ID] {
		return nil, fmt.Errorf("supervisor: session %s is being erased", sess.ID)
	}
	key, err := s.cfg.Master.Unwrap(sess.ID, sess.WrappedKey)
	if err != nil {
		return nil, fmt.Errorf("supervisor: session %s: %w", sess.ID, err)
	}
	taken, err := s.cfg.Store.Cursor(ctx, sess.ID, store.CursorOutboxDelivered)
	if err != nil {
		return nil, err
	}
	c := &conv{id: sess.ID, binding: binding, key: key}
	c.touch()
	actor := "agent:" + sess.ID.String()
	model, err := s.modelProxyLocked(sess.ID)
	if err != nil {
		clear(key[:])
		return nil, err
	}
	c.wall, err = session.Open(session.Config{
		Model: model,
		// The daemon copies at most what any outbox filesystem may hold
		// (the host maximum; a session's image is never larger), so an
		// honest agent's full outbox is never mistaken for a hostile one,
		// whatever its profile says now or later. Doorbells pay per MiB.
		MaxOutboxBytes: s.cfg.OutboxMiB << 20,
		Budget:         s.budget,
		QueryTimeout:   s.cfg.OutboxQueryTimeout,
		ID:             sess.ID,
		Key:            key,
		Dir:            s.sessionDir(sess.ID),
		Socket:         s.socketPath(sess.ID),
		Taken:          taken,
		Agent:          queue.Owner{UID: AgentUID, GID: AgentUID},
		Deliver:        func(ctx context.Context, rows []queue.Row) error { return s.deliver(ctx, c, rows) },
		// Called from the session socket's handlers and from Collect, with the wall's lock
		// held: it must not call back into the wall or take c.mu.
		Refused: func(what string) {
			action := "socket.refused"
			if strings.HasPrefix(what, session.HostileOutbox) {
				action = "outbox.refused"
				s.goFailHostile(c)
			}
			// A refusal has nothing left to fail: a failed write is counted
			// by the audit log (ironclaw status) and logged.
			if err := s.cfg.Audit.Refuse(actor, action, sess.ID.String(), what); err != nil {
				s.cfg.Log.Error("audit write failed", "session", sess.ID.String(), "err", err)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	if err := s.syncProfile(ctx, c); err != nil {
		c.wall.Close()
		clear(key[:])
		return nil, err
	}
	// Resume the lifecycle's view from the record: what was written, and
	// what the agent last said it handled.
	c.inboxHead.Store(c.wall.InboxHead())
	c.workHead.Store(c.wall.InboxHead()) // not knowing which rows are work: all of them
	if handled, err := s.cfg.Store.Cursor(ctx, sess.ID, store.CursorInboxConsumed); err == nil {
		c.progress.Store(min(handled, c.wall.InboxHead()))
	}
	s.running[sess.ID] = c
	return c, nil
}

func (s *Supervisor) sessionDir(id wire.SessionID) string {
	return filepath.Join(s.cfg.StateDir, "sessions", id.String())
}

func (s *Supervisor) outboxDir(id wire.SessionID) string {
	return filepath.Join(s.sessionDir(id), wire.OutboxDir)
}

func (s *Supervisor) socketPath(id wire.SessionID) string {
	return filepath.Join(s.cfg.RuntimeDir, "s", id.String()+".sock")
}

// create makes a new session bound to binding.
func (s *Supervisor) create(ctx context.Context, binding string) (store.Session, error) {
	s.createMu.Lock()
	defer s.createMu.Unlock()
	// Another first message for this binding may have created it meanwhile.
	if sess, err := s.cfg.Store.SessionByBinding(ctx, binding); err == nil || !errors.Is(err, store.ErrNotFound) {
		return sess, err
	}
	all, err := s.cfg.Store.ListSessions(ctx)
	if err != nil {
		return store.Session{}, err
	}
	live := 0
	for _, ss := range all {
		if ss.State != store.StateErased {
			live++
		}
	}
	if live >= s.cfg.MaxSessions {
		if aerr := s.cfg.Audit.Refuse("daemon", "session.create", "binding", "limits.max_sessions reached"); aerr != nil {
			s.cfg.Log.Error("audit write failed", "err", aerr)
		}
		return store.Session{}, fmt.Errorf("%w: %d sessions exist, the limit (limits.max_sessions): erase one (`ironclaw sessions erase`) or raise the limit", ErrTooManySessions, live)
	}
	id, err := wire.NewSessionID()
	if err != nil {
		return store.Session{}, err
	}
	key, err := keys.NewSessionKey()
	if err != nil {
		return store.Session{}, err
	}
	defer clear(key[:])
	wrapped, err := s.cfg.Master.Wrap(id, key)
	if err != nil {
		return store.Session{}, err
	}
	if err := queue.Create(s.sessionDir(id), queue.Owner{UID: AgentUID, GID: AgentUID}); err != nil {
		return store.Session{}, err
	}
	// Audit before the session exists: if the audit write fails, so does this.
	if err := s.audit("daemon", "session.create", id.String(), "", "binding="+binding); err != nil {
		os.RemoveAll(s.sessionDir(id))
		return store.Session{}, fmt.Errorf("supervisor: audit: %w", err)
	}
	installed, err := s.installed()
	if err != nil {
		return store.Session{}, err
	}
	digest := installed
	if s.cfg.NewSessionDigest != nil {
		digest = s.cfg.NewSessionDigest()
	}
	if digest != installed {
		// A session pinned to a binary that is not installed could never
		// start: say so now, before creating it.
		return store.Session{}, fmt.Errorf("supervisor: new conversations pin agent %s but %s is installed: run `ironclaw agent pin` to start new conversations on the installed agent, or reinstall the pinned one", digest, installed)
	}
	p := profile.Default(s.cfg.Model, digest)
	if err := s.cfg.Store.CreateSession(ctx, id, binding, wrapped, p); err != nil {
		os.RemoveAll(s.sessionDir(id))
		return store.Session{}, err
	}
	return s.cfg.Store.GetSession(ctx, id)
}

func trimDigest(d string) string {
	if len(d) > 7 && d[:7] == "sha256:" {
		return d[7:]
	}
	return d
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// Close stops every sandbox gracefully (SIGTERM, then SIGKILL after sandbox.StopGrace),
// releases their outbox filesystems, closes every wall and waits for background work.
func (s *Supervisor) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	convs := make([]*conv, 0, len(s.running))
	for _, c := range s.running {
		convs = append(convs, c)
	}
	s.mu.Unlock()
	s.cancel() // watchers and scheduled restarts return
	var errs []error
	var wg sync.WaitGroup
	var emu sync.Mutex
	for _, c := range convs {
		wg.Add(1)
		// In parallel: each stop may wait StopGrace for an agent that ignores SIGTERM.
		go func() {
			defer wg.Done()
			c.mu.Lock()
			err := s.stopLocked(ctx, c, "shutdown")
			c.mu.Unlock()
			err = errors.Join(err, c.wall.Close())
			clear(c.key[:])
			emu.Lock()
			errs = append(errs, err)
			emu.Unlock()
		}()
	}
	wg.Wait()
	s.wg.Wait()
	return errors.Join(errs...)
}
