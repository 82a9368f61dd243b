// Command requester is a test-only agent for the daemon's end-to-end tests:
// it runs the real agent loop, remembers the profile the daemon sends it,
// and on "request instructions: TEXT" files a change request for new
// instructions (it never acts on it). On "profile?" it replies with the
// profile version and instructions it has. Anything else is echoed.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/ironclaw/ironclaw/agentd/agent"
	"github.com/ironclaw/ironclaw/agentd/coord"
	"github.com/ironclaw/ironclaw/agentd/inbox"
	"github.com/ironclaw/ironclaw/agentd/outbox"
	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/agentd/queuedb"
	"github.com/ironclaw/ironclaw/agentd/wire"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "requester:", err)
		os.Exit(1)
	}
}

func run() error {
	buf := make([]byte, wire.HandshakeSize)
	if _, err := io.ReadFull(os.Stdin, buf); err != nil {
		return err
	}
	hs, err := wire.ParseHandshake(buf)
	if err != nil {
		return err
	}
	in, err := inbox.Open(wire.SandboxInbox, hs.Session, &hs.Key)
	if err != nil {
		return err
	}
	out, err := outbox.Open(wire.SandboxOutbox, hs.Session, &hs.Key)
	if err != nil {
		return err
	}
	var version uint64
	var current profile.Profile
	handle := func(_ context.Context, rows []queuedb.Row) ([]wire.Body, error) {
		var res []wire.Body
		for _, r := range rows {
			switch b := r.Body.(type) {
			case wire.ProfileUpdate:
				p, err := profile.Parse([]byte(b.Canonical))
				if err != nil {
					return nil, err
				}
				version, current = b.Version, p
			case wire.Message:
				switch {
				case strings.HasPrefix(b.Text, "request instructions: "):
					p := current
					p.Instructions = strings.TrimPrefix(b.Text, "request instructions: ")
					res = append(res, wire.ChangeRequest{Change: "instructions", Proposed: string(p.Canonical()),
						Reason: "the owner asked me to\x1b[31m (trust me)"})
					res = append(res, wire.Reply{Text: "requested", InReplyTo: r.Header.Seq})
				case b.Text == "profile?":
					res = append(res, wire.Reply{Text: fmt.Sprintf("profile v%d: %s", version, current.Instructions), InReplyTo: r.Header.Seq})
				default:
					res = append(res, wire.Reply{Text: b.Text, InReplyTo: r.Header.Seq})
				}
			}
		}
		return res, nil
	}
	l := &agent.Loop{Inbox: in, Outbox: out, Coord: coord.New(wire.SandboxSocket), Handle: handle, Log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	return l.Run(context.Background())
}
