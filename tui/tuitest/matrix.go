package tuitest

import (
	"context"
	"slices"

	"github.com/ironclaw/ironclaw/daemon/api"
)

// SetMatrixDevices sets what MatrixDevices returns (the zero value, the
// default, is a daemon without a Matrix channel).
func (d *Daemon) SetMatrixDevices(m api.MatrixDevices) {
	d.mu.Lock()
	defer d.mu.Unlock()
	m.Senders = slices.Clone(m.Senders)
	d.matrix = m
}

func (f *Fake) MatrixDevices(context.Context) (api.MatrixDevices, error) {
	f.d.mu.Lock()
	defer f.d.mu.Unlock()
	m := f.d.matrix
	m.Senders = slices.Clone(m.Senders)
	return m, nil
}
