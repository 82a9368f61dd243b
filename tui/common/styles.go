package common

import (
	"image/color"

	"charm.land/lipgloss/v2"
)

// Styles is the console's one set of styles.
type Styles struct {
	App         lipgloss.Style
	Title       lipgloss.Style
	Tab         lipgloss.Style
	ActiveTab   lipgloss.Style
	Header      lipgloss.Style
	Selected    lipgloss.Style
	Row         lipgloss.Style
	Faint       lipgloss.Style
	Label       lipgloss.Style
	Error       lipgloss.Style
	OK          lipgloss.Style
	Warn        lipgloss.Style
	DiffAdd     lipgloss.Style
	DiffDel     lipgloss.Style
	DiffCtx     lipgloss.Style
	Untrusted   lipgloss.Style
	UntrustedHd lipgloss.Style
	Dialog      lipgloss.Style
	StatusBar   lipgloss.Style
}

var (
	red    color.Color = lipgloss.Color("1")
	green  color.Color = lipgloss.Color("2")
	yellow color.Color = lipgloss.Color("3")
	blue   color.Color = lipgloss.Color("4")
	grey   color.Color = lipgloss.Color("8")
)

// DefaultStyles returns the console's styles (16-colour ANSI, so any
// terminal shows them).
func DefaultStyles() Styles {
	return Styles{
		App:         lipgloss.NewStyle(),
		Title:       lipgloss.NewStyle().Bold(true),
		Tab:         lipgloss.NewStyle().Padding(0, 1).Foreground(grey),
		ActiveTab:   lipgloss.NewStyle().Padding(0, 1).Bold(true).Reverse(true),
		Header:      lipgloss.NewStyle().Bold(true).Underline(true),
		Selected:    lipgloss.NewStyle().Reverse(true),
		Row:         lipgloss.NewStyle(),
		Faint:       lipgloss.NewStyle().Foreground(grey),
		Label:       lipgloss.NewStyle().Bold(true),
		Error:       lipgloss.NewStyle().Foreground(red).Bold(true),
		OK:          lipgloss.NewStyle().Foreground(green),
		Warn:        lipgloss.NewStyle().Foreground(yellow).Bold(true),
		DiffAdd:     lipgloss.NewStyle().Foreground(green),
		DiffDel:     lipgloss.NewStyle().Foreground(red),
		DiffCtx:     lipgloss.NewStyle(),
		Untrusted:   lipgloss.NewStyle().Border(lipgloss.NormalBorder()).BorderForeground(yellow).Padding(0, 1),
		UntrustedHd: lipgloss.NewStyle().Foreground(yellow).Bold(true),
		Dialog:      lipgloss.NewStyle().Border(lipgloss.DoubleBorder()).BorderForeground(blue).Padding(0, 1),
		StatusBar:   lipgloss.NewStyle().Foreground(grey),
	}
}
