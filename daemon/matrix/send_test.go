package matrix

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"
)

// A send that the homeserver rate-limits waits as long as retry_after_ms
// says and is retried under the same transaction id; a server error is
// retried with backoff; a client error is not retried.
func TestSendHonoursRateLimits(t *testing.T) {
	var mu sync.Mutex
	var paths []string
	var times []time.Time
	script := []func(w http.ResponseWriter){
		func(w http.ResponseWriter) {
			w.WriteHeader(429)
			io.WriteString(w, `{"errcode":"M_LIMIT_EXCEEDED","error":"slow down","retry_after_ms":400}`)
		},
		func(w http.ResponseWriter) { w.WriteHeader(502) },
		func(w http.ResponseWriter) { io.WriteString(w, `{"event_id":"$ok"}`) },
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		paths = append(paths, r.URL.Path)
		times = append(times, time.Now())
		if len(paths) > len(script) {
			t.Errorf("request %d after success: %s", len(paths), r.URL.Path)
			return
		}
		script[len(paths)-1](w)
	}))
	defer srv.Close()
	c := &Channel{cfg: Config{Homeserver: srv.URL, UserID: "@bot:x", SyncTimeout: time.Second}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	cli, err := c.newClient("token")
	if err != nil {
		t.Fatal(err)
	}
	c.cli = cli
	if err := c.send(context.Background(), id.RoomID("!r:x"), map[string]any{"msgtype": "m.text", "body": "hi"}, "ic.abc.7"); err != nil {
		t.Fatal(err)
	}
	if len(paths) != 3 {
		t.Fatalf("%d requests", len(paths))
	}
	for _, p := range paths {
		if !strings.HasSuffix(p, "/send/m.room.message/ic.abc.7") {
			t.Fatalf("the transaction id changed between attempts: %v", paths)
		}
	}
	if d := times[1].Sub(times[0]); d < 400*time.Millisecond {
		t.Fatalf("retried after %v, the homeserver asked for 400 ms", d)
	}

	// A refusal that retrying cannot change is returned at once.
	paths = nil
	script = []func(w http.ResponseWriter){func(w http.ResponseWriter) {
		w.WriteHeader(403)
		io.WriteString(w, `{"errcode":"M_FORBIDDEN","error":"no"}`)
	}}
	if err := c.send(context.Background(), id.RoomID("!r:x"), map[string]any{"msgtype": "m.text", "body": "hi"}, "ic.abc.8"); err == nil || len(paths) != 1 {
		t.Fatalf("403: %v after %d requests", err, len(paths))
	}
}

// retryAfter reads the homeserver's wait from the body, then the header.
func TestRetryAfter(t *testing.T) {
	if _, ok := retryAfter(io.EOF); ok {
		t.Fatal("a plain error is not a rate limit")
	}
}
