package tools

import (
	"encoding/json"
	"sort"
	"strings"
)

type recallArgs struct {
	Key string `json:"key,omitempty"`
}

func init() {
	register(Tool{
		Name:        "recall",
		Description: "Read remembered facts: the one under key, or all of them when key is left out.",
		Schema:      `{"type":"object","properties":{"key":{"type":"string","description":"the fact's key; omit to list all"}},"additionalProperties":false}`,
		Permission:  memoryAllowed,
		Run: func(env *Env, args json.RawMessage) (string, error) {
			var a recallArgs
			if err := decode(args, &a); err != nil {
				return "", err
			}
			if a.Key != "" {
				text, ok := env.State.Memory[a.Key]
				if !ok {
					return "nothing is remembered under " + a.Key, nil
				}
				return text, nil
			}
			if len(env.State.Memory) == 0 {
				return "nothing is remembered yet", nil
			}
			keys := make([]string, 0, len(env.State.Memory))
			for k := range env.State.Memory {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var b strings.Builder
			for _, k := range keys {
				b.WriteString(k + ": " + env.State.Memory[k] + "\n")
			}
			return b.String(), nil
		},
	})
}
