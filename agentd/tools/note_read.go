package tools

import (
	"encoding/json"
	"fmt"
)

type noteReadArgs struct {
	Name string `json:"name"`
}

func init() {
	register(Tool{
		Name:        "note_read",
		Description: "Read the workspace note called name.",
		Schema:      `{"type":"object","properties":{"name":{"type":"string"}},"required":["name"],"additionalProperties":false}`,
		Permission:  notesAllowed,
		Run: func(env *Env, args json.RawMessage) (string, error) {
			var a noteReadArgs
			if err := decode(args, &a); err != nil {
				return "", err
			}
			text, ok := env.State.Notes[a.Name]
			if !ok {
				return "", fmt.Errorf("there is no note called %q (note_list lists them)", a.Name)
			}
			return text, nil
		},
	})
}
