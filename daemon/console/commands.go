package console

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/ironclaw/ironclaw/daemon/api"
)

// runCommand serves the read-only script commands and returns the exit
// code. Nothing here changes anything: decisions take the console.
func runCommand(ctx context.Context, op api.Operator, args []string, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "ironclaw: error: %s\n", api.SanitizeLine(err.Error()))
		return 1
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	// The flag package echoes what it could not parse: collect it and
	// sanitise it like every other string on its way to a terminal.
	var flagOut bytes.Buffer
	fs.SetOutput(&flagOut)
	asJSON := fs.Bool("json", false, "print JSON (required)")
	all := fs.Bool("all", false, "approvals: include decided requests")
	contains := fs.String("contains", "", "audit: only entries containing this text")
	limit := fs.Int("limit", 0, "audit: the newest N entries (default 1000)")
	usage := "commands: approvals --json [--all] | sessions --json | audit --json [--contains TEXT] [--limit N] | devices --json; without a command, the console"
	switch args[0] {
	case "approvals", "sessions", "audit", "devices":
	default:
		fmt.Fprintf(stderr, "ironclaw: error: unknown command %q\nironclaw: hint: %s\n", api.SanitizeLine(args[0]), usage)
		return 2
	}
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() > 0 || !*asJSON {
		fmt.Fprint(stderr, api.SanitizeText(flagOut.String()))
		fmt.Fprintf(stderr, "ironclaw: hint: %s\n", usage)
		return 2
	}
	var v any
	var err error
	switch args[0] {
	case "approvals":
		v, err = op.ListChanges(ctx, api.ChangeFilter{All: *all})
	case "sessions":
		v, err = op.ListSessions(ctx)
	case "audit":
		v, err = op.AuditEntries(ctx, api.AuditQuery{Contains: *contains, Limit: *limit})
	case "devices":
		v, err = op.MatrixDevices(ctx)
	}
	if err != nil {
		return fail(err)
	}
	data, err := MarshalJSON(v)
	if err != nil {
		return fail(err)
	}
	stdout.Write(append(data, '\n'))
	return 0
}

// MarshalJSON is json.Marshal with every character the terminal sanitiser
// would escape written as a JSON \u escape instead: the same data for a
// script, nothing that can drive the terminal it may be printed on.
func MarshalJSON(v any) ([]byte, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r < utf8.RuneSelf && r >= 0x20 && r != 0x7f {
			b.WriteByte(data[i])
			i++
			continue
		}
		if r == utf8.RuneError && size == 1 {
			// Not UTF-8 (only a value that marshals itself can carry it):
			// what json.Marshal makes of such a byte in a string.
			b.WriteString(`\ufffd`)
		} else if !api.UnsafeRune(r) {
			b.Write(data[i : i+size])
		} else if r > 0xffff {
			r -= 0x10000
			fmt.Fprintf(&b, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
		} else {
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		i += size
	}
	return b.Bytes(), nil
}
