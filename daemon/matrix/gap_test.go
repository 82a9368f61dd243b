package matrix

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ironclaw/ironclaw/daemon/gateway"
	"github.com/ironclaw/ironclaw/daemon/store"
	"maunium.net/go/mautrix"
)

// After the bot was away, a sync's timeline for a room is "limited": only
// the latest events, the rest behind prev_batch. Those must be fetched and
// recorded, back to the last recorded event, not lost.
func TestLimitedTimelineGapIsFetched(t *testing.T) {
	ctx := context.Background()
	c, _, _ := testChannel(t, gateway.StatePending)
	msg := func(id, body string) string {
		return `{"type":"m.room.message","event_id":"` + id + `","sender":"@owner:x","origin_server_ts":1,"content":{"msgtype":"m.text","body":"` + body + `"}}`
	}
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked = append(asked, r.URL.Path+"?"+r.URL.RawQuery)
		if !strings.HasSuffix(r.URL.Path, "/messages") {
			w.WriteHeader(404)
			return
		}
		switch r.URL.Query().Get("from") {
		case "p1": // newest first
			io.WriteString(w, `{"start":"p1","end":"p2","chunk":[`+msg("$m3", "three")+`,`+msg("$m2", "two")+`]}`)
		case "p2":
			io.WriteString(w, `{"start":"p2","end":"p3","chunk":[`+msg("$m1", "one")+`,`+msg("$old", "recorded before")+`]}`)
		default:
			t.Errorf("paged past the last recorded event: %s", r.URL.RawQuery)
			io.WriteString(w, `{"chunk":[]}`)
		}
	}))
	defer srv.Close()
	c.cfg.Homeserver = srv.URL
	var err error
	if c.cli, err = c.newClient("token"); err != nil {
		t.Fatal(err)
	}
	c.cli.StateStore = mautrix.NewMemoryStateStore()
	if _, err := c.cfg.Store.CommitMatrixSync(ctx, []store.MatrixEvent{{EventID: "$old", RoomID: "!r:x", Sender: "@owner:x", State: store.MatrixDone}}, "b0", c.holdLimits()); err != nil {
		t.Fatal(err)
	}
	var resp mautrix.RespSync
	if err := json.Unmarshal([]byte(`{"next_batch":"b1","rooms":{"join":{"!r:x":{"timeline":{"limited":true,"prev_batch":"p1","events":[`+msg("$m4", "four")+`]}}}}}`), &resp); err != nil {
		t.Fatal(err)
	}
	evs, err := c.collect(ctx, &resp, false)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		got = append(got, e.EventID)
	}
	if strings.Join(got, " ") != "$m1 $m2 $m3 $m4" {
		t.Fatalf("recorded %v, want $m1 $m2 $m3 $m4 (requests %v)", got, asked)
	}

	// A gap that cannot be fetched fails the batch: its token is not committed.
	srv.Close()
	c.cli.DefaultHTTPRetries = 0
	if _, err := c.collect(ctx, &resp, false); err == nil {
		t.Fatal("a gap that could not be fetched was skipped")
	}
}
