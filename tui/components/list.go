package components

import (
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"github.com/ironclaw/ironclaw/tui/common"
)

// List is a vertical list with a cursor. It holds no rows, only their
// count: RenderRow draws row i, so a frame costs only the visible rows.
type List struct {
	Len       int
	Cursor    int
	Offset    int
	Height    int
	RenderRow func(i int, selected bool) string
}

// Clamp keeps cursor and offset inside the list and the cursor on screen.
func (l *List) Clamp() {
	if l.Height < 1 {
		l.Height = 1
	}
	l.Cursor = max(0, min(l.Cursor, l.Len-1))
	if l.Cursor < l.Offset {
		l.Offset = l.Cursor
	}
	if l.Cursor >= l.Offset+l.Height {
		l.Offset = l.Cursor - l.Height + 1
	}
	l.Offset = max(0, min(l.Offset, l.Len-l.Height))
}

// Update moves the cursor on movement keys; it reports whether it used msg.
func (l *List) Update(k common.KeyMap, msg tea.KeyPressMsg) bool {
	switch {
	case key.Matches(msg, k.Up):
		l.Cursor--
	case key.Matches(msg, k.Down):
		l.Cursor++
	case key.Matches(msg, k.PageUp):
		l.Cursor -= l.Height
	case key.Matches(msg, k.PageDown):
		l.Cursor += l.Height
	case key.Matches(msg, k.Home):
		l.Cursor = 0
	case key.Matches(msg, k.End):
		l.Cursor = l.Len - 1
	default:
		return false
	}
	l.Clamp()
	return true
}

// View draws the visible rows, padded to Height lines.
func (l *List) View() string {
	l.Clamp()
	var b strings.Builder
	n := 0
	for i := l.Offset; i < l.Len && n < l.Height; i++ {
		if n > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(l.RenderRow(i, i == l.Cursor))
		n++
	}
	for ; n < l.Height; n++ {
		if n > 0 {
			b.WriteByte('\n')
		}
	}
	return b.String()
}
