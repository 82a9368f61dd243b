package cli

import (
	"context"
	"fmt"

	"github.com/ironclaw/ironclaw/daemon/api"
)

// SessionOpsCmd are the session commands beyond list, profile and erase
// (embedded into SessionsCmd).
type SessionOpsCmd struct {
	Create      SessionsCreateCmd      `cmd:"" help:"Create a session for a binding (e.g. console:work) without sending it anything."`
	Stop        SessionsStopCmd        `cmd:"" help:"Stop a session's sandbox now (the next message or schedule starts it again)."`
	Restart     SessionsRestartCmd     `cmd:"" help:"Resume a stopped session and start a fresh sandbox, which resumes from the daemon's record."`
	ResetOutbox SessionsResetOutboxCmd `cmd:"" name:"reset-outbox" help:"Replace a broken or refused outbox with a fresh one; memory, notes, schedules and history are kept."`
	Records     SessionsRecordsCmd     `cmd:"" help:"Show a session's memory, notes and schedules (sealed content: the request is audited)."`
	Transcript  SessionsTranscriptCmd  `cmd:"" help:"Show a session's kept conversation (sealed content: the request is audited before anything is read)."`
}

// SessionsCreateCmd creates a session.
type SessionsCreateCmd struct {
	Binding string `arg:"" help:"Binding, e.g. console:work."`
}

// Run creates.
func (c SessionsCreateCmd) Run(ctx context.Context, g *Globals) error {
	cl, err := adminClient(g)
	if err != nil {
		return err
	}
	s, err := cl.CreateSession(ctx, c.Binding)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "session %s created for %s\n", s.ID, api.SanitizeLine(c.Binding))
	return nil
}

// SessionsStopCmd stops a sandbox.
type SessionsStopCmd struct {
	ID string `arg:"" help:"Session id."`
}

// Run stops.
func (c SessionsStopCmd) Run(ctx context.Context, g *Globals) error {
	cl, err := adminClient(g)
	if err != nil {
		return err
	}
	if err := cl.StopSession(ctx, c.ID); err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "session %s: sandbox stopped\n", c.ID)
	return nil
}

// SessionsRestartCmd restarts a sandbox.
type SessionsRestartCmd struct {
	ID string `arg:"" help:"Session id."`
}

// Run restarts.
func (c SessionsRestartCmd) Run(ctx context.Context, g *Globals) error {
	cl, err := adminClient(g)
	if err != nil {
		return err
	}
	if err := cl.RestartSession(ctx, c.ID); err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "session %s: sandbox restarted\n", c.ID)
	return nil
}

// SessionsResetOutboxCmd resets an outbox.
type SessionsResetOutboxCmd struct {
	ID string `arg:"" help:"Session id."`
}

// Run resets.
func (c SessionsResetOutboxCmd) Run(ctx context.Context, g *Globals) error {
	cl, err := adminClient(g)
	if err != nil {
		return err
	}
	if err := cl.ResetOutbox(ctx, c.ID); err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "session %s: outbox replaced with a fresh one; nothing the daemon recorded was lost\n", c.ID)
	return nil
}

// SessionsRecordsCmd shows memory, notes and schedules.
type SessionsRecordsCmd struct {
	ID string `arg:"" help:"Session id."`
}

// Run shows. Agent-written text is sanitised before it reaches the terminal.
func (c SessionsRecordsCmd) Run(ctx context.Context, g *Globals) error {
	cl, err := adminClient(g)
	if err != nil {
		return err
	}
	r, err := cl.SessionRecords(ctx, c.ID)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stderr, "# session %s (this request is in the audit log); everything below was written by the agent\n", r.Session)
	fmt.Fprintf(g.stdout, "memory (%d):\n", len(r.Memory))
	for _, m := range r.Memory {
		fmt.Fprintf(g.stdout, "  %s: %s\n", api.SanitizeLine(m.Key), api.SanitizeLine(m.Text))
	}
	fmt.Fprintf(g.stdout, "notes (%d):\n", len(r.Notes))
	for _, n := range r.Notes {
		fmt.Fprintf(g.stdout, "  --- %s ---\n%s\n", api.SanitizeLine(n.Name), api.SanitizeText(n.Text))
	}
	fmt.Fprintf(g.stdout, "schedules (%d):\n", len(r.Schedules))
	for _, s := range r.Schedules {
		every := ""
		if s.Every > 0 {
			every = " every " + s.Every.String()
		}
		fmt.Fprintf(g.stdout, "  %s next %s%s: %s\n", api.SanitizeLine(s.ID), s.Next.Format("2006-01-02T15:04:05Z07:00"), every, api.SanitizeLine(s.Text))
	}
	return nil
}

// SessionsTranscriptCmd shows the conversation the daemon keeps.
type SessionsTranscriptCmd struct {
	ID string `arg:"" help:"Session id."`
}

// Run shows. Every turn is the user's or the agent's text: sanitised before
// it reaches the terminal.
func (c SessionsTranscriptCmd) Run(ctx context.Context, g *Globals) error {
	cl, err := adminClient(g)
	if err != nil {
		return err
	}
	t, err := cl.Transcript(ctx, c.ID)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stderr, "# session %s (this request is in the audit log); %d turns, untrusted text\n", api.SanitizeLine(t.Session), len(t.Turns))
	for _, turn := range t.Turns {
		fmt.Fprintf(g.stdout, "--- %d %s ---\n%s\n", turn.Seq, api.SanitizeLine(turn.Role), api.SanitizeText(turn.Text))
	}
	return nil
}
