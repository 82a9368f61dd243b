package proxy

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/daemon/proxy/ollamatest"
)

// benchPair returns the same Ollama client code twice: straight to the upstream over
// TCP, and through the session socket and the proxy.
func benchPair(b *testing.B, h *harness, upstream string) (direct, proxied *api.Client) {
	u, err := url.Parse(upstream)
	if err != nil {
		b.Fatal(err)
	}
	direct = api.NewClient(u, &http.Client{})
	proxied = api.NewClient(&url.URL{Scheme: "http", Host: "ironclaw"}, &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", h.sock)
		},
	}})
	h.setProfile(func(p *profile.Profile) { p.Limits.CallsPerMinute, p.Limits.TokensPerDay = 1<<40, 1<<50 })
	return direct, proxied
}

// timeChat makes one streamed call and returns its duration and line count.
func timeChat(b *testing.B, c *api.Client, req *api.ChatRequest) (time.Duration, int) {
	start := time.Now()
	lines := 0
	err := c.Chat(context.Background(), req, func(api.ChatResponse) error { lines++; return nil })
	if err != nil {
		b.Fatal(err)
	}
	return time.Since(start), lines
}

// BenchmarkProxyPerChunk: the proxy's cost per streamed line, against the same client
// calling the same (scripted) server directly, measured in alternation in one run.
func BenchmarkProxyPerChunk(b *testing.B) {
	const chunks = 256
	rep := ollamatest.Reply{}
	for range chunks {
		rep.Chunks = append(rep.Chunks, ollamatest.Chunk{Content: "token "})
	}
	h := newHarness(b, harnessOpt{})
	direct, proxied := benchPair(b, h, h.up.URL)
	stream := true
	req := &api.ChatRequest{Model: testModel, Stream: &stream, Messages: []api.Message{{Role: "user", Content: "go"}}}
	var dSum, pSum time.Duration
	b.ResetTimer()
	for range b.N {
		h.up.Push(rep, rep)
		d, n1 := timeChat(b, direct, req)
		p, n2 := timeChat(b, proxied, req)
		if n1 != chunks+1 || n2 != chunks+1 {
			b.Fatalf("lines %d and %d, want %d", n1, n2, chunks+1)
		}
		dSum, pSum = dSum+d, pSum+p
	}
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) / (chunks + 1) }
	b.ReportMetric(per(dSum), "direct-ns/chunk")
	b.ReportMetric(per(pSum), "proxied-ns/chunk")
	b.ReportMetric(per(pSum)-per(dSum), "overhead-ns/chunk")
	b.ReportMetric(float64(pSum)/float64(dSum), "ratio")
}

// BenchmarkRealOllamaChat: a whole streamed chat with the real Ollama server and the tiny
// model, through the proxy against directly, in alternation in one run.
func BenchmarkRealOllamaChat(b *testing.B) {
	real := ollamatest.StartReal(b)
	h := newHarness(b, harnessOpt{upstream: real.URL, model: ollamatest.TinyModel})
	direct, proxied := benchPair(b, h, real.URL)
	stream := true
	req := &api.ChatRequest{Model: ollamatest.TinyModel, Stream: &stream, Think: &api.ThinkValue{Value: false},
		Options:  map[string]any{"num_ctx": 512, "num_predict": 16, "seed": 1, "temperature": 0},
		Messages: []api.Message{{Role: "user", Content: "hello there"}}}
	// Warm the model once each way.
	timeChat(b, direct, req)
	timeChat(b, proxied, req)
	var dSum, pSum time.Duration
	b.ResetTimer()
	for range b.N {
		d, _ := timeChat(b, direct, req)
		p, _ := timeChat(b, proxied, req)
		dSum, pSum = dSum+d, pSum+p
	}
	b.ReportMetric(float64(dSum.Microseconds())/float64(b.N), "direct-µs/call")
	b.ReportMetric(float64(pSum.Microseconds())/float64(b.N), "proxied-µs/call")
	b.ReportMetric(float64(pSum-dSum)/float64(b.N)/1e3, "overhead-µs/call")
	b.ReportMetric(float64(pSum)/float64(dSum), "ratio")
}
