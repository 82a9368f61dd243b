package wire

import (
	"fmt"
	"regexp"
)

// The agent's durable state — memory, notes, schedules — and the history the
// model sees travel as rows: the agent writes operations to its outbox, the
// daemon keeps the result sealed in its store, and hands it back to a
// starting agent in one State row. Both sides enforce the caps below, so an
// agent learns at once that its memory is full and a hostile one cannot
// grow the daemon's store without bound.
const (
	MaxMemoryItems  = 64        // remembered facts per session
	MaxMemoryText   = 512       // bytes per fact
	MaxNotes        = 16        // notes per session
	MaxNoteText     = 4 << 10   // bytes per note
	MaxSchedules    = 32        // live schedules per session
	MaxScheduleText = 256       // bytes of a schedule's text
	MinEvery        = 60        // seconds between firings of a recurring schedule, at least
	MaxHistoryTurns = 64        // turns in a State row
	MaxNameSize     = 64        // bytes of a memory key, note name or schedule id
	maxStateBody    = 900 << 10 // a State body's encoded size (rows are capped at 1 MiB)
)

// names are memory keys, note names and schedule ids: short, printable,
// nothing a terminal or a path could misread.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// CheckName checks a memory key, note name or schedule id.
func CheckName(what, s string) error {
	if len(s) == 0 || len(s) > MaxNameSize || !namePattern.MatchString(s) {
		return fmt.Errorf("wire: %s %q: use 1 to %d letters, digits, '.', '_' or '-', starting with a letter or digit", what, truncate(s, 80), MaxNameSize)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// Memory is one remembered fact.
type Memory struct {
	Key  string `json:"key"`
	Text string `json:"text"`
}

// Note is one workspace note.
type Note struct {
	Name string `json:"name"`
	Text string `json:"text"`
}

// Schedule is one live schedule: At is its next firing (unix seconds),
// Every its period in seconds (0: it fires once).
type Schedule struct {
	ID    string `json:"id"`
	At    int64  `json:"at"`
	Every int64  `json:"every,omitempty"`
	Text  string `json:"text"`
}

// Next is the first firing of a recurring schedule after now (unix
// seconds), skipping those missed; the agent and the daemon's scheduler
// both use it. A one-off schedule has none (0).
func (s Schedule) Next(now int64) int64 {
	if s.Every <= 0 {
		return 0
	}
	at := s.At
	if at <= now {
		at += ((now-at)/s.Every + 1) * s.Every
	}
	return at
}

// Turn is one entry of the history the daemon recorded: a user message or a
// schedule firing it wrote, or a reply it accepted and delivered. Seq is the
// inbox row that carried it, so a reader can merge a State row with the rows
// after it without counting a turn twice.
type Turn struct {
	Seq  uint64 `json:"seq"`
	Role string `json:"role"`
	Text string `json:"text"`
}

// Roles of a Turn. A firing is its own role: its text is what the agent
// wrote when it set the schedule, never the user's words, and is shown to
// the model as a notice from the daemon.
const (
	TurnUser      = "user"
	TurnAssistant = "assistant"
	TurnFired     = "fired"
)

// State is what the daemon recorded for a session, handed to an agent at
// start. Handled is the last inbox row the daemon saw the agent record as
// handled; a starting agent resumes after it.
type State struct {
	Handled   uint64     `json:"handled"`
	Memory    []Memory   `json:"memory"`
	Notes     []Note     `json:"notes"`
	Schedules []Schedule `json:"schedules"`
	History   []Turn     `json:"history"`
}

// Delivered echoes a reply the daemon accepted from the outbox and handed to
// the session's conversation. InReplyTo is the inbox row it answered.
type Delivered struct {
	Text      string `json:"text"`
	InReplyTo uint64 `json:"in_reply_to,omitempty"`
}

// Fired is a schedule firing. Due is when it was meant to fire (unix
// seconds); Late says the daemon was down then and fires it once now.
type Fired struct {
	ID   string `json:"id"`
	Text string `json:"text"`
	Due  int64  `json:"due"`
	Late bool   `json:"late,omitempty"`
}

// Operations on memory, notes and schedules.
const (
	OpSet    = "set"    // memory: set Key to Text
	OpRemove = "remove" // memory, notes: remove Key/Name
	OpWrite  = "write"  // notes: write Name with Text
	OpAdd    = "add"    // schedules: add a schedule
	OpCancel = "cancel" // schedules: cancel ID
)

// MemoryOp changes the agent's memory.
type MemoryOp struct {
	Op   string `json:"op"`
	Key  string `json:"key"`
	Text string `json:"text,omitempty"`
}

// NoteOp changes the agent's notes.
type NoteOp struct {
	Op   string `json:"op"`
	Name string `json:"name"`
	Text string `json:"text,omitempty"`
}

// ScheduleOp adds or cancels a schedule. For cancel only ID is set.
type ScheduleOp struct {
	Op    string `json:"op"`
	ID    string `json:"id"`
	At    int64  `json:"at,omitempty"`
	Every int64  `json:"every,omitempty"`
	Text  string `json:"text,omitempty"`
}

// ToolRefused reports that the model called a tool the profile does not
// grant (or that is not compiled in). Tool is the name it asked for:
// untrusted text, which the daemon audits only if it is a known tool name.
type ToolRefused struct {
	Tool string `json:"tool"`
}

func (State) Kind() Kind       { return KindState }
func (Delivered) Kind() Kind   { return KindDelivered }
func (Fired) Kind() Kind       { return KindFired }
func (MemoryOp) Kind() Kind    { return KindMemory }
func (NoteOp) Kind() Kind      { return KindNote }
func (ScheduleOp) Kind() Kind  { return KindSchedule }
func (ToolRefused) Kind() Kind { return KindToolRefused }

func (m Memory) check() error {
	if err := CheckName("memory key", m.Key); err != nil {
		return err
	}
	return checkText("memory text", m.Text, MaxMemoryText)
}

func (n Note) check() error {
	if err := CheckName("note name", n.Name); err != nil {
		return err
	}
	return checkText("note text", n.Text, MaxNoteText)
}

func (s Schedule) check() error {
	if err := CheckName("schedule id", s.ID); err != nil {
		return err
	}
	if s.At <= 0 {
		return fmt.Errorf("wire: schedule %s has no time", s.ID)
	}
	if s.Every != 0 && s.Every < MinEvery {
		return fmt.Errorf("wire: schedule %s repeats every %d s, the least is %d s", s.ID, s.Every, MinEvery)
	}
	if s.Text == "" {
		return fmt.Errorf("wire: schedule %s has no text", s.ID)
	}
	return checkText("schedule text", s.Text, MaxScheduleText)
}

func (s State) validate() error {
	if len(s.Memory) > MaxMemoryItems || len(s.Notes) > MaxNotes || len(s.Schedules) > MaxSchedules || len(s.History) > MaxHistoryTurns {
		return fmt.Errorf("wire: state holds more than its caps allow")
	}
	seen := map[string]bool{}
	for _, m := range s.Memory {
		if err := m.check(); err != nil {
			return err
		}
		if seen["m"+m.Key] {
			return fmt.Errorf("wire: state remembers %q twice", m.Key)
		}
		seen["m"+m.Key] = true
	}
	for _, n := range s.Notes {
		if err := n.check(); err != nil {
			return err
		}
		if seen["n"+n.Name] {
			return fmt.Errorf("wire: state holds note %q twice", n.Name)
		}
		seen["n"+n.Name] = true
	}
	for _, sc := range s.Schedules {
		if err := sc.check(); err != nil {
			return err
		}
		if seen["s"+sc.ID] {
			return fmt.Errorf("wire: state holds schedule %q twice", sc.ID)
		}
		seen["s"+sc.ID] = true
	}
	var last uint64
	for _, t := range s.History {
		if t.Seq <= last {
			return fmt.Errorf("wire: state history is out of order")
		}
		last = t.Seq
		if t.Role != TurnUser && t.Role != TurnAssistant && t.Role != TurnFired {
			return fmt.Errorf("wire: state history has role %q", truncate(t.Role, 20))
		}
		if err := checkText("history text", t.Text, MaxTextSize); err != nil {
			return err
		}
	}
	return nil
}

func (d Delivered) validate() error {
	if d.Text == "" {
		return fmt.Errorf("wire: delivered text is empty")
	}
	return checkText("text", d.Text, MaxTextSize)
}

func (f Fired) validate() error {
	if err := CheckName("schedule id", f.ID); err != nil {
		return err
	}
	return checkText("text", f.Text, MaxScheduleText)
}

func (m MemoryOp) validate() error {
	switch m.Op {
	case OpSet:
		return Memory{Key: m.Key, Text: m.Text}.check()
	case OpRemove:
		if m.Text != "" {
			return fmt.Errorf("wire: a memory removal carries no text")
		}
		return CheckName("memory key", m.Key)
	}
	return fmt.Errorf("wire: memory op %q is not set or remove", truncate(m.Op, 20))
}

func (n NoteOp) validate() error {
	switch n.Op {
	case OpWrite:
		return Note{Name: n.Name, Text: n.Text}.check()
	case OpRemove:
		if n.Text != "" {
			return fmt.Errorf("wire: a note removal carries no text")
		}
		return CheckName("note name", n.Name)
	}
	return fmt.Errorf("wire: note op %q is not write or remove", truncate(n.Op, 20))
}

func (s ScheduleOp) validate() error {
	switch s.Op {
	case OpAdd:
		return Schedule{ID: s.ID, At: s.At, Every: s.Every, Text: s.Text}.check()
	case OpCancel:
		if s.At != 0 || s.Every != 0 || s.Text != "" {
			return fmt.Errorf("wire: a schedule cancel carries only an id")
		}
		return CheckName("schedule id", s.ID)
	}
	return fmt.Errorf("wire: schedule op %q is not add or cancel", truncate(s.Op, 20))
}

func (t ToolRefused) validate() error {
	if t.Tool == "" {
		return fmt.Errorf("wire: tool_refused names no tool")
	}
	return checkText("tool", t.Tool, MaxNameSize)
}

// EncodeState encodes a State, dropping its oldest history turns until it
// fits in a row. It fails only if memory, notes and schedules alone do not
// fit (they cannot, within their caps).
func EncodeState(s State) ([]byte, State, error) {
	for {
		data, err := Encode(s)
		if err != nil {
			return nil, s, err
		}
		if len(data) <= maxStateBody {
			return data, s, nil
		}
		if len(s.History) == 0 {
			return nil, s, fmt.Errorf("wire: state of %d bytes does not fit in a row", len(data))
		}
		s.History = s.History[max(1, len(s.History)/4):]
	}
}
