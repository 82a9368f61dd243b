// Package pages holds the console's screens: overview, sessions,
// approvals, audit, chat and Matrix devices. Each loads what it shows
// through daemon/api with commands (never blocking a frame), redraws from
// what it holds, and
// sanitises every string that came from an agent, a chat, a profile or a
// config before it reaches the screen.
package pages

import (
	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"github.com/ironclaw/ironclaw/daemon/api"
)

// Page is one screen.
type Page interface {
	Title() string
	// Init loads the page's data.
	Init() tea.Cmd
	// Update handles a message: keys only when the page is active, every
	// other message always (results of the page's own commands).
	Update(msg tea.Msg) tea.Cmd
	// OnEvent reacts to a live event from the daemon; active says whether
	// the page is on screen (a hidden page may only note that it is stale).
	OnEvent(e api.Event, active bool) tea.Cmd
	// Shown is called when the page comes on screen.
	Shown() tea.Cmd
	// View draws the page in the area the root gives it.
	View(width, height int) string
	// Capturing is true while the page reads text: global keys are off.
	Capturing() bool
	// ShortHelp and FullHelp are the page's keys.
	ShortHelp() []key.Binding
	FullHelp() [][]key.Binding
}

// ChatWithMsg asks the root to open the chat page on a session.
type ChatWithMsg struct{ Session, Binding string }

// StatusMsg is a line for the status bar (Err true: shown as an error).
type StatusMsg struct {
	Text string
	Err  bool
}

func status(text string, err bool) tea.Cmd {
	return func() tea.Msg { return StatusMsg{Text: text, Err: err} }
}
