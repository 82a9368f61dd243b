package tools

import (
	"encoding/json"
	"sort"
)

type noteListArgs struct{}

func init() {
	register(Tool{
		Name:        "note_list",
		Description: "List the names of the workspace notes.",
		Schema:      `{"type":"object","properties":{},"additionalProperties":false}`,
		Permission:  notesAllowed,
		Run: func(env *Env, args json.RawMessage) (string, error) {
			var a noteListArgs
			if err := decode(args, &a); err != nil {
				return "", err
			}
			names := make([]string, 0, len(env.State.Notes))
			for n := range env.State.Notes {
				names = append(names, n)
			}
			sort.Strings(names)
			return quoteList(names), nil
		},
	})
}
