// Package coord is the agent's client for the coordination endpoints of its
// session socket: inbox read leases and the outbox doorbell. The socket is
// the sandbox's only way out; this package never dials anything else.
package coord

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/ironclaw/ironclaw/agentd/wire"
)

// Client talks to the daemon over the session socket.
type Client struct {
	hc *http.Client
}

// New returns a client for the unix socket at path.
func New(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		MaxIdleConns:           2,
		IdleConnTimeout:        time.Minute,
		DisableCompression:     true,
		MaxResponseHeaderBytes: 4 << 10,
	}
	return &Client{hc: &http.Client{Transport: tr}}
}

func (c *Client) post(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://ironclaw"+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("coord: %s: %w", path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, wire.MaxCoordBody))
	if err != nil {
		return fmt.Errorf("coord: %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("coord: %s: %s: %s", path, resp.Status, bytes.TrimSpace(data))
	}
	if err := wire.StrictUnmarshal(bytes.TrimSpace(data), out); err != nil {
		return fmt.Errorf("coord: %s: malformed answer: %w", path, err)
	}
	return nil
}

// Lease waits up to wait for inbox rows after after and takes a read lease.
// A grant with Lease 0 means nothing new arrived.
func (c *Client) Lease(ctx context.Context, after uint64, wait time.Duration) (wire.LeaseGrant, error) {
	var g wire.LeaseGrant
	err := c.post(ctx, wire.PathInboxLease, wire.LeaseRequest{After: after, WaitMillis: wait.Milliseconds()}, &g)
	return g, err
}

// Release ends a lease and reports whether it was still valid.
func (c *Client) Release(ctx context.Context, lease uint64) (bool, error) {
	var r wire.ReleaseResult
	err := c.post(ctx, wire.PathInboxRelease, wire.ReleaseRequest{Lease: lease}, &r)
	return r.Valid, err
}

// OutboxCommitted rings the daemon's doorbell and returns once the daemon
// has taken its copy; the caller must not write the outbox meanwhile.
func (c *Client) OutboxCommitted(ctx context.Context, seq uint64) (uint64, error) {
	var t wire.OutboxTaken
	err := c.post(ctx, wire.PathOutboxCommitted, wire.OutboxCommitted{Seq: seq}, &t)
	return t.Taken, err
}
