// Package tools holds the agent's compiled-in tools: one file per tool, each
// with the JSON Schema the model sees and a strict decoder for the arguments
// the model sends (unknown, duplicate or case-variant keys are refused, as in
// package wire).
//
// A tool acts only on the agent's working copy of its state and on the rows
// it emits for the outbox; the daemon is the record and applies the same
// operations under the same caps. No tool installs software, edits the
// profile, reaches the network or touches a file: request_change files a
// change request and never acts. A tool the profile does not grant (or whose
// permission is off) is refused, and the refusal is emitted as a
// tool_refused row so that it reaches the daemon's audit log.
package tools

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/agentd/wire"
)

// State is the agent's working copy of what the daemon keeps for it.
type State struct {
	Memory    map[string]string
	Notes     map[string]string
	Schedules map[string]wire.Schedule
}

// NewState returns an empty State.
func NewState() *State {
	return &State{Memory: map[string]string{}, Notes: map[string]string{}, Schedules: map[string]wire.Schedule{}}
}

// Load replaces the state with what a State row says.
func (s *State) Load(st wire.State) {
	*s = *NewState()
	for _, m := range st.Memory {
		s.Memory[m.Key] = m.Text
	}
	for _, n := range st.Notes {
		s.Notes[n.Name] = n.Text
	}
	for _, sc := range st.Schedules {
		s.Schedules[sc.ID] = sc
	}
}

// Env is what one tool call may touch.
type Env struct {
	State   *State
	Profile profile.Profile
	// InReplyTo is the inbox row the turn answers.
	InReplyTo uint64
	Now       func() time.Time
	// NewID returns a fresh schedule id.
	NewID func() string
	// Emit queues a row for the outbox; the loop writes the turn's rows in
	// one transaction.
	Emit func(wire.Body)
}

// Tool is one compiled-in tool.
type Tool struct {
	Name        string
	Description string
	// Schema is the JSON Schema of the arguments, shown to the model.
	Schema string
	// Permission, if set, is the profile permission the tool also needs.
	Permission func(profile.Permissions) bool
	// Run decodes args strictly and acts. Its string is what the model sees.
	Run func(env *Env, args json.RawMessage) (string, error)
}

var registry = map[string]Tool{}

func register(t Tool) {
	if _, dup := registry[t.Name]; dup {
		panic("tools: " + t.Name + " registered twice")
	}
	if !json.Valid([]byte(t.Schema)) {
		panic("tools: " + t.Name + " has an invalid schema")
	}
	registry[t.Name] = t
}

// Names lists every compiled-in tool, sorted. It must equal wire.Tools(),
// which the daemon's policy checks profiles against (a test checks).
func Names() []string {
	out := make([]string, 0, len(registry))
	for n := range registry {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Get returns the compiled-in tool called name.
func Get(name string) (Tool, bool) {
	t, ok := registry[name]
	return t, ok
}

// Granted reports whether p lets the agent use the tool called name: the
// profile lists it and any permission it needs is on.
func Granted(p profile.Profile, name string) bool {
	t, ok := registry[name]
	if !ok || !slices.Contains(p.Tools, name) {
		return false
	}
	return t.Permission == nil || t.Permission(p.Permissions)
}

// For returns the tools p grants, sorted by name.
func For(p profile.Profile) []Tool {
	var out []Tool
	for _, n := range Names() {
		if Granted(p, n) {
			out = append(out, registry[n])
		}
	}
	return out
}

// ErrNotGranted is the refusal of a tool the profile does not grant.
var ErrNotGranted = errors.New("this tool is not granted to you")

// Call runs the tool called name with args, if the profile grants it. A
// refused call emits a tool_refused row. The string is what the model sees
// either way; the error says the call failed (bad arguments, a full store).
func Call(env *Env, name string, args json.RawMessage) (string, error) {
	if !Granted(env.Profile, name) {
		tool := name
		if len(tool) > wire.MaxNameSize {
			tool = tool[:wire.MaxNameSize]
		}
		if tool = strings.ToValidUTF8(tool, "?"); tool == "" {
			tool = "?"
		}
		env.Emit(wire.ToolRefused{Tool: tool})
		return "", fmt.Errorf("%w: %q (ask the owner through request_change if you need it)", ErrNotGranted, tool)
	}
	out, err := registry[name].Run(env, args)
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// decode strictly decodes a tool call's arguments into v. A missing or
// null argument object reads as {}.
func decode(args json.RawMessage, v any) error {
	if len(args) == 0 || string(args) == "null" {
		args = json.RawMessage("{}")
	}
	if err := wire.StrictUnmarshal(args, v); err != nil {
		return fmt.Errorf("bad arguments: %w", err)
	}
	return nil
}

// quoteList renders names for the model, one per line.
func quoteList(items []string) string {
	if len(items) == 0 {
		return "(none)"
	}
	b, _ := json.Marshal(items)
	return string(b)
}
