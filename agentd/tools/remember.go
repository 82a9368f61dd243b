package tools

import (
	"encoding/json"
	"fmt"

	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/agentd/wire"
)

type rememberArgs struct {
	Key  string `json:"key"`
	Text string `json:"text"`
}

func memoryAllowed(p profile.Permissions) bool { return p.Memory }

func init() {
	register(Tool{
		Name:        "remember",
		Description: "Remember a short fact across conversations and restarts, under a key (letters, digits, '.', '_', '-'). Writing a key again replaces it.",
		Schema: `{"type":"object","properties":{"key":{"type":"string","description":"a short name, e.g. favourite_tea"},` +
			`"text":{"type":"string","description":"the fact, at most 512 bytes"}},"required":["key","text"],"additionalProperties":false}`,
		Permission: memoryAllowed,
		Run: func(env *Env, args json.RawMessage) (string, error) {
			var a rememberArgs
			if err := decode(args, &a); err != nil {
				return "", err
			}
			op := wire.MemoryOp{Op: wire.OpSet, Key: a.Key, Text: a.Text}
			if _, err := wire.Encode(op); err != nil {
				return "", err
			}
			if _, exists := env.State.Memory[a.Key]; !exists && len(env.State.Memory) >= wire.MaxMemoryItems {
				return "", fmt.Errorf("memory is full (%d facts): forget one first", wire.MaxMemoryItems)
			}
			env.State.Memory[a.Key] = a.Text
			env.Emit(op)
			return "remembered " + a.Key, nil
		},
	})
}
