package matrix

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/audit"
	"github.com/ironclaw/ironclaw/daemon/gateway"
	"github.com/ironclaw/ironclaw/daemon/store"
	"github.com/ironclaw/ironclaw/daemon/supervisor"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/crypto/cryptohelper"
	"maunium.net/go/mautrix/id"
)

// BindingPrefix starts the binding of every Matrix session.
const BindingPrefix = "matrix:"

// Binding is the session binding of a room.
func Binding(room id.RoomID) string { return BindingPrefix + string(room) }

// Defaults for Config fields left zero.
const (
	// DefaultKeyWait is how long an event whose room key has not arrived
	// waits before its sender and the operator are told it could not be
	// decrypted.
	DefaultKeyWait = 30 * time.Second
	// DefaultMaxStrangerRooms caps rooms the bot holds sessions for only
	// because a stranger invited it (each waits for an owner's approval).
	DefaultMaxStrangerRooms = 8
	// DefaultSyncTimeout is the long-poll of each /sync.
	DefaultSyncTimeout = 30 * time.Second
	// DefaultMaxHeldPerSender and DefaultMaxHeldPerRoom cap the events that
	// wait in the record (a pending stranger's messages, events waiting for
	// a room key): more from that sender, or in that room, are refused and
	// audited. Owners and the bot are not capped per sender.
	DefaultMaxHeldPerSender = 20
	DefaultMaxHeldPerRoom   = 100
	// DefaultHeldExpiry is how long an event may wait (its sender's contact
	// request still pending) before it is dropped and audited.
	DefaultHeldExpiry = 7 * 24 * time.Hour
)

// openPerRoom bounds each reload of the record: at most this many waiting
// events of each room are looked at per pass (a held event holds the rest of
// its room anyway).
const openPerRoom = 50

// Supervisor is what the channel needs from daemon/supervisor.
type Supervisor interface {
	Send(ctx context.Context, binding, from, text string) (wire.SessionID, uint64, error)
	Subscribe(binding string) chan supervisor.Reply
	Unsubscribe(ch chan supervisor.Reply)
	Undelivered(ctx context.Context, binding string) ([]supervisor.Reply, error)
	Delivered(ctx context.Context, session wire.SessionID, seq uint64) error
	Ensure(ctx context.Context, binding string) (wire.SessionID, error)
	InboxMessages(ctx context.Context, binding string, after uint64) ([]supervisor.InboxMessage, error)
	Wake(ctx context.Context, binding string) error
}

// Gate files contact requests (daemon/gateway); it never decides them.
type Gate interface {
	SubmitContact(ctx context.Context, session wire.SessionID, user, reason string) (gateway.Ticket, error)
}

// AuditLog is what the channel writes to the audit log.
type AuditLog interface {
	Append(audit.Record) (audit.Entry, error)
	Refuse(actor, action, subject, reason string) error
}

// Config wires a Channel.
type Config struct {
	Homeserver string
	UserID     id.UserID
	// Password or AccessToken, read by the caller from the files the
	// daemon's config names (never from argv or the environment).
	Password    string
	AccessToken string
	Owners      []id.UserID
	// CryptoDB is the path of the crypto store (state_dir/matrix/crypto.db).
	CryptoDB string
	// PickleKey pickles every Olm/Megolm secret in the crypto store; a
	// subkey of the master key, never stored.
	PickleKey []byte
	Store     *store.Store
	Sup       Supervisor
	Gate      Gate
	Audit     AuditLog
	Log       *slog.Logger
	// KeyWait, MaxStrangerRooms, SyncTimeout, MaxHeldPerSender,
	// MaxHeldPerRoom, HeldExpiry: see the Default* constants.
	KeyWait          time.Duration
	MaxStrangerRooms int
	SyncTimeout      time.Duration
	MaxHeldPerSender int
	MaxHeldPerRoom   int
	HeldExpiry       time.Duration
	// HTTPClient talks to the homeserver; nil means a client with timeouts.
	HTTPClient *http.Client
}

// Channel is a running Matrix channel.
type Channel struct {
	cfg    Config
	log    *slog.Logger
	cli    *mautrix.Client
	helper *cryptohelper.CryptoHelper
	mach   *crypto.OlmMachine
	acct   store.MatrixAccount
	start  time.Time // intents older than this may have been sent before a crash

	inKick  chan struct{} // inbound work may be ready
	outKick chan struct{} // replies may be ready

	mu        sync.Mutex
	subs      map[string]chan supervisor.Reply // guarded by mu: binding → subscription
	requested map[string]bool                  // guarded by mu: session|user contact requests filed this run
	keyAsked  map[string]bool                  // guarded by mu: session ids whose keys were requested
	typing    map[id.RoomID]bool               // guarded by mu
	// fresh holds the transaction ids of replies taken from an agent in
	// this run: they cannot have been sent before a crash, so the room's
	// history need not be searched for them. Guarded by mu.
	fresh map[string]bool
	wg    sync.WaitGroup
}

// New logs the bot in (or resumes its stored device), opens the crypto store
// and prepares the channel. Run starts it.
func New(ctx context.Context, cfg Config) (*Channel, error) {
	if cfg.KeyWait <= 0 {
		cfg.KeyWait = DefaultKeyWait
	}
	if cfg.MaxStrangerRooms <= 0 {
		cfg.MaxStrangerRooms = DefaultMaxStrangerRooms
	}
	if cfg.SyncTimeout <= 0 {
		cfg.SyncTimeout = DefaultSyncTimeout
	}
	if cfg.MaxHeldPerSender <= 0 {
		cfg.MaxHeldPerSender = DefaultMaxHeldPerSender
	}
	if cfg.MaxHeldPerRoom <= 0 {
		cfg.MaxHeldPerRoom = DefaultMaxHeldPerRoom
	}
	if cfg.HeldExpiry <= 0 {
		cfg.HeldExpiry = DefaultHeldExpiry
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if len(cfg.PickleKey) < 32 {
		return nil, errors.New("matrix: no pickle key")
	}
	c := &Channel{cfg: cfg, log: cfg.Log, start: time.Now(),
		inKick: make(chan struct{}, 1), outKick: make(chan struct{}, 1),
		subs: map[string]chan supervisor.Reply{}, requested: map[string]bool{}, keyAsked: map[string]bool{}, typing: map[id.RoomID]bool{}, fresh: map[string]bool{}}
	if err := c.open(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Channel) newClient(token string) (*mautrix.Client, error) {
	cli, err := mautrix.NewClient(c.cfg.Homeserver, c.cfg.UserID, token)
	if err != nil {
		return nil, fmt.Errorf("matrix: homeserver %s: %w", c.cfg.Homeserver, err)
	}
	if c.cfg.HTTPClient != nil {
		cli.Client = c.cfg.HTTPClient
	} else {
		cli.Client = &http.Client{Timeout: c.cfg.SyncTimeout + 30*time.Second}
	}
	// mautrix retries other requests (key queries, joins, uploads) on
	// 429/5xx with backoff; sends and syncs are retried by the channel
	// itself (oneAttempt), which reads M_LIMIT_EXCEEDED's retry_after_ms and
	// keeps each transaction id. mautrix's log would carry request URLs:
	// discarded.
	cli.DefaultHTTPRetries = 4
	cli.DefaultHTTPBackoff = time.Second
	cli.Log = zerolog.Nop()
	cli.UserAgent = "IronClaw"
	return cli, nil
}

// holdLimits is what CommitMatrixSync caps waiting events with.
func (c *Channel) holdLimits() store.MatrixHoldLimits {
	return store.MatrixHoldLimits{
		PerSender: c.cfg.MaxHeldPerSender,
		PerRoom:   c.cfg.MaxHeldPerRoom,
		Exempt:    func(u string) bool { return id.UserID(u) == c.cfg.UserID || c.isOwner(id.UserID(u)) },
		Refused: func(e store.MatrixEvent, why string) error {
			return c.cfg.Audit.Refuse("channel:"+e.Sender, "matrix.refused", e.RoomID, why)
		},
	}
}

// isOwner reports whether u is one of the configured owners.
func (c *Channel) isOwner(u id.UserID) bool { return slices.Contains(c.cfg.Owners, u) }

// contacts returns the approved contacts of session (its profile's).
func (c *Channel) contacts(ctx context.Context, session wire.SessionID) ([]string, error) {
	_, p, err := c.cfg.Store.CurrentProfile(ctx, session)
	if err != nil {
		return nil, err
	}
	return p.Contacts, nil
}

// allowed reports whether u may talk in session's room: an owner, the bot,
// or an approved contact of the session.
func (c *Channel) allowed(ctx context.Context, session wire.SessionID, hasSession bool, u id.UserID) (bool, error) {
	if u == c.cfg.UserID || c.isOwner(u) {
		return true, nil
	}
	if !hasSession {
		return false, nil
	}
	cs, err := c.contacts(ctx, session)
	if err != nil {
		return false, err
	}
	return slices.Contains(cs, string(u)), nil
}

// session returns the room's session, if it has one.
func (c *Channel) session(ctx context.Context, room id.RoomID) (wire.SessionID, bool, error) {
	s, err := c.cfg.Store.SessionByBinding(ctx, Binding(room))
	if errors.Is(err, store.ErrNotFound) {
		return wire.SessionID{}, false, nil
	}
	if err != nil {
		return wire.SessionID{}, false, err
	}
	return s.ID, true, nil
}

// rooms lists the rooms that have an active session.
func (c *Channel) rooms(ctx context.Context) ([]id.RoomID, error) {
	ss, err := c.cfg.Store.ListSessions(ctx)
	if err != nil {
		return nil, err
	}
	var out []id.RoomID
	for _, s := range ss {
		if r, ok := strings.CutPrefix(s.Binding, BindingPrefix); ok && s.State == store.StateActive {
			out = append(out, id.RoomID(r))
		}
	}
	return out, nil
}

// unapproved returns the room's joined or invited members who may not
// talk there. The bot says nothing in a room that holds one.
func (c *Channel) unapproved(ctx context.Context, room id.RoomID, session wire.SessionID) ([]id.UserID, error) {
	members, err := c.cli.StateStore.GetRoomJoinedOrInvitedMembers(ctx, room)
	if err != nil {
		return nil, err
	}
	var contacts []string
	loaded := false
	var out []id.UserID
	for _, m := range members {
		if m == c.cfg.UserID || c.isOwner(m) {
			continue
		}
		if !loaded {
			if contacts, err = c.contacts(ctx, session); err != nil {
				return nil, err
			}
			loaded = true
		}
		if !slices.Contains(contacts, string(m)) {
			out = append(out, m)
		}
	}
	return out, nil
}

func (c *Channel) audit(action, subject, decision, result string) error {
	_, err := c.cfg.Audit.Append(audit.Record{Actor: "channel:matrix", Action: action, Subject: subject, Decision: decision, Result: result})
	return err
}

func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Run syncs and delivers until ctx ends. It reconnects on its own: a failed
// sync is retried with backoff, never fatal, except a revoked access token.
func (c *Channel) Run(ctx context.Context) error {
	c.log.Info("matrix channel running", "user", string(c.cfg.UserID), "device", c.acct.DeviceID)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	c.wg.Add(4)
	go func() { defer c.wg.Done(); c.inboundLoop(ctx) }()
	go func() { defer c.wg.Done(); c.outboundLoop(ctx) }()
	go func() { defer c.wg.Done(); c.noticeLoop(ctx) }()
	go func() { defer c.wg.Done(); c.backupLoop(ctx) }()
	go func() { errc <- c.syncLoop(ctx) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		cancel()
	}
	c.wg.Wait()
	c.mu.Lock()
	for _, sub := range c.subs {
		c.cfg.Sup.Unsubscribe(sub)
	}
	c.subs = map[string]chan supervisor.Reply{}
	c.mu.Unlock()
	if err == nil {
		if cerr := c.cfg.Store.SetMatrixClean(context.WithoutCancel(ctx), true); cerr != nil {
			c.log.Warn("recording a clean Matrix stop", "err", cerr)
		}
	}
	return err
}

// Close releases the crypto store.
func (c *Channel) Close() error {
	if c.helper != nil {
		return c.helper.Close()
	}
	return nil
}

// subscribe makes sure replies of room's session wake the outbound loop.
func (c *Channel) subscribe(ctx context.Context, room id.RoomID) {
	b := Binding(room)
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.subs[b]; ok {
		return
	}
	sub := c.cfg.Sup.Subscribe(b)
	c.subs[b] = sub
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case r, ok := <-sub:
				if !ok {
					return
				}
				c.mu.Lock()
				c.fresh[r.TxnID] = true
				c.mu.Unlock()
				kick(c.outKick)
			}
		}
	}()
}

// oneAttempt makes mautrix try a request once; the caller retries.
func oneAttempt(ctx context.Context) context.Context {
	return context.WithValue(ctx, mautrix.MaxAttemptsContextKey, 1)
}
