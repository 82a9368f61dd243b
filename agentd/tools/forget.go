package tools

import (
	"encoding/json"

	"github.com/ironclaw/ironclaw/agentd/wire"
)

type forgetArgs struct {
	Key string `json:"key"`
}

func init() {
	register(Tool{
		Name:        "forget",
		Description: "Forget the fact remembered under key.",
		Schema:      `{"type":"object","properties":{"key":{"type":"string"}},"required":["key"],"additionalProperties":false}`,
		Permission:  memoryAllowed,
		Run: func(env *Env, args json.RawMessage) (string, error) {
			var a forgetArgs
			if err := decode(args, &a); err != nil {
				return "", err
			}
			op := wire.MemoryOp{Op: wire.OpRemove, Key: a.Key}
			if _, err := wire.Encode(op); err != nil {
				return "", err
			}
			if _, ok := env.State.Memory[a.Key]; !ok {
				return "nothing was remembered under " + a.Key, nil
			}
			delete(env.State.Memory, a.Key)
			env.Emit(op)
			return "forgot " + a.Key, nil
		},
	})
}
