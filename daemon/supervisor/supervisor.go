// Package supervisor runs conversations: for each session it keeps the
// daemon's side of the wall (package session) open and one gVisor sandbox
// (package sandbox) running the pinned agent, started on demand. It creates
// sessions — a fresh random key wrapped by the master key, a first profile,
// two sealed queues — and routes what the agent writes back to where the
// session is bound, never to where a row says.
//
// There is no way here to run an agent outside a sandbox.
package supervisor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/audit"
	"github.com/ironclaw/ironclaw/daemon/keys"
	"github.com/ironclaw/ironclaw/daemon/queue"
	"github.com/ironclaw/ironclaw/daemon/sandbox"
	"github.com/ironclaw/ironclaw/daemon/session"
	"github.com/ironclaw/ironclaw/daemon/store"
)

// AgentUID is the user the agent runs as inside the sandbox (nobody); the
// outbox belongs to it.
const AgentUID = 65534

// Config wires a Supervisor.
type Config struct {
	StateDir   string // sessions/ and bundles/ live here
	RuntimeDir string // s/<id>.sock live here (short paths)
	Master     *keys.Master
	Store      *store.Store
	Audit      *audit.Log
	Runsc      *sandbox.Runsc
	// AgentBinary is the agentd the sandboxes run; AgentDigest its pinned
	// "sha256:<hex>". A session whose profile names another digest does not
	// start: a different binary is a software change for the gateway.
	AgentBinary string
	AgentDigest string
	Model       string
	MemoryMiB   int64 // host maxima
	CPUMillis   int64
	Log         *slog.Logger
}

// Reply is an agent's answer as delivered to a binding.
type Reply struct {
	Session   wire.SessionID
	InReplyTo uint64
	Text      string
}

// Supervisor owns every running conversation.
type Supervisor struct {
	cfg Config

	mu      sync.Mutex
	running map[wire.SessionID]*conv // guarded by mu
	waiters map[chan Reply]string    // guarded by mu: reply subscribers → binding
	closed  bool                     // guarded by mu
}

type conv struct {
	id      wire.SessionID
	binding string
	key     *wire.Key
	wall    *session.Wall

	mu  sync.Mutex       // guards box
	box *sandbox.Sandbox // nil when no sandbox runs
}

// New returns a supervisor.
func New(cfg Config) (*Supervisor, error) {
	for _, d := range []string{filepath.Join(cfg.StateDir, "sessions"), filepath.Join(cfg.StateDir, "bundles"), filepath.Join(cfg.RuntimeDir, "s")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("supervisor: %w", err)
		}
	}
	// Sessions directory: the sandbox (as root on the host) bind-mounts from
	// it; other users need not even list it.
	return &Supervisor{cfg: cfg, running: map[wire.SessionID]*conv{}, waiters: map[chan Reply]string{}}, nil
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

// Subscribe returns a channel that receives replies for binding until
// Unsubscribe.
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

// Send delivers a message from a user to the session bound to binding,
// creating the session on first contact, and makes sure its sandbox runs.
func (s *Supervisor) Send(ctx context.Context, binding, from, text string) (wire.SessionID, uint64, error) {
	c, err := s.conversation(ctx, binding)
	if err != nil {
		return wire.SessionID{}, 0, err
	}
	seq, err := c.wall.Send(ctx, wire.Message{From: from, Text: text})
	if err != nil {
		return c.id, 0, err
	}
	if err := s.ensureSandbox(ctx, c); err != nil {
		return c.id, seq, err
	}
	return c.id, seq, nil
}

// conversation returns the running conversation for binding, opening or
// creating its session.
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
	key, err := s.cfg.Master.Unwrap(sess.ID, sess.WrappedKey)
	if err != nil {
		return nil, fmt.Errorf("supervisor: session %s: %w", sess.ID, err)
	}
	taken, err := s.cfg.Store.Cursor(ctx, sess.ID, store.CursorOutboxDelivered)
	if err != nil {
		return nil, err
	}
	c := &conv{id: sess.ID, binding: binding, key: key}
	c.wall, err = session.Open(session.Config{
		ID:      sess.ID,
		Key:     key,
		Dir:     s.sessionDir(sess.ID),
		Socket:  s.socketPath(sess.ID),
		Taken:   taken,
		Agent:   queue.Owner{UID: AgentUID, GID: AgentUID},
		Deliver: func(ctx context.Context, rows []queue.Row) error { return s.deliver(ctx, c, rows) },
		Refused: func(what string) {
			s.cfg.Audit.Refuse("agent:"+sess.ID.String(), "socket.refused", sess.ID.String(), what)
		},
	})
	if err != nil {
		return nil, err
	}
	s.running[sess.ID] = c
	return c, nil
}

func (s *Supervisor) sessionDir(id wire.SessionID) string {
	return filepath.Join(s.cfg.StateDir, "sessions", id.String())
}

func (s *Supervisor) socketPath(id wire.SessionID) string {
	return filepath.Join(s.cfg.RuntimeDir, "s", id.String()+".sock")
}

// create makes a new session bound to binding.
func (s *Supervisor) create(ctx context.Context, binding string) (store.Session, error) {
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
	p := profile.Default(s.cfg.Model, s.cfg.AgentDigest)
	if err := s.cfg.Store.CreateSession(ctx, id, binding, wrapped, p); err != nil {
		os.RemoveAll(s.sessionDir(id))
		return store.Session{}, err
	}
	return s.cfg.Store.GetSession(ctx, id)
}

// deliver routes verified outbox rows. Replies go to the session's own
// binding; change requests will go to the gateway.
func (s *Supervisor) deliver(ctx context.Context, c *conv, rows []queue.Row) error {
	var last uint64
	for _, r := range rows {
		last = r.Header.Seq
		switch b := r.Body.(type) {
		case wire.Reply:
			s.mu.Lock()
			for ch, binding := range s.waiters {
				if binding == c.binding {
					select {
					case ch <- Reply{Session: c.id, InReplyTo: b.InReplyTo, Text: b.Text}:
					default: // a slow reader loses replies, never blocks the session
					}
				}
			}
			s.mu.Unlock()
		}
	}
	return s.cfg.Store.AdvanceCursor(ctx, c.id, store.CursorOutboxDelivered, last)
}

// ensureSandbox starts the session's sandbox unless it runs.
func (s *Supervisor) ensureSandbox(ctx context.Context, c *conv) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.box != nil {
		select {
		case <-c.box.Done():
			st, _ := c.box.Wait()
			s.cfg.Log.Warn("sandbox exited", "session", c.id.String(), "status", st.String(), "stderr", string(tail(c.box.Stderr(), 512)))
			c.box.Stop(ctx)
			c.box = nil
		default:
			return nil
		}
	}
	_, p, err := s.cfg.Store.CurrentProfile(ctx, c.id)
	if err != nil {
		return err
	}
	if p.AgentDigest != s.cfg.AgentDigest {
		return fmt.Errorf("supervisor: session %s pins agent %s but %s is %s: a different agent binary is a software change for the gateway", c.id, p.AgentDigest, s.cfg.AgentBinary, s.cfg.AgentDigest)
	}
	// Before the agent runs it cannot be writing: collect anything left.
	if _, err := c.wall.Collect(ctx); err != nil && !errors.Is(err, queue.ErrHotJournal) {
		return err
	}
	hs := (&wire.Handshake{Session: c.id, Key: *c.key}).Marshal()
	defer clear(hs)
	mem := min(p.Limits.MemoryMiB, s.cfg.MemoryMiB)
	cpu := min(p.Limits.CPUMillis, s.cfg.CPUMillis)
	box, err := s.cfg.Runsc.Start(ctx, sandbox.Spec{
		ID:          sandbox.IDPrefix + c.id.String(),
		BundleDir:   filepath.Join(s.cfg.StateDir, "bundles", c.id.String()),
		AgentPath:   s.cfg.AgentBinary,
		AgentSHA256: trimDigest(s.cfg.AgentDigest),
		InboxDir:    filepath.Join(s.sessionDir(c.id), wire.InboxDir),
		OutboxDir:   filepath.Join(s.sessionDir(c.id), wire.OutboxDir),
		SocketPath:  s.socketPath(c.id),
		Stdin:       hs,
		MemoryBytes: mem << 20,
		CPUMillis:   cpu,
	})
	result := "started"
	if err != nil {
		result = "failed: " + err.Error()
	}
	if aerr := s.audit("daemon", "sandbox.start", c.id.String(), "", result); aerr != nil {
		if box != nil {
			box.Stop(context.Background())
		}
		return fmt.Errorf("supervisor: audit: %w", aerr)
	}
	if err != nil {
		return err
	}
	c.box = box
	return nil
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

// Close stops every sandbox and closes every wall.
func (s *Supervisor) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	convs := make([]*conv, 0, len(s.running))
	for _, c := range s.running {
		convs = append(convs, c)
	}
	s.mu.Unlock()
	var errs []error
	for _, c := range convs {
		c.mu.Lock()
		if c.box != nil {
			errs = append(errs, c.box.Stop(ctx))
			s.audit("daemon", "sandbox.stop", c.id.String(), "", "shutdown")
		}
		c.mu.Unlock()
		errs = append(errs, c.wall.Close())
		clear(c.key[:])
	}
	return errors.Join(errs...)
}
