package sessionsock

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/lease"
)

// rig is a socket serving a bare session, with its refusals recorded.
type rig struct {
	path  string
	sv    *Server
	bell  *lease.Bell
	inbox *lease.Manager

	mu      sync.Mutex
	refused map[string]int
}

func newRig(t *testing.T, mod func(*Session)) *rig {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "icss")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	r := &rig{path: filepath.Join(dir, "s.sock"), bell: lease.NewBell(0), inbox: lease.NewManager(0), refused: map[string]int{}}
	s := &Session{
		Inbox:     r.inbox,
		InboxBell: r.bell,
		OnOutbox:  func(ctx context.Context, seq uint64) (uint64, error) { return seq, nil },
		Refused: func(class string) {
			r.mu.Lock()
			r.refused[class]++
			r.mu.Unlock()
		},
		AgentUID: -1, AgentGID: -1,
	}
	if mod != nil {
		mod(s)
	}
	if r.sv, err = Listen(r.path, s); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.sv.Close() })
	return r
}

func (r *rig) client() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", r.path)
		},
		DisableKeepAlives: true,
	}}
}

func (r *rig) post(path, body string) (int, string, error) {
	resp, err := r.client().Post("http://x"+path, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func (r *rig) refusals() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[string]int{}
	for k, v := range r.refused {
		m[k] = v
	}
	return m
}

// rawRequest is a complete HTTP/1.1 request as a hostile agent writes it.
func rawRequest(path, body string) string {
	return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", path, len(body), body)
}

// Fifty connections with parked or half-sent requests cannot make the
// daemon hold fifty of anything: at most MaxConns are served, the rest wait
// in the kernel's backlog, and an honest request is served once the flood
// closes. Only one lease request may wait at a time.
func TestConnectionFloodIsBounded(t *testing.T) {
	r := newRig(t, nil)
	base := runtime.NumGoroutine()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range 50 {
		c, err := net.Dial("unix", r.path)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if i%2 == 0 {
			// Parked: a lease request that waits 30 s for rows.
			io.WriteString(c, rawRequest(wire.PathInboxLease, `{"after":0,"wait_ms":30000}`))
		} else {
			// Half-sent: headers promising a body that never comes.
			io.WriteString(c, "POST "+wire.PathOutboxCommitted+" HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
		}
	}
	time.Sleep(300 * time.Millisecond)
	grown := runtime.NumGoroutine() - base
	t.Logf("50 hostile connections: %d more goroutines; refusals %v", grown, r.refusals())
	if grown > 4*DefaultMaxConns {
		t.Fatalf("50 hostile connections grew the daemon by %d goroutines", grown)
	}
	if n := r.refusals()[RefusedTooManyConns]; n == 0 {
		t.Errorf("the connection cap was not reported")
	}

	// An honest request on a fresh connection waits for a slot...
	done := make(chan error, 1)
	go func() {
		code, body, err := r.post(wire.PathInboxRelease, `{"lease":1}`)
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("%d %s", code, body)
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("served past the connection cap (%v)", err)
	case <-time.After(100 * time.Millisecond):
	}
	// ...and is served once the flood closes.
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the honest request was not served after the flood closed")
	}
}

// A second lease request while one waits is refused at once.
func TestOneLeaseWaitAtATime(t *testing.T) {
	r := newRig(t, nil)
	first := make(chan error, 1)
	go func() {
		code, body, err := r.post(wire.PathInboxLease, `{"after":0,"wait_ms":2000}`)
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("%d %s", code, body)
		}
		first <- err
	}()
	time.Sleep(100 * time.Millisecond)
	code, _, err := r.post(wire.PathInboxLease, `{"after":0,"wait_ms":2000}`)
	if err != nil || code != http.StatusTooManyRequests {
		t.Fatalf("second lease request: %d %v, want 429", code, err)
	}
	if r.refusals()[RefusedTooManyLeases] != 1 {
		t.Fatalf("refusals %v", r.refusals())
	}
	r.bell.Ring(1)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	// Once it is answered, the next one may wait.
	code, _, err = r.post(wire.PathInboxLease, `{"after":1,"wait_ms":10}`)
	if err != nil || code != http.StatusOK {
		t.Fatalf("lease after the first was answered: %d %v", code, err)
	}
}

// A request body trickled a byte at a time is cut off by the read timeout.
func TestTrickledBodyIsCutOff(t *testing.T) {
	r := newRig(t, func(s *Session) { s.ReadTimeout = 300 * time.Millisecond })
	c, err := net.Dial("unix", r.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST "+wire.PathOutboxCommitted+" HTTP/1.1\r\nHost: x\r\nContent-Length: 4000\r\n\r\n")
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := c.Write([]byte(" ")); err != nil {
				return
			}
		}
	}()
	cut := make(chan string, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			cut <- "closed: " + err.Error()
			return
		}
		cut <- resp.Status
	}()
	select {
	case what := <-cut:
		t.Logf("trickled request ended: %s", what)
	case <-time.After(3 * time.Second):
		t.Fatal("a trickled body was still being read after 3 s (read timeout 300 ms)")
	}
}

// The read timeout stops trickling, not waiting: a lease request that is
// fully sent may wait well past it.
func TestLeaseWaitOutlastsReadTimeout(t *testing.T) {
	r := newRig(t, func(s *Session) { s.ReadTimeout = 200 * time.Millisecond })
	go func() { time.Sleep(700 * time.Millisecond); r.bell.Ring(1) }()
	resp, err := r.client().Post("http://x"+wire.PathInboxLease, "application/json", strings.NewReader(`{"after":0,"wait_ms":5000}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var g wire.LeaseGrant
	b, _ := io.ReadAll(resp.Body)
	if err := wire.StrictUnmarshal([]byte(strings.TrimSpace(string(b))), &g); err != nil || g.Lease == 0 || g.Head != 1 {
		t.Fatalf("lease across the read timeout: %s %+v %v", resp.Status, g, err)
	}
}

// Distinct junk cannot defeat the audit log's aggregation: whatever the
// agent sends, Refused hears one of a few fixed classes, never its text.
func TestRefusalsAreClasses(t *testing.T) {
	r := newRig(t, nil)
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", r.path)
		},
	}}
	send := func(path, body string) {
		resp, err := hc.Post("http://x"+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatalf("%s %s accepted", path, body)
		}
	}
	for i := range 2000 {
		send(fmt.Sprintf("/junk/%d/%x", i, i*7919), `{}`)
	}
	for i := range 200 {
		send(wire.PathInboxLease, fmt.Sprintf(`{"after":0,"wait_ms":0,"x%d":1}`, i))
		send(wire.PathInboxLease, fmt.Sprintf(`{"after":0,"wait_ms":%d}`, wire.MaxLeaseWaitMillis+1+i))
	}
	// Oversized bodies: each costs the server a lingering close, so few.
	for i := range 10 {
		send(wire.PathInboxRelease, strings.Repeat(" ", wire.MaxCoordBody+i)+`{}`)
	}
	got := r.refusals()
	total := 0
	for class, n := range got {
		total += n
		switch class {
		case RefusedUnknownEndpoint, RefusedMalformed, RefusedLeaseWait, RefusedTooManyConns, RefusedTooManyLeases, RefusedNoOutbox:
		default:
			t.Errorf("Refused heard %.80q: not a fixed class", class)
		}
	}
	if total < 2410 || len(got) > 4 {
		t.Fatalf("2410 junk requests → %d refusals in %d distinct strings", total, len(got))
	}
}

// The model handler gets every /api/ path and nothing else; without one,
// /api/ is refused like any unknown path.
func TestModelRouting(t *testing.T) {
	var got []string
	var mu sync.Mutex
	model := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.Path)
		mu.Unlock()
		w.WriteHeader(http.StatusTeapot)
	})
	r := newRig(t, func(s *Session) { s.Model = model })
	for path, want := range map[string]int{
		"/api/chat":              http.StatusTeapot,
		"/api/pull":              http.StatusTeapot, // the proxy refuses it itself
		"/apichat":               http.StatusNotFound,
		wire.PathOutboxCommitted: http.StatusOK,
	} {
		code, _, err := r.post(path, `{"seq":1}`)
		if err != nil || code != want {
			t.Errorf("%s: %d %v, want %d", path, code, err, want)
		}
	}
	if len(got) != 2 {
		t.Errorf("the model handler saw %v", got)
	}
	bare := newRig(t, nil)
	if code, _, _ := bare.post("/api/chat", `{}`); code != http.StatusNotFound {
		t.Errorf("no model handler: /api/chat answered %d", code)
	}
	if n := bare.refusals()[RefusedUnknownEndpoint]; n != 1 {
		t.Errorf("no model handler: %d unknown-endpoint refusals", n)
	}
}
