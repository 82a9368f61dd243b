package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"
)

const (
	// StopGrace is how long Stop lets the agent handle SIGTERM before it sends SIGKILL.
	StopGrace = 3 * time.Second
	// killWait is how long Stop waits after SIGKILL through runsc before it kills the
	// `runsc run` process group itself.
	killWait = 2 * time.Second
	// waitDelay bounds how long Wait keeps copying output after runsc exits, in case a
	// leftover process still holds the output pipes.
	waitDelay = 5 * time.Second
	// runscCmdTimeout bounds each control command (kill, delete).
	runscCmdTimeout = 10 * time.Second
)

// ExitStatus is how a sandbox ended, as reported by `runsc run`, which stays our child for
// exactly this reason (`runsc wait` loses the status of an exited container).
type ExitStatus struct {
	// Code is runsc's exit code: the agent's exit code, or 128+n if the agent died of
	// signal n (137 on SIGKILL or OOM). It is -1 if runsc itself was killed by a signal.
	Code int
	// Signal is the signal that killed `runsc run` itself, 0 if it exited.
	Signal syscall.Signal
}

// Success reports whether the agent exited with code 0.
func (e ExitStatus) Success() bool { return e.Code == 0 && e.Signal == 0 }

func (e ExitStatus) String() string {
	if e.Signal != 0 {
		return "runsc killed by " + e.Signal.String()
	}
	return "exit code " + strconv.Itoa(e.Code)
}

// Sandbox is one running (or finished) gVisor sandbox. Always call Stop, even after Wait has
// returned: Stop is what removes the container state, leaked cgroups and the bundle.
type Sandbox struct {
	id        string
	bundleDir string
	runscPath string
	global    []string // runsc global flags, repeated on every subcommand

	cmd            *exec.Cmd
	stdout, stderr *boundedBuffer

	done    chan struct{} // closed when `runsc run` has been reaped
	status  ExitStatus
	waitErr error

	stopMu  sync.Mutex
	stopped bool
	stopErr error
}

// Start builds the bundle for spec and starts the agent in a new gVisor sandbox, as a child
// of this process. It fails — and leaves nothing behind — if runsc does not pass its checks:
// there is no unsandboxed mode.
//
// ctx bounds only the start-up; the sandbox lives until it exits or Stop is called (a
// cancelled ctx must not orphan a sandbox by killing runsc behind its back).
//
// spec.Stdin is written into a pipe before runsc starts, the pipe's write end is closed,
// and the read end becomes the agent's stdin: the secret is in kernel pipe memory only, not
// in argv, the environment, the bundle or runsc's state.
func (r *Runsc) Start(ctx context.Context, spec Spec) (*Sandbox, error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	if err := r.ensure(ctx); err != nil {
		return nil, fmt.Errorf("start sandbox %s: %w", spec.ID, err)
	}
	var cu cleanup
	defer cu.clean()

	root := r.root()
	if err := ensureStateRoot(root); err != nil {
		return nil, fmt.Errorf("start sandbox %s: %w", spec.ID, err)
	}
	// Only a bundle directory this call created is ever removed on failure.
	if err := makeBundleDir(spec.BundleDir); err != nil {
		return nil, fmt.Errorf("start sandbox %s: %w", spec.ID, err)
	}
	cu.add(func() { _ = os.RemoveAll(spec.BundleDir) })
	if err := spec.fillBundle(); err != nil {
		return nil, fmt.Errorf("start sandbox %s: %w", spec.ID, err)
	}

	stdin, err := secretPipe(spec.Stdin)
	if err != nil {
		return nil, fmt.Errorf("start sandbox %s: %w", spec.ID, err)
	}
	// Our copy of the read end is closed in every case; after cmd.Start the child has its own.
	defer stdin.Close()

	s := &Sandbox{
		id:        spec.ID,
		bundleDir: spec.BundleDir,
		runscPath: r.path(),
		global:    r.globalArgs(),
		stdout:    newBoundedBuffer(OutputLimit),
		stderr:    newBoundedBuffer(OutputLimit),
		done:      make(chan struct{}),
	}
	args := append(slices.Clone(s.global), "run", "-bundle", spec.BundleDir, spec.ID)
	// exec.Command, not CommandContext: see the ctx note above.
	cmd := exec.Command(s.runscPath, args...)
	cmd.Stdin = stdin
	cmd.Stdout = s.stdout
	cmd.Stderr = s.stderr
	cmd.Env = []string{} // the daemon's environment may hold credentials: pass none
	cmd.Dir = "/"
	cmd.WaitDelay = waitDelay
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Own process group: a terminal's ^C to the daemon is not forwarded into the sandbox,
		// and Stop can kill runsc's whole group as a last resort.
		Setpgid: true,
		// If the daemon dies, runsc run dies with it. The sandbox itself may survive as an
		// orphan (measured): the daemon reaps orphans and leaked cgroups at start.
		Pdeathsig: syscall.SIGKILL,
	}
	s.cmd = cmd

	// runsc may leak a cgroup even when it fails early: undo that too.
	cu.add(func() { _ = RemoveCgroups(spec.ID) })
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start sandbox %s: %w", spec.ID, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start sandbox %s: exec runsc: %w", spec.ID, err)
	}
	go s.reap()
	// From here the process exists: a later failure must kill and delete it too.
	cu.add(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
		_, _ = s.runsc(context.Background(), "delete", "--force", s.id)
	})

	cu.release()
	return s, nil
}

// secretPipe returns the read end of a pipe that holds secret followed by EOF. The secret is
// at most MaxStdin bytes, below the pipe capacity, so the write cannot block.
func secretPipe(secret []byte) (*os.File, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("stdin pipe: %w", err)
	}
	if len(secret) > 0 {
		if _, err := pw.Write(secret); err != nil {
			pr.Close()
			pw.Close()
			return nil, fmt.Errorf("write stdin pipe: %w", err)
		}
	}
	if err := pw.Close(); err != nil {
		pr.Close()
		return nil, fmt.Errorf("close stdin pipe: %w", err)
	}
	return pr, nil
}

// ensureStateRoot creates runsc's state directory (0700) or checks an existing one: whoever
// can write there can forge container state that root's runsc will act on.
func ensureStateRoot(root string) error {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return fmt.Errorf("create runsc state root: %w", err)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(root, &st); err != nil {
		return fmt.Errorf("stat runsc state root: %w", err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFDIR || st.Uid != uint32(os.Geteuid()) || st.Mode&0o022 != 0 {
		return fmt.Errorf("runsc state root %s must be a directory owned by uid %d and not writable by others (mode %o, uid %d): fix it or choose another Runsc.Root",
			root, os.Geteuid(), st.Mode&0o7777, st.Uid)
	}
	return nil
}

// reap waits for `runsc run` and records how it ended.
func (s *Sandbox) reap() {
	err := s.cmd.Wait()
	s.status, s.waitErr = exitStatus(s.cmd.ProcessState, err)
	close(s.done)
}

func exitStatus(ps *os.ProcessState, err error) (ExitStatus, error) {
	if ps == nil {
		return ExitStatus{Code: -1}, fmt.Errorf("wait for runsc: %w", err)
	}
	var st ExitStatus
	ws, _ := ps.Sys().(syscall.WaitStatus)
	switch {
	case ws.Signaled():
		st = ExitStatus{Code: -1, Signal: ws.Signal()}
	default:
		st = ExitStatus{Code: ws.ExitStatus()}
	}
	var ee *exec.ExitError
	if err == nil || errors.As(err, &ee) || errors.Is(err, exec.ErrWaitDelay) {
		// A non-zero exit is a status, not an error; ErrWaitDelay only means a leftover
		// process held the output pipes open (Stop deals with leftovers).
		return st, nil
	}
	return st, fmt.Errorf("wait for runsc: %w", err)
}

// ID returns the container id.
func (s *Sandbox) ID() string { return s.id }

// Pid returns the pid of the `runsc run` process (the sandbox's processes are its children).
func (s *Sandbox) Pid() int { return s.cmd.Process.Pid }

// Done is closed once the sandbox has exited and its status is known.
func (s *Sandbox) Done() <-chan struct{} { return s.done }

// Wait blocks until the sandbox exits and returns the real exit status. The error is
// non-nil only if the status could not be collected; a non-zero exit is not an error. It
// may be called any number of times, from any goroutine.
func (s *Sandbox) Wait() (ExitStatus, error) {
	<-s.done
	return s.status, s.waitErr
}

// Stdout returns the last OutputLimit bytes the agent (and runsc) wrote to stdout.
// Untrusted: sanitise before showing it on a terminal, never parse it as a command.
func (s *Sandbox) Stdout() []byte { b, _ := s.stdout.snapshot(); return b }

// Stderr returns the last OutputLimit bytes written to stderr (the agent's and runsc's own
// error messages). Untrusted, like Stdout.
func (s *Sandbox) Stderr() []byte { b, _ := s.stderr.snapshot(); return b }

// Stop ends the sandbox and removes everything it left: SIGTERM, then SIGKILL after
// StopGrace (at once if ctx is done), then `runsc delete --force`, the container's cgroups
// and the bundle. Cleanup runs even when ctx is done: a cancelled caller must not leak a
// sandbox. It is idempotent and safe to call after the sandbox exited on its own.
func (s *Sandbox) Stop(ctx context.Context) error {
	s.stopMu.Lock()
	defer s.stopMu.Unlock()
	if s.stopped {
		return s.stopErr
	}
	var errs []error
	if !s.exited() {
		s.terminate(ctx)
	}
	if !s.exited() {
		errs = append(errs, fmt.Errorf("stop sandbox %s: runsc (pid %d) did not exit after SIGKILL", s.id, s.Pid()))
	}
	bg := context.WithoutCancel(ctx)
	// delete --force also kills a sandbox orphaned by a killed `runsc run`; for a container
	// that no longer exists it succeeds.
	if _, err := s.runsc(bg, "delete", "--force", s.id); err != nil {
		errs = append(errs, fmt.Errorf("stop sandbox %s: %w", s.id, err))
	}
	if err := RemoveCgroups(s.id); err != nil {
		errs = append(errs, fmt.Errorf("stop sandbox %s: %w", s.id, err))
	}
	if err := os.RemoveAll(s.bundleDir); err != nil {
		errs = append(errs, fmt.Errorf("stop sandbox %s: remove bundle: %w", s.id, err))
	}
	s.stopped = true
	s.stopErr = errors.Join(errs...)
	return s.stopErr
}

// terminate escalates until `runsc run` has exited: SIGTERM through runsc, SIGKILL through
// runsc after StopGrace, then SIGKILL to runsc's own process group.
func (s *Sandbox) terminate(ctx context.Context) {
	bg := context.WithoutCancel(ctx)
	if ctx.Err() == nil {
		deadline := time.Now().Add(StopGrace)
		// The container may not exist yet when Stop follows Start closely: retry until the
		// signal lands or the grace period ends.
		for !s.exited() && ctx.Err() == nil && time.Now().Before(deadline) {
			if _, err := s.runsc(bg, "kill", s.id, strconv.Itoa(int(syscall.SIGTERM))); err == nil {
				break
			}
			s.waitUntil(ctx, time.Now().Add(50*time.Millisecond))
		}
		if s.waitUntil(ctx, deadline) {
			return
		}
	}
	_, _ = s.runsc(bg, "kill", s.id, strconv.Itoa(int(syscall.SIGKILL)))
	if s.waitUntil(bg, time.Now().Add(killWait)) {
		return
	}
	// runsc itself is stuck, or the container never came up: kill its process group.
	_ = syscall.Kill(-s.Pid(), syscall.SIGKILL)
	s.waitUntil(bg, time.Now().Add(waitDelay+killWait))
}

// waitUntil waits for the sandbox to exit, at most until deadline or until ctx is done, and
// reports whether it has exited.
func (s *Sandbox) waitUntil(ctx context.Context, deadline time.Time) bool {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-s.done:
	case <-t.C:
	case <-ctx.Done():
	}
	return s.exited()
}

func (s *Sandbox) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// runsc runs a control subcommand with the same global flags as `runsc run`.
func (s *Sandbox) runsc(ctx context.Context, args ...string) ([]byte, error) {
	return runControl(ctx, s.runscPath, s.global, args...)
}

// runControl runs `runsc <global> <args>` with no environment, bounded by runscCmdTimeout.
func runControl(ctx context.Context, path string, global []string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, runscCmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, append(slices.Clone(global), args...)...)
	cmd.Env = []string{}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("runsc %s: %w: %s", args[0], err, truncate(out, 500))
	}
	return out, nil
}
