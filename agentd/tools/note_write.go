package tools

import (
	"encoding/json"
	"fmt"

	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/agentd/wire"
)

type noteWriteArgs struct {
	Name string `json:"name"`
	Text string `json:"text"`
}

func notesAllowed(p profile.Permissions) bool { return p.Notes }

func init() {
	register(Tool{
		Name:        "note_write",
		Description: "Write a workspace note (replacing any note of that name). Notes are kept across restarts; at most 16 notes of 4 KiB.",
		Schema: `{"type":"object","properties":{"name":{"type":"string","description":"letters, digits, '.', '_', '-', e.g. shopping.md"},` +
			`"text":{"type":"string"}},"required":["name","text"],"additionalProperties":false}`,
		Permission: notesAllowed,
		Run: func(env *Env, args json.RawMessage) (string, error) {
			var a noteWriteArgs
			if err := decode(args, &a); err != nil {
				return "", err
			}
			op := wire.NoteOp{Op: wire.OpWrite, Name: a.Name, Text: a.Text}
			if _, err := wire.Encode(op); err != nil {
				return "", err
			}
			if _, exists := env.State.Notes[a.Name]; !exists && len(env.State.Notes) >= wire.MaxNotes {
				return "", fmt.Errorf("there are already %d notes, the most kept", wire.MaxNotes)
			}
			env.State.Notes[a.Name] = a.Text
			env.Emit(op)
			return "wrote " + a.Name, nil
		},
	})
}
