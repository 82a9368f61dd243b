package matrix

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/crypto/backup"
	"maunium.net/go/mautrix/id"
)

// backupInterval is how often new room keys are uploaded to the key backup.
const backupInterval = 10 * time.Second

// backupLoop uploads the room keys the bot holds to the account's key
// backup (encrypted to the backup's public key; its private key lives in
// secret storage and, sealed, in the store), so the bot's history survives
// the loss of its device.
func (c *Channel) backupLoop(ctx context.Context) {
	if c.acct.BackupVersion == "" || c.acct.BackupKey == "" {
		return
	}
	raw, err := base64.StdEncoding.DecodeString(c.acct.BackupKey)
	if err != nil {
		c.log.Error("the stored key-backup key does not decode; room keys are not backed up", "err", err)
		return
	}
	key, err := backup.MegolmBackupKeyFromBytes(raw)
	clear(raw)
	if err != nil {
		c.log.Error("the stored key-backup key is not a key; room keys are not backed up", "err", err)
		return
	}
	t := time.NewTicker(backupInterval)
	defer t.Stop()
	for {
		if err := c.uploadKeys(ctx, key); err != nil && ctx.Err() == nil {
			c.log.Warn("backing up room keys; will retry", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *Channel) uploadKeys(ctx context.Context, key *backup.MegolmBackupKey) error {
	version := id.KeyBackupVersion(c.acct.BackupVersion)
	sessions, err := c.mach.CryptoStore.GetGroupSessionsWithoutKeyBackupVersion(ctx, version).AsList()
	if err != nil || len(sessions) == 0 {
		return err
	}
	req := mautrix.ReqKeyBackup{Rooms: map[id.RoomID]mautrix.ReqRoomKeyBackup{}}
	var done []*crypto.InboundGroupSession
	for _, s := range sessions {
		first := s.Internal.FirstKnownIndex()
		exported, err := s.Internal.Export(first)
		if err != nil {
			continue
		}
		enc, err := backup.EncryptSessionData(key, backup.MegolmSessionData{
			Algorithm: id.AlgorithmMegolmV1, ForwardingKeyChain: s.ForwardingChains,
			SenderClaimedKeys: backup.SenderClaimedKeys{Ed25519: s.SigningKey},
			SenderKey:         s.SenderKey, SessionKey: string(exported), SharedHistory: s.SharedHistory,
		})
		clear(exported)
		if err != nil {
			continue
		}
		data, err := json.Marshal(enc)
		if err != nil {
			continue
		}
		rk := req.Rooms[s.RoomID]
		if rk.Sessions == nil {
			rk.Sessions = map[id.SessionID]mautrix.ReqKeyBackupData{}
		}
		// is_verified tells whoever restores the backup that the device
		// the key came from was verified. The bot verifies no one's devices
		// (it trusts owners' cross-signing, and strangers' rooms have keys
		// too), so it never says so: a restoring client warns instead of
		// trusting a key a stranger or the homeserver handed the bot.
		rk.Sessions[s.ID()] = mautrix.ReqKeyBackupData{FirstMessageIndex: int(first), ForwardedCount: len(s.ForwardingChains), IsVerified: false, SessionData: data}
		req.Rooms[s.RoomID] = rk
		done = append(done, s)
	}
	if len(done) == 0 {
		return nil
	}
	if _, err := c.cli.PutKeysInBackup(ctx, version, &req); err != nil {
		return err
	}
	sql, ok := c.mach.CryptoStore.(*crypto.SQLCryptoStore)
	if !ok {
		return nil
	}
	for _, s := range done {
		if err := sql.SetGroupSessionKeyBackupVersion(ctx, s.RoomID, s.ID(), version); err != nil {
			return err
		}
	}
	return nil
}
