package components

import (
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"github.com/ironclaw/ironclaw/tui/common"
)

// Viewport scrolls a block of already wrapped, already styled lines.
type Viewport struct {
	Lines  []string
	Offset int
	Height int
}

// SetLines replaces the content, keeping the scroll position if it still fits.
func (v *Viewport) SetLines(lines []string) {
	v.Lines = lines
	v.clamp()
}

func (v *Viewport) clamp() {
	if v.Height < 1 {
		v.Height = 1
	}
	v.Offset = max(0, min(v.Offset, len(v.Lines)-v.Height))
}

// Update scrolls on movement keys; it reports whether it used msg.
func (v *Viewport) Update(k common.KeyMap, msg tea.KeyPressMsg) bool {
	switch {
	case key.Matches(msg, k.Up):
		v.Offset--
	case key.Matches(msg, k.Down):
		v.Offset++
	case key.Matches(msg, k.PageUp):
		v.Offset -= v.Height - 1
	case key.Matches(msg, k.PageDown):
		v.Offset += v.Height - 1
	case key.Matches(msg, k.Home):
		v.Offset = 0
	case key.Matches(msg, k.End):
		v.Offset = len(v.Lines)
	default:
		return false
	}
	v.clamp()
	return true
}

// AtEnd reports whether the last line is on screen.
func (v *Viewport) AtEnd() bool { return v.Offset+v.Height >= len(v.Lines) }

// Position says where the view is, e.g. "lines 1-20 of 75".
func (v *Viewport) Position() string {
	if len(v.Lines) <= v.Height {
		return fmt.Sprintf("%d lines", len(v.Lines))
	}
	return fmt.Sprintf("lines %d-%d of %d", v.Offset+1, min(v.Offset+v.Height, len(v.Lines)), len(v.Lines))
}

// View draws Height lines.
func (v *Viewport) View() string {
	v.clamp()
	end := min(v.Offset+v.Height, len(v.Lines))
	shown := v.Lines[v.Offset:end]
	pad := v.Height - len(shown)
	return strings.Join(shown, "\n") + strings.Repeat("\n", max(pad, 0))
}
