// Package tuitest is an in-memory daemon/api.Operator for testing and
// benchmarking the console without a daemon: a gateway that decides each
// request once (the second decision is refused, as the real one does),
// sessions, an audit log and live events shared by every operator bound to
// the same Daemon.
package tuitest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ironclaw/ironclaw/daemon/api"
)

// Daemon is the shared state every Fake operator sees.
type Daemon struct {
	mu       sync.Mutex // guards everything below
	changes  []api.Change
	sessions []api.Session
	audit    []api.AuditEntry
	subs     map[chan api.Event]struct{}
	now      time.Time
	// transcripts and profiles are per session id.
	transcripts map[string][]api.Turn
	profiles    map[string][]api.ProfileVersion
	modelHealth string
	modelHint   string
	// auditBroken makes every audited read fail, as the daemon's does
	// when its audit log cannot be written.
	auditBroken bool
	// ListCalls counts ListSessions calls (the sessions page's refresh).
	listCalls int
	// statusCalls counts Status calls (the overview's refresh).
	statusCalls int
}

// NewDaemon returns an empty daemon whose clock starts at a fixed time.
func NewDaemon() *Daemon {
	return &Daemon{subs: map[chan api.Event]struct{}{}, now: time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC),
		transcripts: map[string][]api.Turn{}, profiles: map[string][]api.ProfileVersion{}}
}

func (d *Daemon) tick() time.Time {
	d.now = d.now.Add(time.Second)
	return d.now
}

// Binding is the hash a fake request binds to.
func Binding(id, base, proposed string) string {
	h := sha256.Sum256([]byte(base + "\x00" + proposed + "\x00" + id))
	return hex.EncodeToString(h[:])
}

// File adds a pending request, as an agent would, and tells subscribers.
func (d *Daemon) File(session, kind, requester, reason, base, proposed, diff string) string {
	d.mu.Lock()
	sum := sha256.Sum256([]byte(fmt.Sprint(len(d.changes) + 1)))
	id := hex.EncodeToString(sum[:16])
	d.changes = append(d.changes, api.Change{
		ChangeSummary: api.ChangeSummary{ID: id, Session: session, Kind: kind, Requester: requester, State: "pending",
			Outcome: "needs-human", Rule: "default", Created: d.tick(), BaseVersion: 1, Binding: Binding(id, base, proposed)},
		Diff: diff, Base: base, Proposed: proposed, UntrustedReason: reason,
		ChangedFields: []string{kind}, BaseIsCurrent: true,
	})
	d.appendAuditLocked(requester, "change.submit", "change:"+id, "needs-human", "pending")
	d.mu.Unlock()
	d.publish(api.Event{Kind: api.EventChange, ID: id, What: "filed"})
	return id
}

// AddSession adds a session.
func (d *Daemon) AddSession(s api.Session) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s.Created.IsZero() {
		s.Created = d.tick()
	}
	d.sessions = append(d.sessions, s)
}

// SetTranscript sets what a session's transcript holds.
func (d *Daemon) SetTranscript(session string, turns ...api.Turn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.transcripts[session] = turns
}

// AddProfileVersion adds the next profile version of session: its text,
// the diff from the one before (the daemon computes it; the fake is told)
// and the change that made it.
func (d *Daemon) AddProfileVersion(session, canonical, diff, change string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	vs := d.profiles[session]
	d.profiles[session] = append(vs, api.ProfileVersion{Session: session, Version: uint64(len(vs) + 1),
		Created: d.tick(), Change: change, Canonical: canonical, Diff: diff})
}

// SetUsage sets a session's sandbox usage, as the next list reads it.
func (d *Daemon) SetUsage(session string, memory, cpuUsec uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range d.sessions {
		if d.sessions[i].ID == session {
			d.sessions[i].MemoryBytes, d.sessions[i].CPUUsec, d.sessions[i].UsageAt = memory, cpuUsec, d.now
		}
	}
}

// SetModelHealth sets what Status says of the model server.
func (d *Daemon) SetModelHealth(health, hint string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.modelHealth, d.modelHint = health, hint
}

// BreakAudit makes audited reads fail closed from now on.
func (d *Daemon) BreakAudit() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.auditBroken = true
}

// Calls returns how often ListSessions and Status were called.
func (d *Daemon) Calls() (list, status int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.listCalls, d.statusCalls
}

// AddAudit appends n audit entries.
func (d *Daemon) AddAudit(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range n {
		d.appendAuditLocked("daemon", "test.entry", fmt.Sprintf("entry %d", i), "", "ok")
	}
}

func (d *Daemon) appendAuditLocked(actor, action, subject, decision, result string) {
	d.audit = append(d.audit, api.AuditEntry{Seq: uint64(len(d.audit) + 1), Time: d.tick(), Actor: actor, Action: action,
		Subject: subject, Decision: decision, Result: result, Count: 1})
}

// Change returns a request as it is now.
func (d *Daemon) Change(id string) (api.Change, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.changes {
		if c.ID == id {
			return c, true
		}
	}
	return api.Change{}, false
}

// Audit returns the audit entries.
func (d *Daemon) Audit() []api.AuditEntry {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.audit)
}

func (d *Daemon) publish(e api.Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for ch := range d.subs {
		select {
		case ch <- e:
		default:
		}
	}
}

// Operator returns an api.Operator bound to actor.
func (d *Daemon) Operator(actor string) *Fake {
	return &Fake{d: d, who: api.Identity{Actor: actor, Via: "test"}}
}

// Fake is one operator's view of a Daemon.
type Fake struct {
	d   *Daemon
	who api.Identity
	// ChatReply makes the reply to a chat message; nil echoes it.
	ChatReply func(text string) string
}

var _ api.Operator = (*Fake)(nil)

func (f *Fake) Who() api.Identity { return f.who }

func (f *Fake) Status(context.Context) (api.Status, error) {
	f.d.mu.Lock()
	defer f.d.mu.Unlock()
	f.d.statusCalls++
	st := api.Status{Version: "test", StateDir: "/var/lib/ironclaw", Sessions: len(f.d.sessions),
		AgentInstalled: "sha256:aaaa", AgentPinned: "sha256:aaaa", Runsc: "ok", Model: "http://127.0.0.1:11434", Tailnet: "off",
		ModelHealth: f.d.modelHealth, ModelHint: f.d.modelHint}
	for _, s := range f.d.sessions {
		if s.Running {
			st.Running++
		}
	}
	for _, c := range f.d.changes {
		if c.State == "pending" {
			st.PendingChanges++
		}
	}
	return st, nil
}

func (f *Fake) PinAgent(ctx context.Context) (api.Status, error) { return f.Status(ctx) }

func (f *Fake) ListChanges(_ context.Context, flt api.ChangeFilter) ([]api.ChangeSummary, error) {
	f.d.mu.Lock()
	defer f.d.mu.Unlock()
	var out []api.ChangeSummary
	for i := len(f.d.changes) - 1; i >= 0; i-- {
		if c := f.d.changes[i]; flt.All || c.State == "pending" {
			out = append(out, c.ChangeSummary)
		}
	}
	return out, nil
}

func (f *Fake) Change(_ context.Context, id string) (api.Change, error) {
	c, ok := f.d.Change(id)
	if !ok {
		return c, &api.Error{Code: api.CodeNotFound, Message: "no change request " + id}
	}
	return c, nil
}

func (f *Fake) decide(id string, d api.DecideRequest, state string) (api.Decision, error) {
	f.d.mu.Lock()
	var err error
	for i := range f.d.changes {
		c := &f.d.changes[i]
		if c.ID != id {
			continue
		}
		switch {
		case c.State != "pending":
			err = &api.Error{Code: api.CodeConflict, Message: "already decided: it is " + c.State + " by " + c.DecidedBy, Hint: "nothing was done twice"}
		case c.Binding != d.Binding:
			err = &api.Error{Code: api.CodeConflict, Message: "the hash does not match this request"}
		default:
			c.State, c.DecidedBy, c.Note = state, f.who.Actor, d.Note
			c.Result = state
			f.d.appendAuditLocked(f.who.Actor, "change."+strings.TrimSuffix(state, "ed"), "change:"+id+" binding:"+c.Binding, state, state)
		}
		f.d.mu.Unlock()
		if err != nil {
			return api.Decision{}, err
		}
		f.d.publish(api.Event{Kind: api.EventChange, ID: id, What: state})
		return api.Decision{ID: id, Result: state}, nil
	}
	f.d.mu.Unlock()
	return api.Decision{}, &api.Error{Code: api.CodeNotFound, Message: "no change request " + id}
}

func (f *Fake) Approve(_ context.Context, id string, d api.DecideRequest) (api.Decision, error) {
	return f.decide(id, d, "applied")
}

func (f *Fake) Deny(_ context.Context, id string, d api.DecideRequest) (api.Decision, error) {
	return f.decide(id, d, "denied")
}

func (f *Fake) Propose(_ context.Context, r api.ChangeRequest) (api.Ticket, error) {
	id := f.d.File(r.Session, r.Kind, f.who.Actor, r.Reason, "", r.Proposed, "+"+r.Proposed)
	return api.Ticket{ID: id, State: "pending", Outcome: "needs-human"}, nil
}

func (f *Fake) ListSessions(context.Context) ([]api.Session, error) {
	f.d.mu.Lock()
	defer f.d.mu.Unlock()
	f.d.listCalls++
	return slices.Clone(f.d.sessions), nil
}

func (f *Fake) Profile(_ context.Context, id string) (api.Profile, error) {
	return api.Profile{Session: id, Version: 1, Canonical: "instructions: be helpful\nmodel: tiny\n"}, nil
}

func (f *Fake) EraseSession(context.Context, string) error {
	return &api.Error{Code: api.CodeForbidden, Message: "not in tests"}
}

func (f *Fake) RestartSession(_ context.Context, id string) error {
	f.d.mu.Lock()
	f.d.appendAuditLocked(f.who.Actor, "sandbox.resume", id, "", "resumed")
	f.d.mu.Unlock()
	return nil
}

func (f *Fake) CreateSession(context.Context, string) (api.Session, error) {
	return api.Session{}, &api.Error{Code: api.CodeForbidden, Message: "not in tests"}
}

func (f *Fake) StopSession(_ context.Context, id string) error {
	f.d.mu.Lock()
	f.d.appendAuditLocked(f.who.Actor, "sandbox.stop", id, "", "stopped")
	f.d.mu.Unlock()
	return nil
}

func (f *Fake) ResetOutbox(context.Context, string) error {
	return &api.Error{Code: api.CodeForbidden, Message: "not in tests"}
}

func (f *Fake) SessionRecords(_ context.Context, id string) (api.Records, error) {
	f.d.mu.Lock()
	f.d.appendAuditLocked(f.who.Actor, "session.records.read", id, "", "shown")
	f.d.mu.Unlock()
	return api.Records{Session: id}, nil
}

// Transcript is audited first; with the audit broken it shows nothing.
func (f *Fake) Transcript(_ context.Context, id string) (api.Transcript, error) {
	f.d.mu.Lock()
	defer f.d.mu.Unlock()
	if f.d.auditBroken {
		return api.Transcript{}, &api.Error{Code: api.CodeUnavailable, Message: "reading the transcript: supervisor: audit: the log is closed", Hint: "nothing was shown"}
	}
	f.d.appendAuditLocked(f.who.Actor, "session.show", id, "", "transcript")
	return api.Transcript{Session: id, Turns: slices.Clone(f.d.transcripts[id])}, nil
}

func (f *Fake) ProfileHistory(_ context.Context, id string) ([]api.ProfileVersion, error) {
	f.d.mu.Lock()
	defer f.d.mu.Unlock()
	var out []api.ProfileVersion
	for _, v := range f.d.profiles[id] {
		v.Canonical, v.Diff = "", ""
		out = append(out, v)
	}
	return out, nil
}

func (f *Fake) ProfileAt(_ context.Context, id string, version uint64) (api.ProfileVersion, error) {
	f.d.mu.Lock()
	defer f.d.mu.Unlock()
	for _, v := range f.d.profiles[id] {
		if v.Version == version {
			return v, nil
		}
	}
	return api.ProfileVersion{}, &api.Error{Code: api.CodeNotFound, Message: fmt.Sprintf("session %s has no profile version %d", id, version)}
}

func (f *Fake) Chat(_ context.Context, r api.ChatRequest) (api.ChatReply, error) {
	reply := "echo: " + r.Text
	if f.ChatReply != nil {
		reply = f.ChatReply(r.Text)
	}
	return api.ChatReply{Session: r.Session, Seq: 1, Reply: reply, Replied: true}, nil
}

func (f *Fake) AuditEntries(_ context.Context, q api.AuditQuery) ([]api.AuditEntry, error) {
	f.d.mu.Lock()
	defer f.d.mu.Unlock()
	limit := q.Limit
	if limit <= 0 {
		limit = api.DefaultAuditLimit
	}
	// The newest limit matches, oldest first (as the daemon answers).
	var out []api.AuditEntry
	for i := len(f.d.audit) - 1; i >= 0 && len(out) < limit; i-- {
		e := f.d.audit[i]
		if q.Contains == "" || strings.Contains(strings.ToLower(e.Actor+e.Action+e.Subject+e.Result), strings.ToLower(q.Contains)) {
			out = append(out, e)
		}
	}
	slices.Reverse(out)
	return out, nil
}

func (f *Fake) VerifyAudit(context.Context) (api.AuditReport, error) {
	f.d.mu.Lock()
	defer f.d.mu.Unlock()
	return api.AuditReport{OK: true, Entries: uint64(len(f.d.audit)), Proved: []string{"hash chain", "MACs", "anchor"}}, nil
}

func (f *Fake) Subscribe(ctx context.Context) <-chan api.Event {
	ch := make(chan api.Event, 64)
	f.d.mu.Lock()
	f.d.subs[ch] = struct{}{}
	f.d.mu.Unlock()
	context.AfterFunc(ctx, func() {
		f.d.mu.Lock()
		delete(f.d.subs, ch)
		close(ch)
		f.d.mu.Unlock()
	})
	return ch
}
