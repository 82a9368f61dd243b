package components

import (
	"strings"

	"github.com/ironclaw/ironclaw/daemon/api"
	"github.com/ironclaw/ironclaw/tui/common"
)

// Diff lays out a line diff (agentd/profile.Diff's format) as wrapped,
// coloured lines under "--- old" and "+++ new" headers. The diff is
// sanitised first; if it hides control or invisible characters a warning
// line says so above it. The approvals page and the sessions page's
// profile history both draw diffs with it.
func Diff(s common.Styles, width int, old, new, diff string) []string {
	var lines []string
	add := func(text string, st func(...string) string) {
		for _, l := range common.Wrap(text, width) {
			lines = append(lines, st(l))
		}
	}
	clean, flags := api.InspectText(diff)
	if flags&api.FlagsSuspicious != 0 {
		add("WARNING: this diff hides "+(flags&api.FlagsSuspicious).String()+" (shown as \\u escapes)", s.Warn.Render)
	}
	add("--- "+old, s.DiffDel.Render)
	add("+++ "+new, s.DiffAdd.Render)
	for _, l := range strings.Split(strings.TrimSuffix(clean, "\n"), "\n") {
		st := s.DiffCtx.Render
		switch {
		case strings.HasPrefix(l, "+"):
			st = s.DiffAdd.Render
		case strings.HasPrefix(l, "-"):
			st = s.DiffDel.Render
		}
		add(l, st)
	}
	return lines
}
