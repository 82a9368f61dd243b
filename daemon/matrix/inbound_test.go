package matrix

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/audit"
	"github.com/ironclaw/ironclaw/daemon/gateway"
	"github.com/ironclaw/ironclaw/daemon/store"
	"github.com/ironclaw/ironclaw/daemon/supervisor"
	"maunium.net/go/mautrix/id"
)

// fakeSup creates sessions in the real store, as the supervisor does; the
// rest is not reached by the tests that use it.
type fakeSup struct {
	st   *store.Store
	mu   sync.Mutex
	sent []string
}

func (f *fakeSup) Ensure(ctx context.Context, binding string) (wire.SessionID, error) {
	if s, err := f.st.SessionByBinding(ctx, binding); err == nil {
		return s.ID, nil
	}
	sid, err := wire.NewSessionID()
	if err != nil {
		return sid, err
	}
	wk := make([]byte, 48)
	rand.Read(wk)
	return sid, f.st.CreateSession(ctx, sid, binding, wk, profile.Default("tiny", "sha256:"+strings.Repeat("ab", 32)))
}

func (f *fakeSup) Send(_ context.Context, binding, from, text string) (wire.SessionID, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, text)
	return wire.SessionID{}, uint64(len(f.sent)), nil
}
func (f *fakeSup) Subscribe(string) chan supervisor.Reply                  { return make(chan supervisor.Reply) }
func (f *fakeSup) Unsubscribe(chan supervisor.Reply)                       {}
func (f *fakeSup) Delivered(context.Context, wire.SessionID, uint64) error { return nil }
func (f *fakeSup) Wake(context.Context, string) error                      { return nil }
func (f *fakeSup) Undelivered(context.Context, string) ([]supervisor.Reply, error) {
	return nil, nil
}
func (f *fakeSup) InboxMessages(context.Context, string, uint64) ([]supervisor.InboxMessage, error) {
	return nil, nil
}

// fakeGate answers every contact request with one state.
type fakeGate struct{ state gateway.State }

func (g fakeGate) SubmitContact(context.Context, wire.SessionID, string, string) (gateway.Ticket, error) {
	return gateway.Ticket{State: g.state}, nil
}

// fakeAudit keeps what would be audited.
type fakeAudit struct {
	mu  sync.Mutex
	log []string
}

func (a *fakeAudit) Append(r audit.Record) (audit.Entry, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.log = append(a.log, r.Action+" "+r.Decision+" "+r.Result)
	return audit.Entry{}, nil
}

func (a *fakeAudit) Refuse(actor, action, subject, reason string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.log = append(a.log, action+" refused "+reason)
	return nil
}

func (a *fakeAudit) count(sub string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, l := range a.log {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

// testChannel is a Channel on a real store, whose homeserver answers every
// request (join, leave) with an empty success.
func testChannel(t *testing.T, gate gateway.State) (*Channel, *fakeSup, *fakeAudit) {
	t.Helper()
	var key [32]byte
	rand.Read(key[:])
	st, err := store.Open(filepath.Join(t.TempDir(), "s.db"), &key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.SetMatrixAccount(context.Background(), store.MatrixAccount{UserID: "@bot:x", DeviceID: "DEV"}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"room_id":"!r:x"}`)
	}))
	t.Cleanup(srv.Close)
	sup, aud := &fakeSup{st: st}, &fakeAudit{}
	c := &Channel{cfg: Config{Homeserver: srv.URL, UserID: "@bot:x", Owners: []id.UserID{"@owner:x"}, Store: st, Sup: sup,
		Gate: fakeGate{gate}, Audit: aud, SyncTimeout: time.Second, KeyWait: DefaultKeyWait,
		MaxStrangerRooms: 3, MaxHeldPerSender: 5, MaxHeldPerRoom: 8, HeldExpiry: time.Hour},
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), inKick: make(chan struct{}, 1), outKick: make(chan struct{}, 1),
		subs: map[string]chan supervisor.Reply{}, requested: map[string]bool{}, keyAsked: map[string]bool{}, typing: map[id.RoomID]bool{}, fresh: map[string]bool{}}
	if c.cli, err = c.newClient("token"); err != nil {
		t.Fatal(err)
	}
	return c, sup, aud
}

var evSeq int

// record commits events as one sync batch, through the channel's limits.
func record(t *testing.T, c *Channel, evs ...store.MatrixEvent) {
	t.Helper()
	for i := range evs {
		evSeq++
		evs[i].EventID = fmt.Sprintf("$ev%d", evSeq)
	}
	if _, err := c.cfg.Store.CommitMatrixSync(context.Background(), evs, fmt.Sprintf("b%d", evSeq), c.holdLimits()); err != nil {
		t.Fatal(err)
	}
}

func invite(room, sender string) store.MatrixEvent {
	b, _ := json.Marshal(inbound{K: kindInvite})
	return store.MatrixEvent{RoomID: room, Sender: sender, Body: b}
}

func message(room, sender, text string) store.MatrixEvent {
	b, _ := json.Marshal(inbound{K: kindMessage, Text: text})
	return store.MatrixEvent{RoomID: room, Sender: sender, Body: b}
}

func matrixSessions(t *testing.T, c *Channel) int {
	t.Helper()
	rooms, err := c.rooms(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return len(rooms)
}

// An inviter whose id can never be a contact gets no session at all.
func TestInviteFromInvalidIDMakesNoSession(t *testing.T) {
	c, _, aud := testChannel(t, gateway.StatePending)
	for i := range 10 {
		record(t, c, invite(fmt.Sprintf("!r%d:evil", i), "@UPPER CASE:evil"))
		c.processInbound(context.Background())
	}
	if n := matrixSessions(t, c); n != 0 {
		t.Fatalf("%d sessions for the rooms of an invalid inviter", n)
	}
	if open, _ := c.cfg.Store.MatrixOpen(context.Background(), 100); len(open) != 0 {
		t.Fatalf("%d invites still open", len(open))
	}
	if aud.count("matrix.invite refused") != 10 {
		t.Fatalf("audit: %v", aud.log)
	}
}

// A stranger whose requests are refused cannot make one session per room
// without end: past MaxStrangerRooms their invites are refused and audited,
// and an owner's new room still gets its session.
func TestRefusedStrangersCannotUseUpSessions(t *testing.T) {
	c, _, aud := testChannel(t, gateway.StateRefused)
	ctx := context.Background()
	for i := range 20 {
		record(t, c, invite(fmt.Sprintf("!s%d:evil", i), fmt.Sprintf("@s%d:evil", i)))
		c.processInbound(ctx)
	}
	if n := matrixSessions(t, c); n > c.cfg.MaxStrangerRooms {
		t.Fatalf("%d sessions for refused strangers' rooms, cap %d", n, c.cfg.MaxStrangerRooms)
	}
	if aud.count("too many rooms wait for approval") != 20-c.cfg.MaxStrangerRooms {
		t.Fatalf("audit: %v", aud.log)
	}
	record(t, c, invite("!mine:x", "@owner:x"))
	c.processInbound(ctx)
	if _, has, err := c.session(ctx, "!mine:x"); err != nil || !has {
		t.Fatalf("the owner's room got no session: %v", err)
	}
}

// A pending stranger's messages are held up to the per-sender cap; the rest
// are refused at once (audited by class, never by text) and not stored.
func TestHeldMessagesAreCapped(t *testing.T) {
	c, sup, aud := testChannel(t, gateway.StatePending)
	ctx := context.Background()
	record(t, c, invite("!r:x", "@owner:x"))
	c.processInbound(ctx)
	for i := range 12 {
		record(t, c, message("!r:x", "@stranger:evil", fmt.Sprintf("SECRET-%d", i)))
	}
	c.processInbound(ctx)
	open, err := c.cfg.Store.MatrixOpen(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(open) != c.cfg.MaxHeldPerSender {
		t.Fatalf("%d held, cap %d", len(open), c.cfg.MaxHeldPerSender)
	}
	if n := aud.count(store.MatrixOverSenderCap); n != 12-c.cfg.MaxHeldPerSender {
		t.Fatalf("%d refusals audited: %v", n, aud.log)
	}
	if strings.Contains(fmt.Sprint(aud.log), "SECRET") || len(sup.sent) != 0 {
		t.Fatalf("held text leaked: audit %v, sent %v", aud.log, sup.sent)
	}
	// Another stranger fills the room up to its cap.
	for i := range 5 {
		record(t, c, message("!r:x", "@other:evil", fmt.Sprint(i)))
	}
	if n := aud.count(store.MatrixOverRoomCap); n != 5+c.cfg.MaxHeldPerSender-c.cfg.MaxHeldPerRoom {
		t.Fatalf("%d room-cap refusals: %v", n, aud.log)
	}
}

// A held event that waited past HeldExpiry is dropped and audited, and no
// longer holds its room: the owner's next message goes through.
func TestHeldMessagesExpire(t *testing.T) {
	c, sup, aud := testChannel(t, gateway.StatePending)
	ctx := context.Background()
	record(t, c, invite("!r:x", "@owner:x"))
	c.processInbound(ctx)
	record(t, c, message("!r:x", "@stranger:evil", "HELD-TEXT"))
	c.processInbound(ctx)
	if open, _ := c.cfg.Store.MatrixOpen(ctx, 100); len(open) != 1 {
		t.Fatalf("%d events open, want the held one", len(open))
	}
	c.cfg.HeldExpiry = time.Nanosecond
	c.processInbound(ctx)
	c.cfg.HeldExpiry = time.Hour
	if open, _ := c.cfg.Store.MatrixOpen(ctx, 100); len(open) != 0 {
		t.Fatalf("%d events still open", len(open))
	}
	if n := aud.count("matrix.expired refused held longer than the expiry"); n != 1 {
		t.Fatalf("%d expiries audited: %v", n, aud.log)
	}
	record(t, c, message("!r:x", "@owner:x", "hello"))
	c.processInbound(ctx)
	if fmt.Sprint(sup.sent) != "[hello]" || strings.Contains(fmt.Sprint(aud.log), "HELD-TEXT") {
		t.Fatalf("sent %v; audit %v", sup.sent, aud.log)
	}
}
