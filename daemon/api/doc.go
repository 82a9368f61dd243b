// Package api is the seam every operator surface uses: the admin socket and
// the `ironclaw` command line, the SSH console (tui/), and later Matrix
// notices. It holds plain types, narrow interfaces and errors, and nothing
// else.
//
// What it must never do:
//   - import anything but the standard library (a test over `go list -deps`
//     proves it), so that tui/ can be built and tested against it alone;
//   - take an actor argument. A value implementing Operator is bound, when it
//     is made, to the one operator who authenticated (SO_PEERCRED on the
//     admin socket, the SSH key on the console). Who approved a change comes
//     from that binding, never from anything a request carries.
//
// Text in these types that came from an agent, a chat, a profile or a
// config (reasons, diffs, transcripts, bindings, audit fields) is untrusted:
// pass it through package sanitize before it reaches a terminal.
package api
