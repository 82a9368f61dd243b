package operator

import (
	"context"

	"github.com/ironclaw/ironclaw/daemon/api"
)

// MatrixDevices is read-only device metadata (ids, names, public
// fingerprints, trust states): nothing secret and nothing a conversation
// said, so reading it is not audited.
func (b *bound) MatrixDevices(ctx context.Context) (api.MatrixDevices, error) {
	if b.s.cfg.MatrixDevices == nil {
		return api.MatrixDevices{}, nil
	}
	d, ok, err := b.s.cfg.MatrixDevices(ctx)
	if !ok {
		return api.MatrixDevices{}, nil
	}
	if err != nil {
		return api.MatrixDevices{}, &api.Error{Code: api.CodeUnavailable, Message: "reading the Matrix devices: " + err.Error(),
			Hint: "the Matrix channel may be reconnecting; try again (ctrl+r), or see the daemon's log"}
	}
	d.Enabled = true
	return d, nil
}
