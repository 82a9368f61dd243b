package common

import "charm.land/bubbles/v2/key"

// KeyMap is every key the console knows. Pages pick the ones they use for
// their help; nothing is bound twice with different meanings on one page.
type KeyMap struct {
	Up, Down, PageUp, PageDown, Home, End key.Binding
	Open, Back                            key.Binding
	NextPage, PrevPage                    key.Binding
	Overview, Sessions, Approvals, Audit  key.Binding
	Chat                                  key.Binding
	Approve, Deny, Confirm, Cancel        key.Binding
	ToggleAll, Filter, Verify, Restart    key.Binding
	Stop, Records, Transcript, History    key.Binding
	ChatWith, Send                        key.Binding
	Refresh, Help, Quit                   key.Binding
}

// DefaultKeyMap is the console's keys.
func DefaultKeyMap() KeyMap {
	b := func(keys []string, help, desc string) key.Binding {
		return key.NewBinding(key.WithKeys(keys...), key.WithHelp(help, desc))
	}
	return KeyMap{
		Up:         b([]string{"up", "k"}, "↑/k", "up"),
		Down:       b([]string{"down", "j"}, "↓/j", "down"),
		PageUp:     b([]string{"pgup", "b"}, "pgup/b", "page up"),
		PageDown:   b([]string{"pgdown", "f", "space"}, "pgdn/f", "page down"),
		Home:       b([]string{"home", "g"}, "g", "top"),
		End:        b([]string{"end", "G"}, "G", "bottom"),
		Open:       b([]string{"enter"}, "enter", "open"),
		Back:       b([]string{"esc"}, "esc", "back"),
		NextPage:   b([]string{"tab"}, "tab", "next page"),
		PrevPage:   b([]string{"shift+tab"}, "shift+tab", "previous page"),
		Overview:   b([]string{"1"}, "1", "overview"),
		Sessions:   b([]string{"2"}, "2", "sessions"),
		Approvals:  b([]string{"3"}, "3", "approvals"),
		Audit:      b([]string{"4"}, "4", "audit"),
		Chat:       b([]string{"5"}, "5", "chat"),
		Approve:    b([]string{"a"}, "a", "approve…"),
		Deny:       b([]string{"d"}, "d", "deny…"),
		Confirm:    b([]string{"y"}, "y", "yes"),
		Cancel:     b([]string{"n", "esc"}, "n/esc", "no"),
		ToggleAll:  b([]string{"A"}, "A", "pending/all"),
		Filter:     b([]string{"/"}, "/", "filter"),
		Verify:     b([]string{"v"}, "v", "verify chain"),
		Restart:    b([]string{"R"}, "R", "restart…"),
		Stop:       b([]string{"S"}, "S", "stop sandbox…"),
		Records:    b([]string{"m"}, "m", "memory, notes, schedules (audited)"),
		Transcript: b([]string{"t"}, "t", "transcript (audited)"),
		History:    b([]string{"h"}, "h", "profile history"),
		ChatWith:   b([]string{"c"}, "c", "chat with it"),
		Send:       b([]string{"enter"}, "enter", "send"),
		Refresh:    b([]string{"ctrl+r"}, "ctrl+r", "refresh"),
		Help:       b([]string{"?"}, "?", "help"),
		Quit:       b([]string{"q", "ctrl+c"}, "q", "quit"),
	}
}

// ScrollKeys are the movement keys, for help.
func (k KeyMap) ScrollKeys() []key.Binding {
	return []key.Binding{k.Up, k.Down, k.PageUp, k.PageDown, k.Home, k.End}
}
