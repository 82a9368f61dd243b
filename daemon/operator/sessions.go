package operator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/api"
	"github.com/ironclaw/ironclaw/daemon/store"
)

// Sessions through the api: list, profile, erase, stop, restart, records, transcript.

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
