package console

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ironclaw/ironclaw/daemon/api"
	"github.com/ironclaw/ironclaw/tui/tuitest"
)

// `devices --json` gives a script the Matrix devices, hostile names
// escaped in the JSON but carried whole.
func TestDevicesJSON(t *testing.T) {
	d := tuitest.NewDaemon()
	evil := "phone\x1b]0;owned\a\u202e"
	d.SetMatrixDevices(api.MatrixDevices{Enabled: true, Bot: api.Device{User: "@bot:x", Device: "BOT"},
		Senders: []api.Device{{User: "@m:x", Device: "EVIL", Name: evil, Trust: "blacklisted"}}})
	h := startServer(t, func(c *Config) { c.Bind = func(actor string) api.Operator { return d.Operator(actor) } })
	out, _, err := run(t, h.mustDial(), "devices --json")
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(out, "\x1b\a\u202e") {
		t.Fatalf("raw control characters in JSON: %q", out)
	}
	var m api.MatrixDevices
	if err := json.Unmarshal([]byte(out), &m); err != nil || !m.Enabled || len(m.Senders) != 1 || m.Senders[0].Name != evil {
		t.Fatalf("%v %+v", err, m)
	}
}
