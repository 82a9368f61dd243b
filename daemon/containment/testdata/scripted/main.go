// Command scripted is agentd with a scripted model built in: the real loop,
// the real Brain and the real tools, with a Provider that follows the user's
// message instead of a language model. It lets the containment suite drive
// tool calls end to end under runsc without a model server.
//
// The script: every line of a message "call NAME {json}" becomes a tool call
// in the first round; the answer after tool calls is "done: " and the tool
// results; a message "context?" is answered with what the model was shown
// (the memory in its system prompt and the earlier turns); anything else with
// "heard: " and the text.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/ironclaw/ironclaw/agentd/agent"
	"github.com/ironclaw/ironclaw/agentd/model"
)

type scripted struct{}

func (scripted) Chat(_ context.Context, req model.Request) (model.Response, error) {
	msgs := req.Messages
	last := msgs[len(msgs)-1]
	say := func(s string) (model.Response, error) {
		return model.Response{Message: model.Message{Role: model.RoleAssistant, Content: s}}, nil
	}
	if last.Role == model.RoleTool {
		var res []string
		for i := len(msgs) - 1; i >= 0 && msgs[i].Role == model.RoleTool; i-- {
			res = append([]string{msgs[i].ToolName + "=" + msgs[i].Content}, res...)
		}
		return say("done: " + strings.Join(res, " | "))
	}
	var calls []model.ToolCall
	for _, line := range strings.Split(last.Content, "\n") {
		if rest, ok := strings.CutPrefix(line, "call "); ok {
			name, args, _ := strings.Cut(rest, " ")
			calls = append(calls, model.ToolCall{Name: name, Arguments: json.RawMessage(args)})
		}
	}
	if len(calls) > 0 {
		return model.Response{Message: model.Message{Role: model.RoleAssistant, ToolCalls: calls}}, nil
	}
	if last.Content == "context?" {
		_, mem, _ := strings.Cut(msgs[0].Content, "What you remember:\n")
		var turns []string
		for _, m := range msgs[1 : len(msgs)-1] {
			turns = append(turns, m.Role+":"+m.Content)
		}
		return say(fmt.Sprintf("memory: %s| turns: %s", strings.ReplaceAll(mem, "\n", "; "), strings.Join(turns, " / ")))
	}
	return say("heard: " + last.Content)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, log); err != nil && ctx.Err() == nil {
		log.Error("scripted agent stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger) error {
	brain := &agent.Brain{Model: scripted{}, Log: log}
	return agent.RunSandboxed(ctx, os.Stdin, log, brain.Handle)
}
