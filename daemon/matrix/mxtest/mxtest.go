// Package mxtest is test tooling for the Matrix channel: a real Dendrite
// homeserver on loopback (installed by .ci/install-dendrite.sh) and an
// independent end-to-end-encrypting Matrix client that plays the owner or a
// stranger. Only tests import it.
package mxtest

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/cryptohelper"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/synapseadmin"
	_ "modernc.org/sqlite"
)

// BinDir is where .ci/install-dendrite.sh puts Dendrite.
func BinDir() string {
	if d := os.Getenv("IRONCLAW_DENDRITE_BIN"); d != "" {
		return d
	}
	return "/opt/ironclaw-test/bin"
}

// Homeserver is a running Dendrite.
type Homeserver struct {
	URL    string
	Dir    string
	secret string
}

const config = `version: 2
global:
  server_name: localhost
  private_key: %[1]s/matrix_key.pem
  key_validity_period: 168h0m0s
  cache: {max_size_estimated: 64mb, max_age: 1h}
  disable_federation: true
  presence: {enable_inbound: false, enable_outbound: false}
  report_stats: {enabled: false}
  jetstream: {in_memory: true, storage_path: %[1]s, topic_prefix: Dendrite}
  metrics: {enabled: false}
  dns_cache: {enabled: false}
app_service_api: {config_files: []}
client_api:
  registration_disabled: true
  guests_disabled: true
  registration_shared_secret: %[2]q
  rate_limiting: {enabled: false}
federation_api: {database: {connection_string: "file:%[1]s/federation.db"}}
key_server: {database: {connection_string: "file:%[1]s/keyserver.db"}}
media_api: {base_path: %[1]s/media, database: {connection_string: "file:%[1]s/media.db"}}
mscs: {database: {connection_string: "file:%[1]s/mscs.db"}}
relay_api: {database: {connection_string: "file:%[1]s/relay.db"}}
room_server: {database: {connection_string: "file:%[1]s/roomserver.db"}}
sync_api: {database: {connection_string: "file:%[1]s/syncapi.db"}, search: {enabled: false}}
user_api: {account_database: {connection_string: "file:%[1]s/userapi.db"}, bcrypt_cost: 4}
logging: [{type: std, level: warn}]
`

// Start runs a Dendrite on a free loopback port until the test ends. Its
// rate limiting is off: Dendrite does not limit sends anyway, so the
// channel's handling of M_LIMIT_EXCEEDED is tested against a stub
// (daemon/matrix send_test.go).
func Start(t testing.TB) *Homeserver {
	t.Helper()
	bin := BinDir()
	if _, err := os.Stat(filepath.Join(bin, "dendrite")); err != nil {
		t.Fatalf("Dendrite is not installed in %s: run .ci/install-dendrite.sh (CI does)", bin)
	}
	dir, err := os.MkdirTemp("", "icmx")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if out, err := exec.Command(filepath.Join(bin, "generate-keys"), "-private-key", filepath.Join(dir, "matrix_key.pem")).CombinedOutput(); err != nil {
		t.Fatalf("generate-keys: %v\n%s", err, out)
	}
	h := &Homeserver{Dir: dir, secret: "ironclaw-test-shared-secret"}
	cfg := filepath.Join(dir, "dendrite.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(config, dir, h.secret)), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(filepath.Join(bin, "dendrite"), "-config", cfg, "-http-bind-address", addr)
	cmd.Dir = dir
	logf, _ := os.Create(filepath.Join(dir, "dendrite.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); logf.Close() })
	h.URL = "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(h.URL + "/_matrix/client/versions")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "dendrite.log"))
			t.Fatalf("dendrite did not answer in 30 s:\n%s", log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return h
}

// Register creates a user and returns its id.
func (h *Homeserver) Register(t testing.TB, localpart, password string) id.UserID {
	t.Helper()
	cli, err := mautrix.NewClient(h.URL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	cli.Log = zerolog.Nop()
	admin := synapseadmin.Client{Client: cli}
	resp, err := admin.SharedSecretRegister(context.Background(), h.secret, synapseadmin.ReqSharedSecretRegister{Username: localpart, Password: password})
	if err != nil {
		t.Fatalf("registering %s: %v", localpart, err)
	}
	return resp.UserID
}

// Client is an independent Matrix client with end-to-end encryption: the
// people who talk to the bot in the tests.
type Client struct {
	t      testing.TB
	Cli    *mautrix.Client
	helper *cryptohelper.CryptoHelper
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	events []*event.Event // decrypted (or plaintext) room messages and notices, in order
	wake   chan struct{}
	echo   bool // guarded by mu: answer every message from others with its own text

	// machMu serialises the test's use of the client's crypto machine with
	// the sync loop's processing: mautrix caches the account's own
	// cross-signing keys in a field that sync resets and sending fills,
	// unguarded (a data race once the account's keys change).
	machMu sync.Mutex
}

// lockedSyncer processes each sync response under the client's machMu. It
// embeds the default syncer whole: the crypto helper finds its Dispatch
// (for events it decrypts later) by type assertion.
type lockedSyncer struct {
	*mautrix.DefaultSyncer
	mu *sync.Mutex
}

func (s lockedSyncer) ProcessResponse(ctx context.Context, resp *mautrix.RespSync, since string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.DefaultSyncer.ProcessResponse(ctx, resp, since)
}

// Echo makes the client answer every text message from someone else with
// the same text, at once: the baseline a bot is measured against.
func (c *Client) Echo() {
	c.mu.Lock()
	c.echo = true
	c.mu.Unlock()
}

// Login logs user in with password and starts syncing with encryption.
func (h *Homeserver) Login(t testing.TB, user id.UserID, password string) *Client {
	t.Helper()
	ctx := context.Background()
	cli, err := mautrix.NewClient(h.URL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	cli.Log = zerolog.Nop()
	if _, err := cli.Login(ctx, &mautrix.ReqLogin{Type: mautrix.AuthTypePassword,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: string(user)},
		Password:   password, StoreCredentials: true}); err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	dbPath := filepath.Join(t.TempDir(), "crypto.db")
	raw, err := sql.Open("sqlite", "file:"+dbPath+"?_txlock=immediate&_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	raw.SetMaxOpenConns(1)
	db, err := dbutil.NewWithDB(raw, "sqlite")
	if err != nil {
		t.Fatal(err)
	}
	helper, err := cryptohelper.NewCryptoHelper(cli, []byte("test pickle key for "+string(user)), db)
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Init(ctx); err != nil {
		t.Fatalf("crypto for %s: %v", user, err)
	}
	cli.Crypto = helper
	c := &Client{t: t, Cli: cli, helper: helper, done: make(chan struct{}), wake: make(chan struct{}, 1)}
	syncer := cli.Syncer.(*mautrix.DefaultSyncer)
	syncer.OnEventType(event.EventMessage, func(ctx context.Context, evt *event.Event) {
		c.mu.Lock()
		c.events = append(c.events, evt)
		echo := c.echo && evt.Sender != cli.UserID
		c.mu.Unlock()
		if echo {
			go func() {
				c.machMu.Lock()
				defer c.machMu.Unlock()
				cli.SendText(context.Background(), evt.RoomID, evt.Content.AsMessage().Body)
			}()
		}
		select {
		case c.wake <- struct{}{}:
		default:
		}
	})
	syncer.OnEventType(event.StateMember, func(ctx context.Context, evt *event.Event) {
		if evt.GetStateKey() == string(cli.UserID) && evt.Content.AsMember().Membership == event.MembershipInvite {
			go cli.JoinRoomByID(context.Background(), evt.RoomID)
		}
	})
	cli.Syncer = lockedSyncer{DefaultSyncer: syncer, mu: &c.machMu}
	sctx, cancel := context.WithCancel(ctx)
	c.cancel = cancel
	go func() { defer close(c.done); cli.SyncWithContext(sctx) }()
	t.Cleanup(c.Close)
	return c
}

// CrossSign gives the client's account cross-signing keys (password for
// the homeserver's confirmation) and signs this device with them, as
// Element does for a new account: the account's other devices are then
// trusted only if signed too.
func (c *Client) CrossSign(password string) {
	c.t.Helper()
	c.machMu.Lock()
	defer c.machMu.Unlock()
	ctx := context.Background()
	mach := c.helper.Machine()
	if _, _, err := mach.GenerateAndUploadCrossSigningKeysWithPassword(ctx, password, ""); err != nil {
		c.t.Fatalf("cross-signing keys for %s: %v", c.Cli.UserID, err)
	}
	if err := mach.SignOwnDevice(ctx, mach.OwnIdentity()); err != nil {
		c.t.Fatalf("signing %s's device: %v", c.Cli.UserID, err)
	}
	if err := mach.SignOwnMasterKey(ctx); err != nil {
		c.t.Fatalf("signing %s's master key: %v", c.Cli.UserID, err)
	}
}

// Close stops syncing.
func (c *Client) Close() {
	c.cancel()
	<-c.done
	c.helper.Close()
}

// CreateRoom creates a room (encrypted unless plain) inviting others.
func (c *Client) CreateRoom(plain bool, invite ...id.UserID) id.RoomID {
	c.t.Helper()
	req := &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: invite, IsDirect: true}
	if !plain {
		req.InitialState = []*event.Event{{Type: event.StateEncryption, Content: event.Content{Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}}}}
	}
	resp, err := c.Cli.CreateRoom(context.Background(), req)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.RoomID
}

// WaitJoined waits until user has joined room.
func (c *Client) WaitJoined(room id.RoomID, user id.UserID, within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		m, err := c.Cli.StateStore.GetMember(context.Background(), room, user)
		if err == nil && m.Membership == event.MembershipJoin {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("%s did not join %s within %v", user, room, within)
}

// Send sends a text message (encrypted in an encrypted room) and returns its id.
func (c *Client) Send(room id.RoomID, text string) id.EventID {
	c.t.Helper()
	c.machMu.Lock()
	defer c.machMu.Unlock()
	resp, err := c.Cli.SendText(context.Background(), room, text)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.EventID
}

// SendContent sends arbitrary message content.
func (c *Client) SendContent(room id.RoomID, content any) id.EventID {
	c.t.Helper()
	c.machMu.Lock()
	defer c.machMu.Unlock()
	resp, err := c.Cli.SendMessageEvent(context.Background(), room, event.EventMessage, content)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.EventID
}

// Message is a message the client received.
type Message struct {
	Sender    id.UserID
	Body      string
	HTML      string
	MsgType   string
	Encrypted bool
}

// Messages returns what the client has received in room from sender.
func (c *Client) Messages(room id.RoomID, sender id.UserID) []Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Message
	for _, e := range c.events {
		if e.RoomID != room || e.Sender != sender {
			continue
		}
		m := e.Content.AsMessage()
		out = append(out, Message{Sender: e.Sender, Body: m.Body, HTML: m.FormattedBody, MsgType: string(m.MsgType),
			Encrypted: e.Mautrix.EventSource&event.SourceDecrypted != 0})
	}
	return out
}

// WaitFor waits until ok holds for the messages received in room from
// sender, and returns them.
func (c *Client) WaitFor(room id.RoomID, sender id.UserID, within time.Duration, ok func([]Message) bool) []Message {
	c.t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		msgs := c.Messages(room, sender)
		if ok(msgs) {
			return msgs
		}
		select {
		case <-c.wake:
		case <-time.After(50 * time.Millisecond):
		case <-deadline.C:
			c.t.Fatalf("waited %v in %s for messages from %s; have %d: %s", within, room, sender, len(msgs), summary(msgs))
			return nil
		}
	}
}

// Count counts messages whose body is exactly body.
func Count(msgs []Message, body string) int {
	n := 0
	for _, m := range msgs {
		if m.Body == body {
			n++
		}
	}
	return n
}

func summary(msgs []Message) string {
	var b strings.Builder
	w := bufio.NewWriter(&b)
	for _, m := range msgs {
		fmt.Fprintf(w, "[%s enc=%v] %q; ", m.MsgType, m.Encrypted, m.Body)
	}
	w.Flush()
	return b.String()
}

// SessionKeyOf exports the first known index of every inbound Megolm
// session the client holds for room (what a thief would need to read it).
func (c *Client) SessionKeysOf(room id.RoomID) []string {
	c.t.Helper()
	c.machMu.Lock()
	defer c.machMu.Unlock()
	ctx := context.Background()
	var out []string
	sessions, err := c.helper.Machine().CryptoStore.GetGroupSessionsForRoom(ctx, room).AsList()
	if err != nil {
		c.t.Fatal(err)
	}
	for _, s := range sessions {
		k, err := s.Internal.Export(s.Internal.FirstKnownIndex())
		if err == nil {
			out = append(out, string(k))
		}
	}
	return out
}

// DeviceTrust returns the trust state this client resolves for each of
// user's devices (fetching their keys first).
func (c *Client) DeviceTrust(user id.UserID) map[id.DeviceID]id.TrustState {
	c.t.Helper()
	c.machMu.Lock()
	defer c.machMu.Unlock()
	ctx := context.Background()
	mach := c.helper.Machine()
	devs, err := mach.FetchKeys(ctx, []id.UserID{user}, true)
	if err != nil {
		c.t.Fatal(err)
	}
	out := map[id.DeviceID]id.TrustState{}
	for d, dev := range devs[user] {
		ts, err := mach.ResolveTrustContext(ctx, dev)
		if err != nil {
			c.t.Fatal(err)
		}
		out[d] = ts
	}
	return out
}

// BackedUpRooms logs in as user (a new, throwaway device without
// encryption) and lists the rooms with keys in the account's latest key
// backup, then logs that device out. A key backed up as verified fails t:
// the bot cannot vouch for the sending device to whoever restores it.
func (h *Homeserver) BackedUpRooms(t testing.TB, user id.UserID, password string) []id.RoomID {
	t.Helper()
	ctx := context.Background()
	cli, err := mautrix.NewClient(h.URL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	cli.Log = zerolog.Nop()
	if _, err := cli.Login(ctx, &mautrix.ReqLogin{Type: mautrix.AuthTypePassword,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: string(user)},
		Password:   password, StoreCredentials: true}); err != nil {
		t.Fatal(err)
	}
	defer cli.Logout(ctx)
	v, err := cli.GetKeyBackupLatestVersion(ctx)
	if err != nil {
		t.Fatalf("no key backup for %s: %v", user, err)
	}
	keys, err := cli.GetKeyBackup(ctx, v.Version)
	if err != nil {
		t.Fatal(err)
	}
	var out []id.RoomID
	for r, rk := range keys.Rooms {
		out = append(out, r)
		for sid, k := range rk.Sessions {
			if k.IsVerified {
				// The bot cannot vouch for the device a room key came
				// from to whoever restores its backup.
				t.Errorf("room %s key %s is backed up as verified", r, sid)
			}
		}
	}
	return out
}
