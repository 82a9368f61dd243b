package containment

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/audit"
	"github.com/ironclaw/ironclaw/daemon/queue"
	"github.com/ironclaw/ironclaw/daemon/session"
	"github.com/ironclaw/ironclaw/daemon/supervisor"
)

// shapes are the hostile outboxes of testdata/evil, with the refusal classes that
// prove the right guard caught each (more than one where the agent races the daemon or
// two guards overlap).
var shapes = []struct {
	name    string
	classes []string
}{
	// 1,000 MiB apparent on a 16 MiB filesystem: the filesystem's size caps the copy,
	// and the blocks behind it would refuse it anyway.
	{"sparse", []string{queue.RefusedTooLarge, queue.RefusedSparse}},
	{"freepages", []string{queue.RefusedFreePages}},
	{"grow", []string{queue.RefusedChanged, queue.RefusedTrailing}},
	{"rows", []string{queue.RefusedTooMany}},
	{"hugerow", []string{queue.RefusedBadRow}},
	{"slowschema", []string{queue.RefusedSchema}}, // refused from the raw file, unparsed
	{"panic", []string{queue.RefusedPanic}},
}

// hostileOpts is the daemon the hostile-outbox tests run: a small copy budget, so that
// the bound is easy to see. The query deadline stays at its default: it is wall-clock
// time, and a short one fails honest sessions on a machine starved by many sandboxes
// starting at once (measured: 300 ms failed most flooding sessions before they planted
// anything, with 24 sandboxes on 2 cores).
func hostileOpts(c *supervisor.Config) {
	c.CopyBudgetMiB = 64
	c.MaxRunning = 32
	c.MaxSessions = 64
}

// panicOn makes the daemon's decoder panic on the evil agent's "panic" row, for the
// life of the test.
func panicOn(t *testing.T) {
	restore := queue.SetDecodeHookForTest(func(r queue.Row) {
		if rep, ok := r.Body.(wire.Reply); ok && rep.Text == "PANIC-HOOK" {
			panic("test hook: decoder panic on a crafted row")
		}
	})
	t.Cleanup(restore)
}

// procStatus reads a field of /proc/self/status in KiB.
func procStatus(t testing.TB, field string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// resetPeak starts a new VmHWM window for this process (the supervisor runs in it): the
// kernel resets the peak to the current RSS when "5" is written to clear_refs.
func resetPeak(t testing.TB) {
	t.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Fatal(err)
	}
}

func peakMiB(t testing.TB) float64 { return float64(procStatus(t, "VmHWM")) / 1024 }

// waitFailed waits until session id is stopped for a refused outbox and returns the
// refusal class.
func (d *daemon) waitFailed(id wire.SessionID, within time.Duration) string {
	d.t.Helper()
	st := d.waitStatus(id, within, "the stop after a hostile outbox", func(st supervisor.Status) bool {
		return !st.Running && st.Stopped != ""
	})
	e := d.waitAudit(10*time.Second, "outbox.refused", func(e audit.Entry) bool {
		return e.Action == "outbox.refused" && e.Subject == id.String()
	})
	class, ok := strings.CutPrefix(e.Result, session.HostileOutbox)
	if !ok {
		d.t.Fatalf("outbox.refused says %q (stopped: %s)", e.Result, st.Stopped)
	}
	return class
}

// TestHostileOutboxShapes plants each hostile outbox shape in its own session under real
// runsc, all at once beside an honest session: each is failed alone with the refusal
// class of the guard meant to catch it, the honest session keeps answering, no audit
// record carries the agent's words, and the daemon's peak memory stays under the bound.
func TestHostileOutboxShapes(t *testing.T) {
	panicOn(t)
	d := newDaemon(t, evilPath, hostileOpts)
	if got := d.ask("honest", "echo:before", 60*time.Second); got != "before" {
		t.Fatalf("honest replied %q", got)
	}
	ids := make([]wire.SessionID, len(shapes))
	for i, sh := range shapes {
		if got := d.ask("shape-"+sh.name, "echo:up", 60*time.Second); got != "up" {
			t.Fatalf("%s replied %q", sh.name, got)
		}
		ids[i], _ = d.sessionKey("shape-" + sh.name)
	}
	resetPeak(t)
	base := peakMiB(t)
	for _, sh := range shapes {
		d.send("shape-"+sh.name, "hostile:"+sh.name)
	}
	for i, sh := range shapes {
		class := d.waitFailed(ids[i], 90*time.Second)
		if !slices.Contains(sh.classes, class) {
			st, _ := d.sup.Status(ids[i])
			t.Errorf("%s: refused as %q, want one of %q (stopped: %s)", sh.name, class, sh.classes, st.Stopped)
		}
	}
	peak := peakMiB(t)
	if got := d.ask("honest", "echo:after", 60*time.Second); got != "after" {
		t.Fatalf("honest replied %q after the hostile sessions", got)
	}
	for i, sh := range shapes {
		if st, _ := d.sup.Status(ids[i]); st.Running {
			t.Errorf("%s still runs", sh.name)
		}
	}
	// The budget (64 MiB) bounds what the reads hold at once; everything else the
	// daemon does for a session is small. Without the fs cap or the sparse check, one
	// read of the 1,000 MiB file alone would take 2 GiB.
	bound := memBound(base, d.cfg.CopyBudgetMiB)
	t.Logf("daemon (test process) peak RSS: %.0f MiB at the start of the window, %.0f MiB peak with %d hostile outboxes; bound %.0f MiB (race detector: %v)",
		base, peak, len(shapes), bound, raceEnabled)
	if peak > bound {
		t.Errorf("peak RSS %.0f MiB is over the bound %.0f MiB", peak, bound)
	}
	for _, e := range d.auditEntries() {
		if strings.Contains(e.Result, "PANIC-HOOK") || strings.Contains(e.Result, "CREATE TABLE") {
			t.Errorf("agent text reached the audit log: %+v", e)
		}
	}
}

// memBound is the most the daemon's peak RSS may reach: where it started, plus the copy
// budget, plus 96 MiB for everything else (sockets, SQLite's page caches, the Go
// runtime's slack). Under the race detector every byte costs several more, so the
// allowance is scaled.
func memBound(baseMiB float64, budgetMiB int64) float64 {
	extra := float64(budgetMiB) + 96
	if raceEnabled {
		extra *= 4
	}
	return baseMiB + extra
}

// TestHostileLoad is the load test: N hostile sandboxes at once under real runsc, each
// flooding its socket (doorbells and leases) and then leaving a hostile outbox, beside
// one honest session answering messages. It measures the honest session's reply latency
// unloaded and loaded, and the daemon's peak RSS against an honest-only window in the
// same run; every hostile session must be failed alone and the audit chain must verify.
// Short form by default (16 hostile, a few seconds of flood); IRONCLAW_BENCH=1 runs 24
// for longer. Numbers: docs/benchmarks.md ("Hostile load").
func TestHostileLoad(t *testing.T) {
	n, floodSecs, msgs := 16, 6, 30
	if os.Getenv("IRONCLAW_BENCH") == "1" {
		n, floodSecs, msgs = 24, 30, 150
	}
	panicOn(t)
	// A quarter core per sandbox: n flooding sandboxes still ask for more CPU than this
	// machine has, but the honest one gets its share back sooner.
	d := newDaemon(t, evilPath, hostileOpts, func(c *supervisor.Config) { c.CPUMillis = 250 })
	honest := func(phase string, k int) []time.Duration {
		var lat []time.Duration
		ch := d.sup.Subscribe("honest")
		defer d.sup.Unsubscribe(ch)
		for i := range k {
			text := fmt.Sprintf("%s-%d", phase, i)
			t0 := time.Now()
			_, seq, err := d.sup.Send(context.Background(), "honest", "test", "echo:"+text)
			if err == nil {
				err = waitReply(ch, seq, text, 60*time.Second)
			}
			if err != nil {
				t.Fatalf("honest %s message %d: %v", phase, i, err)
			}
			lat = append(lat, time.Since(t0))
			if testing.Verbose() && time.Since(t0) > 500*time.Millisecond {
				t.Logf("slow honest reply: %s %v at %s", text, time.Since(t0).Round(time.Millisecond), t0.Format("15:04:05.000"))
			}
			time.Sleep(20 * time.Millisecond)
		}
		return lat
	}
	honest("warm", 5)
	resetPeak(t)
	honestBase := peakMiB(t)
	unloaded := honest("unloaded", msgs)
	honestPeak := peakMiB(t)

	// Start the hostile sessions: each replies "flooding", then floods, then plants.
	resetPeak(t)
	loadBase := peakMiB(t)
	ids := make([]wire.SessionID, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			binding := fmt.Sprintf("hostile-%02d", i)
			ch := d.sup.Subscribe(binding)
			defer d.sup.Unsubscribe(ch)
			shape := shapes[i%len(shapes)].name
			id, seq, err := d.sup.Send(context.Background(), binding, "test", fmt.Sprintf("flood:%d:%s", floodSecs, shape))
			if err == nil {
				err = waitReply(ch, seq, "flooding", 90*time.Second)
			}
			ids[i] = id
			if err != nil {
				errs <- fmt.Errorf("%s: %w", binding, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// All n flood now; the honest session answers meanwhile.
	tLoad := time.Now()
	cpu0 := selfCPU()
	loaded := honest("loaded", msgs)
	daemonCores := (selfCPU() - cpu0).Seconds() / time.Since(tLoad).Seconds()
	if time.Since(tLoad) > time.Duration(floodSecs)*time.Second {
		t.Logf("note: the loaded phase outlasted the flood (%v)", time.Since(tLoad).Round(time.Millisecond))
	}
	for i, id := range ids {
		class := d.waitFailed(id, 120*time.Second)
		if class == "" {
			t.Errorf("hostile-%02d: no refusal class", i)
		}
	}
	loadPeak := peakMiB(t)
	after := honest("after", 5)
	_ = after

	p99u, p99l := pctMs(unloaded, 99), pctMs(loaded, 99)
	factor := p99l / max(p99u, 1)
	t.Logf("hostile load: %d hostile sandboxes (flood %ds, then a hostile outbox each) + 1 honest, runsc, race detector %v", n, floodSecs, raceEnabled)
	t.Logf("  honest send→reply: unloaded median %.1f ms p99 %.1f ms; loaded median %.1f ms p99 %.1f ms (%.1f×)",
		medianMs(unloaded), p99u, medianMs(loaded), p99l, factor)
	t.Logf("  daemon (test process) CPU during the loaded phase: %.2f cores of %d", daemonCores, runtime.NumCPU())
	t.Logf("  daemon peak RSS (VmHWM of the test process): honest only %.0f MiB (window start %.0f); with the hostile sessions %.0f MiB (window start %.0f)",
		honestPeak, honestBase, loadPeak, loadBase)
	// The honest session is slowed by CPU (n sandboxes on this machine's cores), never
	// blocked: its p99 stays within maxFactor of the unloaded p99 (or 1 s, for an
	// unloaded p99 of a few ms).
	const maxFactor = 40
	if p99l > max(maxFactor*p99u, 1000) {
		t.Errorf("honest p99 under load %.1f ms is over %d× the unloaded %.1f ms", p99l, maxFactor, p99u)
	}
	if bound := memBound(honestPeak, d.cfg.CopyBudgetMiB); loadPeak > bound {
		t.Errorf("peak RSS under load %.0f MiB is over the bound %.0f MiB", loadPeak, bound)
	}
	// The stated bound (docs/benchmarks.md): without the race detector's shadow
	// memory the whole daemon stays under 256 MiB.
	if !raceEnabled && loadPeak > 256 {
		t.Errorf("peak RSS under load %.0f MiB is over 256 MiB", loadPeak)
	}
	// Every hostile session ended alone; the honest one still runs.
	st, _ := d.sup.Status(mustID(t, d, "honest"))
	if !st.Running || st.Stopped != "" {
		t.Errorf("the honest session was stopped: %+v", st)
	}
	d.closeSupervisor()
	rep, err := audit.VerifyFile(filepath.Join(d.cfg.StateDir, "audit.log"), nil, audit.WithKey(auditKey(d)))
	if err != nil {
		t.Fatalf("the audit chain does not verify after the load: %v", err)
	}
	t.Logf("  audit chain verified: %d entries", rep.Entries)
}

func mustID(t *testing.T, d *daemon, binding string) wire.SessionID {
	id, _ := d.sessionKey(binding)
	return id
}

func auditKey(d *daemon) []byte {
	k := d.master.SubKey("test audit")
	return k[:]
}

// selfCPU is the CPU time this process (the daemon's supervisor) has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
