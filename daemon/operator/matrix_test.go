package operator

import (
	"context"
	"errors"
	"testing"

	"github.com/ironclaw/ironclaw/daemon/api"
)

// With no Matrix channel the console is told so (Enabled false, nothing
// else), whether the daemon has no reader at all or its channel is off —
// even if the reader returned stale data alongside ok=false.
func TestMatrixDevicesDisabled(t *testing.T) {
	ctx := context.Background()
	for name, fn := range map[string]func(context.Context) (api.MatrixDevices, bool, error){
		"nil": nil,
		"off": func(context.Context) (api.MatrixDevices, bool, error) {
			return api.MatrixDevices{Enabled: true, Bot: api.Device{User: "@stale:x"}}, false, nil
		},
	} {
		b := &bound{s: &Service{cfg: Config{MatrixDevices: fn}}}
		d, err := b.MatrixDevices(ctx)
		if err != nil || d.Enabled || d.Bot.User != "" || d.Senders != nil {
			t.Fatalf("%s: %v %+v", name, err, d)
		}
	}
}

func TestMatrixDevicesEnabledAndError(t *testing.T) {
	ctx := context.Background()
	want := api.MatrixDevices{Bot: api.Device{User: "@bot:x", Device: "BOT", Trust: "cross-signed-verified"}, CrossSigned: true,
		Senders: []api.Device{{User: "@a:x", Device: "A", Trust: "unverified"}}}
	b := &bound{s: &Service{cfg: Config{MatrixDevices: func(context.Context) (api.MatrixDevices, bool, error) { return want, true, nil }}}}
	d, err := b.MatrixDevices(ctx)
	if err != nil || !d.Enabled || d.Bot != want.Bot || len(d.Senders) != 1 || d.Senders[0] != want.Senders[0] {
		t.Fatalf("%v %+v", err, d)
	}
	b = &bound{s: &Service{cfg: Config{MatrixDevices: func(context.Context) (api.MatrixDevices, bool, error) {
		return api.MatrixDevices{}, true, errors.New("store closed")
	}}}}
	if _, err := b.MatrixDevices(ctx); api.CodeOf(err) != api.CodeUnavailable {
		t.Fatalf("error: %v", err)
	}
}
