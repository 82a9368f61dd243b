package session

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/queue"
	"github.com/ironclaw/ironclaw/daemon/sandbox"
	"golang.org/x/sys/unix"
)

// These tests run the real agentd inside real gVisor sandboxes: the wall's
// core mechanism (sealed queues read across the gVisor kernel boundary under
// leases) proved where it matters. They fail, never skip, without runsc.

var (
	buildOnce  sync.Once
	agentdPath string
	buildErr   error
	runscRoot  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if runscRoot != "" {
		unix.Unmount(filepath.Join(runscRoot, "null-netns"), unix.MNT_DETACH)
		os.RemoveAll(runscRoot)
	}
	if agentdPath != "" {
		os.RemoveAll(filepath.Dir(agentdPath))
	}
	os.Exit(code)
}

// testRunsc returns the pinned runsc and a freshly built static agentd.
func testRunsc(t testing.TB) (*sandbox.Runsc, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the wall tests run sandboxes and must run as root (CI does)")
	}
	path := os.Getenv("IRONCLAW_RUNSC")
	if path == "" {
		path = sandbox.DefaultPath
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("runsc not found at %s (%v): run `.ci/install-runsc.sh` (or `just setup`)", path, err)
	}
	digest, err := sandbox.ParseDigestFile(filepath.Join("..", "..", "images", "runsc.sha256"))
	if err != nil {
		t.Fatal(err)
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "icagentd")
		if err != nil {
			buildErr = err
			return
		}
		agentdPath = filepath.Join(dir, "agentd")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", agentdPath, "../testdata/echo") // agentd's loop with agent.Echo
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("building agentd: %v\n%s", err, out)
		}
		runscRoot, buildErr = os.MkdirTemp("/tmp", "icrs")
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return &sandbox.Runsc{Path: path, Root: runscRoot, WantDigest: digest}, agentdPath
}

// startAgent runs agentd in a sandbox wired to the rig.
func startAgent(t testing.TB, r *rig) *sandbox.Sandbox {
	t.Helper()
	rs, agentd := testRunsc(t)
	hs := (&wire.Handshake{Session: r.id, Key: r.key}).Marshal()
	box, err := rs.Start(context.Background(), sandbox.Spec{
		ID:          sandbox.IDPrefix + r.id.String(),
		BundleDir:   filepath.Join(filepath.Dir(filepath.Dir(r.dir)), "bundle"),
		AgentPath:   agentd,
		InboxDir:    filepath.Join(r.dir, wire.InboxDir),
		OutboxDir:   filepath.Join(r.dir, wire.OutboxDir),
		SocketPath:  r.sock,
		Stdin:       hs,
		MemoryBytes: 256 << 20,
		CPUMillis:   1000,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { box.Stop(context.Background()) })
	return box
}

var agentOwner = queue.Owner{UID: 65534, GID: 65534}

// The stress test: thousands of rows, with multi-megabyte transactions
// mixed in, written while the sandboxed agent reads. The agent checks every
// row it reads (sealed for its place, contiguous) and dies on any fault;
// the daemon checks every reply (contiguous, exact text), which also proves
// the outbox direction. Zero faults allowed.
func TestWallUnderRunsc(t *testing.T) {
	r := newRig(t, agentOwner)
	box := startAgent(t, r)
	const n, size = 6000, 700
	start := time.Now()
	for i := 1; i <= n; {
		batch := 40
		if i%1500 == 1 {
			batch = 1400 // ~1 MB in one transaction
		}
		to := min(n, i+batch-1)
		r.send(t, i, to, batch, size)
		i = to + 1
	}
	r.waitDelivered(t, n, 2*time.Minute)
	select {
	case <-box.Done():
		st, _ := box.Wait()
		t.Fatalf("agent died (%s): %s", st, box.Stderr())
	default:
	}
	r.verify(t, n, size)
	t.Logf("%d rows through the wall in %v; writer paused %v by leases", n, time.Since(start), r.wall.Leases().Paused())
	if err := r.wall.Failed(); err != nil {
		t.Fatal(err)
	}
}

// A restarted sandbox resumes exactly where it stopped: nothing lost,
// nothing answered twice.
func TestRestartResumesUnderRunsc(t *testing.T) {
	r := newRig(t, agentOwner)
	box := startAgent(t, r)
	r.send(t, 1, 50, 10, 100)
	r.waitDelivered(t, 50, 30*time.Second)
	box.Stop(context.Background())
	r.send(t, 51, 80, 7, 100) // written while no agent runs
	startAgent(t, r)
	r.waitDelivered(t, 80, 30*time.Second)
	r.verify(t, 80, 100)
}

// Commit → the agent has the row ("seen", from the time the agent seals
// into its reply) and commit → reply delivered, p50 and p99, in-process agent
// (the baseline: no sandbox) against the sandboxed one, in the same run.
// Goal: seen p50 ≤ 5 ms.
func BenchmarkDoorbellRoundTrip(b *testing.B) {
	for _, mode := range []string{"in-process", "runsc"} {
		b.Run(mode, func(b *testing.B) {
			r := newRig(b, agentOwner)
			if mode == "runsc" {
				startAgent(b, r)
			} else {
				ctx, cancel := context.WithCancel(context.Background())
				done := runAgent(ctx, b, r)
				defer func() { cancel(); <-done }()
			}
			// Warm up: the first message also waits for the agent to start.
			r.send(b, 1, 1, 1, 64)
			r.waitDelivered(b, 1, 30*time.Second)
			lat := make([]time.Duration, 0, b.N)
			seen := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				t0 := time.Now()
				r.send(b, i+2, i+2, 1, 64)
				r.waitDeliveredSpin(b, i+2)
				lat = append(lat, time.Since(t0))
				// The agent stamps its reply when it starts writing it, right
				// after reading the row: commit → agent has the row. (gVisor
				// reads the host's clock.)
				r.mu.Lock()
				seen = append(seen, r.written[i+1].Sub(t0))
				r.mu.Unlock()
			}
			b.StopTimer()
			pct := func(d []time.Duration, p int) float64 {
				sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
				return float64(d[len(d)*p/100].Microseconds()) / 1000
			}
			b.ReportMetric(pct(seen, 50), "seen-p50-ms")
			b.ReportMetric(pct(seen, 99), "seen-p99-ms")
			b.ReportMetric(pct(lat, 50), "p50-ms")
			b.ReportMetric(pct(lat, 99), "p99-ms")
		})
	}
}

func (r *rig) waitDeliveredSpin(t testing.TB, n int) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if got, err := r.delivered(); err != nil {
			t.Fatal(err)
		} else if got >= n {
			return
		}
		time.Sleep(50 * time.Microsecond)
	}
	t.Fatal(errors.New("reply did not arrive in 10 s"))
}

// TestLeaseOverhead measures the share of time the daemon's writer waits on
// read leases with 1, 10 and 50 sandboxed sessions busy at once. It prints a
// table; run it with IRONCLAW_BENCH=1 (it takes a minute).
func TestLeaseOverhead(t *testing.T) {
	if os.Getenv("IRONCLAW_BENCH") == "" {
		t.Skip("set IRONCLAW_BENCH=1 to measure lease overhead (slow)")
	}
	const dur = 10 * time.Second
	t.Logf("%-9s %-12s %-14s %s", "sessions", "rows sent", "writer paused", "paused %")
	for _, k := range []int{1, 10, 50} {
		rigs := make([]*rig, k)
		for i := range rigs {
			rigs[i] = newRig(t, agentOwner)
			startAgent(t, rigs[i])
		}
		var wg sync.WaitGroup
		sent := make([]int, k)
		for i, r := range rigs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				end := time.Now().Add(dur)
				for n := 1; time.Now().Before(end); n++ {
					if _, err := r.wall.Send(context.Background(), wire.Message{Text: message(n, 200)}); err != nil {
						t.Error(err)
						return
					}
					sent[i] = n
					time.Sleep(20 * time.Millisecond) // ~50 rows/s per session
				}
			}()
		}
		wg.Wait()
		var paused time.Duration
		total := 0
		for i, r := range rigs {
			paused += r.wall.Leases().Paused()
			total += sent[i]
			r.waitDelivered(t, sent[i], time.Minute)
			r.verify(t, sent[i], 200)
		}
		avg := paused / time.Duration(k)
		t.Logf("%-9d %-12d %-14v %.2f%%", k, total, avg, 100*float64(avg)/float64(dur))
		for _, r := range rigs {
			r.wall.Close()
		}
	}
}
