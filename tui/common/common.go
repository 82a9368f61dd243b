// Package common is what every part of the console shares: the operator's
// api, one Styles, one KeyMap, the screen size, and the few helpers that
// turn untrusted text into safe, wrapped terminal lines.
package common

import (
	"context"
	"strings"

	"github.com/charmbracelet/x/ansi"
	"github.com/ironclaw/ironclaw/daemon/api"
)

// Common is handed to every page and component.
type Common struct {
	Ctx    context.Context
	Op     api.Operator
	Styles Styles
	Keys   KeyMap
	Width  int
	Height int
}

// ErrMsg carries a failed call to the page that made it.
type ErrMsg struct{ Err error }

// ErrorText is how an error reads on screen: message and hint, sanitised.
func ErrorText(err error) string {
	if err == nil {
		return ""
	}
	return api.SanitizeLine(err.Error())
}

// Safe is api.SanitizeText: untrusted text made harmless, newlines kept.
func Safe(s string) string { return api.SanitizeText(s) }

// SafeLine is api.SanitizeLine: untrusted text on one line.
func SafeLine(s string) string { return api.SanitizeLine(s) }

// Wrap splits s (already safe) into lines of at most width cells. Long
// lines are wrapped, never cut: every character of s appears.
func Wrap(s string, width int) []string {
	if width < 1 {
		width = 1
	}
	var out []string
	for _, line := range strings.Split(strings.ReplaceAll(s, "\t", "    "), "\n") {
		if ansi.StringWidth(line) <= width {
			out = append(out, line)
			continue
		}
		out = append(out, strings.Split(ansi.Hardwrap(line, width, true), "\n")...)
	}
	return out
}

// Short cuts an id for a table cell (the full id is on the detail view).
func Short(id string, n int) string {
	if len(id) <= n {
		return id
	}
	return id[:n]
}

// Fit pads or cuts a one-line cell to exactly width cells. Only for
// columns whose full value is shown elsewhere (a detail view).
func Fit(s string, width int) string {
	if width <= 0 {
		return ""
	}
	w := ansi.StringWidth(s)
	if w > width {
		return ansi.Truncate(s, width, "…")
	}
	return s + strings.Repeat(" ", width-w)
}
