package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/ironclaw/ironclaw/daemon"
	"github.com/ironclaw/ironclaw/daemon/api"
	"github.com/ironclaw/ironclaw/policy"
)

// ChangesCmd lists and decides change requests through the running daemon.
// There is deliberately no way to approve more than one request at a time.
type ChangesCmd struct {
	List    ChangesListCmd    `cmd:"" default:"withargs" help:"List change requests (pending ones unless --all)."`
	Show    ChangesShowCmd    `cmd:"" help:"Show one request with its full diff."`
	Approve ChangesApproveCmd `cmd:"" help:"Show a request's full diff and, after you confirm, apply exactly it."`
	Deny    ChangesDenyCmd    `cmd:"" help:"Show a request's full diff and, after you confirm, deny it."`
	Propose ChangesProposeCmd `cmd:"" help:"Propose a change of a session's profile (it goes through the same gateway)."`
}

// ChangesListCmd lists requests.
type ChangesListCmd struct {
	All bool `help:"Include decided requests."`
}

// Run lists.
func (c ChangesListCmd) Run(ctx context.Context, g *Globals) error {
	cl, err := adminClient(g)
	if err != nil {
		return err
	}
	list, err := cl.ListChanges(ctx, api.ChangeFilter{All: c.All})
	if err != nil {
		return err
	}
	if len(list) == 0 {
		fmt.Fprintln(g.stdout, "no change requests")
		return nil
	}
	fmt.Fprintf(g.stdout, "%-32s  %-9s  %-11s  %-12s  %s\n", "ID", "STATE", "KIND", "SESSION", "REQUESTER")
	for _, s := range list {
		fmt.Fprintf(g.stdout, "%-32s  %-9s  %-11s  %-12.12s  %s\n", s.ID, s.State, s.Kind, s.Session, api.SanitizeLine(s.Requester))
	}
	return nil
}

// ChangesShowCmd shows one request.
type ChangesShowCmd struct {
	ID string `arg:"" help:"Request id."`
}

func fetchView(ctx context.Context, g *Globals, id string) (api.Change, error) {
	cl, err := adminClient(g)
	if err != nil {
		return api.Change{}, err
	}
	return cl.Change(ctx, id)
}

// printView renders a request for a human: metadata, the untrusted reason
// marked as such, and the whole diff. Everything is sanitised for the
// terminal.
func printView(g *Globals, v api.Change) {
	w := g.stdout
	fmt.Fprintf(w, "change request %s\n", v.ID)
	fmt.Fprintf(w, "  session:   %s\n  kind:      %s\n  requester: %s\n  state:     %s\n", v.Session, v.Kind, api.SanitizeLine(v.Requester), v.State)
	fmt.Fprintf(w, "  policy:    %s (rule %s)\n", v.Outcome, v.Rule)
	for _, r := range v.PolicyReasons {
		fmt.Fprintf(w, "             %s\n", api.SanitizeLine(r))
	}
	fmt.Fprintf(w, "  changes:   %s", strings.Join(v.ChangedFields, ", "))
	if v.Restart {
		fmt.Fprint(w, " (restarts the agent's sandbox)")
	}
	fmt.Fprintln(w)
	if !v.BaseIsCurrent {
		fmt.Fprintln(w, "  STALE: the profile changed since this request; approving only marks it stale")
	}
	fmt.Fprintf(w, "  binding:   %s\n", v.Binding)
	fmt.Fprintln(w, "  reason given by the requester (UNTRUSTED, unverified):")
	for _, line := range strings.Split(api.SanitizeText(v.UntrustedReason), "\n") {
		fmt.Fprintf(w, "    | %s\n", line)
	}
	fmt.Fprintf(w, "--- base version %d\n+++ proposed\n%s", v.BaseVersion, api.SanitizeText(v.Diff))
	if !strings.HasSuffix(v.Diff, "\n") {
		fmt.Fprintln(w)
	}
}

// Run shows.
func (c ChangesShowCmd) Run(ctx context.Context, g *Globals) error {
	v, err := fetchView(ctx, g, c.ID)
	if err != nil {
		return err
	}
	printView(g, v)
	return nil
}

// ChangesApproveCmd approves one request.
type ChangesApproveCmd struct {
	ID string `arg:"" help:"Request id."`
}

// Run approves after showing the diff and reading "approve" on stdin.
func (c ChangesApproveCmd) Run(ctx context.Context, g *Globals) error {
	return decide(ctx, g, c.ID, true, "")
}

// ChangesDenyCmd denies one request.
type ChangesDenyCmd struct {
	ID   string `arg:"" help:"Request id."`
	Note string `help:"A note for the record."`
}

// Run denies after showing the diff and reading "deny" on stdin.
func (c ChangesDenyCmd) Run(ctx context.Context, g *Globals) error {
	return decide(ctx, g, c.ID, false, c.Note)
}

// decide shows the request, asks for the verb typed in full, and sends the
// decision bound to the hash of exactly what was shown.
func decide(ctx context.Context, g *Globals, id string, approve bool, note string) error {
	v, err := fetchView(ctx, g, id)
	if err != nil {
		return err
	}
	printView(g, v)
	verb := "deny"
	if approve {
		verb = "approve"
	}
	fmt.Fprintf(g.stdout, "Type %q to %s exactly this change: ", verb, verb)
	answer, _ := daemon.ReadLine(g.stdin)
	if strings.TrimSpace(answer) != verb {
		return errors.New("not confirmed; nothing was decided")
	}
	cl, err := adminClient(g)
	if err != nil {
		return err
	}
	d := api.DecideRequest{Binding: v.Binding, Note: note}
	var out api.Decision
	if approve {
		out, err = cl.Approve(ctx, id, d)
	} else {
		out, err = cl.Deny(ctx, id, d)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "%s: %s\n", id, api.SanitizeLine(out.Result))
	return nil
}

// ChangesProposeCmd files an operator's change.
type ChangesProposeCmd struct {
	Session string `help:"Session id (see ironclaw sessions); none for kind operators."`
	Kind    string `required:"" help:"What changes: instructions, tools, software, contacts, permissions, model, limits, or operators (the console's SSH keys)."`
	File    string `required:"" type:"existingfile" help:"The full proposed profile in canonical form (start from ironclaw sessions profile ID); for operators, the whole new authorized_keys list."`
	Reason  string `help:"Why, for the record."`
	Base    uint64 `help:"The version you edited (refused if the profile moved since)."`
}

// Run proposes.
func (c ChangesProposeCmd) Run(ctx context.Context, g *Globals) error {
	data, err := os.ReadFile(c.File)
	if err != nil {
		return err
	}
	if c.Kind == policy.KindOperators {
		// The gateway takes the set in canonical form; write it so here.
		if data, err = policy.CanonicalOperators(data); err != nil {
			return fmt.Errorf("%s: %w", c.File, err)
		}
	}
	cl, err := adminClient(g)
	if err != nil {
		return err
	}
	rep, err := cl.Propose(ctx, api.ChangeRequest{Session: c.Session, Kind: c.Kind, Proposed: string(data), Reason: c.Reason, BaseVersion: c.Base})
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "change request %s: %s (policy: %s, rule %s)\n", rep.ID, rep.State, rep.Outcome, rep.Rule)
	if rep.State == "pending" {
		fmt.Fprintf(g.stdout, "review and decide it with: ironclaw changes approve %s\n", rep.ID)
	}
	return nil
}

// SessionsCmd lists sessions and shows their profiles.
type SessionsCmd struct {
	List          SessionsListCmd    `cmd:"" default:"withargs" help:"List sessions."`
	Profile       SessionsProfileCmd `cmd:"" help:"Print a session's current profile in canonical form."`
	Erase         SessionsEraseCmd   `cmd:"" help:"Crypto-erase a session: stop it and destroy its key, so its data can never be read again."`
	SessionOpsCmd `embed:""`         // create, stop, restart, reset-outbox, records (sessions.go)
}

// SessionsEraseCmd crypto-erases one session.
type SessionsEraseCmd struct {
	ID string `arg:"" help:"Session id."`
}

// Run erases after the operator types "erase".
func (c SessionsEraseCmd) Run(ctx context.Context, g *Globals) error {
	fmt.Fprintf(g.stdout, "This destroys session %s's key: its conversation can no longer be read from this machine or any copy made from now on.\n(Backups taken before now still hold the wrapped key and open with the master key: see docs/keys.md.)\nType \"erase\" to go on: ", c.ID)
	answer, _ := daemon.ReadLine(g.stdin)
	if strings.TrimSpace(answer) != "erase" {
		return errors.New("not confirmed; nothing was erased")
	}
	cl, err := adminClient(g)
	if err != nil {
		return err
	}
	if err := cl.EraseSession(ctx, c.ID); err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "session %s erased\n", c.ID)
	return nil
}

// SessionsListCmd lists sessions.
type SessionsListCmd struct{}

// Run lists.
func (SessionsListCmd) Run(ctx context.Context, g *Globals) error {
	cl, err := adminClient(g)
	if err != nil {
		return err
	}
	list, err := cl.ListSessions(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "%-32s  %-7s  %-7s  %s\n", "ID", "STATE", "PROFILE", "BINDING")
	for _, s := range list {
		fmt.Fprintf(g.stdout, "%-32s  %-7s  v%-6d  %s\n", s.ID, s.State, s.ProfileVersion, api.SanitizeLine(s.Binding))
	}
	return nil
}

// SessionsProfileCmd prints a profile.
type SessionsProfileCmd struct {
	ID string `arg:"" help:"Session id."`
}

// Run prints the profile.
func (c SessionsProfileCmd) Run(ctx context.Context, g *Globals) error {
	cl, err := adminClient(g)
	if err != nil {
		return err
	}
	p, err := cl.Profile(ctx, c.ID)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stderr, "# session %s, profile version %d\n", p.Session, p.Version)
	fmt.Fprint(g.stdout, api.SanitizeText(p.Canonical))
	return nil
}
