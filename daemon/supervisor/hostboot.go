package supervisor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/ironclaw/ironclaw/daemon/durable"
	"github.com/ironclaw/ironclaw/daemon/queue"
	"github.com/ironclaw/ironclaw/daemon/sandbox"
)

// The agent commits its outbox without waiting for the disk (agentd/outbox:
// synchronous=OFF). That is safe against everything that can happen to an
// agent or a daemon — a killed agent, sandbox or daemon leaves its writes in
// the host's page cache, journal first — and the daemon takes every row
// into its own fsynced store on the doorbell that follows the commit. Only
// the host going down can leave an outbox torn (the unjournaled filesystem
// image with it), and the daemon would then refuse it as hostile.
//
// So a sandbox's start is marked in its session's directory with the host's
// boot id (outboxBootFile, written and fsynced before runsc starts, removed
// when the sandbox is torn down). Found at the next start with another
// boot's id, the mark says the host went down while that agent could be
// writing: the outbox (image and all) is discarded, audited, and the agent
// starts from the daemon's record. What the daemon had not taken yet — the
// turn in flight — is done again; nothing the daemon took is lost. The mark
// lives in the session's directory, which the agent cannot reach.
const outboxBootFile = "outbox.boot"

// hostBootID reads the running kernel's boot id.
func hostBootID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", err
	}
	id := strings.TrimSpace(string(b))
	if id == "" {
		return "", errors.New("/proc/sys/kernel/random/boot_id is empty")
	}
	return id, nil
}

// resetAfterHostRestart discards c's outbox if its last sandbox was running
// when the host went down (see outboxBootFile). Call it before the outbox
// filesystem is mounted for a start.
func (s *Supervisor) resetAfterHostRestart(c *conv) error {
	mark := filepath.Join(s.sessionDir(c.id), outboxBootFile)
	was, err := os.ReadFile(mark)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("supervisor: session %s: %w", c.id, err)
	case strings.TrimSpace(string(was)) == s.boot:
		return nil // the daemon restarted, not the host: the outbox is intact
	}
	if err := s.audit("daemon", "outbox.reset", c.id.String(), "", "the host restarted while its sandbox ran: the outbox is discarded and the agent goes on from the daemon's record"); err != nil {
		return fmt.Errorf("supervisor: audit: %w", err)
	}
	err = sandbox.ReleaseOutbox(s.outboxDir(c.id))
	if err == nil {
		err = queue.ResetOutbox(s.sessionDir(c.id), queue.Owner{UID: AgentUID, GID: AgentUID})
	}
	if err == nil {
		err = durable.Remove(mark)
	}
	if err != nil {
		return fmt.Errorf("supervisor: session %s: discarding the outbox after a host restart: %w", c.id, err)
	}
	s.cfg.Log.Warn("the host restarted while this session's sandbox ran: its outbox was discarded; the turn in flight is done again", "session", c.id.String())
	return nil
}

// markOutboxBoot records, durably, that c's sandbox starts in this boot.
func (s *Supervisor) markOutboxBoot(c *conv) error {
	if err := durable.WriteFile(filepath.Join(s.sessionDir(c.id), outboxBootFile), []byte(s.boot+"\n"), 0o600); err != nil {
		return fmt.Errorf("supervisor: session %s: marking the sandbox's start: %w", c.id, err)
	}
	return nil
}

// clearOutboxBoot removes the mark once c's sandbox is torn down and its
// outbox collected and unmounted (a clean stop). Not made durable: a mark
// that comes back after a crash costs only the reset of an intact outbox.
func (s *Supervisor) clearOutboxBoot(c *conv) error {
	if err := os.Remove(filepath.Join(s.sessionDir(c.id), outboxBootFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
