package tools

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/agentd/wire"
)

var now0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

func allGranted() profile.Profile {
	p := profile.Default("m", "sha256:00")
	p.Tools = wire.Tools()
	p.Permissions = profile.Permissions{Schedule: true, Memory: true, Notes: true}
	return p
}

type recorder struct {
	rows []wire.Body
	ids  int
}

func (r *recorder) env(p profile.Profile, st *State) *Env {
	return &Env{State: st, Profile: p, InReplyTo: 5, Now: func() time.Time { return now0 },
		NewID: func() string { r.ids++; return fmt.Sprintf("s%d", r.ids) },
		Emit:  func(b wire.Body) { r.rows = append(r.rows, b) }}
}

func call(t *testing.T, env *Env, name, args string) string {
	t.Helper()
	out, err := Call(env, name, json.RawMessage(args))
	if err != nil {
		t.Fatalf("%s %s: %v", name, args, err)
	}
	return out
}

// The daemon's policy checks profiles against wire.Tools: it must list
// exactly what is compiled in.
func TestNamesMatchWire(t *testing.T) {
	if !slices.Equal(Names(), wire.Tools()) {
		t.Fatalf("compiled in %q, wire.Tools says %q", Names(), wire.Tools())
	}
	for _, n := range Names() {
		tool, _ := Get(n)
		var schema map[string]any
		if err := json.Unmarshal([]byte(tool.Schema), &schema); err != nil || schema["type"] != "object" {
			t.Errorf("%s: schema is not a JSON object schema: %v", n, err)
		}
		if tool.Description == "" {
			t.Errorf("%s has no description", n)
		}
	}
}

func TestNotGrantedIsRefusedAndReported(t *testing.T) {
	r := &recorder{}
	p := profile.Default("m", "sha256:00") // reply and request_change only
	env := r.env(p, NewState())
	for _, name := range []string{"remember", "schedule", "shell", "note_write"} {
		_, err := Call(env, name, json.RawMessage(`{"key":"a","text":"b"}`))
		if !errors.Is(err, ErrNotGranted) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	want := []wire.Body{wire.ToolRefused{Tool: "remember"}, wire.ToolRefused{Tool: "schedule"}, wire.ToolRefused{Tool: "shell"}, wire.ToolRefused{Tool: "note_write"}}
	if !slices.Equal(r.rows, want) {
		t.Fatalf("emitted %+v", r.rows)
	}
	// Listed but its permission off: still refused.
	p.Tools = wire.Tools()
	r.rows = nil
	if _, err := Call(r.env(p, NewState()), "remember", json.RawMessage(`{"key":"a","text":"b"}`)); !errors.Is(err, ErrNotGranted) {
		t.Fatalf("remember without the memory permission: %v", err)
	}
	if len(For(p)) != 2 {
		t.Fatalf("For offers %d tools without permissions", len(For(p)))
	}
	// A hostile name is cut and made valid before it is reported.
	r.rows = nil
	Call(r.env(p, NewState()), strings.Repeat("\xff", 100), nil)
	if tr := r.rows[0].(wire.ToolRefused); len(tr.Tool) > wire.MaxNameSize*3 {
		t.Fatalf("reported %q", tr.Tool)
	} else if _, err := wire.Encode(tr); err != nil {
		t.Fatal(err)
	}
}

func TestStrictArguments(t *testing.T) {
	env := (&recorder{}).env(allGranted(), NewState())
	for _, c := range []struct{ tool, args string }{
		{"remember", `{"key":"a","text":"b","extra":1}`},
		{"remember", `{"key":"a","key":"b","text":"c"}`},
		{"remember", `{"Key":"a","text":"b"}`},
		{"remember", `{"key":"a b","text":"c"}`},
		{"remember", `{"key":"a","text":"b"} {}`},
		{"remember", `"a"`},
		{"reply", `{"text":""}`},
		{"schedule", `{"action":"add","text":"x"}`},
		{"schedule", `{"action":"add","text":"x","in_minutes":-5}`},
		{"schedule", `{"action":"add","text":"x","at":"tomorrow"}`},
		{"schedule", `{"action":"add","text":"x","at":"2020-01-01T00:00:00Z"}`},
		{"schedule", `{"action":"add","text":"x","in_minutes":5,"id":"mine"}`},
		{"schedule", `{"action":"list","id":"x"}`},
		{"schedule", `{"action":"explode"}`},
		{"note_read", `{"name":"missing"}`},
		{"request_change", `{"kind":"tools","reason":"r","instructions":"x"}`},
		{"request_change", `{"kind":"limits","reason":"r"}`},
	} {
		if _, err := Call(env, c.tool, json.RawMessage(c.args)); err == nil {
			t.Errorf("%s %s accepted", c.tool, c.args)
		}
	}
}

func TestToolsActOnStateAndEmitOps(t *testing.T) {
	r := &recorder{}
	st := NewState()
	env := r.env(allGranted(), st)
	call(t, env, "reply", `{"text":"working on it"}`)
	call(t, env, "remember", `{"key":"tea","text":"green"}`)
	if got := call(t, env, "recall", `{"key":"tea"}`); got != "green" {
		t.Fatalf("recall: %q", got)
	}
	call(t, env, "forget", `{"key":"tea"}`)
	call(t, env, "note_write", `{"name":"todo.md","text":"- milk"}`)
	if got := call(t, env, "note_read", `{"name":"todo.md"}`); got != "- milk" {
		t.Fatalf("note_read: %q", got)
	}
	if got := call(t, env, "note_list", `{}`); got != `["todo.md"]` {
		t.Fatalf("note_list: %q", got)
	}
	call(t, env, "schedule", `{"action":"add","text":"stretch","in_minutes":30,"every_minutes":60}`)
	if got := call(t, env, "schedule", `{"action":"list"}`); !strings.Contains(got, "s1 at 2026-12-06T12:30:00Z every 60 minutes: stretch") {
		t.Fatalf("list: %q", got)
	}
	call(t, env, "schedule", `{"action":"cancel","id":"s1"}`)
	call(t, env, "request_change", `{"kind":"permissions","reason":"to remember things","permissions":{"memory":true}}`)
	want := []wire.Kind{wire.KindReply, wire.KindMemory, wire.KindMemory, wire.KindNote, wire.KindSchedule, wire.KindSchedule, wire.KindChangeRequest}
	var got []wire.Kind
	for _, b := range r.rows {
		got = append(got, b.Kind())
		if _, err := wire.Encode(b); err != nil {
			t.Fatalf("emitted an invalid row %+v: %v", b, err)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("emitted %v, want %v", got, want)
	}
	if r.rows[0].(wire.Reply).InReplyTo != 5 {
		t.Fatal("reply does not answer the turn's message")
	}
	if add := r.rows[4].(wire.ScheduleOp); add.At != now0.Add(30*time.Minute).Unix() || add.Every != 3600 {
		t.Fatalf("schedule add %+v", add)
	}
	cr := r.rows[6].(wire.ChangeRequest)
	p, err := profile.Parse([]byte(cr.Proposed))
	if err != nil || !p.Permissions.Memory || p.Permissions.Schedule {
		t.Fatalf("proposed %+v %v", p.Permissions, err)
	}
	if len(st.Memory) != 0 || len(st.Notes) != 1 || len(st.Schedules) != 0 {
		t.Fatalf("state %+v", st)
	}
}

func TestCapsMatchTheDaemons(t *testing.T) {
	r := &recorder{}
	env := r.env(allGranted(), NewState())
	for i := range wire.MaxMemoryItems {
		call(t, env, "remember", fmt.Sprintf(`{"key":"k%d","text":"x"}`, i))
	}
	if _, err := Call(env, "remember", json.RawMessage(`{"key":"one-more","text":"x"}`)); err == nil {
		t.Fatal("memory grew past its cap")
	}
	call(t, env, "remember", `{"key":"k0","text":"replacing is fine"}`)
}
