package gateway

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/audit"
	"github.com/ironclaw/ironclaw/daemon/store"
	"github.com/ironclaw/ironclaw/policy"
)

// Defaults for Config.
const (
	// DefaultMaxPending caps the pending requests one session may have from
	// one untrusted source (its agent, or chat strangers).
	DefaultMaxPending = 8
	// DefaultCooldown is how long a session may not submit another request
	// of a kind after a human denied one.
	DefaultCooldown = 10 * time.Minute
)

// Names of the request states, re-exported from the store.
type State = store.ChangeState

const (
	StatePending  = store.ChangePending
	StateApproved = store.ChangeApproved // reserved: approval and apply commit together
	StateDenied   = store.ChangeDenied
	StateApplied  = store.ChangeApplied
	StateStale    = store.ChangeStale
	StateRefused  = store.ChangeRefused
)

// ID names a change request: 16 random bytes, 32 lower-case hex digits.
type ID = store.ChangeID

// ParseID parses the text form of a request id (as the CLI and console get
// it from a human).
func ParseID(s string) (ID, error) { return store.ParseChangeID(s) }

// BindingHash is the hash an approval binds to; see store.ChangeBinding.
func BindingHash(id ID, base, proposed []byte) [32]byte {
	return store.ChangeBinding(id, base, proposed)
}

// ParseBinding parses a binding hash written as 64 lower-case hex digits.
func ParseBinding(s string) ([32]byte, error) {
	var h [32]byte
	if len(s) != 64 {
		return h, errors.New("gateway: a binding hash is 64 hex digits")
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, errors.New("gateway: a binding hash is 64 hex digits")
	}
	if hex.EncodeToString(h[:]) != s {
		return h, errors.New("gateway: write the binding hash in lower-case hex")
	}
	return h, nil
}

// Errors callers can test with errors.Is. Each refusal is also audited.
var (
	// ErrMalformed: the request could not be read (undecodable body, a
	// proposed text that is not canonical, a requester that does not fit
	// the source). Nothing was stored.
	ErrMalformed = errors.New("gateway: malformed change request")
	// ErrTooManyPending: the session already has the maximum of pending
	// requests from this source. Nothing was stored.
	ErrTooManyPending = errors.New("gateway: too many pending requests")
	// ErrCoolingDown: a human denied a request of this session and kind
	// recently. Nothing was stored.
	ErrCoolingDown = errors.New("gateway: cooling down after a denial")
	// ErrStale: the request's base is no longer the current version. At
	// approval the request is marked stale; nothing was applied.
	ErrStale = errors.New("gateway: the profile (or rules) changed since this request was made; nothing was applied")
	// ErrHashMismatch: the approver's hash is not the request's binding —
	// they saw something else. Show the request again.
	ErrHashMismatch = errors.New("gateway: the hash does not match this request; show it again and decide on what it says now")
	// ErrTampered: the stored request does not open or does not hash to its
	// binding. It is marked refused; nothing was applied.
	ErrTampered = errors.New("gateway: the stored request was tampered with")
	// ErrRefused: policy now denies the request (the host or the rules
	// changed since it was made). It is marked refused; nothing was applied.
	ErrRefused = errors.New("gateway: policy refuses this change")
	// ErrNotPending: the request was already decided.
	ErrNotPending = errors.New("gateway: the request is not pending")
	// ErrNotOperator: the actor is not an operator identity.
	ErrNotOperator = errors.New("gateway: only an operator may decide a change")
	// ErrAudit: the decision could not be audited, so it was not carried
	// out (nothing applied, nothing closed).
	ErrAudit = errors.New("gateway: audit write failed; the decision was not carried out")
	// ErrResultNotAudited: the change WAS applied, but the audit entry for
	// the result could not be written. Do not report success; the audit log
	// has failed and the daemon should stop.
	ErrResultNotAudited = errors.New("gateway: the change was applied but its result could not be audited")
	// ErrNotify: the change was applied and audited, but the daemon could
	// not be told. The store is the source of truth; the daemon
	// reconciles at start (docs/gateway.md).
	ErrNotify = errors.New("gateway: the change was applied but the daemon was not notified")
)

// AuditLog is what the gateway needs from the audit log; *audit.Log has it.
type AuditLog interface {
	// Append writes one entry and returns once it is fsynced.
	Append(audit.Record) (audit.Entry, error)
	// Refuse logs a refusal, folding floods of identical ones.
	Refuse(actor, action, subject, reason string) error
}

// Applier is told about every applied profile version, after it is
// committed and audited. The daemon delivers it to the agent as a sealed
// wire.ProfileUpdate inbox row and, when restart is true (tools, model,
// limits or the agent binary changed), restarts the session's sandbox.
//
// It is called with the session's gateway lock held, so calls for one
// session arrive in version order; it must not call back into the gateway
// for the same session, and should be quick (queue a restart, do not wait
// for it). An error is reported to the approver (ErrNotify) but does not
// undo anything: the daemon must also, at start, deliver the current
// version to any session whose agent may not have it.
type Applier interface {
	ProfileApplied(ctx context.Context, session wire.SessionID, version uint64, canonical []byte, restart bool) error
}

// Config configures New.
type Config struct {
	Store   *store.Store
	Audit   AuditLog
	Applier Applier
	// Host bounds every profile (policy invariants). SetHost replaces it.
	Host policy.Host
	// MaxPending caps pending requests per session and untrusted source;
	// 0 means DefaultMaxPending.
	MaxPending int
	// Cooldown after a human denial; 0 means DefaultCooldown, negative
	// means none.
	Cooldown time.Duration
	// Now is the clock for the cool-down; nil means time.Now.
	Now func() time.Time
	// Operators is the console's operator set, changed by requests of kind
	// "operators"; nil refuses them.
	Operators Operators
}

// Gateway decides and applies changes. It is safe for concurrent use. All
// work on one session (and on the rules) is serialised by a per-session
// lock; different sessions proceed independently.
type Gateway struct {
	st         *store.Store
	log        AuditLog
	applier    Applier
	maxPending int
	cooldown   time.Duration
	now        func() time.Time
	operators  Operators

	host  atomic.Pointer[policy.Host]
	rules atomic.Pointer[rulesState]
	locks keyLocks
}

// rulesState is one version of the operator rules, compiled.
type rulesState struct {
	version uint64
	text    []byte
	specs   []policy.RuleSpec
	set     *policy.RuleSet
}

// New opens the gateway over the store's state: it loads the current
// operator rules (refusing to start if they no longer load — a gateway that
// silently dropped the operator's deny rules would be worse than none).
func New(ctx context.Context, cfg Config) (*Gateway, error) {
	if cfg.Store == nil || cfg.Audit == nil || cfg.Applier == nil {
		return nil, errors.New("gateway: Store, Audit and Applier are required")
	}
	g := &Gateway{
		st:         cfg.Store,
		log:        cfg.Audit,
		applier:    cfg.Applier,
		maxPending: cfg.MaxPending,
		cooldown:   cfg.Cooldown,
		now:        cfg.Now,
		operators:  cfg.Operators,
	}
	if g.maxPending <= 0 {
		g.maxPending = DefaultMaxPending
	}
	if g.cooldown == 0 {
		g.cooldown = DefaultCooldown
	}
	if g.now == nil {
		g.now = time.Now
	}
	g.SetHost(cfg.Host)
	version, text, err := g.st.CurrentRules(ctx)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	if version == 0 {
		text = policy.CanonicalRules(nil)
	}
	rs, err := compileRules(version, text)
	if err != nil {
		return nil, fmt.Errorf("gateway: operator rules version %d no longer load (%w); refusing to run without them: run the ironclaw that wrote them", version, err)
	}
	g.rules.Store(rs)
	return g, nil
}

func compileRules(version uint64, text []byte) (*rulesState, error) {
	specs, err := policy.ParseRules(text)
	if err != nil {
		return nil, err
	}
	set, err := policy.LoadRules(specs)
	if err != nil {
		return nil, err
	}
	return &rulesState{version: version, text: text, specs: specs, set: set}, nil
}

// SetHost replaces the host facts policy checks against (say, after a new
// agent image was built). Requests already pending are checked again, with
// the new facts, when approved.
func (g *Gateway) SetHost(h policy.Host) {
	h.Tools = slices.Clone(h.Tools)
	h.Models = slices.Clone(h.Models)
	h.BuiltDigests = slices.Clone(h.BuiltDigests)
	g.host.Store(&h)
}

// Rules returns the current operator rules: version (0: none), canonical
// text and specs.
func (g *Gateway) Rules() (version uint64, text []byte, specs []policy.RuleSpec) {
	rs := g.rules.Load()
	return rs.version, append([]byte(nil), rs.text...), append([]policy.RuleSpec(nil), rs.specs...)
}

// keyLocks is a set of mutexes keyed by session (or "rules"), created on
// demand and dropped when unused, so that one session's work never waits
// for another's.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	ch   chan struct{}
	refs int
}

func (k *keyLocks) lock(ctx context.Context, key string) (func(), error) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyLock{}
	}
	l := k.m[key]
	if l == nil {
		l = &keyLock{ch: make(chan struct{}, 1)}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	release := func() {
		k.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
	select {
	case l.ch <- struct{}{}:
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
	return func() {
		<-l.ch
		release()
	}, nil
}

const rulesLockKey = "rules"

func lockKey(cs *store.ChangeSummary) string {
	switch cs.Kind {
	case store.KindRules:
		return rulesLockKey
	case store.KindOperators:
		return operatorsLockKey
	}
	return cs.Session.String()
}
