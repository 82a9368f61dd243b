package admin

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ironclaw/ironclaw/daemon/api"
	"github.com/ironclaw/ironclaw/tui/tuitest"
)

// The devices route carries the channel's state whole, and "no Matrix" as
// Enabled false (not an error).
func TestMatrixDevicesRoute(t *testing.T) {
	dir, err := os.MkdirTemp("/tmp", "icadm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d := tuitest.NewDaemon()
	mux := http.NewServeMux()
	Routes(mux, func(p Peer) api.Operator { return d.Operator(p.Actor()) })
	sock := filepath.Join(dir, "admin.sock")
	s, err := Listen(sock, mux)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := NewClient(sock)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	got, err := c.MatrixDevices(ctx)
	if err != nil || got.Enabled || got.Bot.User != "" || len(got.Senders) != 0 {
		t.Fatalf("off: %v %+v", err, got)
	}
	want := api.MatrixDevices{Enabled: true, CrossSigned: true, BackupVersion: "3",
		Bot: api.Device{User: "@bot:example.org", Device: "BOTDEV", Name: "IronClaw", Fingerprint: "abcd efgh", Trust: "cross-signed-verified"},
		Senders: []api.Device{
			{User: "@alice:example.org", Device: "PHONE", Name: "Alice's phone", Fingerprint: "1234 5678", Trust: "verified"},
			{User: "@mallory:example.org", Device: "EVIL", Name: "x\x1b[2J\u202e", Fingerprint: "dead beef", Trust: "blacklisted"},
		}}
	d.SetMatrixDevices(want)
	got, err = c.MatrixDevices(ctx)
	if err != nil || !got.Enabled || !got.CrossSigned || got.BackupVersion != "3" || got.Bot != want.Bot ||
		len(got.Senders) != 2 || got.Senders[0] != want.Senders[0] || got.Senders[1] != want.Senders[1] {
		t.Fatalf("on: %v %+v", err, got)
	}
}
