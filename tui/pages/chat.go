package pages

import (
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"github.com/ironclaw/ironclaw/daemon/api"
	"github.com/ironclaw/ironclaw/tui/common"
	"github.com/ironclaw/ironclaw/tui/components"
)

// ChatWait is how long the console waits for each reply.
const ChatWait = 120

// Chat talks to one session from the console: the local console session
// by default, or the one chosen on the sessions page. What is said here
// lives only on this screen and in the session's sealed queues.
type Chat struct {
	c       *common.Common
	session string // "" = the local console session
	label   string
	log     []chatLine
	input   components.Input
	view    components.Viewport
	waiting int
}

type chatLine struct {
	who, text string
	err       bool
}

// NewChat makes the chat page.
func NewChat(c *common.Common) *Chat {
	return &Chat{c: c, label: "the local console session", input: components.Input{Prompt: "> ", Max: 64 << 10}}
}

type chatReplied struct {
	session string
	r       api.ChatReply
	err     error
}

func (p *Chat) Title() string { return "chat" }

func (p *Chat) Init() tea.Cmd { return nil }

func (p *Chat) OnEvent(api.Event, bool) tea.Cmd { return nil }

func (p *Chat) Shown() tea.Cmd { return nil }

// Capturing: the chat page types text, so only tab, shift+tab and ctrl+c
// are global here.
func (p *Chat) Capturing() bool { return true }

// SetSession points the chat at a session.
func (p *Chat) SetSession(id, binding string) {
	if id == p.session {
		return
	}
	p.session = id
	p.label = "session " + common.Short(id, 12) + " (" + common.SafeLine(binding) + ")"
	p.log = append(p.log, chatLine{who: "·", text: "now talking to " + p.label})
}

func (p *Chat) Update(msg tea.Msg) tea.Cmd {
	switch m := msg.(type) {
	case chatReplied:
		p.waiting--
		switch {
		case m.err != nil:
			p.log = append(p.log, chatLine{who: "!", text: common.ErrorText(m.err), err: true})
		case !m.r.Replied:
			p.log = append(p.log, chatLine{who: "!", text: fmt.Sprintf("no reply within %ds (message %d is queued)", ChatWait, m.r.Seq), err: true})
		default:
			p.log = append(p.log, chatLine{who: "agent", text: m.r.Reply})
		}
		p.view.Offset = 1 << 30 // follow the conversation
	case tea.PasteMsg:
		p.input.Paste(m.Content)
	case tea.KeyPressMsg:
		k := p.c.Keys
		switch {
		case key.Matches(m, k.Send):
			text := strings.TrimSpace(p.input.Value)
			if text == "" {
				return nil
			}
			p.input.Value = ""
			p.log = append(p.log, chatLine{who: "you", text: text})
			p.waiting++
			p.view.Offset = 1 << 30
			c, session := p.c, p.session
			return func() tea.Msg {
				r, err := c.Op.Chat(c.Ctx, api.ChatRequest{Session: session, Text: text, WaitSeconds: ChatWait})
				return chatReplied{session, r, err}
			}
		case m.String() == "up" || m.String() == "down" || m.String() == "pgup" || m.String() == "pgdown":
			p.view.Update(k, m)
		default:
			p.input.Update(m)
		}
	}
	return nil
}

func (p *Chat) View(width, height int) string {
	s := p.c.Styles
	var lines []string
	for _, l := range p.log {
		prefix := fmt.Sprintf("%-6s ", l.who)
		// Replies are untrusted: sanitised, wrapped, never interpreted.
		body := common.Wrap(common.Safe(l.text), max(width-len(prefix), 10))
		for i, b := range body {
			if i > 0 {
				prefix = strings.Repeat(" ", len(prefix))
			}
			line := prefix + b
			if l.err {
				line = s.Error.Render(line)
			} else if l.who == "you" {
				line = s.Label.Render(prefix) + b
			}
			lines = append(lines, line)
		}
	}
	if p.waiting > 0 {
		lines = append(lines, s.Faint.Render("… waiting for the agent"))
	}
	head := s.Faint.Render(common.Fit("talking to "+p.label+" (messages are sealed in its queues)", width))
	p.view.Height = max(height-3, 1)
	p.view.SetLines(lines)
	if p.view.Offset >= 1<<29 {
		p.view.Offset = len(lines)
		p.view.SetLines(lines)
	}
	return head + "\n" + p.view.View() + "\n\n" + p.input.View(s, width)
}

func (p *Chat) ShortHelp() []key.Binding {
	k := p.c.Keys
	return []key.Binding{k.Send, k.Up, k.Down}
}

func (p *Chat) FullHelp() [][]key.Binding {
	k := p.c.Keys
	return [][]key.Binding{{k.Send, k.Up, k.Down, k.PageUp, k.PageDown}}
}
