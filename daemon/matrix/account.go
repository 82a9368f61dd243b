package matrix

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ironclaw/ironclaw/daemon/store"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/backup"
	"maunium.net/go/mautrix/crypto/cryptohelper"
	"maunium.net/go/mautrix/crypto/signatures"
	"maunium.net/go/mautrix/crypto/sql_store_upgrade"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/sqlstatestore"
	_ "modernc.org/sqlite" // the pure-Go SQLite behind the crypto store
)

// DeviceName is the bot device's display name.
const DeviceName = "IronClaw"

// open resumes the stored device or logs in, opens the crypto store, and
// sets up cross-signing and key backup if they are not yet.
func (c *Channel) open(ctx context.Context) error {
	acct, err := c.cfg.Store.MatrixAccount(ctx)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return err
	case acct.UserID != string(c.cfg.UserID):
		return fmt.Errorf("matrix: the state directory holds a device of %s, but matrix.user_id is %s: run `ironclaw matrix login` to replace it", acct.UserID, c.cfg.UserID)
	}
	fresh := acct.DeviceID == ""
	if fresh {
		if acct, err = c.login(ctx); err != nil {
			return err
		}
	}
	c.acct = acct
	if c.cli, err = c.newClient(acct.AccessToken); err != nil {
		return err
	}
	c.cli.DeviceID = id.DeviceID(acct.DeviceID)
	c.cli.Syncer = newSyncer()
	db, err := openCryptoDB(c.cfg.CryptoDB)
	if err != nil {
		return err
	}
	c.helper, err = cryptohelper.NewCryptoHelper(c.cli, c.cfg.PickleKey, db)
	if err != nil {
		db.Close()
		return fmt.Errorf("matrix: crypto store: %w", err)
	}
	c.helper.DBAccountID = ""
	if err := backupBeforeUpgrade(ctx, db, c.cfg.CryptoDB); err != nil {
		c.helper.Close()
		return err
	}
	if err := c.helper.Init(ctx); err != nil {
		c.helper.Close()
		return fmt.Errorf("matrix: starting end-to-end encryption: %w", err)
	}
	c.mach = c.helper.Machine()
	c.cli.Crypto = c.helper
	keepRoomsEncrypted(c.cli)
	// Undecryptable events are ours to report (inbound.go), never dropped.
	c.helper.DecryptErrorCallback = func(*event.Event, error) {}
	if fresh {
		// Remember the device before anything else can fail: a second
		// login would leave a stray device on the account.
		if err := c.cfg.Store.SetMatrixAccount(ctx, c.acct); err != nil {
			return err
		}
	}
	if c.acct.RecoveryKey == "" && c.cfg.Password != "" {
		if err := c.setupCrossSigning(ctx); err != nil {
			return err
		}
	}
	if c.acct.RecoveryKey != "" && c.mach.CrossSigningKeys == nil {
		// Load the cross-signing keys from secret storage into memory only
		// (the crypto store keeps just their public halves).
		if err := c.mach.VerifyWithRecoveryKey(ctx, c.acct.RecoveryKey); err != nil {
			c.log.Warn("unlocking cross-signing with the stored recovery key", "err", err)
		}
	}
	if !c.acct.Clean && c.acct.NextBatch != "" {
		// The last run stopped mid-batch: device lists it may have
		// changed are fetched again rather than trusted.
		if err := c.refetchDevices(ctx); err != nil {
			c.log.Warn("refetching device lists after an unclean stop", "err", err)
		}
	}
	return c.cfg.Store.SetMatrixClean(ctx, false)
}

// login creates the bot's device with the password, or adopts the device of
// the configured access token.
func (c *Channel) login(ctx context.Context) (store.MatrixAccount, error) {
	cli, err := c.newClient("")
	if err != nil {
		return store.MatrixAccount{}, err
	}
	a := store.MatrixAccount{UserID: string(c.cfg.UserID)}
	switch {
	case c.cfg.Password != "":
		resp, err := cli.Login(ctx, &mautrix.ReqLogin{
			Type:                     mautrix.AuthTypePassword,
			Identifier:               mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: string(c.cfg.UserID)},
			Password:                 c.cfg.Password,
			InitialDeviceDisplayName: DeviceName,
		})
		if err != nil {
			return a, fmt.Errorf("matrix: logging in as %s: %w (check matrix.password_file)", c.cfg.UserID, err)
		}
		if resp.UserID != c.cfg.UserID {
			return a, fmt.Errorf("matrix: the homeserver logged us in as %s, not %s", resp.UserID, c.cfg.UserID)
		}
		a.DeviceID, a.AccessToken = string(resp.DeviceID), resp.AccessToken
	case c.cfg.AccessToken != "":
		cli.AccessToken = c.cfg.AccessToken
		who, err := cli.Whoami(ctx)
		if err != nil {
			return a, fmt.Errorf("matrix: the access token in matrix.access_token_file does not work: %w", err)
		}
		if who.UserID != c.cfg.UserID || who.DeviceID == "" {
			return a, fmt.Errorf("matrix: the access token belongs to %s (device %q), not %s", who.UserID, who.DeviceID, c.cfg.UserID)
		}
		a.DeviceID, a.AccessToken = string(who.DeviceID), c.cfg.AccessToken
	default:
		return a, errors.New("matrix: no password or access token to log in with; set matrix.password_file")
	}
	if err := c.audit("matrix.login", string(c.cfg.UserID), "", "device "+a.DeviceID); err != nil {
		return a, err
	}
	return a, nil
}

// setupCrossSigning gives the bot's account cross-signing keys (kept in its
// secret storage), signs the bot's device with them, and starts a room-key
// backup whose key is in secret storage too. The recovery key is sealed in
// the store: clients that refuse unverified devices can talk to the bot.
func (c *Channel) setupCrossSigning(ctx context.Context) error {
	recovery, _, err := c.mach.GenerateAndUploadCrossSigningKeysWithPassword(ctx, c.cfg.Password, "")
	if err != nil {
		return fmt.Errorf("matrix: setting up cross-signing for %s: %w", c.cfg.UserID, err)
	}
	if err := c.mach.SignOwnDevice(ctx, c.mach.OwnIdentity()); err != nil {
		return fmt.Errorf("matrix: cross-signing the bot's device: %w", err)
	}
	if err := c.mach.SignOwnMasterKey(ctx); err != nil {
		return fmt.Errorf("matrix: signing the master key: %w", err)
	}
	c.acct.RecoveryKey = recovery
	if err := c.cfg.Store.SetMatrixAccount(ctx, c.acct); err != nil {
		return err
	}
	keyID, keyData, err := c.mach.SSSS.GetDefaultKeyData(ctx)
	if err != nil {
		return fmt.Errorf("matrix: reading secret storage: %w", err)
	}
	ssssKey, err := keyData.VerifyRecoveryKey(keyID, recovery)
	if err != nil {
		return fmt.Errorf("matrix: opening secret storage: %w", err)
	}
	bk, err := backup.NewMegolmBackupKey()
	if err != nil {
		return err
	}
	auth := backup.MegolmAuthData{PublicKey: id.Ed25519(base64.RawStdEncoding.EncodeToString(bk.PublicKey().Bytes()))}
	devSig, err := c.mach.GetAccount().SignJSON(auth)
	if err != nil {
		return err
	}
	auth.Signatures = signatures.NewSingleSignature(c.cfg.UserID, id.KeyAlgorithmEd25519, c.acct.DeviceID, devSig)
	if ck := c.mach.CrossSigningKeys; ck != nil {
		if msig, err := ck.MasterKey.SignJSON(backup.MegolmAuthData{PublicKey: auth.PublicKey}); err == nil {
			auth.Signatures[c.cfg.UserID][id.NewKeyID(id.KeyAlgorithmEd25519, ck.MasterKey.PublicKey().String())] = msig
		}
	}
	resp, err := c.cli.CreateKeyBackupVersion(ctx, &mautrix.ReqRoomKeysVersionCreate[backup.MegolmAuthData]{
		Algorithm: id.KeyBackupAlgorithmMegolmBackupV1, AuthData: auth,
	})
	if err != nil {
		return fmt.Errorf("matrix: creating the room-key backup: %w", err)
	}
	if err := c.mach.SSSS.SetEncryptedAccountData(ctx, event.AccountDataMegolmBackupKey, bk.Bytes(), ssssKey); err != nil {
		return fmt.Errorf("matrix: storing the backup key in secret storage: %w", err)
	}
	c.acct.BackupVersion = string(resp.Version)
	c.acct.BackupKey = base64.StdEncoding.EncodeToString(bk.Bytes())
	if err := c.cfg.Store.SetMatrixAccount(ctx, c.acct); err != nil {
		return err
	}
	return c.audit("matrix.cross-signing", string(c.cfg.UserID), "", "device "+c.acct.DeviceID+" cross-signed; key backup "+c.acct.BackupVersion)
}

// refetchDevices marks every tracked user's device list outdated and fetches
// them again.
func (c *Channel) refetchDevices(ctx context.Context) error {
	users, err := c.mach.CryptoStore.FilterTrackedUsers(ctx, c.cfg.Owners)
	if err != nil {
		return err
	}
	if rs, err := c.rooms(ctx); err == nil {
		for _, r := range rs {
			if ms, err := c.cli.StateStore.GetRoomJoinedOrInvitedMembers(ctx, r); err == nil {
				users = append(users, ms...)
			}
		}
	}
	if len(users) == 0 {
		return nil
	}
	_, err = c.mach.FetchKeys(ctx, users, true)
	return err
}

// openCryptoDB opens the crypto store's database: modernc's pure-Go SQLite
// through a handle (mautrix, given a path, asks for a cgo driver). WAL with
// full sync, foreign keys, and secure_delete so freed pages keep nothing.
func openCryptoDB(path string) (*dbutil.Database, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("matrix: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("matrix: %s is not a regular file", path)
	} else if errors.Is(err, os.ErrNotExist) {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("matrix: creating %s: %w", path, err)
		}
		f.Close()
	}
	dsn := "file:" + path + "?_txlock=immediate&_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(5000)&_pragma=secure_delete(1)"
	raw, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("matrix: opening %s: %w", path, err)
	}
	raw.SetMaxOpenConns(1)
	db, err := dbutil.NewWithDB(raw, "sqlite")
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("matrix: opening %s: %w", path, err)
	}
	return db, nil
}

// backupBeforeUpgrade copies the crypto store aside before mautrix migrates
// it, and refuses one written by a newer mautrix with a message that says
// what to do (mautrix would refuse it too, less clearly).
func backupBeforeUpgrade(ctx context.Context, db *dbutil.Database, path string) error {
	latest := len(sql_store_upgrade.Table)
	var have int
	err := db.QueryRow(ctx, "SELECT version FROM crypto_version LIMIT 1").Scan(&have)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) || strings.Contains(err.Error(), "no such table") {
			return nil // a new store: nothing to keep
		}
		return fmt.Errorf("matrix: reading the crypto store's version: %w", err)
	}
	switch {
	case have > latest:
		return fmt.Errorf("matrix: the crypto store %s was written by a newer ironclaw (schema %d, this one knows %d): upgrade ironclaw; a downgrade would lose the bot's keys", path, have, latest)
	case have == latest:
		return nil
	}
	bak := fmt.Sprintf("%s.v%d.bak", path, have)
	os.Remove(bak)
	if _, err := db.Exec(ctx, "VACUUM INTO '"+strings.ReplaceAll(bak, "'", "''")+"'"); err != nil {
		return fmt.Errorf("matrix: backing up the crypto store before upgrading it: %w", err)
	}
	return os.Chmod(bak, 0o600)
}

// encryptionOnce is the client's state store, except that a room once
// encrypted stays encrypted: the spec forbids turning encryption off, and a
// later m.room.encryption event without Megolm (from a room admin or a
// hostile homeserver) would otherwise make mautrix send the bot's replies
// in plaintext.
type encryptionOnce struct{ *sqlstatestore.SQLStateStore }

func (s encryptionOnce) SetEncryptionEvent(ctx context.Context, room id.RoomID, content *event.EncryptionEventContent) error {
	if content == nil || content.Algorithm != id.AlgorithmMegolmV1 {
		if enc, err := s.IsEncrypted(ctx, room); err != nil || enc {
			return err // ignored: the room stays encrypted
		}
	}
	return s.SQLStateStore.SetEncryptionEvent(ctx, room, content)
}

// keepRoomsEncrypted wraps the client's state store (mautrix's sync handler
// and sends read it through the client) in encryptionOnce.
func keepRoomsEncrypted(cli *mautrix.Client) {
	if ss, ok := cli.StateStore.(*sqlstatestore.SQLStateStore); ok {
		cli.StateStore = encryptionOnce{ss}
	}
}
