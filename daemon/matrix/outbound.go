package matrix

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ironclaw/ironclaw/daemon/supervisor"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// txnField carries an event's transaction id inside its (encrypted)
// content, so that after a crash the bot can tell whether a reply went out
// without relying on the homeserver's short-lived transaction dedupe.
const txnField = "org.ironclaw.txn"

// maxSendAttempts bounds one send before the reply waits for the next pass.
const maxSendAttempts = 8

func (c *Channel) outboundLoop(ctx context.Context) {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		rooms, err := c.rooms(ctx)
		if err != nil && ctx.Err() == nil {
			c.log.Error("listing Matrix rooms", "err", err)
		}
		for _, room := range rooms {
			if ctx.Err() != nil {
				return
			}
			c.subscribe(ctx, room)
			if err := c.sendPending(ctx, room); err != nil && ctx.Err() == nil {
				c.log.Warn("delivering replies; will retry", "room", string(room), "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-c.outKick:
		case <-t.C:
		}
	}
}

// sendPending delivers the room's undelivered replies, oldest first.
func (c *Channel) sendPending(ctx context.Context, room id.RoomID) error {
	replies, err := c.cfg.Sup.Undelivered(ctx, Binding(room))
	if err != nil || len(replies) == 0 {
		return err
	}
	if enc, err := c.cli.StateStore.IsEncrypted(ctx, room); err != nil || !enc {
		return fmt.Errorf("the room is not encrypted: replies wait (the bot never sends a reply in plaintext)")
	}
	if bad, err := c.unapproved(ctx, room, replies[0].Session); err != nil {
		return err
	} else if len(bad) > 0 {
		c.setTyping(ctx, room, false)
		return nil // silent while an unapproved member is in the room
	}
	for _, r := range replies {
		if err := c.deliver(ctx, room, r); err != nil {
			return err
		}
	}
	c.setTyping(ctx, room, false)
	return nil
}

// deliver sends one reply (in parts if long) and marks it delivered. Every
// part has a transaction id derived from the reply's, the same on every
// attempt; a reply this run did not take itself may have been sent before a
// crash, so the room is searched for each part first.
func (c *Channel) deliver(ctx context.Context, room id.RoomID, r supervisor.Reply) error {
	parts := split(r.Text, MaxPartBytes)
	c.mu.Lock()
	fresh := c.fresh[r.TxnID]
	c.mu.Unlock()
	for i, part := range parts {
		txn := r.TxnID
		if len(parts) > 1 {
			txn += "." + strconv.Itoa(i)
		}
		if !fresh {
			sent, err := c.alreadySent(ctx, room, txn)
			if err != nil {
				return err
			}
			if sent {
				continue
			}
		}
		content := map[string]any{
			"msgtype": "m.text", "body": part,
			"format": "org.matrix.custom.html", "formatted_body": render(part),
			txnField: txn,
		}
		fault("matrix.before-send")
		if err := c.send(ctx, room, content, txn); err != nil {
			return err
		}
		fault("matrix.after-send")
	}
	if err := c.cfg.Sup.Delivered(ctx, r.Session, r.Seq); err != nil {
		return err
	}
	c.mu.Lock()
	delete(c.fresh, r.TxnID)
	c.mu.Unlock()
	return nil
}

// send sends one message event (encrypted: the room is) with a fixed
// transaction id, honouring M_LIMIT_EXCEEDED's retry_after and backing off on
// other failures. The id never changes between attempts.
func (c *Channel) send(ctx context.Context, room id.RoomID, content map[string]any, txn string) error {
	backoff := 500 * time.Millisecond
	var err error
	for attempt := 0; attempt < maxSendAttempts; attempt++ {
		_, err = c.cli.SendMessageEvent(oneAttempt(ctx), room, event.EventMessage, content, mautrix.ReqSendEvent{TransactionID: txn})
		if err == nil {
			return nil
		}
		wait, limited := retryAfter(err)
		var he mautrix.HTTPError
		if limited {
			c.log.Info("rate limited by the homeserver; waiting as it asks", "room", string(room), "wait", wait)
		} else {
			if errors.As(err, &he) && he.Response != nil && he.Response.StatusCode >= 400 && he.Response.StatusCode < 500 {
				return fmt.Errorf("sending to %s: %w", room, err) // not going to change by retrying now
			}
			wait = backoff
			backoff = min(backoff*2, 30*time.Second)
		}
		if !sleep(ctx, wait) {
			return ctx.Err()
		}
	}
	return fmt.Errorf("sending to %s: %w", room, err)
}

// sendNotice sends a fixed text from the bot itself (refusals, approval
// announcements), with a transaction id derived from what it is about.
func (c *Channel) sendNotice(ctx context.Context, room id.RoomID, txn, text string) error {
	if enc, err := c.cli.StateStore.IsEncrypted(ctx, room); err != nil {
		return err
	} else if !enc {
		// Unencrypted rooms get only fixed texts that carry nothing of a
		// conversation (this is one).
		_, err := c.cli.SendMessageEvent(ctx, room, event.EventMessage, map[string]any{"msgtype": "m.notice", "body": text}, mautrix.ReqSendEvent{TransactionID: txn})
		return err
	}
	return c.send(ctx, room, map[string]any{"msgtype": "m.notice", "body": text, txnField: txn}, txn)
}

// alreadySent looks through the room's recent history for the bot's event
// with transaction id txn (in the unsigned data the homeserver returns to
// the sending device, or inside the decrypted content).
func (c *Channel) alreadySent(ctx context.Context, room id.RoomID, txn string) (bool, error) {
	resp, err := c.cli.Messages(ctx, room, "", "", mautrix.DirectionBackward, &mautrix.FilterPart{Senders: []id.UserID{c.cfg.UserID}}, 100)
	if err != nil {
		return false, fmt.Errorf("reading %s's history to avoid a duplicate: %w", room, err)
	}
	for _, evt := range resp.Chunk {
		if evt.Sender != c.cfg.UserID {
			continue
		}
		if evt.Unsigned.TransactionID == txn {
			return true, nil
		}
		if evt.Type != event.EventEncrypted {
			continue
		}
		evt.RoomID = room
		if err := evt.Content.ParseRaw(evt.Type); err != nil {
			continue
		}
		dec, err := c.mach.DecryptMegolmEvent(ctx, evt)
		if err != nil {
			continue
		}
		if v, _ := dec.Content.Raw[txnField].(string); v == txn {
			return true, nil
		}
	}
	return false, nil
}

// setTyping shows or clears the bot's typing notice. Best effort and off
// the message's path: the request runs on its own, owned by the channel.
func (c *Channel) setTyping(ctx context.Context, room id.RoomID, on bool) {
	c.mu.Lock()
	was := c.typing[room]
	c.typing[room] = on
	c.mu.Unlock()
	if was == on && !on {
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := c.cli.UserTyping(tctx, room, on, 60*time.Second); err != nil {
			c.log.Debug("typing notice", "room", string(room), "err", err)
		}
	}()
}
