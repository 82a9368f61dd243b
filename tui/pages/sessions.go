package pages

import (
	"fmt"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"github.com/ironclaw/ironclaw/daemon/api"
	"github.com/ironclaw/ironclaw/tui/common"
	"github.com/ironclaw/ironclaw/tui/components"
)

// Sessions lists sessions with their state and queues; the detail shows
// one session's facts and current profile. A conversation's content is not
// here: reading it is its own audited request.
type Sessions struct {
	c    *common.Common
	list []api.Session
	rows components.List
	err  error

	open       *api.Session
	profile    *api.Profile
	profileErr error
	view       components.Viewport
	confirm    bool
}

// NewSessions makes the sessions page.
func NewSessions(c *common.Common) *Sessions {
	p := &Sessions{c: c}
	p.rows.RenderRow = p.row
	return p
}

type sessionsLoaded struct {
	list []api.Session
	err  error
}

type profileLoaded struct {
	id  string
	p   api.Profile
	err error
}

type restarted struct {
	id  string
	err error
}

func (p *Sessions) Title() string { return "sessions" }

func (p *Sessions) Init() tea.Cmd {
	c := p.c
	return func() tea.Msg {
		list, err := c.Op.ListSessions(c.Ctx)
		return sessionsLoaded{list, err}
	}
}

func (p *Sessions) Shown() tea.Cmd { return nil }

func (p *Sessions) OnEvent(e api.Event, _ bool) tea.Cmd {
	if e.Kind == api.EventChange && e.What == "filed" {
		return nil
	}
	cmds := []tea.Cmd{p.Init()}
	if p.open != nil && e.Kind == api.EventChange {
		cmds = append(cmds, p.loadProfile(p.open.ID)) // an applied change is a new version
	}
	return tea.Batch(cmds...)
}

func (p *Sessions) loadProfile(id string) tea.Cmd {
	c := p.c
	return func() tea.Msg {
		pr, err := c.Op.Profile(c.Ctx, id)
		return profileLoaded{id, pr, err}
	}
}

func (p *Sessions) Capturing() bool { return false }

func (p *Sessions) Update(msg tea.Msg) tea.Cmd {
	switch m := msg.(type) {
	case sessionsLoaded:
		p.err = m.err
		if m.err == nil {
			var keep string
			if p.rows.Cursor < len(p.list) {
				keep = p.list[p.rows.Cursor].ID
			}
			p.list = m.list
			p.rows.Len = len(m.list)
			for i, s := range m.list {
				if s.ID == keep {
					p.rows.Cursor = i
				}
				if p.open != nil && s.ID == p.open.ID {
					s := s
					p.open = &s
				}
			}
			p.rows.Clamp()
		}
	case profileLoaded:
		if p.open != nil && p.open.ID == m.id {
			p.profileErr = m.err
			if m.err == nil {
				pr := m.p
				p.profile = &pr
			}
		}
	case restarted:
		if m.err != nil {
			return tea.Batch(p.Init(), status("restart: "+common.ErrorText(m.err), true))
		}
		return tea.Batch(p.Init(), status("session "+common.Short(m.id, 12)+" restarted", false))
	case tea.KeyPressMsg:
		return p.key(m)
	}
	return nil
}

func (p *Sessions) key(m tea.KeyPressMsg) tea.Cmd {
	k := p.c.Keys
	if p.confirm {
		switch {
		case key.Matches(m, k.Confirm):
			p.confirm = false
			c, id := p.c, p.open.ID
			return func() tea.Msg { return restarted{id, c.Op.RestartSession(c.Ctx, id)} }
		case key.Matches(m, k.Cancel):
			p.confirm = false
		}
		return nil
	}
	if p.open == nil {
		switch {
		case key.Matches(m, k.Open):
			if p.rows.Cursor < len(p.list) {
				s := p.list[p.rows.Cursor]
				p.open, p.profile, p.profileErr = &s, nil, nil
				p.view.Offset = 0
				return p.loadProfile(s.ID)
			}
		case key.Matches(m, k.ChatWith):
			if p.rows.Cursor < len(p.list) {
				s := p.list[p.rows.Cursor]
				return func() tea.Msg { return ChatWithMsg{Session: s.ID, Binding: s.Binding} }
			}
		default:
			p.rows.Update(k, m)
		}
		return nil
	}
	switch {
	case key.Matches(m, k.Back):
		p.open = nil
	case key.Matches(m, k.Restart):
		p.confirm = true
	case key.Matches(m, k.ChatWith):
		s := *p.open
		return func() tea.Msg { return ChatWithMsg{Session: s.ID, Binding: s.Binding} }
	default:
		p.view.Update(k, m)
	}
	return nil
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05")
}

func (p *Sessions) row(i int, selected bool) string {
	s := p.list[i]
	run := "idle"
	switch {
	case s.Stopped != "":
		run = "STOPPED"
	case s.Running:
		run = "running"
	}
	line := common.Fit(fmt.Sprintf("%-12s %-7s %-8s %7d/%-7d v%-4d %s", common.Short(s.ID, 12), s.State, run,
		s.Progress, s.InboxHead, s.ProfileVersion, common.SafeLine(s.Binding)), p.c.Width)
	if selected {
		return p.c.Styles.Selected.Render(line)
	}
	return line
}

func (p *Sessions) View(width, height int) string {
	st := p.c.Styles
	if p.open == nil {
		top := []string{st.Header.Render(common.Fit(fmt.Sprintf("%-12s %-7s %-8s %15s %-5s %s", "ID", "STATE", "SANDBOX", "DONE/INBOX", "PROF", "BINDING"), width))}
		if p.err != nil {
			top = append(top, st.Error.Render(common.Fit(common.ErrorText(p.err), width)))
		}
		if len(p.list) == 0 {
			return strings.Join(append(top, st.Faint.Render("no sessions yet (chat with one on page 5)")), "\n")
		}
		p.rows.Height = max(height-len(top), 1)
		return strings.Join(top, "\n") + "\n" + p.rows.View()
	}
	s := p.open
	var lines []string
	add := func(text string, f func(...string) string) {
		for _, l := range common.Wrap(text, width) {
			lines = append(lines, f(l))
		}
	}
	plain := func(a ...string) string { return strings.Join(a, "") }
	add("session "+s.ID, st.Title.Render)
	add("binding  "+common.SafeLine(s.Binding), plain)
	add(fmt.Sprintf("state    %s   created %s", s.State, ago(s.Created)), plain)
	sandbox := "not running"
	if s.Running {
		sandbox = "running since " + ago(s.Started)
	}
	if s.Stopped != "" {
		sandbox = "STOPPED: " + common.SafeLine(s.Stopped)
	}
	add("sandbox  "+sandbox+fmt.Sprintf("   exits in window %d", s.Exits), plain)
	add(fmt.Sprintf("inbox    %d written, %d handled by the agent", s.InboxHead, s.Progress), plain)
	switch {
	case p.profileErr != nil:
		add("profile: "+common.ErrorText(p.profileErr), st.Error.Render)
	case p.profile == nil:
		add("profile: loading…", st.Faint.Render)
	default:
		add(fmt.Sprintf("profile version %d", p.profile.Version), st.Header.Render)
		for _, l := range strings.Split(strings.TrimSuffix(common.Safe(p.profile.Canonical), "\n"), "\n") {
			add(l, plain)
		}
	}
	p.view.SetLines(lines)
	var bottom []string
	if p.confirm {
		bottom = strings.Split(components.Dialog(st, width, "Restart session "+s.ID+"? Its sandbox is stopped and may start again (audited).", "y: restart    n/esc: cancel"), "\n")
	} else {
		bottom = []string{st.Faint.Render(common.Fit(p.view.Position()+"   R restart · c chat · esc back", width))}
	}
	p.view.Height = max(height-len(bottom), 1)
	return p.view.View() + "\n" + strings.Join(bottom, "\n")
}

func (p *Sessions) ShortHelp() []key.Binding {
	k := p.c.Keys
	if p.open == nil {
		return []key.Binding{k.Up, k.Down, k.Open, k.ChatWith}
	}
	return []key.Binding{k.Up, k.Down, k.Restart, k.ChatWith, k.Back}
}

func (p *Sessions) FullHelp() [][]key.Binding {
	k := p.c.Keys
	return [][]key.Binding{k.ScrollKeys(), {k.Open, k.Back, k.ChatWith, k.Restart}}
}
