package console

import (
	"fmt"
	"sync/atomic"
	"time"

	tea "charm.land/bubbletea/v2"
	"charm.land/ssh"
)

// inputSession is a console session whose operator input is timestamped:
// only what the operator sends counts as activity. The console redraws
// itself as the daemon changes, and the SSH server's own idle timeout
// counts those writes as traffic, so an unattended console with a busy
// daemon behind it would otherwise never time out.
type inputSession struct {
	ssh.Session
	last   atomic.Int64 // unix nanoseconds of the last byte the operator sent
	idled  atomic.Bool  // closed for idleness
	closed chan struct{}
}

func newInputSession(sess ssh.Session) *inputSession {
	in := &inputSession{Session: sess, closed: make(chan struct{})}
	in.last.Store(time.Now().UnixNano())
	return in
}

func (s *inputSession) Read(p []byte) (int, error) {
	n, err := s.Session.Read(p)
	if n > 0 {
		s.last.Store(time.Now().UnixNano())
	}
	return n, err
}

// quitWhenIdle ends prog once the operator has sent nothing for the idle
// timeout, audited; it returns when in.closed is closed. The caller tells
// the operator why once the console has given the terminal back.
func (s *Server) quitWhenIdle(in *inputSession, prog *tea.Program, actor, remote string) {
	idle := s.cfg.IdleTimeout
	t := time.NewTicker(max(min(idle/8, 10*time.Second), 50*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-in.closed:
			return
		case <-t.C:
		}
		if time.Since(time.Unix(0, in.last.Load())) < idle {
			continue
		}
		// Closing is the safe direction: it happens even if the audit
		// log cannot record it, and the failure is logged.
		if err := s.cfg.Audit(actor, "console.idle", remote, fmt.Sprintf("no input for %s", idle)); err != nil {
			s.cfg.Log.Error("console: auditing an idle close", "err", err)
		}
		in.idled.Store(true)
		prog.Quit()
		return
	}
}
