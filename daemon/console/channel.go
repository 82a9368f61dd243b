package console

import (
	"charm.land/ssh"
	gossh "golang.org/x/crypto/ssh"
)

// sessionChannel is ssh.DefaultSessionHandler behind a filter of the
// session's requests: the library would accept any "env" and say yes to
// agent forwarding; the console says no to both, and to anything else it
// does not serve.
func (s *Server) sessionChannel(srv *ssh.Server, conn *gossh.ServerConn, newChan gossh.NewChannel, ctx ssh.Context) {
	ssh.DefaultSessionHandler(srv, conn, filteredChannel{newChan}, ctx)
}

type filteredChannel struct{ gossh.NewChannel }

func (f filteredChannel) Accept() (gossh.Channel, <-chan *gossh.Request, error) {
	ch, reqs, err := f.NewChannel.Accept()
	if err != nil {
		return ch, reqs, err
	}
	out := make(chan *gossh.Request)
	go func() {
		defer close(out)
		for r := range reqs {
			if !allowedRequest(r) {
				if r.WantReply {
					r.Reply(false, nil)
				}
				continue
			}
			out <- r
		}
	}()
	return ch, out, nil
}

// allowedRequest is the console's whole session vocabulary.
func allowedRequest(r *gossh.Request) bool {
	switch r.Type {
	case "pty-req", "window-change", "shell", "exec":
		return true
	case "env":
		var kv struct{ Key, Value string }
		return gossh.Unmarshal(r.Payload, &kv) == nil && kv.Key == "TERM"
	}
	// auth-agent-req@openssh.com, x11-req, subsystem, signal, break, …
	return false
}
