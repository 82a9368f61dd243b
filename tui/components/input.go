package components

import (
	"strings"
	"unicode"

	tea "charm.land/bubbletea/v2"
	"github.com/ironclaw/ironclaw/tui/common"
)

// Input is a one-line text field. It keeps only printable characters the
// operator typed (pasted control characters are dropped) and draws a fixed
// cursor, so its rendering is the same on every frame.
type Input struct {
	Prompt string
	Value  string
	Max    int // bytes; 0 means 4096
}

// Update edits on a key; it reports whether it used msg.
func (in *Input) Update(msg tea.KeyPressMsg) bool {
	limit := in.Max
	if limit == 0 {
		limit = 4096
	}
	switch msg.String() {
	case "backspace":
		if r := []rune(in.Value); len(r) > 0 {
			in.Value = string(r[:len(r)-1])
		}
		return true
	case "ctrl+u":
		in.Value = ""
		return true
	case "space":
		if len(in.Value) < limit {
			in.Value += " "
		}
		return true
	}
	if msg.Text == "" {
		return false
	}
	for _, r := range msg.Text {
		if unicode.IsGraphic(r) && len(in.Value)+len(string(r)) <= limit {
			in.Value += string(r)
		}
	}
	return true
}

// Paste adds pasted text, one line, graphic characters only.
func (in *Input) Paste(s string) {
	in.Update(tea.KeyPressMsg{Text: strings.ReplaceAll(s, "\n", " ")})
}

// View draws the prompt, the tail of the value that fits and a cursor.
func (in *Input) View(s common.Styles, width int) string {
	v := common.SafeLine(in.Value)
	room := max(width-len([]rune(in.Prompt))-1, 1)
	if r := []rune(v); len(r) > room {
		v = string(r[len(r)-room:])
	}
	return s.Label.Render(in.Prompt) + v + "█"
}
