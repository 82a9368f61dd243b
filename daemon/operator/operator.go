// Package operator implements daemon/api over the daemon's parts: the change
// gateway, the store, the session supervisor and the audit log. Each
// surface (the admin socket, the SSH console) authenticates its operator and
// asks Service.For for a value bound to them; nothing here trusts an actor
// named in a request.
//
// It must never decide anything itself: approvals go through the gateway,
// session actions through the supervisor, and what they audit is what
// happened. Reading a conversation's content is always its own audited act.
package operator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/api"
	"github.com/ironclaw/ironclaw/daemon/audit"
	"github.com/ironclaw/ironclaw/daemon/gateway"
	"github.com/ironclaw/ironclaw/daemon/proxy"
	"github.com/ironclaw/ironclaw/daemon/sandbox"
	"github.com/ironclaw/ironclaw/daemon/store"
	"github.com/ironclaw/ironclaw/daemon/supervisor"
)

// Gateway is what the service needs of the change gateway.
type Gateway interface {
	List(ctx context.Context, f gateway.Filter) ([]gateway.Summary, error)
	Show(ctx context.Context, id gateway.ID) (gateway.View, error)
	Approve(ctx context.Context, id gateway.ID, actor string, hash [32]byte) error
	Deny(ctx context.Context, id gateway.ID, actor string, hash [32]byte, note string) error
	Submit(ctx context.Context, r gateway.Request) (gateway.Ticket, error)
}

// Store is what the service reads from the store.
type Store interface {
	ListSessions(ctx context.Context) ([]store.Session, error)
	GetSession(ctx context.Context, id wire.SessionID) (store.Session, error)
	CurrentProfile(ctx context.Context, id wire.SessionID) (uint64, profile.Profile, error)
	Profile(ctx context.Context, id wire.SessionID, version uint64) (profile.Profile, error)
	ProfileVersions(ctx context.Context, id wire.SessionID) ([]store.ProfileVersionInfo, error)
}

// Supervisor is what the service needs of the session supervisor.
type Supervisor interface {
	Status(id wire.SessionID) (supervisor.Status, bool)
	Send(ctx context.Context, binding, from, text string) (wire.SessionID, uint64, error)
	Subscribe(binding string) chan supervisor.Reply
	Unsubscribe(ch chan supervisor.Reply)
	Erase(ctx context.Context, id wire.SessionID, actor string) error
	Resume(ctx context.Context, id wire.SessionID, operator string) error
	CreateSession(ctx context.Context, binding, actor string) (wire.SessionID, error)
	Stop(ctx context.Context, id wire.SessionID, actor string) error
	Restart(ctx context.Context, id wire.SessionID, actor string) error
	ResetOutbox(ctx context.Context, id wire.SessionID, actor string) error
	Records(ctx context.Context, id wire.SessionID, actor string) (store.Records, error)
	// Transcript audits the read as actor's, then reads; no audit, no read.
	Transcript(ctx context.Context, id wire.SessionID, actor string) ([]wire.Turn, error)
	Undelivered(ctx context.Context, binding string) ([]supervisor.Reply, error)
	Delivered(ctx context.Context, session wire.SessionID, seq uint64) error
}

// AuditLog is what the service needs of the audit log.
type AuditLog interface {
	Verify(anchor *audit.Anchor) (audit.Report, error)
}

// Config wires a Service.
type Config struct {
	Gateway    Gateway
	Store      Store
	Supervisor Supervisor
	Audit      AuditLog
	// AuditPath is the audit log file, read for AuditEntries.
	AuditPath string
	// Anchor returns the audit anchor the daemon keeps in its store.
	Anchor func(ctx context.Context) (*audit.Anchor, error)
	// Status fills in what only the daemon knows (version, health).
	Status func(ctx context.Context) api.Status
	// PinAgent pins the installed agent for new sessions on behalf of actor.
	PinAgent func(actor string) error
	// Usage reads a running sandbox's cgroup usage by its container id
	// (sandbox.CgroupHost.Usage); nil leaves usage out of the session list.
	Usage func(containerID string) (sandbox.CgroupUsage, error)
	// ModelProbe asks the model server whether it has the model
	// (proxy.Preflight); nil leaves the model's health out of Status.
	// Status calls it at most once per ModelProbeTTL, with ModelProbeTimeout.
	ModelProbe func(ctx context.Context) error
	// LocalBinding is the binding of the local console session.
	LocalBinding string
	// Hub carries events; nil makes one.
	Hub *Hub
}

// Service makes operator-bound api values.
type Service struct {
	cfg   Config
	hub   *Hub
	model modelCache
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Gateway == nil || cfg.Store == nil || cfg.Supervisor == nil || cfg.Audit == nil || cfg.Anchor == nil || cfg.Status == nil || cfg.PinAgent == nil {
		return nil, errors.New("operator: Gateway, Store, Supervisor, Audit, Anchor, Status and PinAgent are required")
	}
	if cfg.Hub == nil {
		cfg.Hub = NewHub()
	}
	return &Service{cfg: cfg, hub: cfg.Hub}, nil
}

// Hub is the service's event hub (the daemon publishes what happens
// outside the service on it, such as an agent filing a request).
func (s *Service) Hub() *Hub { return s.hub }

// For returns the api bound to the operator who authenticated as actor
// ("operator:local:<user>" or "operator:SHA256:<fingerprint>") on surface
// via. The caller must have authenticated actor itself.
func (s *Service) For(actor, via string) api.Operator {
	return &bound{s: s, who: api.Identity{Actor: actor, Via: via}}
}

type bound struct {
	s   *Service
	who api.Identity
}

var _ api.Operator = (*bound)(nil)

func (b *bound) Who() api.Identity { return b.who }

func (b *bound) Status(ctx context.Context) (api.Status, error) {
	st := b.s.cfg.Status(ctx)
	ss, err := b.s.cfg.Store.ListSessions(ctx)
	if err != nil {
		return st, internal("listing sessions", err)
	}
	st.Sessions = 0
	for _, x := range ss {
		if x.State == store.StateActive {
			st.Sessions++
			if rs, ok := b.s.cfg.Supervisor.Status(x.ID); ok && rs.Running {
				st.Running++
			}
		}
	}
	pending, err := b.s.cfg.Gateway.List(ctx, gateway.Filter{States: []store.ChangeState{store.ChangePending}})
	if err != nil {
		return st, internal("listing changes", err)
	}
	st.PendingChanges = len(pending)
	st.ModelHealth, st.ModelHint = b.s.modelHealth(ctx)
	return st, nil
}

func (b *bound) PinAgent(ctx context.Context) (api.Status, error) {
	if err := b.s.cfg.PinAgent(b.who.Actor); err != nil {
		return api.Status{}, internal("pinning the agent", err)
	}
	return b.Status(ctx)
}

func internal(what string, err error) error {
	return &api.Error{Code: api.CodeInternal, Message: what + ": " + err.Error(), Hint: "the daemon's log has more; try again"}
}

// --- changes ---------------------------------------------------------------

func summary(s gateway.Summary) api.ChangeSummary {
	out := api.ChangeSummary{
		ID: s.ID.String(), Kind: s.Kind, Requester: s.Requester, State: string(s.State),
		Outcome: s.Outcome, Rule: s.Rule, Created: s.Created, DecidedBy: s.DecidedBy,
		Result: s.Result, BaseVersion: s.BaseVersion, Binding: fmt.Sprintf("%x", s.Binding),
	}
	if s.Session != (wire.SessionID{}) {
		out.Session = s.Session.String()
	}
	return out
}

func (b *bound) ListChanges(ctx context.Context, f api.ChangeFilter) ([]api.ChangeSummary, error) {
	gf := gateway.Filter{}
	if !f.All {
		gf.States = []store.ChangeState{store.ChangePending}
	}
	list, err := b.s.cfg.Gateway.List(ctx, gf)
	if err != nil {
		return nil, internal("listing changes", err)
	}
	out := make([]api.ChangeSummary, 0, len(list))
	for _, s := range list {
		out = append(out, summary(s))
	}
	return out, nil
}

func parseChangeID(s string) (gateway.ID, error) {
	id, err := gateway.ParseID(s)
	if err != nil {
		return id, &api.Error{Code: api.CodeInvalid, Message: "not a change request id", Hint: "ids are 32 lower-case hex digits; list them with `changes`"}
	}
	return id, nil
}

func (b *bound) Change(ctx context.Context, ids string) (api.Change, error) {
	id, err := parseChangeID(ids)
	if err != nil {
		return api.Change{}, err
	}
	v, err := b.s.cfg.Gateway.Show(ctx, id)
	if err == nil {
		err = v.Check()
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return api.Change{}, &api.Error{Code: api.CodeNotFound, Message: "no change request " + ids, Hint: "list them with `changes --all`"}
	case errors.Is(err, gateway.ErrTampered):
		return api.Change{}, &api.Error{Code: api.CodeConflict, Message: err.Error(), Hint: "deny it; it will never be applied"}
	case err != nil:
		return api.Change{}, internal("showing change "+ids, err)
	}
	return api.Change{
		ChangeSummary: summary(v.Summary), Diff: v.Diff,
		Base: string(v.Base), Proposed: string(v.Proposed), UntrustedReason: v.UntrustedReason,
		PolicyReasons: v.PolicyReasons, ChangedFields: v.ChangedFields, Restart: v.Restart,
		BaseIsCurrent: v.BaseIsCurrent, Note: v.Note,
	}, nil
}

// decisionError maps a gateway refusal to what the operator can do.
func decisionError(err error) error {
	switch {
	case errors.Is(err, gateway.ErrNotPending):
		return &api.Error{Code: api.CodeConflict, Message: "already decided: " + err.Error(), Hint: "nothing was done twice; refresh to see who decided it"}
	case errors.Is(err, gateway.ErrHashMismatch):
		return &api.Error{Code: api.CodeConflict, Message: err.Error(), Hint: "open the request again and decide on what it shows now"}
	case errors.Is(err, gateway.ErrStale), errors.Is(err, gateway.ErrRefused), errors.Is(err, gateway.ErrTampered):
		return &api.Error{Code: api.CodeConflict, Message: err.Error(), Hint: "nothing was applied"}
	case errors.Is(err, gateway.ErrNotOperator):
		return &api.Error{Code: api.CodeForbidden, Message: err.Error()}
	case errors.Is(err, store.ErrNotFound):
		return &api.Error{Code: api.CodeNotFound, Message: "no such change request", Hint: "list them with `changes --all`"}
	case errors.Is(err, gateway.ErrMalformed), errors.Is(err, gateway.ErrTooManyPending), errors.Is(err, gateway.ErrCoolingDown):
		return &api.Error{Code: api.CodeInvalid, Message: err.Error()}
	}
	return internal("deciding", err)
}

func (b *bound) decide(ctx context.Context, ids string, d api.DecideRequest, approve bool) (api.Decision, error) {
	id, err := parseChangeID(ids)
	if err != nil {
		return api.Decision{}, err
	}
	hash, err := gateway.ParseBinding(d.Binding)
	if err != nil {
		return api.Decision{}, &api.Error{Code: api.CodeInvalid, Message: err.Error(), Hint: "pass the binding shown with the request"}
	}
	what := "denied"
	if approve {
		what = "applied"
		err = b.s.cfg.Gateway.Approve(ctx, id, b.who.Actor, hash)
	} else {
		err = b.s.cfg.Gateway.Deny(ctx, id, b.who.Actor, hash, d.Note)
	}
	out := api.Decision{ID: ids, Result: what}
	if errors.Is(err, gateway.ErrNotify) {
		out.Result = "applied; the daemon will deliver it at its next start (" + err.Error() + ")"
		err = nil
	}
	// Whatever happened (applied, stale, refused), others should re-read it.
	b.s.hub.Publish(api.Event{Kind: api.EventChange, ID: ids, What: what})
	if err != nil {
		return api.Decision{}, decisionError(err)
	}
	return out, nil
}

func (b *bound) Approve(ctx context.Context, id string, d api.DecideRequest) (api.Decision, error) {
	return b.decide(ctx, id, d, true)
}

func (b *bound) Deny(ctx context.Context, id string, d api.DecideRequest) (api.Decision, error) {
	return b.decide(ctx, id, d, false)
}

func (b *bound) Propose(ctx context.Context, r api.ChangeRequest) (api.Ticket, error) {
	var session wire.SessionID
	if r.Session != "" {
		id, err := wire.ParseSessionID(r.Session)
		if err != nil {
			return api.Ticket{}, &api.Error{Code: api.CodeInvalid, Message: "not a session id", Hint: "list them with `sessions`"}
		}
		session = id
	}
	t, err := b.s.cfg.Gateway.Submit(ctx, gateway.Request{
		Session: session, Kind: r.Kind, Requester: b.who.Actor, Reason: r.Reason,
		Proposed: []byte(r.Proposed), BaseVersion: r.BaseVersion,
	})
	if err != nil {
		return api.Ticket{}, decisionError(err)
	}
	b.s.hub.Publish(api.Event{Kind: api.EventChange, ID: t.ID.String(), What: "filed"})
	return api.Ticket{ID: t.ID.String(), State: string(t.State), Outcome: t.Outcome.String(), Rule: t.Rule, Duplicate: t.Duplicate}, nil
}

// --- sessions --------------------------------------------------------------

func parseSessionID(s string) (wire.SessionID, error) {
	id, err := wire.ParseSessionID(s)
	if err != nil {
		return id, &api.Error{Code: api.CodeInvalid, Message: "not a session id", Hint: "list them with `sessions`"}
	}
	return id, nil
}

func (b *bound) session(ctx context.Context, ids string) (store.Session, error) {
	id, err := parseSessionID(ids)
	if err != nil {
		return store.Session{}, err
	}
	s, err := b.s.cfg.Store.GetSession(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return s, &api.Error{Code: api.CodeNotFound, Message: "no session " + ids, Hint: "list them with `sessions`"}
	}
	if err != nil {
		return s, internal("reading session", err)
	}
	return s, nil
}

func (b *bound) ListSessions(ctx context.Context) ([]api.Session, error) {
	ss, err := b.s.cfg.Store.ListSessions(ctx)
	if err != nil {
		return nil, internal("listing sessions", err)
	}
	out := make([]api.Session, 0, len(ss))
	for _, s := range ss {
		v := api.Session{ID: s.ID.String(), Binding: s.Binding, State: string(s.State), Created: s.Created, ProfileVersion: s.ProfileVersion}
		if rs, ok := b.s.cfg.Supervisor.Status(s.ID); ok {
			v.Running, v.Started, v.Stopped = rs.Running, rs.Started, rs.Stopped
			v.InboxHead, v.Progress, v.Exits = rs.InboxHead, rs.Progress, rs.Exits
			if rs.Running && rs.ContainerID != "" && b.s.cfg.Usage != nil {
				// A few small cgroup files per running sandbox; a sandbox
				// that just ended simply shows no usage.
				if u, err := b.s.cfg.Usage(rs.ContainerID); err == nil {
					v.MemoryBytes, v.CPUUsec, v.UsageAt = u.MemoryBytes, u.CPUUsec, time.Now().UTC()
				}
			}
		}
		out = append(out, v)
	}
	return out, nil
}

func (b *bound) Profile(ctx context.Context, ids string) (api.Profile, error) {
	s, err := b.session(ctx, ids)
	if err != nil {
		return api.Profile{}, err
	}
	v, p, err := b.s.cfg.Store.CurrentProfile(ctx, s.ID)
	if err != nil {
		return api.Profile{}, &api.Error{Code: api.CodeNotFound, Message: "session " + ids + " has no profile (erased?)"}
	}
	return api.Profile{Session: ids, Version: v, Canonical: string(p.Canonical())}, nil
}

func (b *bound) EraseSession(ctx context.Context, ids string) error {
	s, err := b.session(ctx, ids)
	if err != nil {
		return err
	}
	if s.State == store.StateErased {
		return &api.Error{Code: api.CodeConflict, Message: "session " + ids + " is already erased"}
	}
	if err := b.s.cfg.Supervisor.Erase(ctx, s.ID, b.who.Actor); err != nil {
		return internal("erasing", err)
	}
	b.s.hub.Publish(api.Event{Kind: api.EventSession, ID: ids, What: "erased"})
	return nil
}

func (b *bound) RestartSession(ctx context.Context, ids string) error {
	s, err := b.session(ctx, ids)
	if err != nil {
		return err
	}
	if err := b.s.cfg.Supervisor.Resume(ctx, s.ID, b.who.Actor); err != nil {
		return &api.Error{Code: api.CodeUnavailable, Message: err.Error()}
	}
	// A fresh sandbox resumes from the daemon's record.
	if err := b.s.cfg.Supervisor.Restart(ctx, s.ID, b.who.Actor); err != nil {
		return &api.Error{Code: api.CodeUnavailable, Message: err.Error()}
	}
	b.s.hub.Publish(api.Event{Kind: api.EventSession, ID: ids, What: "restarted"})
	return nil
}

// activeSession is session, refusing an erased one.
func (b *bound) activeSession(ctx context.Context, ids string) (store.Session, error) {
	s, err := b.session(ctx, ids)
	if err == nil && s.State != store.StateActive {
		err = &api.Error{Code: api.CodeConflict, Message: "session " + ids + " is erased"}
	}
	return s, err
}

func (b *bound) CreateSession(ctx context.Context, binding string) (api.Session, error) {
	id, err := b.s.cfg.Supervisor.CreateSession(ctx, binding, b.who.Actor)
	if errors.Is(err, store.ErrBindingTaken) {
		return api.Session{}, &api.Error{Code: api.CodeConflict, Message: err.Error(), Hint: "list sessions with `sessions`"}
	}
	if err != nil {
		return api.Session{}, &api.Error{Code: api.CodeInvalid, Message: err.Error()}
	}
	b.s.hub.Publish(api.Event{Kind: api.EventSession, ID: id.String(), What: "created"})
	return api.Session{ID: id.String(), Binding: binding, State: string(store.StateActive)}, nil
}

func (b *bound) StopSession(ctx context.Context, ids string) error {
	s, err := b.activeSession(ctx, ids)
	if err != nil {
		return err
	}
	if err := b.s.cfg.Supervisor.Stop(ctx, s.ID, b.who.Actor); err != nil {
		return &api.Error{Code: api.CodeUnavailable, Message: err.Error()}
	}
	b.s.hub.Publish(api.Event{Kind: api.EventSession, ID: ids, What: "stopped"})
	return nil
}

func (b *bound) ResetOutbox(ctx context.Context, ids string) error {
	s, err := b.activeSession(ctx, ids)
	if err != nil {
		return err
	}
	if err := b.s.cfg.Supervisor.ResetOutbox(ctx, s.ID, b.who.Actor); err != nil {
		return &api.Error{Code: api.CodeUnavailable, Message: err.Error()}
	}
	b.s.hub.Publish(api.Event{Kind: api.EventSession, ID: ids, What: "outbox reset"})
	return nil
}

func (b *bound) SessionRecords(ctx context.Context, ids string) (api.Records, error) {
	s, err := b.activeSession(ctx, ids)
	if err != nil {
		return api.Records{}, err
	}
	recs, err := b.s.cfg.Supervisor.Records(ctx, s.ID, b.who.Actor)
	if err != nil {
		return api.Records{}, internal("reading records", err)
	}
	out := api.Records{Session: ids, Memory: []api.Fact{}, Notes: []api.Note{}, Schedules: []api.Schedule{}}
	for _, m := range recs.Memory {
		out.Memory = append(out.Memory, api.Fact{Key: m.Key, Text: m.Text})
	}
	for _, n := range recs.Notes {
		out.Notes = append(out.Notes, api.Note{Name: n.Name, Text: n.Text})
	}
	for _, sc := range recs.Schedules {
		out.Schedules = append(out.Schedules, api.Schedule{ID: sc.ID, Next: time.Unix(sc.At, 0).UTC(), Every: time.Duration(sc.Every) * time.Second, Text: sc.Text})
	}
	return out, nil
}

func (b *bound) Transcript(ctx context.Context, ids string) (api.Transcript, error) {
	s, err := b.activeSession(ctx, ids)
	if err != nil {
		return api.Transcript{}, err
	}
	// The supervisor writes the audit entry first and reads nothing if it
	// cannot: this method never returns content whose read is not audited.
	turns, err := b.s.cfg.Supervisor.Transcript(ctx, s.ID, b.who.Actor)
	if err != nil {
		return api.Transcript{}, &api.Error{Code: api.CodeUnavailable, Message: "reading the transcript: " + err.Error(), Hint: "nothing was shown; check the audit log's disk, then try again"}
	}
	out := api.Transcript{Session: ids, Turns: make([]api.Turn, 0, len(turns))}
	for _, t := range turns {
		out.Turns = append(out.Turns, api.Turn{Seq: t.Seq, Role: t.Role, Text: t.Text})
	}
	return out, nil
}

func (b *bound) ProfileHistory(ctx context.Context, ids string) ([]api.ProfileVersion, error) {
	s, err := b.activeSession(ctx, ids)
	if err != nil {
		return nil, err
	}
	vs, err := b.s.cfg.Store.ProfileVersions(ctx, s.ID)
	if err != nil {
		return nil, internal("listing profile versions", err)
	}
	out := make([]api.ProfileVersion, 0, len(vs))
	for _, v := range vs {
		pv := api.ProfileVersion{Session: ids, Version: v.Version, Created: v.Created}
		if v.HasChange {
			pv.Change = v.Change.String()
		}
		out = append(out, pv)
	}
	return out, nil
}

func (b *bound) ProfileAt(ctx context.Context, ids string, version uint64) (api.ProfileVersion, error) {
	vs, err := b.ProfileHistory(ctx, ids)
	if err != nil {
		return api.ProfileVersion{}, err
	}
	i := slices.IndexFunc(vs, func(v api.ProfileVersion) bool { return v.Version == version })
	if i < 0 {
		return api.ProfileVersion{}, &api.Error{Code: api.CodeNotFound, Message: fmt.Sprintf("session %s has no profile version %d", ids, version), Hint: "list them with the profile history"}
	}
	out := vs[i]
	id, _ := parseSessionID(ids)
	cur, err := b.s.cfg.Store.Profile(ctx, id, version)
	if err != nil {
		return api.ProfileVersion{}, internal("reading profile version", err)
	}
	var prev []byte
	if i > 0 {
		p, err := b.s.cfg.Store.Profile(ctx, id, vs[i-1].Version)
		if err != nil {
			return api.ProfileVersion{}, internal("reading profile version", err)
		}
		prev = p.Canonical()
	}
	out.Canonical = string(cur.Canonical())
	out.Diff = profile.Diff(prev, cur.Canonical())
	return out, nil
}

// --- conversations ---------------------------------------------------------

// MaxChatWait bounds ChatRequest.WaitSeconds.
const MaxChatWait = 300 * time.Second

func (b *bound) Chat(ctx context.Context, r api.ChatRequest) (api.ChatReply, error) {
	if r.Text == "" || len(r.Text) > wire.MaxTextSize || !utf8.ValidString(r.Text) {
		return api.ChatReply{}, &api.Error{Code: api.CodeInvalid, Message: "the message must be 1 byte to 64 KiB of UTF-8 text"}
	}
	binding := b.s.cfg.LocalBinding
	if r.Session != "" {
		s, err := b.session(ctx, r.Session)
		if err != nil {
			return api.ChatReply{}, err
		}
		if s.State != store.StateActive {
			return api.ChatReply{}, &api.Error{Code: api.CodeConflict, Message: "session " + r.Session + " is " + string(s.State)}
		}
		binding = s.Binding
	}
	wait := min(time.Duration(max(r.WaitSeconds, 0))*time.Second, MaxChatWait)
	sub := b.s.cfg.Supervisor.Subscribe(binding)
	defer b.s.cfg.Supervisor.Unsubscribe(sub)
	id, seq, err := b.s.cfg.Supervisor.Send(ctx, binding, b.who.Actor, r.Text)
	if err != nil {
		return api.ChatReply{}, &api.Error{Code: api.CodeUnavailable, Message: "sending: " + err.Error(), Hint: "see the session's state in `sessions`"}
	}
	out := api.ChatReply{Session: id.String(), Seq: seq}
	// A reply stays in the store's delivery intents until a chat hands it
	// over: one that no chat was waiting for (the client gave up, the
	// daemon restarted) comes back with the next chat, once.
	// Only the local console session's replies are the chat's to hand
	// over; another channel's session (Matrix) delivers its own.
	var handed []uint64
	var earlier []supervisor.Reply
	if binding == b.s.cfg.LocalBinding {
		if earlier, err = b.s.cfg.Supervisor.Undelivered(ctx, binding); err != nil {
			return api.ChatReply{}, &api.Error{Code: api.CodeUnavailable, Message: "listing undelivered replies: " + err.Error()}
		}
	}
	for _, e := range earlier {
		if e.Session == id && e.InReplyTo != seq {
			out.Earlier = append(out.Earlier, e.Text)
			handed = append(handed, e.Seq)
		}
	}
	done := func() (api.ChatReply, error) {
		for _, s := range handed {
			if err := b.s.cfg.Supervisor.Delivered(context.WithoutCancel(ctx), id, s); err != nil {
				return out, &api.Error{Code: api.CodeUnavailable, Message: "recording the delivery: " + err.Error()}
			}
		}
		return out, nil
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case rep := <-sub:
			if rep.Session == id && rep.InReplyTo == seq {
				out.Reply, out.Replied = rep.Text, true
				if binding == b.s.cfg.LocalBinding {
					handed = append(handed, rep.Seq)
				}
				return done()
			}
		case <-timer.C:
			return done()
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
}

// --- audit -----------------------------------------------------------------

func (b *bound) AuditEntries(ctx context.Context, q api.AuditQuery) ([]api.AuditEntry, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = api.DefaultAuditLimit
	}
	limit = min(limit, api.MaxAuditLimit)
	needle := strings.ToLower(q.Contains)
	// From the end of the file backwards: the newest entries of a long log
	// cost only their own lines.
	var out []api.AuditEntry
	err := audit.Tail(b.s.cfg.AuditPath, func(e audit.Entry) bool {
		if ctx.Err() != nil {
			return false
		}
		if needle == "" || matches(e, needle) {
			out = append(out, api.AuditEntry{Seq: e.Seq, Time: e.Time, Actor: e.Actor, Action: e.Action,
				Subject: e.Subject, Decision: e.Decision, Result: e.Result, Count: e.Count})
		}
		return len(out) < limit
	})
	if err != nil {
		return nil, internal("reading the audit log", err)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	slices.Reverse(out) // oldest first, as documented
	return out, nil
}

func matches(e audit.Entry, needle string) bool {
	for _, f := range []string{e.Actor, e.Action, e.Subject, e.Decision, e.Result} {
		if strings.Contains(strings.ToLower(f), needle) {
			return true
		}
	}
	return false
}

func (b *bound) VerifyAudit(ctx context.Context) (api.AuditReport, error) {
	anchor, err := b.s.cfg.Anchor(ctx)
	if err != nil {
		return api.AuditReport{}, internal("reading the audit anchor", err)
	}
	rep, err := b.s.cfg.Audit.Verify(anchor)
	out := api.AuditReport{Entries: rep.Entries, Proved: []string{"hash chain"}}
	if rep.MACVerified {
		out.Proved = append(out.Proved, "MACs")
	}
	if rep.Anchored {
		out.Proved = append(out.Proved, "anchor")
	}
	var ve *audit.VerifyError
	switch {
	case errors.As(err, &ve):
		out.Failure = fmt.Sprintf("entry %d (line %d): %s", ve.Seq, ve.Line, ve.Reason)
		out.Proved = nil
		return out, nil
	case err != nil:
		return api.AuditReport{}, internal("verifying the audit log", err)
	}
	out.OK = true
	return out, nil
}

// --- model health ----------------------------------------------------------

// How often and how long Status asks the model server about the model: the
// overview refreshes often, the probe is an HTTP round trip.
const (
	ModelProbeTTL     = 10 * time.Second
	ModelProbeTimeout = 2 * time.Second
)

// modelCache holds the last probe's answer; one probe runs at a time and
// callers that come while it runs wait for it rather than start another.
type modelCache struct {
	mu     sync.Mutex
	at     time.Time
	health string
	hint   string
}

// modelHealth is "ok", "unreachable", "model missing" or "error" with a
// hint (what the probe said), or "" when there is no probe.
func (s *Service) modelHealth(ctx context.Context) (string, string) {
	if s.cfg.ModelProbe == nil {
		return "", ""
	}
	c := &s.model
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < ModelProbeTTL {
		return c.health, c.hint
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ModelProbeTimeout)
	defer cancel()
	err := s.cfg.ModelProbe(pctx)
	c.at, c.hint = time.Now(), ""
	switch {
	case err == nil:
		c.health = "ok"
	case errors.Is(err, proxy.ErrModelMissing):
		c.health, c.hint = "model missing", err.Error()
	case errors.Is(err, proxy.ErrUnreachable), errors.Is(err, context.DeadlineExceeded):
		c.health, c.hint = "unreachable", err.Error()
	default:
		c.health, c.hint = "error", err.Error()
	}
	return c.health, c.hint
}

// --- events ----------------------------------------------------------------

func (b *bound) Subscribe(ctx context.Context) <-chan api.Event { return b.s.hub.Subscribe(ctx) }
