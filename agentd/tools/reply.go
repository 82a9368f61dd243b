package tools

import (
	"encoding/json"
	"errors"

	"github.com/ironclaw/ironclaw/agentd/wire"
)

type replyArgs struct {
	Text string `json:"text"`
}

func init() {
	register(Tool{
		Name: "reply",
		Description: "Send the user a message now, before your final answer (for example to say you are working on it). " +
			"Your final answer is sent anyway; do not repeat it here.",
		Schema: `{"type":"object","properties":{"text":{"type":"string","description":"the message"}},"required":["text"],"additionalProperties":false}`,
		Run: func(env *Env, args json.RawMessage) (string, error) {
			var a replyArgs
			if err := decode(args, &a); err != nil {
				return "", err
			}
			if a.Text == "" {
				return "", errors.New("text is empty")
			}
			r := wire.Reply{Text: a.Text, InReplyTo: env.InReplyTo}
			if _, err := wire.Encode(r); err != nil {
				return "", err
			}
			env.Emit(r)
			return "sent", nil
		},
	})
}
