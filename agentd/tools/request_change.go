package tools

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/agentd/wire"
)

type permissionArgs struct {
	Schedule bool `json:"schedule"`
	Memory   bool `json:"memory"`
	Notes    bool `json:"notes"`
}

type requestChangeArgs struct {
	Kind         string          `json:"kind"`
	Reason       string          `json:"reason"`
	Instructions *string         `json:"instructions,omitempty"`
	Tools        []string        `json:"tools,omitempty"`
	Permissions  *permissionArgs `json:"permissions,omitempty"`
	Model        *string         `json:"model,omitempty"`
}

func init() {
	register(Tool{
		Name: "request_change",
		Description: "Ask the owner to change what you are or may do. It changes nothing by itself: the owner sees the exact change and decides. " +
			"kind=instructions with the full new instructions; kind=tools with the full new tool list; kind=permissions with schedule, memory and notes; " +
			"kind=model with the model name. Always give a short reason.",
		Schema: `{"type":"object","properties":{"kind":{"type":"string","enum":["instructions","tools","permissions","model"]},` +
			`"reason":{"type":"string"},"instructions":{"type":"string"},"tools":{"type":"array","items":{"type":"string"}},` +
			`"permissions":{"type":"object","properties":{"schedule":{"type":"boolean"},"memory":{"type":"boolean"},"notes":{"type":"boolean"}},"additionalProperties":false},` +
			`"model":{"type":"string"}},"required":["kind","reason"],"additionalProperties":false}`,
		Run: runRequestChange,
	})
}

func runRequestChange(env *Env, args json.RawMessage) (string, error) {
	var a requestChangeArgs
	if err := decode(args, &a); err != nil {
		return "", err
	}
	p := env.Profile
	p.Tools = append([]string(nil), p.Tools...)
	given := 0
	for _, set := range []bool{a.Instructions != nil, a.Tools != nil, a.Permissions != nil, a.Model != nil} {
		if set {
			given++
		}
	}
	if given != 1 {
		return "", errors.New("give exactly the one field your kind changes")
	}
	switch {
	case a.Kind == "instructions" && a.Instructions != nil:
		p.Instructions = *a.Instructions
	case a.Kind == "tools" && a.Tools != nil:
		p.Tools = a.Tools
	case a.Kind == "permissions" && a.Permissions != nil:
		p.Permissions = profile.Permissions(*a.Permissions)
	case a.Kind == "model" && a.Model != nil:
		p.Model = *a.Model
	default:
		return "", fmt.Errorf("kind %q needs its own field (instructions, tools, permissions or model)", a.Kind)
	}
	req := wire.ChangeRequest{Change: a.Kind, Proposed: string(p.Canonical()), Reason: a.Reason}
	if _, err := wire.Encode(req); err != nil {
		return "", err
	}
	env.Emit(req)
	return "filed: the owner will see the exact change and decide; nothing changes until they approve", nil
}
