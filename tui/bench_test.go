package tui

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/ironclaw/ironclaw/daemon/api"
	"github.com/ironclaw/ironclaw/tui/tuitest"
)

// drive runs cmd and every command it leads to, synchronously, feeding
// their messages to m. A command that does not answer within a moment (the
// event subscription) is dropped.
func drive(m *Model, cmd tea.Cmd) {
	queue := []tea.Cmd{cmd}
	for len(queue) > 0 {
		c := queue[0]
		queue = queue[1:]
		if c == nil {
			continue
		}
		ch := make(chan tea.Msg, 1)
		go func() { ch <- c() }()
		var msg tea.Msg
		select {
		case msg = <-ch:
		case <-time.After(20 * time.Millisecond):
			continue
		}
		switch msg := msg.(type) {
		case nil:
		case tea.BatchMsg:
			queue = append(queue, msg...)
		default:
			_, next := m.Update(msg)
			queue = append(queue, next)
		}
	}
}

// big is the benchmark's daemon: 1,000 sessions, 100,000 audit entries and
// a pending request with a long diff.
func big() *tuitest.Daemon {
	d := tuitest.NewDaemon()
	for i := range 1000 {
		d.AddSession(api.Session{ID: fmt.Sprintf("%032x", i+1), Binding: fmt.Sprintf("matrix:!room%d:example.org", i), State: "active",
			ProfileVersion: uint64(i%7 + 1), Running: i%3 == 0, InboxHead: uint64(i), Progress: uint64(i)})
	}
	d.AddAudit(100_000)
	var diff strings.Builder
	for i := range 400 {
		fmt.Fprintf(&diff, "+instructions.%d = \"%s\"\n", i, strings.Repeat("word ", 30))
	}
	d.File(fmt.Sprintf("%032x", 1), "instructions", "agent:"+fmt.Sprintf("%032x", 1), "reason", "b", "p", diff.String())
	return d
}

func loaded(b *testing.B, d *tuitest.Daemon, w, h int) *Model {
	m := New(context.Background(), d.Operator(alice), Options{Width: w, Height: h, Refresh: -1})
	drive(m, m.Init())
	return m
}

// keyLatencies presses keys in turn and times each keypress through to the
// rendered frame.
func keyLatencies(m *Model, keys []string, rounds int) []time.Duration {
	var out []time.Duration
	for range rounds {
		for _, k := range keys {
			start := time.Now()
			_, cmd := m.Update(keyMsg(k))
			drive(m, cmd)
			_ = m.Render()
			out = append(out, time.Since(start))
		}
	}
	return out
}

func pct(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(int(float64(len(s))*p), len(s)-1)]
}

// BenchmarkKeypressToFrame: with 1,000 sessions and 100,000 audit entries,
// scrolling the sessions and audit lists and the open request's diff, from
// keypress to rendered frame. The baseline is the same presses on an empty
// daemon, in the same run.
func BenchmarkKeypressToFrame(b *testing.B) {
	for _, sz := range [][2]int{{80, 24}, {200, 50}} {
		b.Run(fmt.Sprintf("%dx%d", sz[0], sz[1]), func(b *testing.B) {
			empty := loaded(b, tuitest.NewDaemon(), sz[0], sz[1])
			m := loaded(b, big(), sz[0], sz[1])
			// Open the request so the approvals page scrolls its diff.
			m.Update(keyMsg("3"))
			_, cmd := m.Update(keyMsg("enter"))
			drive(m, cmd)
			keys := []string{"2", "down", "down", "pgdown", "4", "down", "pgdown", "3", "down", "pgdown", "1"}
			var all, base []time.Duration
			for b.Loop() {
				all = append(all, keyLatencies(m, keys, 1)...)
				base = append(base, keyLatencies(empty, keys, 1)...)
			}
			b.ReportMetric(float64(pct(all, 0.5).Microseconds()), "p50-µs")
			b.ReportMetric(float64(pct(all, 0.99).Microseconds()), "p99-µs")
			b.ReportMetric(float64(pct(base, 0.99).Microseconds()), "empty-p99-µs")
			if p := pct(all, 0.99); p > 16*time.Millisecond {
				b.Errorf("keypress to frame p99 %v > 16 ms", p)
			}
		})
	}
}

// BenchmarkRequestShownLive: an agent files a request (the daemon
// publishes the event) until the open console's approvals list shows it,
// through the real Bubble Tea program loop.
func BenchmarkRequestShownLive(b *testing.B) {
	t := &testing.T{}
	_ = t
	d := big()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := New(ctx, d.Operator(alice), Options{Width: 80, Height: 24, Refresh: -1})
	frames := make(chan string, 1)
	p := tea.NewProgram(probed{m}, tea.WithInput(nil), tea.WithOutput(discard{}), tea.WithWindowSize(80, 24))
	go p.Run()
	defer p.Kill()
	frame := func() string {
		out := make(chan string, 1)
		p.Send(probeMsg{out})
		return <-out
	}
	_ = frames
	p.Send(keyMsg("3"))
	for !strings.Contains(frame(), "instructions") {
		time.Sleep(time.Millisecond)
	}
	var lat []time.Duration
	i := 0
	for b.Loop() {
		i++
		kind := fmt.Sprintf("k%06d", i)
		start := time.Now()
		d.File(fmt.Sprintf("%032x", 2), kind, "agent:"+fmt.Sprintf("%032x", 2), "r", "b", "p", "+x\n")
		for !strings.Contains(frame(), kind) {
		}
		lat = append(lat, time.Since(start))
	}
	b.ReportMetric(float64(pct(lat, 0.5).Microseconds()), "p50-µs")
	b.ReportMetric(float64(pct(lat, 0.99).Microseconds()), "p99-µs")
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
