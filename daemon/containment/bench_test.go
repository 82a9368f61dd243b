package containment

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/sandbox"
	"github.com/ironclaw/ironclaw/daemon/supervisor"
)

// Benchmarks for docs/benchmarks.md. Run them with:
//
//	go test -run '^$' -bench . -benchtime 20x ./daemon/containment/
//	IRONCLAW_BENCH=1 go test -run TestHundredSandboxes -v ./daemon/containment/
//
// Every comparison is made in the same run, interleaved, on the same machine: these VMs
// are shared and noisy, so only ratios measured together mean anything.

// leaseServer stands in for the session socket: it notes when the agent's first request
// arrives — the agent is then up and has opened its queues: an outbox doorbell for rows it
// wrote before (answered "taken"), else its first lease request — and holds lease requests
// open, as the daemon does while the inbox is empty.
type leaseServer struct {
	srv   *http.Server
	first chan time.Time
}

func newLeaseServer(t testing.TB, path string) *leaseServer {
	t.Helper()
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	ls := &leaseServer{first: make(chan time.Time, 1)}
	ls.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case ls.first <- time.Now():
		default:
		}
		switch r.URL.Path {
		case wire.PathOutboxCommitted:
			var c wire.OutboxCommitted
			if err := json.NewDecoder(r.Body).Decode(&c); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			json.NewEncoder(w).Encode(wire.OutboxTaken{Taken: c.Seq})
		case wire.PathInboxLease:
			<-r.Context().Done()
		default:
			http.NotFound(w, r)
		}
	})}
	go ls.srv.Serve(ln)
	t.Cleanup(func() { ls.srv.Close() })
	return ls
}

// ready waits for the first lease request after a reset.
func (ls *leaseServer) ready(t testing.TB, within time.Duration) time.Time {
	t.Helper()
	select {
	case at := <-ls.first:
		return at
	case <-time.After(within):
		t.Fatalf("no lease request within %v", within)
		return time.Time{}
	}
}

func (ls *leaseServer) reset() {
	select {
	case <-ls.first:
	default:
	}
}

// benchSession makes a session (through the supervisor, so its directories, outbox image
// and profile are real), stops the supervisor, and returns the plan the supervisor would
// start it with.
func benchSession(b testing.TB) (*daemon, supervisor.Plan) {
	d := newDaemon(b, echoPath)
	if got := d.ask("bench", "warm", 30*time.Second); got != "warm" {
		b.Fatalf("warm-up reply %q", got)
	}
	id, key := d.sessionKey("bench")
	d.closeSupervisor()
	_, p, err := d.store.CurrentProfile(context.Background(), id)
	if err != nil {
		b.Fatal(err)
	}
	plan, err := d.sup.SandboxPlan(id, p, (&wire.Handshake{Session: id, Key: *key}).Marshal())
	if err != nil {
		b.Fatal(err)
	}
	return d, plan
}

// BenchmarkColdStart compares, interleaved in one run (medians, ms):
//   - ready: what the supervisor does to start a session — mount the outbox filesystem,
//     build the bundle (copy and hash agentd), `runsc run` with the real Spec — until agentd's
//     first request reaches the session socket;
//   - trivial: `runsc run` of a prebuilt bundle with the same Spec whose program exits at
//     once, start to exit (the floor any sandbox pays);
//   - pool: `runsc start` of a sandbox created ahead with `runsc create` (bundle, outbox
//     mount and key fixed at create time), until agentd's first request.
func BenchmarkColdStart(b *testing.B) {
	d, plan := benchSession(b)
	ls := newLeaseServer(b, plan.Spec.SocketPath)
	ctx := context.Background()
	global := d.runsc.GlobalArgs()
	runsc := func(args ...string) *exec.Cmd {
		cmd := exec.Command(runscPath(), append(slices.Clone(global), args...)...)
		cmd.Env = []string{}
		return cmd
	}
	// The trivial program's bundle: the same Spec, another program.
	triv := plan.Spec
	triv.ID, _ = sandbox.NewID()
	triv.BundleDir = filepath.Join(d.dir, "trivial-bundle")
	triv.AgentPath, triv.AgentSHA256 = trivialPath, ""
	if err := triv.WriteBundle(); err != nil {
		b.Fatal(err)
	}
	var ready, trivial, pool, poolCreate []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// ironclaw: the supervisor's path.
		ls.reset()
		t0 := time.Now()
		if err := sandbox.PrepareOutbox(plan.OutboxDir, plan.OutboxMiB, plan.OutboxInodes); err != nil {
			b.Fatal(err)
		}
		box, err := d.runsc.Start(ctx, plan.Spec)
		if err != nil {
			b.Fatal(err)
		}
		ready = append(ready, ls.ready(b, 30*time.Second).Sub(t0))
		if err := box.Stop(ctx); err != nil {
			b.Fatal(err)
		}
		if err := sandbox.ReleaseOutbox(plan.OutboxDir); err != nil {
			b.Fatal(err)
		}

		// trivial: plain runsc run, start to exit.
		t0 = time.Now()
		if out, err := runsc("run", "-bundle", triv.BundleDir, triv.ID).CombinedOutput(); err != nil {
			b.Fatalf("runsc run trivial: %v: %s", err, out)
		}
		trivial = append(trivial, time.Since(t0))
		sandbox.RemoveCgroups(triv.ID)

		// pool: created ahead, started on demand.
		ps := plan.Spec
		ps.ID, _ = sandbox.NewID()
		ps.BundleDir = filepath.Join(d.dir, "pool-bundle")
		t0 = time.Now()
		if err := sandbox.PrepareOutbox(plan.OutboxDir, plan.OutboxMiB, plan.OutboxInodes); err != nil {
			b.Fatal(err)
		}
		if err := ps.WriteBundle(); err != nil {
			b.Fatal(err)
		}
		pr, pw, err := os.Pipe()
		if err != nil {
			b.Fatal(err)
		}
		pw.Write(ps.Stdin)
		pw.Close()
		// The container's stdio is create's: a file, not a pipe (the sandbox would hold a
		// pipe's write end open, and reading it to EOF would never return).
		logf, err := os.CreateTemp(d.dir, "create-*.log")
		if err != nil {
			b.Fatal(err)
		}
		create := runsc("create", "-bundle", ps.BundleDir, ps.ID)
		create.Stdin, create.Stdout, create.Stderr = pr, logf, logf
		if err := create.Run(); err != nil {
			out, _ := os.ReadFile(logf.Name())
			b.Fatalf("runsc create: %v: %s", err, out)
		}
		pr.Close()
		logf.Close()
		poolCreate = append(poolCreate, time.Since(t0))
		ls.reset()
		t0 = time.Now()
		if out, err := runsc("start", ps.ID).CombinedOutput(); err != nil {
			b.Fatalf("runsc start: %v: %s", err, out)
		}
		pool = append(pool, ls.ready(b, 30*time.Second).Sub(t0))
		if out, err := runsc("delete", "--force", ps.ID).CombinedOutput(); err != nil {
			b.Fatalf("runsc delete: %v: %s", err, out)
		}
		sandbox.RemoveCgroups(ps.ID)
		os.RemoveAll(ps.BundleDir)
		if err := sandbox.ReleaseOutbox(plan.OutboxDir); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	r, tr, p := medianMs(ready), medianMs(trivial), medianMs(pool)
	b.ReportMetric(r, "ready-ms")
	b.ReportMetric(tr, "trivial-run-ms")
	b.ReportMetric(p, "pool-start-ready-ms")
	b.ReportMetric(medianMs(poolCreate), "pool-create-ms")
	b.ReportMetric(r/tr, "ready/trivial")
	b.ReportMetric(p/tr, "pool/trivial")
}

// BenchmarkSendToReplyCold: Supervisor.Send to a session whose sandbox is stopped, until
// the echo reply is delivered: everything a user waits for on a cold conversation.
func BenchmarkSendToReplyCold(b *testing.B) {
	d := newDaemon(b, echoPath, func(c *supervisor.Config) { c.IdleTimeout = 200 * time.Millisecond })
	d.ask("cold", "warm", 30*time.Second)
	id, _ := d.sessionKey("cold")
	var runs []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		d.waitStatus(id, 10*time.Second, "the idle stop", func(st supervisor.Status) bool { return !st.Running })
		b.StartTimer()
		t0 := time.Now()
		if got := d.ask("cold", "ping", 30*time.Second); got != "ping" {
			b.Fatalf("reply %q", got)
		}
		runs = append(runs, time.Since(t0))
	}
	b.ReportMetric(medianMs(runs), "send-to-reply-ms")
}

// BenchmarkIdleMemory: the memory cgroup's usage of idle sandboxes, agentd (started by the
// supervisor, answered one message, waiting for the next) against the trivial program
// sleeping in the same Spec, n of each at once.
func BenchmarkIdleMemory(b *testing.B) {
	const n = 5
	for i := 0; i < b.N; i++ {
		d := newDaemon(b, echoPath)
		var agentIDs []string
		var plans []supervisor.Plan
		for j := range n {
			binding := "mem" + strconv.Itoa(j)
			if got := d.ask(binding, "hi", 30*time.Second); got != "hi" {
				b.Fatalf("reply %q", got)
			}
			id, _ := d.sessionKey(binding)
			st, _ := d.sup.Status(id)
			agentIDs = append(agentIDs, st.ContainerID)
			_, p, _ := d.store.CurrentProfile(context.Background(), id)
			plan, err := d.sup.SandboxPlan(id, p, nil)
			if err != nil {
				b.Fatal(err)
			}
			plans = append(plans, plan)
		}
		var trivIDs []string
		for j, plan := range plans {
			sp := plan.Spec
			sp.ID, _ = sandbox.NewID()
			sp.BundleDir = filepath.Join(d.dir, "triv"+strconv.Itoa(j))
			sp.AgentPath, sp.AgentSHA256, sp.Args = trivialPath, "", []string{"sleep"}
			box, err := d.runsc.Start(context.Background(), sp)
			if err != nil {
				b.Fatal(err)
			}
			defer box.Stop(context.Background())
			trivIDs = append(trivIDs, sp.ID)
		}
		time.Sleep(3 * time.Second) // let both settle
		agent, trivial := meanMemMiB(b, agentIDs), meanMemMiB(b, trivIDs)
		b.ReportMetric(agent, "agentd-MiB")
		b.ReportMetric(trivial, "trivial-MiB")
		b.ReportMetric(agent/trivial, "agentd/trivial")
	}
}

// meanMemMiB averages the memory cgroups' usage of the containers ids.
func meanMemMiB(t testing.TB, ids []string) float64 {
	t.Helper()
	var sum float64
	for _, id := range ids {
		v, err := memoryUsage(id)
		if err != nil {
			t.Fatal(err)
		}
		sum += float64(v) / (1 << 20)
	}
	return sum / float64(len(ids))
}

// memoryUsage reads a container's memory cgroup: memory.usage_in_bytes on cgroup v1 (this
// hybrid layout), memory.current on v2.
func memoryUsage(id string) (int64, error) {
	dirs, err := sandbox.CgroupDirs(id)
	if err != nil {
		return 0, err
	}
	for _, d := range dirs {
		for _, f := range []string{"memory.usage_in_bytes", "memory.current"} {
			if b, err := os.ReadFile(filepath.Join(d, f)); err == nil {
				return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no memory cgroup for %s in %v", id, dirs)
}

// TestHundredSandboxes starts 100 conversations at once on this 2-core machine through the
// real supervisor and agentd, checks each answers, holds them idle, checks each answers
// again, and shuts down. Heavy: run with IRONCLAW_BENCH=1 (CI does not).
func TestHundredSandboxes(t *testing.T) {
	if os.Getenv("IRONCLAW_BENCH") != "1" {
		t.Skip("heavy: set IRONCLAW_BENCH=1 to run 100 sandboxes at once")
	}
	const n = 100
	d := newDaemon(t, echoPath, func(c *supervisor.Config) { c.MaxRunning = n })
	memBefore := memAvailable(t)
	var mu sync.Mutex
	var first, second []time.Duration
	var errs []error
	round := func(text string, into *[]time.Duration) time.Duration {
		start := time.Now()
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for i := range n {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				binding := fmt.Sprintf("hundred-%03d", i)
				ch := d.sup.Subscribe(binding)
				defer d.sup.Unsubscribe(ch)
				t0 := time.Now()
				_, seq, err := d.sup.Send(context.Background(), binding, "bench", text)
				if err == nil {
					err = waitReply(ch, seq, text, 120*time.Second)
				}
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", binding, err))
					return
				}
				*into = append(*into, time.Since(t0))
			}()
		}
		wg.Wait()
		return time.Since(start)
	}
	wall1 := round("first", &first)
	if len(errs) > 0 {
		t.Fatalf("%d of %d sessions failed; first: %v", len(errs), n, errs[0])
	}
	time.Sleep(5 * time.Second) // all idle, waiting for work
	running := 0
	var usage []string
	var sumMiB float64
	sessions, err := d.store.ListSessions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sessions {
		st, ok := d.sup.Status(s.ID)
		if !ok || !st.Running {
			continue
		}
		running++
		v, err := memoryUsage(st.ContainerID)
		if err != nil {
			t.Fatal(err)
		}
		sumMiB += float64(v) / (1 << 20)
		usage = append(usage, st.ContainerID)
	}
	memIdle := memAvailable(t)
	if running != n {
		t.Fatalf("%d sandboxes running, want %d", running, n)
	}
	wall2 := round("second", &second)
	if len(errs) > 0 {
		t.Fatalf("%d of %d sessions failed in the second round; first: %v", len(errs), n, errs[0])
	}
	t0 := time.Now()
	d.closeSupervisor()
	closeTime := time.Since(t0)
	t.Logf("100 sandboxes at once (agentd, %d MiB memory limit each):", d.cfg.MemoryMiB)
	t.Logf("  first message, all %d sessions (cold start, 8 at a time): wall %v, per-session send→reply median %.0f ms, p95 %.0f ms, max %.0f ms",
		n, wall1.Round(time.Millisecond), medianMs(first), pctMs(first, 95), pctMs(first, 100))
	t.Logf("  second message (warm, idle sandboxes): wall %v, median %.1f ms, p95 %.1f ms", wall2.Round(time.Millisecond), medianMs(second), pctMs(second, 95))
	t.Logf("  idle: %d running, memory cgroups sum %.0f MiB (mean %.1f MiB per sandbox); host MemAvailable dropped %.0f MiB",
		running, sumMiB, sumMiB/float64(running), float64(memBefore-memIdle)/(1<<20))
	t.Logf("  graceful shutdown of all %d: %v", n, closeTime.Round(time.Millisecond))
}

func waitReply(ch chan supervisor.Reply, seq uint64, want string, within time.Duration) error {
	deadline := time.After(within)
	for {
		select {
		case r := <-ch:
			if r.InReplyTo == seq {
				if r.Text != want {
					return fmt.Errorf("reply %q, want %q", r.Text, want)
				}
				return nil
			}
		case <-deadline:
			return errors.New("no reply in time")
		}
	}
}

func memAvailable(t testing.TB) int64 {
	t.Helper()
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemAvailable:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no MemAvailable in /proc/meminfo")
	return 0
}

func medianMs(ds []time.Duration) float64 { return pctMs(ds, 50) }

// pctMs returns the p-th percentile (nearest rank) in milliseconds.
func pctMs(ds []time.Duration, p int) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	i = min(max(i-1, 0), len(s)-1)
	return float64(s[i].Microseconds()) / 1000
}
