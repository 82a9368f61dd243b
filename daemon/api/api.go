package api

import "context"

// Operator is everything one authenticated operator can do. A value is bound
// to its operator when the surface that authenticated them makes it; no
// method takes an actor.
type Operator interface {
	// Who is the operator this value is bound to.
	Who() Identity
	Status(ctx context.Context) (Status, error)
	Changes
	Sessions
	Conversations
	Audit
	Events
	// PinAgent makes new sessions pin the installed agent binary (existing
	// sessions move only through approved software changes). Audited.
	PinAgent(ctx context.Context) (Status, error)
}

// Changes is the change gateway as an operator sees it.
type Changes interface {
	ListChanges(ctx context.Context, f ChangeFilter) ([]ChangeSummary, error)
	// Change returns one request with its full diff, after checking that the
	// diff and binding are those of its texts.
	Change(ctx context.Context, id string) (Change, error)
	// Approve applies exactly the request whose binding hash is binding.
	// Deciding a request that is no longer pending fails with CodeConflict.
	Approve(ctx context.Context, id string, d DecideRequest) (Decision, error)
	// Deny closes the request; d.Note is the operator's reason.
	Deny(ctx context.Context, id string, d DecideRequest) (Decision, error)
	// Propose files an operator's change through the same gateway.
	Propose(ctx context.Context, r ChangeRequest) (Ticket, error)
}

// Sessions lists and manages sessions. Reading a conversation's content is
// not here: it is an explicit, audited request (Conversations).
type Sessions interface {
	ListSessions(ctx context.Context) ([]Session, error)
	Profile(ctx context.Context, id string) (Profile, error)
	// EraseSession crypto-erases a session (audited).
	EraseSession(ctx context.Context, id string) error
	// RestartSession stops a session's sandbox, if any, and lets it start
	// again (a crash-looped session is resumed). Audited.
	RestartSession(ctx context.Context, id string) error
	// CreateSession creates a session for a binding that has none (for
	// example "console:work"), without sending it anything. Audited.
	CreateSession(ctx context.Context, binding string) (Session, error)
	// StopSession stops a session's sandbox now; its next message or
	// schedule starts it again. Audited.
	StopSession(ctx context.Context, id string) error
	// ResetOutbox replaces a session's outbox (a broken or refused one) with
	// a fresh one; nothing the daemon recorded is lost. Audited.
	ResetOutbox(ctx context.Context, id string) error
	// SessionRecords returns what the session's agent keeps — memory, notes,
	// schedules: sealed content, shown only on this explicit request, which
	// is audited. All of it is agent-written text.
	SessionRecords(ctx context.Context, id string) (Records, error)
	// Transcript returns the conversation the daemon keeps to rebuild the
	// model's context: sealed content, read only on this explicit request,
	// which is audited before anything is read (no audit, no transcript).
	Transcript(ctx context.Context, id string) (Transcript, error)
	// ProfileHistory lists a session's profile versions, oldest first.
	ProfileHistory(ctx context.Context, id string) ([]ProfileVersion, error)
	// ProfileAt returns one version's canonical text and its diff against
	// the version before it.
	ProfileAt(ctx context.Context, id string, version uint64) (ProfileVersion, error)
}

// Conversations talks to sessions.
type Conversations interface {
	// Chat sends one message as the operator and waits up to
	// r.WaitSeconds (at most 300) for the reply.
	Chat(ctx context.Context, r ChatRequest) (ChatReply, error)
}

// Audit reads and verifies the audit log.
type Audit interface {
	AuditEntries(ctx context.Context, q AuditQuery) ([]AuditEntry, error)
	VerifyAudit(ctx context.Context) (AuditReport, error)
}

// Events delivers what changed, as it happens.
type Events interface {
	// Subscribe returns a channel of events until ctx ends, then closes it.
	// A subscriber that falls behind loses events, never blocks the daemon;
	// it gets one Event{Kind: "", What: "overflow"} and should re-read.
	Subscribe(ctx context.Context) <-chan Event
}
