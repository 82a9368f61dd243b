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

// Approvals lists change requests and shows one with its full diff. The
// list holds still while the operator reads: new requests are added
// without moving the cursor off the one it is on. Deciding takes a second
// key: approve shows the id and binding hash and asks "y"; deny asks for a
// reason.
type Approvals struct {
	c    *common.Common
	all  bool
	list []api.ChangeSummary
	rows components.List
	err  error

	// The open request, if any.
	open    *api.Change
	openErr error
	view    components.Viewport
	mode    approvalMode
	reason  components.Input
	busy    bool
	// renderedFor is what the viewport's lines were laid out for: a frame
	// re-lays the (possibly long) diff only when the request or width
	// changed.
	renderedFor struct {
		c     *api.Change
		err   error
		width int
	}
}

type approvalMode int

const (
	modeList approvalMode = iota
	modeDetail
	modeConfirmApprove
	modeDenyReason
)

// NewApprovals makes the approvals page.
func NewApprovals(c *common.Common) *Approvals {
	p := &Approvals{c: c, reason: components.Input{Prompt: "reason: ", Max: 4096}}
	p.rows.RenderRow = p.row
	return p
}

type changesLoaded struct {
	list []api.ChangeSummary
	err  error
}

type changeLoaded struct {
	id  string
	c   api.Change
	err error
}

type decided struct {
	approve bool
	id      string
	d       api.Decision
	err     error
}

func (p *Approvals) Title() string { return "approvals" }

func (p *Approvals) Init() tea.Cmd {
	c, all := p.c, p.all
	return func() tea.Msg {
		list, err := c.Op.ListChanges(c.Ctx, api.ChangeFilter{All: all})
		return changesLoaded{list, err}
	}
}

func (p *Approvals) load(id string) tea.Cmd {
	c := p.c
	return func() tea.Msg {
		ch, err := c.Op.Change(c.Ctx, id)
		return changeLoaded{id, ch, err}
	}
}

// OnEvent re-reads the list, and the open request if it is the one that
// changed: another operator's decision shows at once.
func (p *Approvals) Shown() tea.Cmd { return nil }

func (p *Approvals) OnEvent(e api.Event, _ bool) tea.Cmd {
	if e.Kind != api.EventChange && e.What != "overflow" {
		return nil
	}
	cmds := []tea.Cmd{p.Init()}
	if p.open != nil && (e.ID == p.open.ID || e.What == "overflow") {
		cmds = append(cmds, p.load(p.open.ID))
	}
	return tea.Batch(cmds...)
}

func (p *Approvals) Capturing() bool { return p.mode == modeDenyReason }

func (p *Approvals) Update(msg tea.Msg) tea.Cmd {
	switch m := msg.(type) {
	case changesLoaded:
		p.err = m.err
		if m.err == nil {
			p.setList(m.list)
		}
	case changeLoaded:
		if p.open == nil && p.mode == modeList {
			return nil // closed meanwhile
		}
		if p.open != nil && p.open.ID != m.id {
			return nil
		}
		p.openErr = m.err
		if m.err == nil {
			ch := m.c
			p.open = &ch
			if ch.State != "pending" && (p.mode == modeConfirmApprove || p.mode == modeDenyReason) {
				// Someone else decided it while this operator was about to.
				p.mode = modeDetail
			}
		}
		p.render()
	case decided:
		p.busy = false
		verb := "denied"
		if m.approve {
			verb = "approved"
		}
		cmds := []tea.Cmd{p.Init()}
		if p.open != nil && p.open.ID == m.id {
			cmds = append(cmds, p.load(m.id))
		}
		if m.err != nil {
			cmds = append(cmds, status("not "+verb+": "+common.ErrorText(m.err), true))
		} else {
			cmds = append(cmds, status(common.Short(m.id, 12)+": "+common.SafeLine(m.d.Result), false))
		}
		return tea.Batch(cmds...)
	case tea.PasteMsg:
		if p.mode == modeDenyReason {
			p.reason.Paste(m.Content)
		}
	case tea.KeyPressMsg:
		return p.key(m)
	}
	return nil
}

// setList replaces the rows, keeping the cursor on the same request.
func (p *Approvals) setList(list []api.ChangeSummary) {
	var keep string
	if p.rows.Cursor < len(p.list) {
		keep = p.list[p.rows.Cursor].ID
	}
	p.list = list
	p.rows.Len = len(list)
	for i, s := range list {
		if s.ID == keep {
			p.rows.Cursor = i
			break
		}
	}
	p.rows.Clamp()
}

func (p *Approvals) key(m tea.KeyPressMsg) tea.Cmd {
	k := p.c.Keys
	switch p.mode {
	case modeList:
		switch {
		case key.Matches(m, k.Open):
			if p.rows.Cursor < len(p.list) {
				id := p.list[p.rows.Cursor].ID
				p.open = &api.Change{ChangeSummary: p.list[p.rows.Cursor]}
				p.openErr = nil
				p.mode = modeDetail
				p.view.Offset = 0
				p.render()
				return p.load(id)
			}
		case key.Matches(m, k.ToggleAll):
			p.all = !p.all
			return p.Init()
		default:
			p.rows.Update(k, m)
		}
	case modeDetail:
		switch {
		case key.Matches(m, k.Back):
			p.mode, p.open = modeList, nil
		case key.Matches(m, k.Approve):
			if p.decidable() {
				p.mode = modeConfirmApprove
			}
		case key.Matches(m, k.Deny):
			if p.decidable() {
				p.mode = modeDenyReason
				p.reason.Value = ""
			}
		default:
			p.view.Update(k, m)
		}
	case modeConfirmApprove:
		switch {
		case key.Matches(m, k.Confirm):
			p.mode = modeDetail
			return p.decide(true, "")
		case key.Matches(m, k.Cancel):
			p.mode = modeDetail
		}
	case modeDenyReason:
		switch m.String() {
		case "esc":
			p.mode = modeDetail
		case "enter":
			if strings.TrimSpace(p.reason.Value) == "" {
				return status("a denial needs a reason (it is kept, sealed, with the request)", true)
			}
			p.mode = modeDetail
			return p.decide(false, p.reason.Value)
		default:
			p.reason.Update(m)
		}
	}
	return nil
}

// decidable: a loaded, pending request that is not being decided.
func (p *Approvals) decidable() bool {
	return p.open != nil && p.openErr == nil && p.open.Binding != "" && p.open.Diff != "" && p.open.State == "pending" && !p.busy
}

// decide sends the decision bound to the binding of what is on screen.
func (p *Approvals) decide(approve bool, note string) tea.Cmd {
	c, id, binding := p.c, p.open.ID, p.open.Binding
	p.busy = true
	return func() tea.Msg {
		req := api.DecideRequest{Binding: binding, Note: note}
		var d api.Decision
		var err error
		if approve {
			d, err = c.Op.Approve(c.Ctx, id, req)
		} else {
			d, err = c.Op.Deny(c.Ctx, id, req)
		}
		return decided{approve, id, d, err}
	}
}

func (p *Approvals) row(i int, selected bool) string {
	s := p.c.Styles
	ch := p.list[i]
	line := fmt.Sprintf("%-12s %-8s %-12s %-12s %-16s %s", common.Short(ch.ID, 12), ch.State, common.SafeLine(ch.Kind),
		common.Short(ch.Session, 12), ch.Created.UTC().Format("01-02 15:04:05"), common.SafeLine(ch.Requester))
	line = common.Fit(line, p.c.Width)
	if selected {
		return s.Selected.Render(line)
	}
	return line
}

// render lays the open request out as wrapped, coloured lines.
func (p *Approvals) render() {
	if p.open == nil {
		return
	}
	if r := p.renderedFor; r.c == p.open && r.err == p.openErr && r.width == p.c.Width {
		return
	}
	p.renderedFor.c, p.renderedFor.err, p.renderedFor.width = p.open, p.openErr, p.c.Width
	s, w := p.c.Styles, max(p.c.Width, 20)
	ch := p.open
	var lines []string
	add := func(text string, st func(...string) string) {
		for _, l := range common.Wrap(text, w) {
			lines = append(lines, st(l))
		}
	}
	plain := func(a ...string) string { return strings.Join(a, "") }
	add("change request "+ch.ID, s.Title.Render)
	add(fmt.Sprintf("state %s   kind %s   session %s", ch.State, common.SafeLine(ch.Kind), ch.Session), plain)
	add("requester "+common.SafeLine(ch.Requester), plain)
	if p.openErr != nil {
		add("cannot show it: "+common.ErrorText(p.openErr), s.Error.Render)
		p.view.SetLines(lines)
		return
	}
	if ch.Diff == "" {
		add("loading…", s.Faint.Render)
		p.view.SetLines(lines)
		return
	}
	if ch.State != "pending" {
		add(fmt.Sprintf("DECIDED: %s by %s: %s", ch.State, common.SafeLine(ch.DecidedBy), common.SafeLine(ch.Result)), s.Warn.Render)
	}
	add(fmt.Sprintf("policy %s (rule %s)", ch.Outcome, common.SafeLine(ch.Rule)), plain)
	for _, r := range ch.PolicyReasons {
		add("  "+common.SafeLine(r), s.Faint.Render)
	}
	changes := "changes " + strings.Join(ch.ChangedFields, ", ")
	if ch.Restart {
		changes += " (restarts the agent's sandbox)"
	}
	add(changes, plain)
	if !ch.BaseIsCurrent {
		add("STALE: the profile changed since this request; approving only marks it stale", s.Warn.Render)
	}
	add("binding "+ch.Binding, plain)
	// The requester's reason, boxed and marked: it may lie.
	reason, rflags := api.InspectText(ch.UntrustedReason)
	box := common.Wrap(reason, max(w-4, 10))
	hd := "UNTRUSTED: the requester's own words, unverified"
	if rflags&api.FlagsSuspicious != 0 {
		hd += " — it hides " + (rflags & api.FlagsSuspicious).String() + " (shown as \\u escapes)"
	}
	add(hd, s.UntrustedHd.Render)
	lines = append(lines, strings.Split(s.Untrusted.Render(strings.Join(box, "\n")), "\n")...)
	lines = append(lines, components.Diff(s, w, fmt.Sprintf("base version %d", ch.BaseVersion), "proposed", ch.Diff)...)
	p.view.SetLines(lines)
}

func (p *Approvals) View(width, height int) string {
	s := p.c.Styles
	switch p.mode {
	case modeList:
		head := "pending change requests"
		if p.all {
			head = "all change requests"
		}
		var top []string
		count := fmt.Sprintf("%d %s", len(p.list), head)
		if p.rows.Offset > 0 {
			// The list holds still; say what arrived above the screen.
			count += fmt.Sprintf("   ↑ %d more above (g: top)", p.rows.Offset)
		}
		top = append(top, s.Faint.Render(common.Fit(count, width)))
		top = append(top, s.Header.Render(common.Fit(fmt.Sprintf("%-12s %-8s %-12s %-12s %-16s %s", "ID", "STATE", "KIND", "SESSION", "FILED (UTC)", "REQUESTER"), width)))
		if p.err != nil {
			top = append(top, s.Error.Render(common.Fit(common.ErrorText(p.err), width)))
		}
		if len(p.list) == 0 {
			top = append(top, s.Faint.Render("no "+strings.TrimSuffix(head, " change requests")+" change requests"))
			return strings.Join(top, "\n")
		}
		p.rows.Height = max(height-len(top), 1)
		return strings.Join(top, "\n") + "\n" + p.rows.View()
	}
	p.render()
	var bottom []string
	switch p.mode {
	case modeConfirmApprove:
		bottom = strings.Split(components.Dialog(s, width,
			"Approve and apply exactly this change?",
			"request "+p.open.ID,
			"binding "+p.open.Binding,
			"y: approve and apply    n/esc: cancel"), "\n")
	case modeDenyReason:
		bottom = strings.Split(components.Dialog(s, width,
			"Deny request "+p.open.ID+"? Give a reason; enter denies, esc cancels.",
			p.reason.View(s, max(width-6, 10))), "\n")
	default:
		bottom = []string{s.Faint.Render(common.Fit(p.view.Position()+"   a approve · d deny · esc back · ? help", width))}
	}
	p.view.Height = max(height-len(bottom), 1)
	return p.view.View() + "\n" + strings.Join(bottom, "\n")
}

func (p *Approvals) ShortHelp() []key.Binding {
	k := p.c.Keys
	switch p.mode {
	case modeList:
		return []key.Binding{k.Up, k.Down, k.Open, k.ToggleAll}
	case modeConfirmApprove:
		return []key.Binding{k.Confirm, k.Cancel}
	case modeDenyReason:
		return []key.Binding{k.Send, k.Back}
	}
	return []key.Binding{k.Up, k.Down, k.Approve, k.Deny, k.Back}
}

func (p *Approvals) FullHelp() [][]key.Binding {
	k := p.c.Keys
	return [][]key.Binding{k.ScrollKeys(), {k.Open, k.Back, k.ToggleAll}, {k.Approve, k.Deny, k.Confirm, k.Cancel}}
}
