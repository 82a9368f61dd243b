package daemon

import (
	"context"

	"github.com/ironclaw/ironclaw/daemon/api"
	"github.com/ironclaw/ironclaw/daemon/matrix"
)

// matrixDevices is MatrixTrust as daemon/api's plain types, for the
// console's devices page. ok is false while the channel is off.
func (d *Daemon) matrixDevices(ctx context.Context) (api.MatrixDevices, bool, error) {
	t, ok, err := d.MatrixTrust(ctx)
	if !ok || err != nil {
		return api.MatrixDevices{}, ok, err
	}
	out := api.MatrixDevices{Enabled: true, Bot: apiDevice(t.Bot), CrossSigned: t.CrossSigned, BackupVersion: t.BackupVersion}
	for _, s := range t.Senders {
		out.Senders = append(out.Senders, apiDevice(s))
	}
	return out, true, nil
}

func apiDevice(d matrix.Device) api.Device {
	return api.Device{User: d.User, Device: d.Device, Name: d.Name, Fingerprint: d.Fingerprint, Trust: d.Trust}
}
