// Package profile defines what an agent is and may do: its instructions,
// model, tools, contacts, permissions, limits and the digest of the binary it
// runs. A profile has one canonical text rendering — stable order, one fact
// per line — so that the gateway can show an owner the exact diff of a change
// and bind an approval to the exact bytes.
//
// The daemon owns profiles; the agent only ever receives approved versions.
// Nothing here performs I/O.
package profile

import (
	"bufio"
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/ironclaw/ironclaw/agentd/wire"
)

// Header is the first line of every canonical rendering.
const Header = "ironclaw-profile 1"

// Profile is one version of what an agent is.
type Profile struct {
	// Instructions is the system prompt, shown to the model first.
	Instructions string
	// Model is the Ollama model name the agent may call.
	Model string
	// Tools are the compiled-in tools granted to the agent, sorted.
	Tools []string
	// Contacts are the chat identities (Matrix user ids) allowed to talk to
	// this agent, sorted.
	Contacts []string
	// Permissions gate the stateful tools.
	Permissions Permissions
	// Limits bound what the agent's sandbox and proxy allow.
	Limits Limits
	// AgentDigest is "sha256:<hex>" of the agentd binary this session runs.
	AgentDigest string
}

// Permissions gate the agent's stateful tools. Each is off at its zero value.
type Permissions struct {
	Schedule bool
	Memory   bool
	Notes    bool
}

// Limits bound a session. A zero limit is refused by the gateway's policy
// invariants (package policy), never read as "unlimited".
type Limits struct {
	MemoryMiB      int64 // sandbox memory cgroup
	CPUMillis      int64 // sandbox CPU quota, thousandths of a core
	TmpMiB         int64 // tmpfs /tmp size
	OutboxMiB      int64 // outbox filesystem size
	OutboxInodes   int64 // outbox filesystem inodes
	TokensPerDay   int64 // model tokens the proxy forwards per day
	CallsPerMinute int64 // model calls the proxy forwards per minute
}

// Default returns the profile a new session starts with: a plain assistant
// with only the reply and request_change tools, no contacts beyond those the
// caller adds, and modest limits.
func Default(model, agentDigest string) Profile {
	return Profile{
		Instructions: "You are a helpful personal assistant. Answer briefly and truthfully.",
		Model:        model,
		Tools:        wire.DefaultTools(),
		Limits: Limits{
			MemoryMiB:      256,
			CPUMillis:      500,
			TmpMiB:         16,
			OutboxMiB:      64,
			OutboxInodes:   1024,
			TokensPerDay:   200000,
			CallsPerMinute: 30,
		},
		AgentDigest: agentDigest,
	}
}

// Canonical renders p as text: a header line, then one fact per line in a
// fixed order, strings Go-quoted so that no value can forge a line. Two
// profiles are equal exactly when their renderings are byte-equal.
func (p Profile) Canonical() []byte {
	var b bytes.Buffer
	b.WriteString(Header + "\n")
	for i, line := range strings.Split(p.Instructions, "\n") {
		fmt.Fprintf(&b, "instructions.%d = %s\n", i+1, strconv.Quote(line))
	}
	fmt.Fprintf(&b, "model = %s\n", strconv.Quote(p.Model))
	for _, t := range sortedUnique(p.Tools) {
		fmt.Fprintf(&b, "tool = %s\n", strconv.Quote(t))
	}
	for _, c := range sortedUnique(p.Contacts) {
		fmt.Fprintf(&b, "contact = %s\n", strconv.Quote(c))
	}
	fmt.Fprintf(&b, "permission.schedule = %t\n", p.Permissions.Schedule)
	fmt.Fprintf(&b, "permission.memory = %t\n", p.Permissions.Memory)
	fmt.Fprintf(&b, "permission.notes = %t\n", p.Permissions.Notes)
	for _, l := range p.limitFields() {
		fmt.Fprintf(&b, "limit.%s = %d\n", l.name, *l.v)
	}
	fmt.Fprintf(&b, "agent.digest = %s\n", strconv.Quote(p.AgentDigest))
	return b.Bytes()
}

type limitField struct {
	name string
	v    *int64
}

func (p *Profile) limitFields() []limitField {
	l := &p.Limits
	return []limitField{
		{"memory_mib", &l.MemoryMiB},
		{"cpu_millis", &l.CPUMillis},
		{"tmp_mib", &l.TmpMiB},
		{"outbox_mib", &l.OutboxMiB},
		{"outbox_inodes", &l.OutboxInodes},
		{"tokens_per_day", &l.TokensPerDay},
		{"calls_per_minute", &l.CallsPerMinute},
	}
}

func sortedUnique(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}

// MaxCanonicalSize caps a canonical rendering accepted by Parse.
const MaxCanonicalSize = 256 << 10

// Parse reads a canonical rendering. It accepts exactly what Canonical
// produces: the result re-renders to the same bytes, or Parse fails.
func Parse(data []byte) (Profile, error) {
	var p Profile
	if len(data) > MaxCanonicalSize {
		return p, fmt.Errorf("profile: %d bytes is over the %d-byte limit", len(data), MaxCanonicalSize)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), MaxCanonicalSize)
	if !sc.Scan() || sc.Text() != Header {
		return p, fmt.Errorf("profile: line 1: want %q", Header)
	}
	var instr []string
	limits := map[string]*int64{}
	for _, l := range p.limitFields() {
		limits[l.name] = l.v
	}
	for n := 2; sc.Scan(); n++ {
		key, val, ok := strings.Cut(sc.Text(), " = ")
		if !ok {
			return p, fmt.Errorf("profile: line %d: want \"key = value\"", n)
		}
		var err error
		switch {
		case strings.HasPrefix(key, "instructions."):
			var s string
			if s, err = strconv.Unquote(val); err == nil {
				if key != fmt.Sprintf("instructions.%d", len(instr)+1) {
					err = fmt.Errorf("instructions out of order")
				}
				instr = append(instr, s)
			}
		case key == "model":
			p.Model, err = strconv.Unquote(val)
		case key == "tool":
			var s string
			s, err = strconv.Unquote(val)
			p.Tools = append(p.Tools, s)
		case key == "contact":
			var s string
			s, err = strconv.Unquote(val)
			p.Contacts = append(p.Contacts, s)
		case key == "permission.schedule":
			p.Permissions.Schedule, err = strconv.ParseBool(val)
		case key == "permission.memory":
			p.Permissions.Memory, err = strconv.ParseBool(val)
		case key == "permission.notes":
			p.Permissions.Notes, err = strconv.ParseBool(val)
		case strings.HasPrefix(key, "limit.") && limits[key[len("limit."):]] != nil:
			*limits[key[len("limit."):]], err = strconv.ParseInt(val, 10, 64)
		case key == "agent.digest":
			p.AgentDigest, err = strconv.Unquote(val)
		default:
			err = fmt.Errorf("unknown key %q", key)
		}
		if err != nil {
			return p, fmt.Errorf("profile: line %d: %w", n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return p, fmt.Errorf("profile: %w", err)
	}
	p.Instructions = strings.Join(instr, "\n")
	if !bytes.Equal(p.Canonical(), data) {
		return p, fmt.Errorf("profile: not in canonical form (order, duplicates or spacing differ)")
	}
	return p, nil
}
