package pages

import (
	"fmt"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"github.com/ironclaw/ironclaw/daemon/api"
	"github.com/ironclaw/ironclaw/tui/common"
	"github.com/ironclaw/ironclaw/tui/components"
)

// Devices shows the Matrix channel's trust: the bot's own device (is it
// cross-signed, is its key backup on) and every device of everyone the bot
// talks to, with the trust the bot gives it. Every user id, device id and
// name came from a homeserver or a user and is sanitised; a device the bot
// does not trust is marked in words, not only in colour.
type Devices struct {
	c      *common.Common
	m      api.MatrixDevices
	loaded bool
	err    error
	view   components.Viewport
}

// NewDevices makes the devices page.
func NewDevices(c *common.Common) *Devices { return &Devices{c: c} }

type devicesLoaded struct {
	m   api.MatrixDevices
	err error
}

func (p *Devices) Title() string { return "devices" }

func (p *Devices) Init() tea.Cmd {
	c := p.c
	return func() tea.Msg {
		m, err := c.Op.MatrixDevices(c.Ctx)
		return devicesLoaded{m, err}
	}
}

func (p *Devices) Update(msg tea.Msg) tea.Cmd {
	switch m := msg.(type) {
	case devicesLoaded:
		p.err = m.err
		if m.err == nil {
			p.m, p.loaded = m.m, true
		}
	case tea.KeyPressMsg:
		p.view.Update(p.c.Keys, m)
	}
	return nil
}

// OnEvent does nothing: devices change without daemon events; the page
// re-reads when shown and on ctrl+r.
func (p *Devices) OnEvent(api.Event, bool) tea.Cmd { return nil }

// Shown re-reads: a new sender or a verification may have happened.
func (p *Devices) Shown() tea.Cmd { return p.Init() }

func (p *Devices) Capturing() bool { return false }

func (p *Devices) ShortHelp() []key.Binding {
	k := p.c.Keys
	return []key.Binding{k.Down, k.Up, k.Refresh}
}

func (p *Devices) FullHelp() [][]key.Binding {
	return [][]key.Binding{append(p.c.Keys.ScrollKeys(), p.c.Keys.Refresh)}
}

// TrustLabel is how a device's trust state reads: the states the bot does
// not trust are in capitals with a mark, so they stand out without colour.
func TrustLabel(s common.Styles, trust string) string {
	switch trust {
	case "verified":
		return s.OK.Render("✓ verified")
	case "cross-signed-verified":
		return s.OK.Render("✓ cross-signed, verified")
	case "cross-signed-tofu":
		return "~ cross-signed (identity trusted on first use)"
	case "cross-signed-untrusted":
		return s.Warn.Render("! UNTRUSTED (cross-signed by an unverified identity)")
	case "unverified":
		return s.Warn.Render("! UNVERIFIED")
	case "blacklisted":
		return s.Error.Render("✗ BLACKLISTED")
	case "":
		return s.Warn.Render("! UNKNOWN trust")
	}
	return s.Warn.Render("! UNKNOWN trust: " + common.SafeLine(trust))
}

func (p *Devices) lines(width int) []string {
	s := p.c.Styles
	var out []string
	add := func(l string) { out = append(out, common.Wrap(l, width)...) }
	field := func(label, v string) { add(s.Label.Render(fmt.Sprintf("  %-13s", label)) + v) }
	if p.err != nil {
		add(s.Error.Render("cannot read the Matrix devices: " + common.ErrorText(p.err)))
	}
	if !p.loaded {
		if p.err == nil {
			add(s.Faint.Render("loading…"))
		}
		return out
	}
	m := p.m
	if !m.Enabled {
		add(s.Title.Render("Matrix is not configured"))
		add("")
		add("No Matrix channel is running: the config has no [matrix] section, or the channel has not connected yet.")
		add(s.Faint.Render("To set it up: add [matrix] to the config, run `ironclaw matrix login`, restart the daemon (docs/matrix.md)."))
		return out
	}
	add(s.Header.Render("this bot"))
	field("user", common.SafeLine(m.Bot.User))
	field("device", common.SafeLine(m.Bot.Device)+"  "+s.Faint.Render(common.SafeLine(m.Bot.Name)))
	field("fingerprint", common.SafeLine(m.Bot.Fingerprint))
	if m.CrossSigned {
		field("cross-signed", s.OK.Render("✓ yes"))
	} else {
		field("cross-signed", s.Warn.Render("! NO — clients that refuse unverified devices will not accept it; run `ironclaw matrix login`"))
	}
	field("trust", TrustLabel(s, m.Bot.Trust))
	if m.BackupVersion != "" {
		field("key backup", "version "+common.SafeLine(m.BackupVersion))
	} else {
		field("key backup", s.Warn.Render("! NONE — room keys are not backed up"))
	}
	add("")
	untrusted := 0
	for _, d := range m.Senders {
		switch d.Trust {
		case "verified", "cross-signed-verified", "cross-signed-tofu":
		default:
			untrusted++
		}
	}
	head := fmt.Sprintf("senders' devices (%d", len(m.Senders))
	if untrusted > 0 {
		head += fmt.Sprintf(", %d not trusted", untrusted)
	}
	add(s.Header.Render(head + ")"))
	if len(m.Senders) == 0 {
		add(s.Faint.Render("  none known yet"))
	}
	for _, d := range m.Senders {
		add("")
		add(TrustLabel(s, d.Trust) + "  " + common.SafeLine(d.User))
		field("device", common.SafeLine(d.Device))
		field("name", common.SafeLine(d.Name))
		field("fingerprint", common.SafeLine(d.Fingerprint))
	}
	return out
}

func (p *Devices) View(width, height int) string {
	lines := p.lines(width)
	p.view.Height = height
	if len(lines) > height {
		p.view.Height = max(height-1, 1)
	}
	p.view.SetLines(lines)
	v := p.view.View()
	if len(lines) > height {
		v += "\n" + p.c.Styles.Faint.Render(common.Fit(p.view.Position(), width))
	}
	return v
}
