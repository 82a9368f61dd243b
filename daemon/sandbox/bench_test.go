package sandbox

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// Cold-start benchmarks. Run with:
//
//	go test -run '^$' -bench . -benchtime 10x ./daemon/sandbox/
//
// They report the median in milliseconds (median-ms) besides Go's mean (ns/op).

// BenchmarkStartToExit: Start (bundle build, agent copy, runsc run) until the trivial
// agent's exit is reaped. runsc was fully checked once before; Start's own check is then
// the cheap identity check.
func BenchmarkStartToExit(b *testing.B) {
	f := newFixture(b, "-mode=exit")
	if err := f.r.Check(context.Background()); err != nil {
		b.Fatal(err)
	}
	base := filepath.Dir(f.spec.BundleDir)
	var runs, stops []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		spec := f.spec
		id, err := NewID()
		if err != nil {
			b.Fatal(err)
		}
		spec.ID, spec.BundleDir = id, filepath.Join(base, id)
		b.StartTimer()
		t0 := time.Now()
		sb, err := f.r.Start(context.Background(), spec)
		if err != nil {
			b.Fatal(err)
		}
		st, err := sb.Wait()
		runs = append(runs, time.Since(t0))
		b.StopTimer()
		if err != nil || st.Code != 0 {
			b.Fatalf("status %v, %v: %s", st, err, sb.Stderr())
		}
		t1 := time.Now()
		if err := sb.Stop(context.Background()); err != nil {
			b.Fatal(err)
		}
		stops = append(stops, time.Since(t1))
	}
	b.ReportMetric(medianMs(runs), "median-ms")
	b.ReportMetric(medianMs(stops), "stop-median-ms")
}

// BenchmarkRunscRunDirect: plain `runsc run` on a prebuilt bundle, for comparison.
func BenchmarkRunscRunDirect(b *testing.B) {
	f := newFixture(b, "-mode=exit")
	if err := ensureStateRoot(f.r.root()); err != nil {
		b.Fatal(err)
	}
	if err := f.spec.writeBundle(); err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(f.spec.BundleDir)
	defer RemoveCgroups(f.spec.ID)
	args := append(f.r.globalArgs(), "run", "-bundle", f.spec.BundleDir, f.spec.ID)
	var runs []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		out, err := exec.Command(f.r.path(), args...).CombinedOutput()
		runs = append(runs, time.Since(t0))
		if err != nil {
			b.Fatalf("runsc run: %v: %s", err, out)
		}
	}
	b.ReportMetric(medianMs(runs), "median-ms")
}

// BenchmarkCheck: the full runsc check (sha256 of ~83 MB + `runsc --version`).
func BenchmarkCheck(b *testing.B) {
	r := testRunsc(b)
	var runs []time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := r.Check(context.Background()); err != nil {
			b.Fatal(err)
		}
		runs = append(runs, time.Since(t0))
	}
	b.ReportMetric(medianMs(runs), "median-ms")
}

func medianMs(ds []time.Duration) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return float64(m.Microseconds()) / 1000
}
