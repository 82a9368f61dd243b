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

// Audit shows the newest audit entries (newest first), filters them and
// verifies the chain.
type Audit struct {
	c       *common.Common
	entries []api.AuditEntry // oldest first, as the api returns them
	rows    components.List
	err     error
	filter  components.Input
	editing bool
	applied string
	verify  string
	open    *api.AuditEntry
	loading bool
	stale   bool // events came while hidden or scrolled
}

// NewAudit makes the audit page.
func NewAudit(c *common.Common) *Audit {
	p := &Audit{c: c, filter: components.Input{Prompt: "filter: ", Max: 200}}
	p.rows.RenderRow = p.row
	return p
}

type auditLoaded struct {
	filter  string
	entries []api.AuditEntry
	err     error
}

type auditVerified struct {
	r   api.AuditReport
	err error
}

func (p *Audit) Title() string { return "audit" }

func (p *Audit) Init() tea.Cmd {
	c, f := p.c, p.applied
	p.loading, p.stale = true, false
	return func() tea.Msg {
		es, err := c.Op.AuditEntries(c.Ctx, api.AuditQuery{Contains: f, Limit: api.DefaultAuditLimit})
		return auditLoaded{f, es, err}
	}
}

// OnEvent re-reads the log only while the page is on screen and the
// operator is at the top of it (reading a long log costs a scan of it);
// otherwise it notes that it is stale and re-reads when shown.
func (p *Audit) OnEvent(e api.Event, active bool) tea.Cmd {
	if !active || p.open != nil || p.rows.Cursor != 0 {
		p.stale = true
		return nil
	}
	return p.Init()
}

// Shown re-reads a stale log.
func (p *Audit) Shown() tea.Cmd {
	if !p.stale || p.open != nil || p.rows.Cursor != 0 {
		return nil
	}
	return p.Init()
}

func (p *Audit) Capturing() bool { return p.editing }

func (p *Audit) Update(msg tea.Msg) tea.Cmd {
	switch m := msg.(type) {
	case auditLoaded:
		if m.filter != p.applied {
			return nil
		}
		p.loading, p.err = false, m.err
		if m.err == nil {
			p.entries = m.entries
			p.rows.Len = len(m.entries)
			p.rows.Clamp()
		}
	case auditVerified:
		switch {
		case m.err != nil:
			p.verify = "verify failed: " + common.ErrorText(m.err)
		case m.r.OK:
			p.verify = fmt.Sprintf("audit OK: %d entries; verified %s", m.r.Entries, strings.Join(m.r.Proved, ", "))
		default:
			p.verify = "audit FAILED at " + common.SafeLine(m.r.Failure)
		}
	case tea.PasteMsg:
		if p.editing {
			p.filter.Paste(m.Content)
		}
	case tea.KeyPressMsg:
		return p.key(m)
	}
	return nil
}

func (p *Audit) key(m tea.KeyPressMsg) tea.Cmd {
	k := p.c.Keys
	if p.editing {
		switch m.String() {
		case "enter":
			p.editing = false
			p.applied = p.filter.Value
			p.rows.Cursor = 0
			return p.Init()
		case "esc":
			p.editing = false
			p.filter.Value = p.applied
		default:
			p.filter.Update(m)
		}
		return nil
	}
	if p.open != nil {
		if key.Matches(m, k.Back) || key.Matches(m, k.Open) {
			p.open = nil
		}
		return nil
	}
	switch {
	case key.Matches(m, k.Filter):
		p.editing = true
	case key.Matches(m, k.Verify):
		c := p.c
		p.verify = "verifying…"
		return func() tea.Msg {
			r, err := c.Op.VerifyAudit(c.Ctx)
			return auditVerified{r, err}
		}
	case key.Matches(m, k.Open):
		if i := p.index(p.rows.Cursor); i >= 0 {
			e := p.entries[i]
			p.open = &e
		}
	case key.Matches(m, k.Back):
		if p.applied != "" {
			p.applied, p.filter.Value = "", ""
			return p.Init()
		}
	default:
		p.rows.Update(k, m)
	}
	return nil
}

// index maps a row (newest first) to an entry.
func (p *Audit) index(row int) int {
	if row < 0 || row >= len(p.entries) {
		return -1
	}
	return len(p.entries) - 1 - row
}

func (p *Audit) row(i int, selected bool) string {
	e := p.entries[p.index(i)]
	count := ""
	if e.Count > 1 {
		count = fmt.Sprintf(" ×%d", e.Count)
	}
	// Audit fields were made terminal-safe when written; sanitise again in
	// case the file was edited by someone else.
	line := common.Fit(fmt.Sprintf("%7d %s %-22s %-16s %-9s %s%s", e.Seq, e.Time.UTC().Format("01-02 15:04:05"),
		common.SafeLine(e.Actor), common.SafeLine(e.Action), common.SafeLine(e.Decision), common.SafeLine(e.Subject), count), p.c.Width)
	if selected {
		return p.c.Styles.Selected.Render(line)
	}
	return line
}

func (p *Audit) View(width, height int) string {
	s := p.c.Styles
	if p.open != nil {
		e := p.open
		var lines []string
		for _, f := range [][2]string{{"seq", fmt.Sprint(e.Seq)}, {"time", e.Time.UTC().Format("2006-01-02 15:04:05.000000000Z")},
			{"actor", e.Actor}, {"action", e.Action}, {"subject", e.Subject}, {"decision", e.Decision},
			{"result", e.Result}, {"count", fmt.Sprint(e.Count)}} {
			lines = append(lines, common.Wrap(fmt.Sprintf("%-9s %s", f[0], common.SafeLine(f[1])), width)...)
		}
		lines = append(lines, "", s.Faint.Render("esc back"))
		if len(lines) > height {
			lines = lines[:height]
		}
		return strings.Join(lines, "\n")
	}
	var top []string
	info := fmt.Sprintf("newest %d entries", len(p.entries))
	if p.applied != "" {
		info += " containing " + common.SafeLine(fmt.Sprintf("%q", p.applied))
	}
	if p.loading {
		info += " (loading…)"
	}
	top = append(top, s.Faint.Render(common.Fit(info, width)))
	if p.editing {
		top = append(top, p.filter.View(s, width))
	}
	if p.verify != "" {
		st := s.OK
		if !strings.HasPrefix(p.verify, "audit OK") {
			st = s.Error
		}
		top = append(top, st.Render(common.Fit(p.verify, width)))
	}
	if p.err != nil {
		top = append(top, s.Error.Render(common.Fit(common.ErrorText(p.err), width)))
	}
	top = append(top, s.Header.Render(common.Fit(fmt.Sprintf("%7s %-14s %-22s %-16s %-9s %s", "SEQ", "TIME (UTC)", "ACTOR", "ACTION", "DECISION", "SUBJECT"), width)))
	p.rows.Height = max(height-len(top), 1)
	if len(p.entries) == 0 {
		return strings.Join(top, "\n")
	}
	return strings.Join(top, "\n") + "\n" + p.rows.View()
}

func (p *Audit) ShortHelp() []key.Binding {
	k := p.c.Keys
	if p.editing {
		return []key.Binding{k.Send, k.Back}
	}
	return []key.Binding{k.Up, k.Down, k.Open, k.Filter, k.Verify}
}

func (p *Audit) FullHelp() [][]key.Binding {
	k := p.c.Keys
	return [][]key.Binding{k.ScrollKeys(), {k.Open, k.Back, k.Filter, k.Verify, k.Refresh}}
}
