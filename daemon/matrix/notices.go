package matrix

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/ironclaw/ironclaw/daemon/store"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// noticeInterval is how often the store is polled for new pending changes.
const noticeInterval = 3 * time.Second

// noticeLoop announces each pending change request to the owners, once:
// what, which session, and that it is decided in the console. Nothing in
// Matrix can approve or deny it.
func (c *Channel) noticeLoop(ctx context.Context) {
	t := time.NewTicker(noticeInterval)
	defer t.Stop()
	for {
		if err := c.announce(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("announcing pending approvals", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *Channel) announce(ctx context.Context) error {
	pending, err := c.cfg.Store.ListChanges(ctx, store.ChangeFilter{States: []store.ChangeState{store.ChangePending}})
	if err != nil {
		return err
	}
	var rooms []id.RoomID
	for i := len(pending) - 1; i >= 0; i-- { // oldest first
		ch := pending[i]
		if done, err := c.cfg.Store.MatrixNoticed(ctx, ch.ID); err != nil || done {
			if err != nil {
				return err
			}
			continue
		}
		if rooms == nil {
			if rooms, err = c.ownerRooms(ctx); err != nil {
				return err
			}
			if len(rooms) == 0 {
				return nil // no owner has a room with the bot yet
			}
		}
		what := ch.Kind + " change"
		if ch.Kind == "rules" {
			what = "change of the operator rules"
		}
		text := fmt.Sprintf("Approval needed: %s %s, asked by %s (request %s). Decide it in the console: `ironclaw changes approve %s` or the SSH console. Nothing sent here can approve it.",
			what, sessionLabel(ch), ch.Requester, ch.ID, ch.ID)
		for _, r := range rooms {
			if err := c.sendNotice(ctx, r, "icn."+ch.ID.String()+"."+hashHex(string(r))[:16], text); err != nil {
				return err
			}
		}
		if _, err := c.cfg.Store.MatrixNoticeSent(ctx, ch.ID); err != nil {
			return err
		}
	}
	return nil
}

func sessionLabel(ch store.ChangeSummary) string {
	if ch.Kind == "rules" {
		return ""
	}
	return "for session " + ch.Session.String()
}

// ownerRooms picks, for each owner, the oldest encrypted room the bot shares
// with that owner and with nobody but owners: where announcements go.
func (c *Channel) ownerRooms(ctx context.Context) ([]id.RoomID, error) {
	rooms, err := c.rooms(ctx)
	if err != nil {
		return nil, err
	}
	var out []id.RoomID
	covered := map[id.UserID]bool{}
	for _, r := range rooms {
		if enc, err := c.cli.StateStore.IsEncrypted(ctx, r); err != nil || !enc {
			continue
		}
		if m, err := c.cli.StateStore.GetMember(ctx, r, c.cfg.UserID); err != nil || m.Membership != event.MembershipJoin {
			continue
		}
		members, err := c.cli.StateStore.GetRoomJoinedOrInvitedMembers(ctx, r)
		if err != nil {
			continue
		}
		only, adds := true, false
		for _, m := range members {
			switch {
			case m == c.cfg.UserID:
			case c.isOwner(m):
				if !covered[m] {
					adds = true
				}
			default:
				only = false
			}
		}
		if !only || !adds {
			continue
		}
		for _, m := range members {
			if c.isOwner(m) {
				covered[m] = true
			}
		}
		out = append(out, r)
	}
	slices.Sort(out)
	return out, nil
}
