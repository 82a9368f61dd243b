package components

import (
	"strings"

	"github.com/ironclaw/ironclaw/tui/common"
)

// Tabs draws the page tabs with the active one highlighted.
func Tabs(s common.Styles, names []string, active int) string {
	var parts []string
	for i, n := range names {
		label := string(rune('1'+i)) + " " + n
		if i == active {
			parts = append(parts, s.ActiveTab.Render(label))
		} else {
			parts = append(parts, s.Tab.Render(label))
		}
	}
	return strings.Join(parts, "")
}

// Dialog draws a boxed question of at most width cells; lines are wrapped,
// never cut.
func Dialog(s common.Styles, width int, lines ...string) string {
	inner := max(width-4, 10)
	var wrapped []string
	for _, l := range lines {
		wrapped = append(wrapped, common.Wrap(l, inner)...)
	}
	return s.Dialog.Render(strings.Join(wrapped, "\n"))
}
