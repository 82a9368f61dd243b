package tools

import (
	"encoding/json"
	"testing"

	"github.com/ironclaw/ironclaw/agentd/wire"
)

// FuzzCall drives every tool with arbitrary arguments, the way a model (or
// an injected prompt) may call them: no panic, and every row a tool emits is
// one the outbox accepts.
func FuzzCall(f *testing.F) {
	seeds := []string{`{"text":"hi"}`, `{"key":"tea","text":"green"}`, `{"key":"tea"}`, `{}`,
		`{"name":"n.md","text":"x"}`, `{"action":"add","text":"x","in_minutes":5,"every_minutes":1}`,
		`{"action":"add","text":"x","at":"2027-01-01T00:00:00Z"}`, `{"action":"cancel","id":"s1"}`, `{"action":"list"}`,
		`{"kind":"instructions","reason":"r","instructions":"be kind"}`, `{"kind":"tools","reason":"r","tools":["reply"]}`,
		`{"key":"a","key":"b"}`, `{"Text":"x"}`, `null`, `[]`, `{"text":"\u0000"}`}
	names := Names()
	for i, s := range seeds {
		f.Add(uint8(i), []byte(s))
	}
	f.Fuzz(func(t *testing.T, which uint8, args []byte) {
		r := &recorder{}
		st := NewState()
		st.Schedules["s1"] = wire.Schedule{ID: "s1", At: 1, Text: "x"}
		env := r.env(allGranted(), st)
		name := names[int(which)%len(names)]
		Call(env, name, json.RawMessage(args))
		for _, b := range r.rows {
			if _, err := wire.Encode(b); err != nil {
				t.Fatalf("%s(%s) emitted an invalid row %+v: %v", name, args, b, err)
			}
		}
	})
}
