package pages

import (
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	"github.com/ironclaw/ironclaw/daemon/api"
	"github.com/ironclaw/ironclaw/tui/common"
)

// Overview is the first page: how the daemon is, at a glance.
type Overview struct {
	c      *common.Common
	st     api.Status
	loaded bool
	err    error
}

// NewOverview makes the overview page.
func NewOverview(c *common.Common) *Overview { return &Overview{c: c} }

type statusLoaded struct {
	st  api.Status
	err error
}

func (p *Overview) Title() string { return "overview" }

func (p *Overview) Init() tea.Cmd {
	c := p.c
	return func() tea.Msg {
		st, err := c.Op.Status(c.Ctx)
		return statusLoaded{st, err}
	}
}

func (p *Overview) Update(msg tea.Msg) tea.Cmd {
	if m, ok := msg.(statusLoaded); ok {
		p.err = m.err
		if m.err == nil {
			p.st, p.loaded = m.st, true
		}
	}
	return nil
}

func (p *Overview) OnEvent(api.Event, bool) tea.Cmd { return p.Init() }

// Shown re-reads: a hidden page is not refreshed by the tick.
func (p *Overview) Shown() tea.Cmd { return p.Init() }

func (p *Overview) View(width, height int) string {
	s := p.c.Styles
	var lines []string
	add := func(l string) { lines = append(lines, common.Wrap(l, width)...) }
	if p.err != nil {
		add(s.Error.Render("cannot read the daemon's status: " + common.ErrorText(p.err)))
	}
	if !p.loaded {
		add(s.Faint.Render("loading…"))
		return strings.Join(lines, "\n")
	}
	st := p.st
	add(s.Title.Render("IronClaw " + common.SafeLine(st.Version)))
	add("")
	pending := fmt.Sprintf("%d", st.PendingChanges)
	if st.PendingChanges > 0 {
		pending = s.Warn.Render(pending + " waiting for you (press 3)")
	}
	add(s.Label.Render("sessions      ") + fmt.Sprintf("%d", st.Sessions))
	add(s.Label.Render("running       ") + fmt.Sprintf("%d sandboxes", st.Running))
	add(s.Label.Render("approvals     ") + pending)
	add("")
	add(s.Header.Render("health"))
	add(s.Label.Render("runsc         ") + common.SafeLine(st.Runsc))
	add(s.Label.Render("model         ") + common.SafeLine(st.Model))
	switch st.ModelHealth {
	case "":
	case "ok":
		add(s.Label.Render("              ") + "ok (has the model; checked at most every 10 s)")
	default:
		add(s.Label.Render("              ") + s.Warn.Render(strings.ToUpper(common.SafeLine(st.ModelHealth))))
		// The hint is what to do: wrapped under the value, by words.
		for _, l := range strings.Split(ansi.Wrap(common.SafeLine(st.ModelHint), max(width-14, 10), ""), "\n") {
			add(s.Label.Render("              ") + l)
		}
	}
	add(s.Label.Render("tailnet       ") + common.SafeLine(st.Tailnet))
	add(s.Label.Render("agent         ") + "installed " + common.SafeLine(st.AgentInstalled))
	add(s.Label.Render("              ") + "new sessions pin " + common.SafeLine(st.AgentPinned))
	add(s.Label.Render("state         ") + common.SafeLine(st.StateDir))
	add("")
	add(s.Label.Render("you           ") + common.SafeLine(p.c.Op.Who().Actor))
	if len(lines) > height {
		lines = lines[:height]
	}
	return strings.Join(lines, "\n")
}

func (p *Overview) Capturing() bool { return false }

func (p *Overview) ShortHelp() []key.Binding { return []key.Binding{p.c.Keys.Refresh} }

func (p *Overview) FullHelp() [][]key.Binding { return [][]key.Binding{{p.c.Keys.Refresh}} }
