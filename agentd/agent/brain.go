package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ironclaw/ironclaw/agentd/model"
	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/agentd/queuedb"
	"github.com/ironclaw/ironclaw/agentd/tools"
	"github.com/ironclaw/ironclaw/agentd/wire"
)

// Defaults for Brain's zero fields.
const (
	DefaultToolRounds = 8
	DefaultNumCtx     = 8192
	DefaultNumPredict = 1024
	// CharsPerToken is the context policy's estimate of text per token. It
	// errs small (English runs ~4), so the estimate overshoots and the
	// model's context is not overrun.
	CharsPerToken = 3
	// maxTurnChars caps one history turn as the model sees it.
	maxTurnChars = 4 << 10
	// keptTurns is how much history the agent holds in memory (the daemon
	// keeps the record; the context policy picks from this).
	keptTurns = 2 * wire.MaxHistoryTurns
)

// Brain is the model-backed handler: for every message (or schedule
// firing) it builds the model's context from the profile, the history the
// daemon recorded and the agent's memory, chats with the compiled-in tools
// the profile grants, runs the tools the model calls, and answers.
//
// History comes only from inbox rows the daemon wrote — user messages,
// schedule firings, replies the daemon accepted and echoed back, and the
// State row at start — never from the agent's own outbox, so a turn that a
// prompt injection took over cannot rewrite or forge earlier turns.
type Brain struct {
	Model model.Provider
	Log   *slog.Logger
	// Now is the clock (time.Now if nil).
	Now func() time.Time
	// ToolRounds bounds the model calls that may ask for tools in one turn.
	ToolRounds int
	// NumCtx is the model context length asked for, in tokens; NumPredict
	// caps the answer.
	NumCtx     int
	NumPredict int

	profile       profile.Profile
	version       uint64 // of profile
	hasProfile    bool
	state         *tools.State
	stateSeq      uint64
	history       []wire.Turn // ordered by Seq
	warnedNoTools bool
}

// Handle is the loop's Handler.
func (b *Brain) Handle(ctx context.Context, rows []queuedb.Row) ([]wire.Body, error) {
	b.defaults()
	var out []wire.Body
	for _, r := range rows {
		seq := r.Header.Seq
		switch body := r.Body.(type) {
		case wire.ProfileUpdate:
			if b.hasProfile && body.Version <= b.version {
				continue // the daemon hands the current one again at every start
			}
			p, err := profile.Parse([]byte(body.Canonical))
			if err != nil {
				// The daemon wrote it; refusing to run on would crash-loop
				// the session. Keep the last good profile and say so.
				b.Log.Error("the new profile does not parse; keeping the previous one", "version", body.Version, "err", err)
				continue
			}
			b.profile, b.version, b.hasProfile = p, body.Version, true
		case wire.State:
			if seq <= b.stateSeq {
				continue // already loaded at start
			}
			b.stateSeq = seq
			b.state.Load(body)
			b.history = append(b.history[:0], body.History...)
		case wire.Delivered:
			b.remember(wire.Turn{Seq: seq, Role: wire.TurnAssistant, Text: body.Text})
		case wire.Message:
			out = append(out, b.turn(ctx, wire.Turn{Seq: seq, Role: wire.TurnUser, Text: body.Text}, "")...)
		case wire.Fired:
			if sc, ok := b.state.Schedules[body.ID]; ok {
				if sc.Every > 0 {
					sc.At = sc.Next(b.Now().Unix())
					b.state.Schedules[body.ID] = sc
				} else {
					delete(b.state.Schedules, body.ID)
				}
			}
			late := ""
			if body.Late {
				late = ", late: the assistant was not running at its time"
			}
			detail := fmt.Sprintf(" (schedule %s, due %s%s)", body.ID, time.Unix(body.Due, 0).UTC().Format(time.RFC3339), late)
			out = append(out, b.turn(ctx, wire.Turn{Seq: seq, Role: wire.TurnFired, Text: body.Text}, detail)...)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	return out, nil
}

func (b *Brain) defaults() {
	if b.Now == nil {
		b.Now = time.Now
	}
	if b.ToolRounds <= 0 {
		b.ToolRounds = DefaultToolRounds
	}
	if b.NumCtx <= 0 {
		b.NumCtx = DefaultNumCtx
	}
	if b.NumPredict <= 0 {
		b.NumPredict = DefaultNumPredict
	}
	if b.state == nil {
		b.state = tools.NewState()
	}
	if b.Log == nil {
		b.Log = slog.New(slog.DiscardHandler)
	}
}

// remember appends a daemon-written turn to the history, once.
func (b *Brain) remember(t wire.Turn) {
	if n := len(b.history); n > 0 && b.history[n-1].Seq >= t.Seq {
		return
	}
	b.history = append(b.history, t)
	if len(b.history) > keptTurns {
		b.history = append(b.history[:0], b.history[len(b.history)-keptTurns:]...)
	}
}

// turn answers one message or firing (cur, at inbox row cur.Seq; detail
// adds what only the live row says, such as a firing's schedule and due
// time): the rows the tools emitted, then the reply.
func (b *Brain) turn(ctx context.Context, cur wire.Turn, detail string) []wire.Body {
	seq := cur.Seq
	var out []wire.Body
	emit := func(x wire.Body) { out = append(out, x) }
	reply := func(s string) []wire.Body {
		if s == "" {
			s = "(I have no answer to that.)"
		}
		if len(s) > wire.MaxTextSize {
			s = s[:wire.MaxTextSize-3] + "…"
			s = strings.ToValidUTF8(s, "")
		}
		return append(out, wire.Reply{Text: s, InReplyTo: seq})
	}
	// Earlier turns only: a State row may already hold this message (it was
	// written before the sandbox started and handled after).
	prior := slices.Clone(b.history)
	for len(prior) > 0 && prior[len(prior)-1].Seq >= seq {
		prior = prior[:len(prior)-1]
	}
	b.remember(cur)
	if !b.hasProfile {
		return reply("I have not received my configuration from the daemon yet, so I cannot answer. This is a fault: the owner can look at `ironclaw status`.")
	}
	env := &tools.Env{State: b.state, Profile: b.profile, InReplyTo: seq, Now: b.Now, NewID: newID, Emit: emit}
	offered := tools.For(b.profile)
	msgs := b.context(prior, render(cur, detail), offered)
	note := ""
	for round := 0; ; round++ {
		// The last round offers no tools, so the model must answer with
		// what it has.
		last := round >= b.ToolRounds-1
		offer := modelTools(offered)
		if last {
			offer = nil
		}
		resp, err := b.Model.Chat(ctx, model.Request{
			Model: b.profile.Model, Messages: msgs, Tools: offer,
			NumCtx: b.NumCtx, NumPredict: b.NumPredict,
		})
		if errors.Is(err, model.ErrNoTools) && len(offered) > 0 {
			// Answer anyway, without tools, and say so once: the owner can
			// pick a model that calls tools.
			b.Log.Warn("the model does not support tools; answering without them", "model", b.profile.Model)
			offered = nil
			msgs[0].Content = b.system(nil)
			if !b.warnedNoTools {
				b.warnedNoTools = true
				note = fmt.Sprintf("\n\n(Note for the owner: the model %s does not support tools, so I answered without them — no reminders, memory or notes. A tool-capable model such as qwen3 or llama3.1 fixes this: `ironclaw changes propose --kind model`.)", b.profile.Model)
			}
			round--
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			b.Log.Warn("model call failed", "err", err)
			return reply(modelTrouble(b.profile.Model, err))
		}
		m := resp.Message
		if len(m.ToolCalls) == 0 {
			return reply(m.Content + note)
		}
		if last {
			return reply(fmt.Sprintf("I used all %d of my steps for this message without finishing. Try asking for less at once.", b.ToolRounds))
		}
		msgs = append(msgs, model.Message{Role: model.RoleAssistant, Content: m.Content, ToolCalls: m.ToolCalls})
		for _, call := range m.ToolCalls {
			res, err := tools.Call(env, call.Name, call.Arguments)
			if err != nil {
				res = "error: " + err.Error()
			}
			msgs = append(msgs, model.Message{Role: model.RoleTool, ToolName: call.Name, Content: res})
		}
	}
}

// modelTrouble is the short plain message a user gets instead of silence
// when the model cannot answer: what is wrong and who can fix it.
func modelTrouble(name string, err error) string {
	switch {
	case errors.Is(err, model.ErrUnknownModel):
		return fmt.Sprintf("I can't answer: the model %s is not installed (or not allowed for this conversation). The owner can run `ollama pull %s` on the model server.", name, name)
	case errors.Is(err, model.ErrUnavailable):
		return "I can't reach the model server right now. The owner can check that Ollama is running and that ironclaw's model upstream points at it; then send your message again."
	case errors.Is(err, model.ErrBudget):
		return "This conversation has used up its model budget for now (calls per minute or tokens per day). Try again later; the owner can raise the limits."
	case errors.Is(err, model.ErrRefused):
		return "The model proxy refused my request (too large or malformed). Try a shorter message; the owner can see the refusal in the audit log."
	}
	return "The model failed to answer. The owner can look at the daemon's log and the audit log; please try again."
}

// context builds the messages for one turn. The policy: the system prompt
// (the profile's instructions, the time, what the agent remembers) and the
// current message always go in; then as many earlier turns as fit, newest
// first, each cut to 4 KiB, within NumCtx tokens (at CharsPerToken) less
// the answer's NumPredict and the tool schemas. Older turns fall out first.
func (b *Brain) context(prior []wire.Turn, current model.Message, offered []tools.Tool) []model.Message {
	sys := b.system(offered)
	budget := (b.NumCtx - b.NumPredict) * CharsPerToken
	for _, t := range offered {
		budget -= len(t.Schema) + len(t.Description) + len(t.Name)
	}
	current.Content = cut(current.Content, max(budget-len(sys), maxTurnChars))
	budget -= len(sys) + len(current.Content)
	var earlier []model.Message
	for i := len(prior) - 1; i >= 0 && budget > 0; i-- {
		m := render(prior[i], "")
		m.Content = cut(m.Content, maxTurnChars)
		if len(m.Content) > budget {
			break
		}
		budget -= len(m.Content)
		earlier = append(earlier, m)
	}
	msgs := make([]model.Message, 0, len(earlier)+2)
	msgs = append(msgs, model.Message{Role: model.RoleSystem, Content: sys})
	for i := len(earlier) - 1; i >= 0; i-- {
		msgs = append(msgs, earlier[i])
	}
	return append(msgs, current)
}

// firedNotice marks a schedule firing as the model sees it: a notice from
// the daemon, never the user's words (its text is what the agent itself
// wrote when it set the schedule, possibly under a prompt injection).
const firedNotice = "[Notice from the daemon, not a message from the user: a schedule you set fired%s. The text you set for it follows.]\n"

// render is how a recorded turn reaches the model: the user's messages as
// the user, delivered replies as the assistant, and firings as a system
// notice (whether live or rebuilt from the daemon's record after a
// restart).
func render(t wire.Turn, detail string) model.Message {
	switch t.Role {
	case wire.TurnAssistant:
		return model.Message{Role: model.RoleAssistant, Content: t.Text}
	case wire.TurnFired:
		return model.Message{Role: model.RoleSystem, Content: fmt.Sprintf(firedNotice, detail) + t.Text}
	}
	return model.Message{Role: model.RoleUser, Content: t.Text}
}

// system renders the system prompt. Memory goes in while it takes at most a
// quarter of the context; beyond that only its keys (recall reads them).
func (b *Brain) system(offered []tools.Tool) string {
	var s strings.Builder
	s.WriteString(b.profile.Instructions)
	fmt.Fprintf(&s, "\n\nThe time is %s.", b.Now().UTC().Format(time.RFC3339))
	if len(offered) > 0 {
		s.WriteString(" Your final answer is sent to the user as your reply; use tools only when they help.")
	}
	if tools.Granted(b.profile, "recall") && len(b.state.Memory) > 0 {
		keys := make([]string, 0, len(b.state.Memory))
		for k := range b.state.Memory {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		room := b.NumCtx * CharsPerToken / 4
		s.WriteString("\n\nWhat you remember:\n")
		for i, k := range keys {
			line := k + ": " + b.state.Memory[k] + "\n"
			if len(line) > room {
				fmt.Fprintf(&s, "(and %d more facts: use recall)\n", len(keys)-i)
				break
			}
			room -= len(line)
			s.WriteString(line)
		}
	}
	return s.String()
}

func modelTools(ts []tools.Tool) []model.Tool {
	if len(ts) == 0 {
		return nil
	}
	out := make([]model.Tool, 0, len(ts))
	for _, t := range ts {
		out = append(out, model.Tool{Name: t.Name, Description: t.Description, Parameters: []byte(t.Schema)})
	}
	return out
}

func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// newID names a schedule: 8 random hex digits.
func newID() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
