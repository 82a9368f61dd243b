package matrix

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strconv"
	"testing"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/sqlstatestore"
)

// A room once encrypted stays encrypted for the bot: a later
// m.room.encryption event without Megolm (a room admin's or a hostile
// homeserver's) must not make the state store, which mautrix consults on
// every send, call the room unencrypted.
func TestEncryptionCannotBeTurnedOff(t *testing.T) {
	ctx := context.Background()
	db, err := openCryptoDB(filepath.Join(t.TempDir(), "crypto.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ss := sqlstatestore.NewSQLStateStore(db, dbutil.NoopLogger, false)
	if err := ss.Upgrade(ctx); err != nil {
		t.Fatal(err)
	}
	cli, err := mautrix.NewClient("http://127.0.0.1:1", "@bot:x", "token")
	if err != nil {
		t.Fatal(err)
	}
	cli.StateStore = ss
	syn := newSyncer()
	syn.OnEvent(cli.StateStoreSyncHandler)
	cli.Syncer = syn
	keepRoomsEncrypted(cli)
	room := id.RoomID("!r:x")
	n := 0
	batch := func(content string) {
		n++
		var resp mautrix.RespSync
		raw := `{"next_batch":"b","rooms":{"join":{"!r:x":{"timeline":{"events":[
			{"type":"m.room.encryption","state_key":"","event_id":"$e` + strconv.Itoa(n) + `","sender":"@admin:x","origin_server_ts":1,"content":` + content + `}]}}}}}`
		if err := json.Unmarshal([]byte(raw), &resp); err != nil {
			t.Fatal(err)
		}
		if err := cli.Syncer.ProcessResponse(ctx, &resp, "a"); err != nil {
			t.Fatal(err)
		}
	}
	batch(`{"algorithm":"m.megolm.v1.aes-sha2"}`)
	if enc, err := cli.StateStore.IsEncrypted(ctx, room); err != nil || !enc {
		t.Fatalf("after m.room.encryption: encrypted=%v err=%v", enc, err)
	}
	for _, downgrade := range []string{`{}`, `{"algorithm":""}`, `{"algorithm":"m.olm.v1.curve25519-aes-sha2"}`} {
		batch(downgrade)
		if enc, err := cli.StateStore.IsEncrypted(ctx, room); err != nil || !enc {
			t.Fatalf("m.room.encryption %s turned encryption off: encrypted=%v err=%v", downgrade, enc, err)
		}
	}
}
