package matrix

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ironclaw/ironclaw/daemon/store"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// syncer is mautrix's default syncer minus the crypto helper's handler for
// encrypted events: that handler decrypts in background goroutines that
// outlive the batch, and the channel must record every event of a batch
// before the sync token moves on. The channel decrypts them itself (collect).
type syncer struct{ *mautrix.DefaultSyncer }

func newSyncer() *syncer { return &syncer{mautrix.NewDefaultSyncer()} }

func (s *syncer) OnEventType(t event.Type, cb mautrix.EventHandler) {
	if t == event.EventEncrypted {
		return
	}
	s.DefaultSyncer.OnEventType(t, cb)
}

// syncLoop long-polls /sync. Each batch is processed by mautrix's handlers
// (room keys, device lists, room state: idempotent, so a replayed batch does
// no harm), then its events are recorded in the store together with the next
// token. A crash at any point replays the batch from the last committed
// token. Errors back off and retry; a revoked token stops the channel.
func (c *Channel) syncLoop(ctx context.Context) error {
	since := c.acct.NextBatch
	backoff := time.Second
	for ctx.Err() == nil {
		resp, err := c.cli.FullSyncRequest(oneAttempt(ctx), mautrix.ReqSync{Since: since, Timeout: int(c.cfg.SyncTimeout / time.Millisecond)})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, mautrix.MUnknownToken) {
				c.audit("matrix.sync", string(c.cfg.UserID), "refused", "the homeserver no longer accepts the bot's access token")
				return errors.New("matrix: the homeserver no longer accepts the bot's access token: run `ironclaw matrix login`")
			}
			wait := backoff
			if ra, ok := retryAfter(err); ok {
				wait = ra
			}
			c.log.Warn("matrix sync failed; retrying", "in", wait, "err", err)
			if !sleep(ctx, wait) {
				return nil
			}
			backoff = min(backoff*2, time.Minute)
			continue
		}
		backoff = time.Second
		if err := c.cli.Syncer.ProcessResponse(ctx, resp, since); err != nil {
			c.log.Error("processing a sync batch", "err", err)
		}
		events, err := c.collect(ctx, resp, since == "")
		if err == nil {
			_, err = c.cfg.Store.CommitMatrixSync(ctx, events, resp.NextBatch, c.holdLimits())
		}
		if err != nil {
			c.log.Error("recording a sync batch; it will be fetched again", "err", err)
			if !sleep(ctx, backoff) {
				return nil
			}
			continue
		}
		fault("matrix.after-sync")
		since = resp.NextBatch
		kick(c.inKick)
		kick(c.outKick)
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// collect turns a processed batch into the events the channel records. The
// very first sync of a device holds history from before it existed: only
// invites are taken from it. A limited timeline (the homeserver sends only
// the latest events after the bot was away) has its gap fetched first; if
// that fails the batch is not committed.
func (c *Channel) collect(ctx context.Context, resp *mautrix.RespSync, first bool) ([]store.MatrixEvent, error) {
	var out []store.MatrixEvent
	for room, data := range resp.Rooms.Invite {
		for _, evt := range data.State.Events {
			if evt.Type != event.StateMember || evt.GetStateKey() != string(c.cfg.UserID) {
				continue
			}
			if m := evt.Content.AsMember(); m.Membership != event.MembershipInvite {
				continue
			}
			// Stripped invite state carries no event id; the batch token
			// makes the record unique and a replayed batch the same.
			out = append(out, c.record("invite|"+string(room)+"|"+string(evt.Sender)+"|"+resp.NextBatch, room, evt.Sender, inbound{K: kindInvite}))
		}
	}
	if first {
		return out, nil
	}
	for room, data := range resp.Rooms.Join {
		evs := data.Timeline.Events
		if data.Timeline.Limited && data.Timeline.PrevBatch != "" {
			gap, err := c.fillGap(ctx, room, data.Timeline.PrevBatch)
			if err != nil {
				return nil, err
			}
			evs = append(gap, evs...)
		}
		for _, evt := range evs {
			if r, ok := c.classify(ctx, room, evt); ok {
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// maxGapPages bounds how far back (pages of 100 events) a gap in a room's
// timeline is fetched.
const maxGapPages = 10

// fillGap returns, oldest first, the events a limited timeline left out:
// back from from to the newest event already recorded, or the bot's own
// join. A longer gap is audited, never dropped silently.
func (c *Channel) fillGap(ctx context.Context, room id.RoomID, from string) ([]*event.Event, error) {
	var back []*event.Event // newest first
	done := func() []*event.Event {
		slices.Reverse(back)
		return back
	}
	for page := 0; page < maxGapPages && from != ""; page++ {
		resp, err := c.cli.Messages(ctx, room, from, "", mautrix.DirectionBackward, nil, 100)
		if err != nil {
			return nil, fmt.Errorf("fetching a gap in %s's timeline: %w", room, err)
		}
		for _, evt := range resp.Chunk {
			if evt.ID == "" {
				continue
			}
			if seen, err := c.cfg.Store.MatrixSeen(ctx, string(evt.ID)); err != nil {
				return nil, err
			} else if seen {
				return done(), nil
			}
			_ = evt.Content.ParseRaw(evt.Type) // classify refuses what does not parse
			if evt.Type == event.StateMember && evt.GetStateKey() == string(c.cfg.UserID) && evt.Content.AsMember().Membership == event.MembershipJoin {
				return done(), nil
			}
			back = append(back, evt)
		}
		if len(resp.Chunk) == 0 || resp.End == from {
			return done(), nil
		}
		from = resp.End
	}
	if from != "" {
		if err := c.audit("matrix.gap", string(room), "refused", "the bot was away too long: older events of this room were not read"); err != nil {
			return nil, err
		}
	}
	return done(), nil
}

// classify decides what one timeline event is to the channel.
func (c *Channel) classify(ctx context.Context, room id.RoomID, evt *event.Event) (store.MatrixEvent, bool) {
	evt.RoomID = room
	if evt.Sender == c.cfg.UserID || evt.ID == "" {
		return store.MatrixEvent{}, false
	}
	switch {
	case evt.Type == event.StateMember:
		m := evt.Content.AsMember()
		who := id.UserID(evt.GetStateKey())
		if who == c.cfg.UserID || (m.Membership != event.MembershipJoin && m.Membership != event.MembershipInvite) {
			return store.MatrixEvent{}, false
		}
		return c.record(string(evt.ID), room, who, inbound{K: kindMember}), true
	case evt.Type == event.EventEncrypted:
		raw, err := json.Marshal(evt)
		if err != nil || len(raw) > maxRawEvent {
			return c.record(string(evt.ID), room, evt.Sender, inbound{K: kindRefuse, Reason: "the event is too large"}), true
		}
		if dec, err := c.mach.DecryptMegolmEvent(ctx, evt); err == nil {
			return c.record(string(evt.ID), room, evt.Sender, c.decrypted(ctx, dec)), true
		}
		return c.record(string(evt.ID), room, evt.Sender, inbound{K: kindEncrypted, Raw: raw}), true
	case evt.Type == event.EventMessage || evt.Type == event.EventSticker:
		// Plaintext. The bot talks only in encrypted rooms; in one, a
		// plaintext message is refused, never read.
		reason := "this room is not encrypted; I only talk in end-to-end encrypted rooms"
		if enc, _ := c.cli.StateStore.IsEncrypted(ctx, room); enc {
			reason = "that message was not encrypted, in an encrypted room; I did not read it"
		}
		return c.record(string(evt.ID), room, evt.Sender, inbound{K: kindRefuse, Reason: reason}), true
	}
	// Reactions, redactions, receipts, other state: nothing the agent
	// acts on (docs/matrix.md says why for each).
	return store.MatrixEvent{}, false
}

func (c *Channel) record(eventID string, room id.RoomID, sender id.UserID, in inbound) store.MatrixEvent {
	body, _ := json.Marshal(in)
	return store.MatrixEvent{EventID: capID(eventID), RoomID: string(room), Sender: string(sender), State: store.MatrixNew, Body: body}
}

// capID keeps a record id within the store's limit (ids are at most 255
// bytes by the spec; synthetic ones may be longer).
func capID(s string) string {
	if len(s) <= 255 {
		return s
	}
	return s[:200] + "|" + hashHex(s)[:32]
}

// retryAfter reads M_LIMIT_EXCEEDED's retry_after_ms (or Retry-After).
func retryAfter(err error) (time.Duration, bool) {
	var he mautrix.HTTPError
	if !errors.As(err, &he) || he.RespError == nil || he.RespError.ErrCode != mautrix.MLimitExceeded.ErrCode {
		return 0, false
	}
	if ms, ok := he.RespError.ExtraData["retry_after_ms"].(float64); ok && ms >= 0 {
		return min(time.Duration(ms)*time.Millisecond, 10*time.Minute), true
	}
	if he.Response != nil {
		if s := he.Response.Header.Get("Retry-After"); s != "" {
			if d, err := time.ParseDuration(s + "s"); err == nil {
				return min(d, 10*time.Minute), true
			}
		}
	}
	return 5 * time.Second, true
}
