package cli

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/ironclaw/ironclaw/daemon"
)

// SessionOpsCmd are the session commands beyond list, profile and erase
// (embedded into SessionsCmd).
type SessionOpsCmd struct {
	Create      SessionsCreateCmd      `cmd:"" help:"Create a session for a binding (e.g. console:work) without sending it anything."`
	Stop        SessionsStopCmd        `cmd:"" help:"Stop a session's sandbox now (the next message starts it again)."`
	Restart     SessionsRestartCmd     `cmd:"" help:"Stop a session's sandbox and start a fresh one, which resumes from the daemon's record."`
	ResetOutbox SessionsResetOutboxCmd `cmd:"" name:"reset-outbox" help:"Replace a broken or refused outbox with a fresh one; memory, notes, schedules and history are kept."`
	Records     SessionsRecordsCmd     `cmd:"" help:"Show a session's memory, notes and schedules (sealed content: the request is audited)."`
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
	var out map[string]string
	if err := cl.Do(ctx, "POST", "/v1/sessions", daemon.CreateSessionRequest{Binding: c.Binding}, &out); err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "session %s created for %s\n", out["id"], sanitize(c.Binding))
	return nil
}

// sessionOp posts one of the session operations.
func sessionOp(ctx context.Context, g *Globals, id, op, done string) error {
	cl, err := adminClient(g)
	if err != nil {
		return err
	}
	if err := cl.Do(ctx, "POST", "/v1/sessions/"+url.PathEscape(id)+"/"+op, nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "session %s: %s\n", id, done)
	return nil
}

// SessionsStopCmd stops a sandbox.
type SessionsStopCmd struct {
	ID string `arg:"" help:"Session id."`
}

// Run stops.
func (c SessionsStopCmd) Run(ctx context.Context, g *Globals) error {
	return sessionOp(ctx, g, c.ID, "stop", "sandbox stopped")
}

// SessionsRestartCmd restarts a sandbox.
type SessionsRestartCmd struct {
	ID string `arg:"" help:"Session id."`
}

// Run restarts.
func (c SessionsRestartCmd) Run(ctx context.Context, g *Globals) error {
	return sessionOp(ctx, g, c.ID, "restart", "sandbox restarted")
}

// SessionsResetOutboxCmd resets an outbox.
type SessionsResetOutboxCmd struct {
	ID string `arg:"" help:"Session id."`
}

// Run resets.
func (c SessionsResetOutboxCmd) Run(ctx context.Context, g *Globals) error {
	return sessionOp(ctx, g, c.ID, "reset-outbox", "outbox replaced with a fresh one; nothing the daemon recorded was lost")
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
	var r daemon.SessionRecords
	if err := cl.Do(ctx, "GET", "/v1/sessions/"+url.PathEscape(c.ID)+"/records", nil, &r); err != nil {
		return err
	}
	fmt.Fprintf(g.stderr, "# session %s (this request is in the audit log); all text below was written by the agent\n", r.Session)
	fmt.Fprintf(g.stdout, "memory (%d):\n", len(r.Memory))
	for _, m := range r.Memory {
		fmt.Fprintf(g.stdout, "  %s: %s\n", sanitize(m.Key), sanitize(m.Text))
	}
	fmt.Fprintf(g.stdout, "notes (%d):\n", len(r.Notes))
	for _, n := range r.Notes {
		fmt.Fprintf(g.stdout, "  --- %s ---\n%s\n", sanitize(n.Name), sanitize(n.Text))
	}
	fmt.Fprintf(g.stdout, "schedules (%d):\n", len(r.Schedules))
	for _, s := range r.Schedules {
		every := ""
		if s.Every > 0 {
			every = fmt.Sprintf(" every %v", time.Duration(s.Every)*time.Second)
		}
		fmt.Fprintf(g.stdout, "  %s at %s%s: %s\n", sanitize(s.ID), time.Unix(s.At, 0).UTC().Format(time.RFC3339), every, sanitize(s.Text))
	}
	return nil
}
