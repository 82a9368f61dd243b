package matrix

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/gateway"
	"github.com/ironclaw/ironclaw/daemon/store"
	"github.com/ironclaw/ironclaw/policy"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// pollInterval is how often recorded events are looked at again without a
// sync waking the loop (held events whose sender was approved meanwhile,
// events waiting for a room key).
const pollInterval = 2 * time.Second

func (c *Channel) inboundLoop(ctx context.Context) {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		c.processInbound(ctx)
		select {
		case <-ctx.Done():
			return
		case <-c.inKick:
		case <-t.C:
		}
	}
}

// processInbound takes every open recorded event in order of arrival.
func (c *Channel) processInbound(ctx context.Context) {
	evs, err := c.cfg.Store.MatrixOpen(ctx, openPerRoom)
	if err != nil {
		c.log.Error("listing recorded Matrix events", "err", err)
		return
	}
	blocked := map[id.RoomID]bool{} // keep each room's order: a held event holds the rest
	for _, e := range evs {
		if ctx.Err() != nil {
			return
		}
		if e.State == store.MatrixNew && time.Since(e.Created) > c.cfg.HeldExpiry {
			// Waited too long (its sender's request still pending): dropped,
			// audited first; never handed on. Held or not, it no longer
			// holds its room.
			if err := c.cfg.Audit.Refuse("channel:"+e.Sender, "matrix.expired", e.RoomID, "held longer than the expiry"); err != nil {
				c.log.Warn("auditing an expired Matrix event; will retry", "room", e.RoomID, "seq", e.Seq, "err", err)
				blocked[id.RoomID(e.RoomID)] = true
				continue
			}
			if err := c.cfg.Store.UpdateMatrixEvent(ctx, e.Seq, store.MatrixRefused, nil, 0); err != nil {
				c.log.Warn("dropping an expired Matrix event; will retry", "room", e.RoomID, "seq", e.Seq, "err", err)
				blocked[id.RoomID(e.RoomID)] = true
			}
			continue
		}
		room := id.RoomID(e.RoomID)
		if blocked[room] {
			continue
		}
		done, err := c.handle(ctx, e)
		if err != nil {
			c.log.Warn("handling a Matrix event; will retry", "room", e.RoomID, "seq", e.Seq, "err", err)
		}
		if !done {
			blocked[room] = true
		}
	}
}

// handle acts on one recorded event; done is false while it must wait.
func (c *Channel) handle(ctx context.Context, e store.MatrixEvent) (done bool, err error) {
	var in inbound
	if err := json.Unmarshal(e.Body, &in); err != nil {
		if err := c.cfg.Audit.Refuse("channel:matrix", "matrix.refused", e.RoomID, "undecodable record"); err != nil {
			return false, err
		}
		return true, c.cfg.Store.UpdateMatrixEvent(ctx, e.Seq, store.MatrixRefused, nil, 0)
	}
	room, sender := id.RoomID(e.RoomID), id.UserID(e.Sender)
	switch in.K {
	case kindInvite:
		return c.handleInvite(ctx, e, room, sender)
	case kindMember:
		return c.handleMember(ctx, e, room, sender)
	case kindEncrypted:
		return c.handleEncrypted(ctx, e, in, room, sender)
	case kindRefuse:
		return c.refuse(ctx, e, room, sender, in.Reason)
	case kindMessage:
		return c.handleMessage(ctx, e, in.Text, room, sender)
	}
	if err := c.cfg.Audit.Refuse("channel:matrix", "matrix.refused", e.RoomID, "unknown record kind"); err != nil {
		return false, err
	}
	return true, c.cfg.Store.UpdateMatrixEvent(ctx, e.Seq, store.MatrixRefused, nil, 0)
}

// contactState is where a stranger's request to talk stands.
type contactState int

const (
	contactPending contactState = iota
	contactApproved
	contactDenied
)

// contact files (once) and follows a stranger's "add contact" request for
// session. Never decides it: approvals happen in the console.
func (c *Channel) contact(ctx context.Context, session wire.SessionID, user id.UserID, why string) (contactState, error) {
	ok, err := c.allowed(ctx, session, true, user)
	if err != nil || ok {
		return contactApproved, err
	}
	if policy.CheckMatrixUserID(string(user)) != nil {
		return contactDenied, nil
	}
	changes, err := c.cfg.Store.ListChanges(ctx, store.ChangeFilter{Session: &session, Kind: policy.KindContacts})
	if err != nil {
		return contactPending, err
	}
	for _, ch := range changes { // newest first
		if ch.Requester != "channel:"+string(user) {
			continue
		}
		switch ch.State {
		case store.ChangePending:
			return contactPending, nil
		case store.ChangeDenied, store.ChangeRefused:
			return contactDenied, nil
		}
		break // applied (and since removed) or stale: ask again
	}
	t, err := c.cfg.Gate.SubmitContact(ctx, session, string(user), why)
	switch {
	case errors.Is(err, gateway.ErrCoolingDown):
		return contactDenied, nil
	case errors.Is(err, gateway.ErrTooManyPending):
		return contactPending, nil
	case err != nil:
		return contactPending, err
	case t.State == gateway.StateApplied:
		return contactApproved, nil
	case t.State == gateway.StateRefused || t.State == gateway.StateDenied:
		return contactDenied, nil
	}
	c.log.Info("contact request filed", "session", session.String(), "change", t.ID.String())
	return contactPending, nil
}

func (c *Channel) handleInvite(ctx context.Context, e store.MatrixEvent, room id.RoomID, inviter id.UserID) (bool, error) {
	session, has, err := c.session(ctx, room)
	if err != nil {
		return false, err
	}
	if !c.isOwner(inviter) {
		// Decided before any session exists: an id that can never be a
		// contact gets none.
		if policy.CheckMatrixUserID(string(inviter)) != nil {
			if err := c.cfg.Audit.Refuse("channel:matrix", "matrix.invite", string(room), "the inviter's user id can never be a contact"); err != nil {
				return false, err
			}
			c.cli.LeaveRoom(ctx, room)
			return true, c.cfg.Store.UpdateMatrixEvent(ctx, e.Seq, store.MatrixRefused, nil, 0)
		}
		if !has {
			// Every room a stranger's invite made a session for counts,
			// pending or refused, until the owner erases it: a refused
			// stranger cannot use up limits.max_sessions room by room.
			if n, err := c.cfg.Store.MatrixStrangerRooms(ctx, BindingPrefix); err != nil {
				return false, err
			} else if n >= c.cfg.MaxStrangerRooms {
				if err := c.cfg.Audit.Refuse("channel:"+string(inviter), "matrix.invite", string(room), "too many rooms wait for approval"); err != nil {
					return false, err
				}
				c.cli.LeaveRoom(ctx, room)
				return true, c.cfg.Store.UpdateMatrixEvent(ctx, e.Seq, store.MatrixRefused, nil, 0)
			}
		}
		if session, err = c.cfg.Sup.Ensure(ctx, Binding(room)); err != nil {
			return false, err
		}
		st, err := c.contact(ctx, session, inviter, "invited the bot to a room")
		switch {
		case err != nil:
			return false, err
		case st == contactPending:
			return false, nil
		case st == contactDenied:
			if err := c.audit("matrix.invite", string(room), "refused", "inviter "+string(inviter)+" is not an approved contact"); err != nil {
				return false, err
			}
			c.cli.LeaveRoom(ctx, room) // decline the invite
			return true, c.cfg.Store.UpdateMatrixEvent(ctx, e.Seq, store.MatrixRefused, nil, 0)
		}
	}
	// Audited before it happens: a join that cannot be audited does not.
	if err := c.audit("matrix.join", string(room), "", "invited by "+string(inviter)); err != nil {
		return false, err
	}
	if _, err := c.cli.JoinRoomByID(ctx, room); err != nil {
		return false, fmt.Errorf("joining %s: %w", room, err)
	}
	if !has {
		// An owner's new room is a new conversation (audited by the
		// supervisor as session.create).
		if _, err := c.cfg.Sup.Ensure(ctx, Binding(room)); err != nil {
			return false, err
		}
	}
	c.subscribe(ctx, room)
	return true, c.cfg.Store.UpdateMatrixEvent(ctx, e.Seq, store.MatrixDone, nil, 0)
}

func (c *Channel) handleMember(ctx context.Context, e store.MatrixEvent, room id.RoomID, who id.UserID) (bool, error) {
	session, has, err := c.session(ctx, room)
	if err != nil || !has {
		return !has, err
	}
	st, err := c.contact(ctx, session, who, "joined a room the bot is in")
	if err != nil || st == contactPending {
		// Not done, but a member does not hold the room's other events:
		// the bot simply stays silent while they are there (outbound.go).
		return true, err
	}
	if st == contactDenied {
		if err := c.audit("matrix.member", string(room), "refused", string(who)+" is not an approved contact; the bot stays silent while they are in the room"); err != nil {
			return false, err
		}
	}
	return true, c.cfg.Store.UpdateMatrixEvent(ctx, e.Seq, store.MatrixDone, nil, 0)
}

// notVouched is the answer to a message from a device its sender's
// cross-signing does not vouch for.
const notVouched = "That message came from a session of yours that your cross-signing does not vouch for (a new session not verified yet, or keys that changed), so I did not read it. Verify that session from one you already trust, then send it again."

// decrypted reads a decrypted event (canonical), after one more check that
// needs the crypto store: a sender who has set up cross-signing speaks only
// from devices their self-signing key signed, under the master key the bot
// first saw for them (mautrix's cross-signed-TOFU or better). A device the
// homeserver invents for an owner — or a master key it swaps in to sign
// one — is refused, not read as merely "unverified". A sender without
// cross-signing has only their devices' own keys, which canonical checks;
// keys forwarded or restored from a backup cannot be tied to a signed
// device and are refused for a cross-signing sender too.
func (c *Channel) decrypted(ctx context.Context, dec *event.Event) inbound {
	if ts := dec.Mautrix.TrustState; ts >= id.TrustStateUnset && ts < id.TrustStateCrossSignedTOFU && ts != id.TrustStateUnknownDevice {
		keys, err := c.mach.CryptoStore.GetCrossSigningKeys(ctx, dec.Sender)
		if err != nil {
			c.log.Error("reading a sender's cross-signing keys", "sender", string(dec.Sender), "err", err)
			return inbound{K: kindRefuse, Reason: "I could not check which of your sessions that message came from, so I did not read it. Please send it again."}
		}
		if _, ok := keys[id.XSUsageMaster]; ok {
			return inbound{K: kindRefuse, Reason: notVouched}
		}
	}
	return canonical(dec, true)
}

func (c *Channel) handleEncrypted(ctx context.Context, e store.MatrixEvent, in inbound, room id.RoomID, sender id.UserID) (bool, error) {
	var evt event.Event
	if err := json.Unmarshal(in.Raw, &evt); err != nil {
		return c.refuse(ctx, e, room, sender, "I could not read that message")
	}
	evt.RoomID = room
	if err := evt.Content.ParseRaw(evt.Type); err != nil {
		return c.refuse(ctx, e, room, sender, "I could not read that message")
	}
	dec, err := c.mach.DecryptMegolmEvent(ctx, &evt)
	if err == nil {
		next := c.decrypted(ctx, dec)
		body, _ := json.Marshal(next)
		if err := c.cfg.Store.UpdateMatrixEvent(ctx, e.Seq, store.MatrixNew, body, 0); err != nil {
			return false, err
		}
		e.Body = body
		return c.handle(ctx, e)
	}
	if time.Since(e.Created) < c.cfg.KeyWait {
		if content := evt.Content.AsEncrypted(); content != nil {
			c.mu.Lock()
			asked := c.keyAsked[string(content.SessionID)]
			c.keyAsked[string(content.SessionID)] = true
			c.mu.Unlock()
			if !asked {
				c.helper.RequestSession(ctx, room, content.SenderKey, content.SessionID, sender, content.DeviceID)
			}
		}
		return false, nil
	}
	// Reported to the sender and the operator, never dropped silently.
	if aerr := c.audit("matrix.undecryptable", string(room), "refused", "an event from "+string(sender)+" could not be decrypted: "+shortErr(err)); aerr != nil {
		return false, aerr
	}
	c.log.Warn("an undecryptable Matrix event", "room", string(room), "sender", string(sender), "err", shortErr(err))
	return c.refuse(ctx, e, room, sender, "I could not decrypt that message. Please check that your client shares room keys with my device (verify it), then send it again.")
}

func shortErr(err error) string {
	s := err.Error()
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// refuse tells an allowed sender why (encrypted where the room is; nothing
// to a stranger, who may not be spoken to) and closes the event.
func (c *Channel) refuse(ctx context.Context, e store.MatrixEvent, room id.RoomID, sender id.UserID, reason string) (bool, error) {
	session, has, err := c.session(ctx, room)
	if err != nil {
		return false, err
	}
	if err := c.cfg.Audit.Refuse("channel:"+string(sender), "matrix.refused", string(room), firstWords(reason)); err != nil {
		return false, err
	}
	if ok, _ := c.allowed(ctx, session, has, sender); ok && has {
		if bad, err := c.unapproved(ctx, room, session); err == nil && len(bad) == 0 {
			if err := c.sendNotice(ctx, room, "icr."+hashHex(e.EventID)[:32], reason); err != nil {
				return false, err
			}
		}
	}
	return true, c.cfg.Store.UpdateMatrixEvent(ctx, e.Seq, store.MatrixRefused, nil, 0)
}

func firstWords(s string) string {
	if i := strings.IndexAny(s, ";."); i > 0 {
		return s[:i]
	}
	return s
}

// handleMessage hands an allowed sender's message to the room's agent,
// exactly once; a stranger's waits (sealed in the store) for the owner.
func (c *Channel) handleMessage(ctx context.Context, e store.MatrixEvent, text string, room id.RoomID, sender id.UserID) (bool, error) {
	session, has, err := c.session(ctx, room)
	if err != nil {
		return false, err
	}
	if !has {
		if !c.isOwner(sender) {
			return true, c.cfg.Store.UpdateMatrixEvent(ctx, e.Seq, store.MatrixRefused, nil, 0)
		}
		if session, err = c.cfg.Sup.Ensure(ctx, Binding(room)); err != nil {
			return false, err
		}
	}
	c.subscribe(ctx, room)
	st, err := c.contact(ctx, session, sender, "sent the bot a message")
	switch {
	case err != nil:
		return false, err
	case st == contactPending:
		return false, nil // held: nothing of theirs reaches a sandbox
	case st == contactDenied:
		if err := c.audit("matrix.message", string(room), "refused", "sender "+string(sender)+" is not an approved contact"); err != nil {
			return false, err
		}
		return true, c.cfg.Store.UpdateMatrixEvent(ctx, e.Seq, store.MatrixRefused, nil, 0)
	}
	return true, c.handOff(ctx, e, text, room, sender)
}

// handOff writes the message into the session's inbox exactly once: the
// event is marked "handing" (with what the inbox held) before, "done" after;
// an event found "handing" after a crash is looked for in the inbox first.
func (c *Channel) handOff(ctx context.Context, e store.MatrixEvent, text string, room id.RoomID, sender id.UserID) error {
	b := Binding(room)
	if e.State == store.MatrixHanding {
		msgs, err := c.cfg.Sup.InboxMessages(ctx, b, e.After)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.From == string(sender) && m.Text == text {
				// It got in before the crash: never again. The sandbox that
				// was to read it died with the daemon.
				if err := c.cfg.Store.UpdateMatrixEvent(ctx, e.Seq, store.MatrixDone, nil, m.Seq); err != nil {
					return err
				}
				if err := c.cfg.Sup.Wake(ctx, b); err != nil {
					c.log.Warn("starting the sandbox for a recovered message", "room", string(room), "err", err)
				}
				c.setTyping(ctx, room, true)
				return nil
			}
		}
	}
	after, err := c.cfg.Store.MatrixLastHanded(ctx, string(room))
	if err != nil {
		return err
	}
	if err := c.cfg.Store.UpdateMatrixEvent(ctx, e.Seq, store.MatrixHanding, nil, after); err != nil {
		return err
	}
	fault("matrix.before-inbox")
	_, seq, err := c.cfg.Sup.Send(ctx, b, string(sender), text)
	if seq == 0 {
		return err // not written: tried again on the next pass
	}
	if err != nil {
		// Written, but the sandbox did not start: the message waits in the
		// inbox for it; the supervisor reports why.
		c.log.Warn("message queued but its sandbox did not start", "room", string(room), "err", err)
	}
	fault("matrix.after-inbox")
	c.setTyping(ctx, room, true)
	return c.cfg.Store.UpdateMatrixEvent(ctx, e.Seq, store.MatrixDone, nil, seq)
}
