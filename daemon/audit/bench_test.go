package audit

import (
	"testing"
)

// BenchmarkAppendSingle: one goroutine, so every Append pays a full fsync.
func BenchmarkAppendSingle(b *testing.B) {
	l, ff := openFaulty(b, tempLogPath(b))
	r := rec(0)
	for b.Loop() {
		if _, err := l.Append(r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/float64(ff.syncCount.Load()), "entries/fsync")
	mustClose(b, l)
}

// BenchmarkAppendGrouped: many goroutines appending at once share fsyncs.
// ns/op is wall time per entry across all of them.
func BenchmarkAppendGrouped(b *testing.B) {
	l, ff := openFaulty(b, tempLogPath(b))
	r := rec(0)
	b.SetParallelism(32) // 32 × GOMAXPROCS appenders
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Append(r); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/float64(ff.syncCount.Load()), "entries/fsync")
	mustClose(b, l)
}
