package daemon

import (
	"context"
	"testing"

	"github.com/ironclaw/ironclaw/daemon/api"
	"github.com/ironclaw/ironclaw/daemon/matrix"
)

// With no Matrix channel the operator service is told ok=false (the
// console then shows "Matrix is not configured"); a device crosses to
// daemon/api field for field.
func TestMatrixDevicesWiring(t *testing.T) {
	if m, ok, err := (&Daemon{}).matrixDevices(context.Background()); ok || err != nil || m.Enabled {
		t.Fatalf("off: %v %v %+v", ok, err, m)
	}
	in := matrix.Device{User: "@a:x", Device: "D", Name: "n", Fingerprint: "f", Trust: "unverified"}
	if got := apiDevice(in); got != (api.Device{User: "@a:x", Device: "D", Name: "n", Fingerprint: "f", Trust: "unverified"}) {
		t.Fatalf("%+v", got)
	}
}
