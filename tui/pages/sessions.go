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

// Sessions lists sessions with their state, queues and sandbox usage; the
// detail shows one session's facts and current profile, its profile
// history (each version's text and its diff against the one before), and,
// on its own keypress, the transcript. A conversation's content is never
// loaded otherwise: reading it is its own audited request.
type Sessions struct {
	c    *common.Common
	list []api.Session
	rows components.List
	err  error

	open       *api.Session
	profile    *api.Profile
	profileErr error
	view       components.Viewport
	confirm    string // "restart" or "stop" while asking
	records    *api.Records
	recordsErr error

	transcript    *api.Transcript
	transcriptErr error

	// sub is "" (the session's detail), "history" (its profile versions)
	// or "version" (one version's text and diff).
	sub        string
	history    []api.ProfileVersion
	historyErr error
	hrows      components.List
	version    *api.ProfileVersion
	versionErr error
}

// NewSessions makes the sessions page.
func NewSessions(c *common.Common) *Sessions {
	p := &Sessions{c: c}
	p.rows.RenderRow = p.row
	p.hrows.RenderRow = p.historyRow
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
	id, verb string
	err      error
}

type recordsLoaded struct {
	id  string
	r   api.Records
	err error
}

type transcriptLoaded struct {
	id  string
	t   api.Transcript
	err error
}

type historyLoaded struct {
	id  string
	vs  []api.ProfileVersion
	err error
}

type versionLoaded struct {
	id  string
	v   api.ProfileVersion
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

// Shown re-reads: a hidden page is not refreshed by the tick.
func (p *Sessions) Shown() tea.Cmd { return p.Init() }

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
			return tea.Batch(p.Init(), status(m.verb+": "+common.ErrorText(m.err), true))
		}
		return tea.Batch(p.Init(), status("session "+common.Short(m.id, 12)+": "+m.verb+" done", false))
	case recordsLoaded:
		if p.open != nil && p.open.ID == m.id {
			p.recordsErr = m.err
			if m.err == nil {
				r := m.r
				p.records = &r
			}
		}
	case transcriptLoaded:
		if p.open != nil && p.open.ID == m.id {
			p.transcriptErr = m.err
			if m.err == nil {
				t := m.t
				p.transcript = &t
			}
		}
	case historyLoaded:
		if p.open != nil && p.open.ID == m.id {
			p.historyErr = m.err
			if m.err == nil {
				p.history = m.vs
				p.hrows.Len = len(m.vs)
				p.hrows.Clamp()
			}
		}
	case versionLoaded:
		if p.open != nil && p.open.ID == m.id {
			p.versionErr = m.err
			if m.err == nil {
				v := m.v
				p.version = &v
			}
		}
	case tea.KeyPressMsg:
		return p.key(m)
	}
	return nil
}

func (p *Sessions) loadHistory(id string) tea.Cmd {
	c := p.c
	return func() tea.Msg {
		vs, err := c.Op.ProfileHistory(c.Ctx, id)
		return historyLoaded{id, vs, err}
	}
}

// historyKey handles keys on the profile history and on one version.
func (p *Sessions) historyKey(m tea.KeyPressMsg) tea.Cmd {
	k := p.c.Keys
	switch {
	case key.Matches(m, k.Back):
		if p.sub == "version" {
			p.sub, p.version, p.versionErr = "history", nil, nil
		} else {
			p.sub = ""
		}
	case p.sub == "history" && key.Matches(m, k.Open):
		if p.hrows.Cursor < len(p.history) {
			c, id, v := p.c, p.open.ID, p.history[p.hrows.Cursor].Version
			p.sub, p.version, p.versionErr = "version", nil, nil
			p.view.Offset = 0
			return func() tea.Msg {
				pv, err := c.Op.ProfileAt(c.Ctx, id, v)
				return versionLoaded{id, pv, err}
			}
		}
	case p.sub == "history":
		p.hrows.Update(k, m)
	default:
		p.view.Update(k, m)
	}
	return nil
}

func (p *Sessions) key(m tea.KeyPressMsg) tea.Cmd {
	k := p.c.Keys
	if p.confirm != "" {
		switch {
		case key.Matches(m, k.Confirm):
			verb, c, id := p.confirm, p.c, p.open.ID
			p.confirm = ""
			return func() tea.Msg {
				if verb == "stop" {
					return restarted{id, verb, c.Op.StopSession(c.Ctx, id)}
				}
				return restarted{id, verb, c.Op.RestartSession(c.Ctx, id)}
			}
		case key.Matches(m, k.Cancel):
			p.confirm = ""
		}
		return nil
	}
	if p.open == nil {
		switch {
		case key.Matches(m, k.Open):
			if p.rows.Cursor < len(p.list) {
				s := p.list[p.rows.Cursor]
				p.open, p.profile, p.profileErr = &s, nil, nil
				p.records, p.recordsErr = nil, nil
				p.transcript, p.transcriptErr = nil, nil
				p.sub, p.history, p.historyErr, p.version, p.versionErr = "", nil, nil, nil, nil
				p.hrows.Cursor, p.hrows.Offset = 0, 0
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
	if p.sub != "" {
		return p.historyKey(m)
	}
	switch {
	case key.Matches(m, k.Back):
		p.open = nil
	case key.Matches(m, k.History):
		p.sub, p.history, p.historyErr = "history", nil, nil
		return p.loadHistory(p.open.ID)
	case key.Matches(m, k.Transcript):
		// The conversation itself: read only on this keypress; the daemon
		// audits the read before it reads, and shows nothing if it cannot.
		c, id := p.c, p.open.ID
		return func() tea.Msg {
			t, err := c.Op.Transcript(c.Ctx, id)
			return transcriptLoaded{id, t, err}
		}
	case key.Matches(m, k.Restart):
		p.confirm = "restart"
	case key.Matches(m, k.Stop):
		p.confirm = "stop"
	case key.Matches(m, k.Records):
		// Sealed, agent-written content: read only on this keypress, and
		// the daemon audits the read.
		c, id := p.c, p.open.ID
		return func() tea.Msg {
			r, err := c.Op.SessionRecords(c.Ctx, id)
			return recordsLoaded{id, r, err}
		}
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
	mem := "-"
	if !s.UsageAt.IsZero() {
		mem = bytesText(s.MemoryBytes)
	}
	line := common.Fit(fmt.Sprintf("%-12s %-7s %-8s %9s %7d/%-7d v%-4d %s", common.Short(s.ID, 12), s.State, run,
		mem, s.Progress, s.InboxHead, s.ProfileVersion, common.SafeLine(s.Binding)), p.c.Width)
	if selected {
		return p.c.Styles.Selected.Render(line)
	}
	return line
}

func (p *Sessions) View(width, height int) string {
	st := p.c.Styles
	if p.open == nil {
		top := []string{st.Header.Render(common.Fit(fmt.Sprintf("%-12s %-7s %-8s %9s %15s %-5s %s", "ID", "STATE", "SANDBOX", "MEMORY", "DONE/INBOX", "PROF", "BINDING"), width))}
		if p.err != nil {
			top = append(top, st.Error.Render(common.Fit(common.ErrorText(p.err), width)))
		}
		if len(p.list) == 0 {
			return strings.Join(append(top, st.Faint.Render("no sessions yet (chat with one on page 5)")), "\n")
		}
		p.rows.Height = max(height-len(top), 1)
		return strings.Join(top, "\n") + "\n" + p.rows.View()
	}
	if p.sub != "" {
		return p.historyView(width, height)
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
	if !s.UsageAt.IsZero() {
		add(fmt.Sprintf("usage    memory %s   cpu %s   (read %s)", bytesText(s.MemoryBytes),
			(time.Duration(s.CPUUsec)*time.Microsecond).Round(time.Millisecond), s.UsageAt.UTC().Format("15:04:05")), plain)
	}
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
	switch {
	case p.recordsErr != nil:
		add("records: "+common.ErrorText(p.recordsErr), st.Error.Render)
	case p.records != nil:
		add("what the agent keeps (agent-written, untrusted; this read was audited)", st.UntrustedHd.Render)
		for _, f := range p.records.Memory {
			add("memory "+common.SafeLine(f.Key)+": "+common.Safe(f.Text), plain)
		}
		for _, n := range p.records.Notes {
			add("note "+common.SafeLine(n.Name)+":", st.Label.Render)
			add(common.Safe(n.Text), plain)
		}
		for _, sc := range p.records.Schedules {
			every := ""
			if sc.Every > 0 {
				every = " every " + sc.Every.String()
			}
			add("schedule "+common.SafeLine(sc.ID)+" next "+ago(sc.Next)+every+": "+common.Safe(sc.Text), plain)
		}
		if len(p.records.Memory)+len(p.records.Notes)+len(p.records.Schedules) == 0 {
			add("no memory, notes or schedules", st.Faint.Render)
		}
	}
	switch {
	case p.transcriptErr != nil:
		add("transcript: "+common.ErrorText(p.transcriptErr), st.Error.Render)
	case p.transcript != nil:
		add(fmt.Sprintf("transcript, %d turns (the user's and the agent's words, untrusted; this read was audited)", len(p.transcript.Turns)), st.UntrustedHd.Render)
		for _, t := range p.transcript.Turns {
			add(fmt.Sprintf("— %d %s", t.Seq, common.SafeLine(t.Role)), st.Label.Render)
			add(common.Safe(t.Text), plain)
		}
		if len(p.transcript.Turns) == 0 {
			add("no conversation kept", st.Faint.Render)
		}
	}
	p.view.SetLines(lines)
	var bottom []string
	switch p.confirm {
	case "restart":
		bottom = strings.Split(components.Dialog(st, width, "Restart session "+s.ID+"? Its sandbox is stopped and may start again (audited).", "y: restart    n/esc: cancel"), "\n")
	case "stop":
		bottom = strings.Split(components.Dialog(st, width, "Stop session "+s.ID+"'s sandbox now? Its next message starts it again (audited).", "y: stop    n/esc: cancel"), "\n")
	default:
		bottom = []string{st.Faint.Render(common.Fit(p.view.Position()+"   t transcript · m records · h history · S stop · R restart · c chat · esc back", width))}
	}
	p.view.Height = max(height-len(bottom), 1)
	return p.view.View() + "\n" + strings.Join(bottom, "\n")
}

func (p *Sessions) ShortHelp() []key.Binding {
	k := p.c.Keys
	if p.open == nil {
		return []key.Binding{k.Up, k.Down, k.Open, k.ChatWith}
	}
	if p.sub == "history" {
		return []key.Binding{k.Up, k.Down, k.Open, k.Back}
	}
	if p.sub == "version" {
		return []key.Binding{k.Up, k.Down, k.Back}
	}
	return []key.Binding{k.Up, k.Down, k.Transcript, k.Records, k.History, k.Stop, k.Restart, k.ChatWith, k.Back}
}

func (p *Sessions) FullHelp() [][]key.Binding {
	k := p.c.Keys
	return [][]key.Binding{k.ScrollKeys(), {k.Open, k.Back, k.ChatWith}, {k.Transcript, k.Records, k.History, k.Stop, k.Restart}}
}

// bytesText is n bytes in binary units, for usage.
func bytesText(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func (p *Sessions) historyRow(i int, selected bool) string {
	v := p.history[i]
	change := "first version"
	if v.Change != "" {
		change = "change " + v.Change
	}
	line := common.Fit(fmt.Sprintf("v%-5d %s  %s", v.Version, ago(v.Created), change), p.c.Width)
	if selected {
		return p.c.Styles.Selected.Render(line)
	}
	return line
}

// historyView draws the profile history, or one version of it.
func (p *Sessions) historyView(width, height int) string {
	st := p.c.Styles
	id := p.open.ID
	if p.sub == "history" {
		top := []string{st.Title.Render(common.Fit("profile history of session "+id, width))}
		switch {
		case p.historyErr != nil:
			top = append(top, st.Error.Render(common.Fit(common.ErrorText(p.historyErr), width)))
		case p.history == nil:
			top = append(top, st.Faint.Render("loading…"))
		}
		bottom := st.Faint.Render(common.Fit("enter: text and diff · esc back", width))
		p.hrows.Height = max(height-len(top)-1, 1)
		return strings.Join(top, "\n") + "\n" + p.hrows.View() + "\n" + bottom
	}
	var lines []string
	add := func(text string, f func(...string) string) {
		for _, l := range common.Wrap(text, width) {
			lines = append(lines, f(l))
		}
	}
	plain := func(a ...string) string { return strings.Join(a, "") }
	switch {
	case p.versionErr != nil:
		add("profile version: "+common.ErrorText(p.versionErr), st.Error.Render)
	case p.version == nil:
		add("loading…", st.Faint.Render)
	default:
		v := p.version
		add(fmt.Sprintf("session %s profile version %d", id, v.Version), st.Title.Render)
		made := "the first version"
		if v.Change != "" {
			made = "made by change " + v.Change
		}
		add("stored "+ago(v.Created)+", "+made, plain)
		prev := "nothing"
		if v.Version > 1 {
			prev = fmt.Sprintf("version %d", v.Version-1)
		}
		lines = append(lines, components.Diff(st, width, prev, fmt.Sprintf("version %d", v.Version), v.Diff)...)
		add(fmt.Sprintf("canonical text of version %d", v.Version), st.Header.Render)
		for _, l := range strings.Split(strings.TrimSuffix(common.Safe(v.Canonical), "\n"), "\n") {
			add(l, plain)
		}
	}
	p.view.SetLines(lines)
	bottom := st.Faint.Render(common.Fit(p.view.Position()+"   esc back to the history", width))
	p.view.Height = max(height-1, 1)
	return p.view.View() + "\n" + bottom
}
