package doctor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ironclaw/ironclaw/daemon/sandbox"
	"golang.org/x/sys/unix"
)

// checkSandboxStart starts the installed agentd in a real gVisor sandbox
// with the daemon's own flags and OCI spec, but no session key: agentd finds
// an empty handshake on its stdin and exits saying so. That message proves
// the sandbox started and ran the agent; everything it used is removed.
func checkSandboxStart(ctx context.Context, o Options) Check {
	c := Check{Name: "sandbox.start", Needed: true}
	detail, err := startTrivial(ctx, o)
	if err != nil {
		c.Status, c.Detail = Fail, err.Error()
		c.Remedy = "run `ironclaw serve` with log_level=debug and read runsc's error; on cgroup v2 check that the memory and cpu controllers are enabled (see the cgroups lines above)"
		return c
	}
	c.Status, c.Detail = OK, detail
	return c
}

func startTrivial(ctx context.Context, o Options) (string, error) {
	cfg := o.Config
	tmp, err := os.MkdirTemp("", "icd")
	if err != nil {
		return "", err
	}
	root := filepath.Join(tmp, "rs")
	defer func() {
		// runsc bind-mounts a null network namespace under its root.
		_ = unix.Unmount(filepath.Join(root, "null-netns"), unix.MNT_DETACH)
		_ = os.RemoveAll(tmp)
	}()
	for _, d := range []string{"inbox", "outbox"} {
		if err := os.Mkdir(filepath.Join(tmp, d), 0o755); err != nil {
			return "", err
		}
	}
	sock := filepath.Join(tmp, "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		return "", err
	}
	defer l.Close()
	id, err := sandbox.NewID()
	if err != nil {
		return "", err
	}
	want := cfg.Sandbox.RunscDigest
	if want == "" {
		want = o.RunscDigest
	}
	r := &sandbox.Runsc{Path: cfg.Sandbox.Runsc, Root: root, Platform: cfg.Sandbox.Platform, WantDigest: want}
	start := time.Now()
	box, err := r.Start(ctx, sandbox.Spec{
		ID: id, BundleDir: filepath.Join(tmp, "bundle"), AgentPath: cfg.Sandbox.AgentBinary,
		InboxDir: filepath.Join(tmp, "inbox"), OutboxDir: filepath.Join(tmp, "outbox"), SocketPath: sock,
		MemoryBytes: 256 << 20, CPUMillis: 500, TmpBytes: 16 << 20,
	})
	if err != nil {
		return "", err
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	select {
	case <-box.Done():
	case <-wctx.Done():
	}
	stopErr := box.Stop(context.WithoutCancel(ctx))
	st, _ := box.Wait()
	took := time.Since(start).Round(time.Millisecond)
	if wctx.Err() != nil {
		return "", errors.Join(fmt.Errorf("the trivial sandbox did not exit within 60 s"), stopErr)
	}
	// agentd's own words: it ran inside, read its stdin and found no key.
	if !strings.Contains(string(box.Stderr()), "handshake") {
		return "", fmt.Errorf("the sandbox exited (%s) without the agent running: runsc said: %s", st, lastLine(box.Stderr()))
	}
	return fmt.Sprintf("a sandbox of the installed agentd started and exited in %v", took), nil
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 300 {
		s = s[:300]
	}
	return s
}
