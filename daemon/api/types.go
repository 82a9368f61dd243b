package api

import "time"

// Identity is the operator a value is bound to.
type Identity struct {
	// Actor is how the audit log names the operator: "operator:local:<user>"
	// for the admin socket, "operator:SHA256:<fingerprint>" for an SSH key.
	Actor string `json:"actor"`
	// Via is the surface: "admin" or "console".
	Via string `json:"via"`
}

// Status is the daemon's health at a glance.
type Status struct {
	Version        string `json:"version"`
	StateDir       string `json:"state_dir"`
	Sessions       int    `json:"sessions"`
	Running        int    `json:"running"`
	PendingChanges int    `json:"pending_changes"`
	// AgentInstalled is the digest of the installed agentd; AgentPinned the
	// one new sessions pin.
	AgentInstalled string `json:"agent_installed"`
	AgentPinned    string `json:"agent_pinned"`
	// AuditFailures counts audit writes that failed since the start. An
	// action whose audit fails fails too; a refusal has nothing left to
	// fail, so this count is where such a failure shows.
	AuditFailures uint64 `json:"audit_failures"`
	// Health of what the daemon depends on: "ok", or why not.
	Runsc string `json:"runsc"`
	Model string `json:"model"`
	// ModelHealth is what the model server said when last asked (at most
	// every 10 s): "ok", "unreachable", "model missing" or "error"; "" when
	// not probed. ModelHint is its message, saying what to do.
	ModelHealth string `json:"model_health,omitempty"`
	ModelHint   string `json:"model_hint,omitempty"`
	Tailnet     string `json:"tailnet"`
}

// ChangeFilter selects change requests.
type ChangeFilter struct {
	// All includes decided requests; otherwise only pending ones.
	All bool `json:"all,omitempty"`
}

// ChangeSummary is a change request's metadata: no request text.
type ChangeSummary struct {
	ID          string    `json:"id"`
	Session     string    `json:"session"` // empty for rules and operators changes
	Kind        string    `json:"kind"`
	Requester   string    `json:"requester"`
	State       string    `json:"state"`
	Outcome     string    `json:"outcome"`
	Rule        string    `json:"rule"`
	Created     time.Time `json:"created"`
	DecidedBy   string    `json:"decided_by"`
	Result      string    `json:"result"`
	BaseVersion uint64    `json:"base_version"`
	// Binding is the hash an approval must present: 64 lower-case hex digits
	// of SHA-256 over base, proposed and id (store.ChangeBinding).
	Binding string `json:"binding"`
}

// Change is everything needed to decide one request. Its Binding covers
// exactly Base and Proposed; Diff is computed from them by the daemon.
type Change struct {
	ChangeSummary
	Diff     string `json:"diff"`
	Base     string `json:"base"`
	Proposed string `json:"proposed"`
	// UntrustedReason is the requester's own words: unverified, possibly
	// hostile. Show it sanitised and marked as the requester's claim.
	UntrustedReason string   `json:"untrusted_reason"`
	PolicyReasons   []string `json:"policy_reasons"`
	ChangedFields   []string `json:"changed_fields"`
	Restart         bool     `json:"restart"`
	BaseIsCurrent   bool     `json:"base_is_current"`
	Note            string   `json:"note"`
}

// ChangeRequest is an operator's proposal: the one shape every operator
// surface files a change in. The requester is the bound operator.
type ChangeRequest struct {
	Session string `json:"session"` // empty for kinds "rules" and "operators"
	Kind    string `json:"kind"`
	// Proposed is the full proposed version in canonical form.
	Proposed string `json:"proposed"`
	Reason   string `json:"reason"`
	// BaseVersion, if not 0, is the version the proposal was built on; the
	// gateway refuses it if the current version moved since.
	BaseVersion uint64 `json:"base_version"`
}

// Ticket says what the gateway made of a proposal.
type Ticket struct {
	ID        string `json:"id"`
	State     string `json:"state"`
	Outcome   string `json:"outcome"`
	Rule      string `json:"rule"`
	Duplicate bool   `json:"duplicate"`
}

// DecideRequest approves or denies a request: Binding is the hash of what
// the operator was shown; Note is the operator's reason (for a denial).
type DecideRequest struct {
	Binding string `json:"binding"`
	Note    string `json:"note,omitempty"`
}

// Decision is the outcome of Approve or Deny.
type Decision struct {
	ID string `json:"id"`
	// Result is "applied", "denied", or "applied; …" when the change was
	// applied but the daemon will deliver it only at its next start.
	Result string `json:"result"`
}

// Session is one line of the sessions list.
type Session struct {
	ID             string    `json:"id"`
	Binding        string    `json:"binding"`
	State          string    `json:"state"`
	Created        time.Time `json:"created"`
	ProfileVersion uint64    `json:"profile_version"`
	// Runtime facts, zero when the conversation is not open.
	Running    bool      `json:"running"`
	Started    time.Time `json:"started,omitzero"`
	Stopped    string    `json:"stopped,omitempty"` // why it will not start until resumed
	InboxHead  uint64    `json:"inbox_head"`
	Progress   uint64    `json:"progress"`
	Exits      int       `json:"exits"`
	LastActive time.Time `json:"last_active,omitzero"`
	// Usage of the running sandbox, read from its cgroups when the list was
	// made; zero (UsageAt zero) when it is not running or could not be read.
	MemoryBytes uint64    `json:"memory_bytes,omitempty"`
	CPUUsec     uint64    `json:"cpu_usec,omitempty"`
	UsageAt     time.Time `json:"usage_at,omitzero"`
}

// Transcript is a session's kept conversation, oldest turn first. Every
// Text is untrusted (the user's or the agent's words): sanitise it.
type Transcript struct {
	Session string `json:"session"`
	Turns   []Turn `json:"turns"`
}

// Turn is one message of a transcript; Role is "user" or "assistant".
type Turn struct {
	Seq  uint64 `json:"seq"`
	Role string `json:"role"`
	Text string `json:"text"`
}

// ProfileVersion is one version of a session's profile. In a list only
// Version, Created and Change are set; ProfileAt fills Canonical and Diff
// (against Version-1; for version 1, against nothing).
type ProfileVersion struct {
	Session string    `json:"session"`
	Version uint64    `json:"version"`
	Created time.Time `json:"created"`
	// Change is the change request applied to make it ("" for the first).
	Change    string `json:"change,omitempty"`
	Canonical string `json:"canonical,omitempty"`
	Diff      string `json:"diff,omitempty"`
}

// Records is what a session's agent keeps (agent-written, untrusted text).
type Records struct {
	Session   string     `json:"session"`
	Memory    []Fact     `json:"memory"`
	Notes     []Note     `json:"notes"`
	Schedules []Schedule `json:"schedules"`
}

// Fact is one remembered fact.
type Fact struct {
	Key  string `json:"key"`
	Text string `json:"text"`
}

// Note is one workspace note.
type Note struct {
	Name string `json:"name"`
	Text string `json:"text"`
}

// Schedule is one live schedule: its next firing and, if it recurs, its
// period.
type Schedule struct {
	ID    string        `json:"id"`
	Next  time.Time     `json:"next"`
	Every time.Duration `json:"every,omitempty"`
	Text  string        `json:"text"`
}

// Profile is a session's current profile.
type Profile struct {
	Session   string `json:"session"`
	Version   uint64 `json:"version"`
	Canonical string `json:"canonical"`
}

// ChatRequest is one message to a session. Session empty means the local
// console session (created on first use).
type ChatRequest struct {
	Session     string `json:"session,omitempty"`
	Text        string `json:"text"`
	WaitSeconds int    `json:"wait_seconds"`
}

// ChatReply is the agent's answer, if it came in time. Reply is untrusted.
type ChatReply struct {
	Session string `json:"session"`
	Seq     uint64 `json:"seq"`
	Reply   string `json:"reply"`
	Replied bool   `json:"replied"`
	// Earlier are replies of the session that no chat has returned yet
	// (the client stopped waiting, or the daemon restarted before handing
	// them over), oldest first. Each is returned once.
	Earlier []string `json:"earlier,omitempty"`
}

// AuditQuery selects audit entries.
type AuditQuery struct {
	// Contains keeps entries with this text in any field (case-insensitive).
	Contains string `json:"contains,omitempty"`
	// Limit caps the answer to the newest Limit matches; 0 means
	// DefaultAuditLimit, and it is never more than MaxAuditLimit.
	Limit int `json:"limit,omitempty"`
}

// Limits on AuditQuery.
const (
	DefaultAuditLimit = 1000
	MaxAuditLimit     = 100000
)

// AuditEntry is one audit log line.
type AuditEntry struct {
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"time"`
	Actor    string    `json:"actor"`
	Action   string    `json:"action"`
	Subject  string    `json:"subject"`
	Decision string    `json:"decision"`
	Result   string    `json:"result"`
	Count    uint64    `json:"count"`
}

// AuditReport is what verifying the audit log proved.
type AuditReport struct {
	OK      bool   `json:"ok"`
	Entries uint64 `json:"entries"`
	// Proved lists what was checked: "hash chain", "MACs", "anchor".
	Proved []string `json:"proved"`
	// Failure names the first bad entry when OK is false.
	Failure string `json:"failure,omitempty"`
}

// EventKind says what an Event is about.
type EventKind string

const (
	EventChange  EventKind = "change"  // a request was filed or decided
	EventSession EventKind = "session" // a session was created, erased, stopped or restarted
	EventAudit   EventKind = "audit"   // the audit log grew
)

// Event tells a subscriber that something changed; it carries ids, never
// content: read the thing itself to see what it is now.
type Event struct {
	Kind EventKind `json:"kind"`
	ID   string    `json:"id"`
	// What is a short word: "filed", "applied", "denied", "erased", …
	What string `json:"what"`
}
