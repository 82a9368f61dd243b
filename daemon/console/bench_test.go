package console

import (
	"io"
	"runtime"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkMemoryPerConnection opens conns console sessions (SSH, pty, the
// Bubble Tea console drawing its first frame) and reports the daemon-side
// heap and goroutines each one costs, against the idle server in the same
// run. Run with -benchtime 1x.
func BenchmarkMemoryPerConnection(b *testing.B) {
	const conns = 50
	h := startServer(b, nil)
	for b.Loop() {
		before, gBefore := heap(), runtime.NumGoroutine()
		var clients []*gossh.Client
		for range conns {
			c, err := h.dial(h.opKey)
			if err != nil {
				b.Fatal(err)
			}
			s, err := c.NewSession()
			if err != nil {
				b.Fatal(err)
			}
			if err := s.RequestPty("xterm-256color", 24, 80, gossh.TerminalModes{}); err != nil {
				b.Fatal(err)
			}
			out, _ := s.StdoutPipe()
			if err := s.Shell(); err != nil {
				b.Fatal(err)
			}
			// Wait for the first frame.
			buf := make([]byte, 4096)
			deadline := time.Now().Add(10 * time.Second)
			for n := 0; n < 512 && time.Now().Before(deadline); {
				k, err := out.Read(buf)
				if err != nil && err != io.EOF {
					b.Fatal(err)
				}
				n += k
			}
			go io.Copy(io.Discard, out)
			clients = append(clients, c)
		}
		time.Sleep(500 * time.Millisecond)
		after, gAfter := heap(), runtime.NumGoroutine()
		b.ReportMetric(float64(after-before)/conns/1024, "KiB/conn")
		b.ReportMetric(float64(gAfter-gBefore)/conns, "goroutines/conn")
		for _, c := range clients {
			c.Close()
		}
	}
}
