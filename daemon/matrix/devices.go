package matrix

import (
	"context"
	"slices"

	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/id"
)

// Device is one Matrix device as the console shows it.
type Device struct {
	User        string
	Device      string
	Name        string
	Fingerprint string // ed25519, grouped for reading aloud
	// Trust is mautrix's trust state: "unverified", "cross-signed-untrusted",
	// "cross-signed-tofu", "cross-signed-verified", "verified" or
	// "blacklisted".
	Trust string
}

// Trust is the bot's own device and the devices of everyone it talks to.
type Trust struct {
	Bot Device
	// CrossSigned is true when the bot's device is signed by its account's
	// self-signing key (clients that refuse unverified devices accept it).
	CrossSigned   bool
	BackupVersion string
	// Senders are the devices of the owners and of every member of a room
	// the bot has a session in, sorted by user and device.
	Senders []Device
}

// Devices reports the bot's trust state and the senders' devices, read-only,
// for the console. It changes nothing; it asks the homeserver only for the
// bot's own device keys if the crypto store does not hold them yet.
func (c *Channel) Devices(ctx context.Context) (Trust, error) {
	own := c.mach.OwnIdentity()
	t := Trust{
		Bot:           Device{User: string(c.cfg.UserID), Device: string(own.DeviceID), Name: DeviceName, Fingerprint: crypto.Fingerprint(own.SigningKey)},
		BackupVersion: c.acct.BackupVersion,
	}
	if dev, err := c.mach.GetOrFetchDevice(ctx, c.cfg.UserID, own.DeviceID); err == nil && dev != nil {
		ts, _ := c.mach.ResolveTrustContext(ctx, dev)
		t.Bot.Trust = ts.String()
		t.CrossSigned = ts >= id.TrustStateCrossSignedUntrusted && ts != id.TrustStateBlacklisted
	}
	users := slices.Clone(c.cfg.Owners)
	if rooms, err := c.rooms(ctx); err == nil {
		for _, r := range rooms {
			if ms, err := c.cli.StateStore.GetRoomJoinedOrInvitedMembers(ctx, r); err == nil {
				users = append(users, ms...)
			}
		}
	}
	slices.Sort(users)
	users = slices.Compact(users)
	for _, u := range users {
		if u == c.cfg.UserID {
			continue
		}
		devs, err := c.mach.CryptoStore.GetDevices(ctx, u)
		if err != nil {
			return t, err
		}
		for _, d := range devs {
			ts, _ := c.mach.ResolveTrustContext(ctx, d)
			t.Senders = append(t.Senders, Device{User: string(u), Device: string(d.DeviceID), Name: d.Name,
				Fingerprint: crypto.Fingerprint(d.SigningKey), Trust: ts.String()})
		}
	}
	slices.SortFunc(t.Senders, func(a, b Device) int {
		if a.User != b.User {
			if a.User < b.User {
				return -1
			}
			return 1
		}
		if a.Device < b.Device {
			return -1
		}
		if a.Device > b.Device {
			return 1
		}
		return 0
	})
	return t, nil
}
