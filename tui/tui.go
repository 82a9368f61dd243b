// Package tui is IronClaw's operator console: a Bubble Tea (v2) program
// that the SSH console (daemon/console) serves to an authenticated
// operator. It talks to the daemon only through daemon/api, bound to that
// operator (a test over `go list -deps` proves it links nothing else under
// daemon/), so it can be built, driven and tested on its own.
//
// Layout follows soft-serve's UI: common/ (shared context: one Styles, one
// KeyMap, sanitising helpers), components/ (widgets), pages/ (screens).
// Everything an agent, a chat, a profile or a config wrote is sanitised
// before it is drawn; keys are the only input; `?` shows the page's keys.
package tui

import (
	"context"
	"strings"
	"time"

	"charm.land/bubbles/v2/help"
	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	"github.com/ironclaw/ironclaw/daemon/api"
	"github.com/ironclaw/ironclaw/tui/common"
	"github.com/ironclaw/ironclaw/tui/components"
	"github.com/ironclaw/ironclaw/tui/pages"
)

// Options configure New.
type Options struct {
	// Width and Height are the terminal's size at start (a resize follows).
	Width, Height int
	// Refresh is how often pages re-read what has no event (sandbox state);
	// 0 means 2 seconds, negative never (tests).
	Refresh time.Duration
}

// Page indexes.
const (
	PageOverview = iota
	PageSessions
	PageApprovals
	PageAudit
	PageChat
)

// Model is the console's root model.
type Model struct {
	c        *common.Common
	pages    []pages.Page
	chat     *pages.Chat
	active   int
	help     help.Model
	showHelp bool
	status   pages.StatusMsg
	events   <-chan api.Event
	refresh  time.Duration
}

type eventMsg struct {
	e  api.Event
	ok bool
}

type tickMsg struct{}

// New makes the console for op. ctx bounds its calls and its event
// subscription (the SSH session's context).
func New(ctx context.Context, op api.Operator, o Options) *Model {
	c := &common.Common{Ctx: ctx, Op: op, Styles: common.DefaultStyles(), Keys: common.DefaultKeyMap(),
		Width: max(o.Width, 20), Height: max(o.Height, 5)}
	m := &Model{c: c, help: help.New(), refresh: o.Refresh}
	if m.refresh == 0 {
		m.refresh = 2 * time.Second
	}
	m.chat = pages.NewChat(c)
	m.pages = []pages.Page{pages.NewOverview(c), pages.NewSessions(c), pages.NewApprovals(c), pages.NewAudit(c), m.chat}
	m.help.SetWidth(c.Width)
	return m
}

func (m *Model) waitEvent() tea.Cmd {
	ch := m.events
	return func() tea.Msg {
		e, ok := <-ch
		return eventMsg{e, ok}
	}
}

func (m *Model) tick() tea.Cmd {
	if m.refresh < 0 {
		return nil
	}
	return tea.Tick(m.refresh, func(time.Time) tea.Msg { return tickMsg{} })
}

// Init subscribes to live events and loads every page.
func (m *Model) Init() tea.Cmd {
	m.events = m.c.Op.Subscribe(m.c.Ctx)
	cmds := []tea.Cmd{m.waitEvent(), m.tick()}
	for _, p := range m.pages {
		cmds = append(cmds, p.Init())
	}
	return tea.Batch(cmds...)
}

// Update routes keys to the active page (after the global keys) and every
// other message to every page.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.c.Width, m.c.Height = max(msg.Width, 20), max(msg.Height, 5)
		m.help.SetWidth(m.c.Width)
		return m, nil
	case eventMsg:
		if !msg.ok {
			return m, nil // the session is ending
		}
		cmds := []tea.Cmd{m.waitEvent()}
		for i, p := range m.pages {
			cmds = append(cmds, p.OnEvent(msg.e, i == m.active))
		}
		return m, tea.Batch(cmds...)
	case tickMsg:
		// Sandbox state and usage have no events: re-read what shows
		// them, only while it is on screen (a hidden page re-reads when
		// an event or the operator asks). The daemon caches the model
		// probe behind Status, so this never probes more than it allows.
		var cmd tea.Cmd
		if m.active == PageOverview || m.active == PageSessions {
			cmd = m.pages[m.active].Init()
		}
		return m, tea.Batch(m.tick(), cmd)
	case pages.StatusMsg:
		m.status = msg
		return m, nil
	case pages.ChatWithMsg:
		m.chat.SetSession(msg.Session, msg.Binding)
		return m, m.switchTo(PageChat)
	case tea.KeyPressMsg:
		return m, m.key(msg)
	}
	var cmds []tea.Cmd
	for _, p := range m.pages {
		cmds = append(cmds, p.Update(msg))
	}
	return m, tea.Batch(cmds...)
}

func (m *Model) key(msg tea.KeyPressMsg) tea.Cmd {
	k := m.c.Keys
	page := m.pages[m.active]
	switch {
	case msg.String() == "ctrl+c":
		return tea.Quit
	case key.Matches(msg, k.NextPage):
		return m.switchTo((m.active + 1) % len(m.pages))
	case key.Matches(msg, k.PrevPage):
		return m.switchTo((m.active + len(m.pages) - 1) % len(m.pages))
	}
	if page.Capturing() {
		return page.Update(msg)
	}
	switch {
	case key.Matches(msg, k.Quit):
		return tea.Quit
	case key.Matches(msg, k.Help):
		m.showHelp = !m.showHelp
		return nil
	case key.Matches(msg, k.Refresh):
		return page.Init()
	case key.Matches(msg, k.Overview):
		return m.switchTo(PageOverview)
	case key.Matches(msg, k.Sessions):
		return m.switchTo(PageSessions)
	case key.Matches(msg, k.Approvals):
		return m.switchTo(PageApprovals)
	case key.Matches(msg, k.Audit):
		return m.switchTo(PageAudit)
	case key.Matches(msg, k.Chat):
		return m.switchTo(PageChat)
	default:
		if m.showHelp && key.Matches(msg, k.Back) {
			m.showHelp = false
			return nil
		}
		return page.Update(msg)
	}
}

func (m *Model) switchTo(i int) tea.Cmd {
	m.active = i
	m.status = pages.StatusMsg{}
	return m.pages[i].Shown()
}

// keyMap adapts the active page's keys (plus the global ones) to help.
type keyMap struct {
	short []key.Binding
	full  [][]key.Binding
}

func (k keyMap) ShortHelp() []key.Binding  { return k.short }
func (k keyMap) FullHelp() [][]key.Binding { return k.full }

func (m *Model) keys() keyMap {
	k := m.c.Keys
	page := m.pages[m.active]
	global := []key.Binding{k.NextPage, k.Overview, k.Sessions, k.Approvals, k.Audit, k.Chat, k.Refresh, k.Help, k.Quit}
	return keyMap{
		short: append(page.ShortHelp(), k.NextPage, k.Help, k.Quit),
		full:  append(page.FullHelp(), global),
	}
}

// View draws tabs, the active page, a status line and the help.
func (m *Model) View() tea.View {
	v := tea.NewView(m.Render())
	v.AltScreen = true
	return v
}

// Render is the frame as a string (View's content), for tests and benchmarks.
func (m *Model) Render() string {
	c, s := m.c, m.c.Styles
	names := make([]string, len(m.pages))
	for i, p := range m.pages {
		names[i] = p.Title()
	}
	tabs := components.Tabs(s, names, m.active)
	who := s.Faint.Render(" " + common.SafeLine(strings.TrimPrefix(c.Op.Who().Actor, "operator:")))
	header := common.Fit(tabs+who, c.Width)
	var helpView string
	if m.showHelp {
		helpView = m.help.FullHelpView(m.keys().FullHelp())
	} else {
		helpView = m.help.ShortHelpView(m.keys().ShortHelp())
	}
	// Help never widens the frame (bubbles' help may overrun a narrow one).
	hl := strings.Split(helpView, "\n")
	for i := range hl {
		hl[i] = ansi.Truncate(hl[i], c.Width, "…")
	}
	helpView = strings.Join(hl, "\n")
	statusLine := ""
	if m.status.Text != "" {
		st := s.OK
		if m.status.Err {
			st = s.Error
		}
		for _, l := range common.Wrap(m.status.Text, c.Width) {
			if statusLine != "" {
				statusLine += "\n"
			}
			statusLine += st.Render(l)
		}
	}
	chrome := 1 + strings.Count(helpView, "\n") + 1
	if statusLine != "" {
		chrome += strings.Count(statusLine, "\n") + 1
	}
	bodyHeight := max(c.Height-chrome, 1)
	body := m.pages[m.active].View(c.Width, bodyHeight)
	// Pad or cut the body to exactly its height, so the frame never
	// scrolls and the help stays at the bottom.
	lines := strings.Split(body, "\n")
	if len(lines) > bodyHeight {
		lines = lines[:bodyHeight]
	}
	for len(lines) < bodyHeight {
		lines = append(lines, "")
	}
	out := []string{header}
	out = append(out, lines...)
	if statusLine != "" {
		out = append(out, statusLine)
	}
	out = append(out, helpView)
	return strings.Join(out, "\n")
}
