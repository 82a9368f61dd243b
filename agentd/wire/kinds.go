package wire

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// Kind says what a row's body is. Each kind belongs to exactly one queue.
type Kind uint8

const (
	// KindMessage (inbox) is a chat message for the agent.
	KindMessage Kind = 1
	// KindProfile (inbox) hands the agent a new approved profile version.
	KindProfile Kind = 2
	// KindState (inbox) hands a starting agent what the daemon recorded for
	// its session: memory, notes, schedules and recent history (records.go).
	KindState Kind = 3
	// KindDelivered (inbox) echoes a reply the daemon accepted and delivered,
	// so the history the model sees comes from daemon-written rows only.
	KindDelivered Kind = 4
	// KindFired (inbox) is a schedule firing: a message from the agent's own
	// past, written by the daemon's scheduler at its time.
	KindFired Kind = 5

	// KindReply (outbox) is the agent's answer, delivered to the session's own
	// conversation and nowhere else.
	KindReply Kind = 16
	// KindChangeRequest (outbox) files a change request with the gateway. It
	// never changes anything by itself.
	KindChangeRequest Kind = 17
	// KindProgress (outbox) records how far the agent has consumed its
	// inbox. The agent ends every outbox transaction with one, so that after
	// a restart it resumes where it stopped; the daemon only notes it.
	KindProgress Kind = 18
	// KindMemory, KindNote and KindSchedule (outbox) are operations on the
	// agent's memory, notes and schedules, which the daemon keeps sealed in
	// its store: the sandbox is disposable, the daemon is the record.
	KindMemory   Kind = 19
	KindNote     Kind = 20
	KindSchedule Kind = 21
	// KindToolRefused (outbox) reports a tool call the profile does not
	// grant, so the refusal reaches the daemon's audit log.
	KindToolRefused Kind = 22
)

// Tools returns the names of the tools compiled into agentd. A profile may
// grant only these; there is no tool that installs software, edits the
// profile or reaches the network.
func Tools() []string {
	return []string{
		"forget", "note_list", "note_read", "note_write", "recall", "remember",
		"reply", "request_change", "schedule",
	}
}

// DefaultTools are the tools a new session's first profile grants: the
// stateless ones. The stateful tools need the owner to grant them (and their
// permission) through the gateway.
func DefaultTools() []string { return []string{"reply", "request_change"} }

// MaxTextSize caps any one text field in a body.
const MaxTextSize = 64 << 10

func (k Kind) String() string {
	switch k {
	case KindMessage:
		return "message"
	case KindProfile:
		return "profile"
	case KindReply:
		return "reply"
	case KindChangeRequest:
		return "change_request"
	case KindProgress:
		return "progress"
	case KindState:
		return "state"
	case KindDelivered:
		return "delivered"
	case KindFired:
		return "fired"
	case KindMemory:
		return "memory"
	case KindNote:
		return "note"
	case KindSchedule:
		return "schedule"
	case KindToolRefused:
		return "tool_refused"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

func (k Kind) allowedIn(q Queue) bool {
	switch k {
	case KindMessage, KindProfile, KindState, KindDelivered, KindFired:
		return q == Inbox
	case KindReply, KindChangeRequest, KindProgress, KindMemory, KindNote, KindSchedule, KindToolRefused:
		return q == Outbox
	}
	return false
}

// Body is the decoded payload of a row.
type Body interface {
	Kind() Kind
	validate() error
}

// Message is a chat message for the agent. From is display information only:
// the daemon decides where a reply goes from the session binding, never from a
// row.
type Message struct {
	From string `json:"from"`
	Text string `json:"text"`
}

// ProfileUpdate carries a profile version the owner approved, rendered
// canonically by the daemon. The agent treats it as its configuration.
type ProfileUpdate struct {
	Version   uint64 `json:"version"`
	Canonical string `json:"canonical"`
}

// Reply is the agent's answer to the conversation.
type Reply struct {
	Text      string `json:"text"`
	InReplyTo uint64 `json:"in_reply_to,omitempty"`
}

// ChangeRequest asks the gateway for a change. Proposed is the full proposed
// profile in canonical form; Reason is untrusted agent text shown as such.
type ChangeRequest struct {
	Change   string `json:"change"`
	Proposed string `json:"proposed"`
	Reason   string `json:"reason"`
}

// Progress says the agent has handled every inbox row up to Inbox.
type Progress struct {
	Inbox uint64 `json:"inbox"`
}

func (Progress) Kind() Kind      { return KindProgress }
func (Progress) validate() error { return nil }

func (Message) Kind() Kind       { return KindMessage }
func (ProfileUpdate) Kind() Kind { return KindProfile }
func (Reply) Kind() Kind         { return KindReply }
func (ChangeRequest) Kind() Kind { return KindChangeRequest }

func checkText(field, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("wire: %s is %d bytes, limit %d", field, len(s), max)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("wire: %s is not valid UTF-8", field)
	}
	return nil
}

func (m Message) validate() error {
	if err := checkText("from", m.From, 512); err != nil {
		return err
	}
	return checkText("text", m.Text, MaxTextSize)
}

func (p ProfileUpdate) validate() error {
	if p.Version == 0 {
		return fmt.Errorf("wire: profile version 0 is not a version")
	}
	return checkText("canonical", p.Canonical, 4*MaxTextSize)
}

func (r Reply) validate() error {
	if r.Text == "" {
		return fmt.Errorf("wire: reply text is empty")
	}
	return checkText("text", r.Text, MaxTextSize)
}

func (c ChangeRequest) validate() error {
	if c.Change == "" {
		return fmt.Errorf("wire: change request names no change")
	}
	if err := checkText("change", c.Change, 64); err != nil {
		return err
	}
	if err := checkText("proposed", c.Proposed, 4*MaxTextSize); err != nil {
		return err
	}
	return checkText("reason", c.Reason, 4<<10)
}

// Encode renders a body as the JSON that is sealed into a row.
func Encode(b Body) ([]byte, error) {
	if err := b.validate(); err != nil {
		return nil, err
	}
	return json.Marshal(b)
}

// DecodeBody strictly decodes the body of a row of kind k: unknown, duplicate
// or case-variant keys, trailing data and invalid UTF-8 are refused, and the
// body's own limits are checked.
func DecodeBody(k Kind, data []byte) (Body, error) {
	var b Body
	var err error
	switch k {
	case KindMessage:
		b, err = decodeAs[Message](data)
	case KindProfile:
		b, err = decodeAs[ProfileUpdate](data)
	case KindReply:
		b, err = decodeAs[Reply](data)
	case KindChangeRequest:
		b, err = decodeAs[ChangeRequest](data)
	case KindProgress:
		b, err = decodeAs[Progress](data)
	case KindState:
		b, err = decodeAs[State](data)
	case KindDelivered:
		b, err = decodeAs[Delivered](data)
	case KindFired:
		b, err = decodeAs[Fired](data)
	case KindMemory:
		b, err = decodeAs[MemoryOp](data)
	case KindNote:
		b, err = decodeAs[NoteOp](data)
	case KindSchedule:
		b, err = decodeAs[ScheduleOp](data)
	case KindToolRefused:
		b, err = decodeAs[ToolRefused](data)
	default:
		return nil, fmt.Errorf("%w: %s", ErrKind, k)
	}
	if err != nil {
		return nil, fmt.Errorf("wire: decoding %s: %w", k, err)
	}
	if err := b.validate(); err != nil {
		return nil, err
	}
	return b, nil
}

func decodeAs[T Body](data []byte) (Body, error) {
	var v T
	if err := StrictUnmarshal(data, &v); err != nil {
		return nil, err
	}
	return v, nil
}
