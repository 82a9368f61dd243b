package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"

	"github.com/ironclaw/ironclaw/daemon/api"
)

// Client talks to a running daemon's admin socket.
type Client struct {
	path string
	hc   *http.Client
}

// NewClient returns a client for the admin socket at path.
func NewClient(path string) *Client {
	return &Client{path: path, hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}}
}

// Do sends a request with a JSON body (nil for none) and decodes the JSON
// answer into out (nil to discard).
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://ironclaw"+path, body)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) || isRefused(err) {
			return &api.Error{Code: api.CodeUnavailable, Message: fmt.Sprintf("cannot reach the daemon at %s: %v", c.path, err),
				Hint: "is `ironclaw serve` running, and are you root?"}
		}
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		if json.Unmarshal(data, &e) == nil && e.Message != "" {
			if e.Code == "" {
				e.Code = api.CodeInternal
			}
			return &e
		}
		return fmt.Errorf("daemon: %s: %s", resp.Status, bytes.TrimSpace(data))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

func isRefused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op)
}

// Stream sends a request without a body and copies a 200 answer's body to
// w (a backup archive); any other answer is returned as an error. An
// answer cut short (the daemon failed midway) is an error too.
func (c *Client) Stream(ctx context.Context, method, path string, w io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://ironclaw"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) || isRefused(err) {
			return fmt.Errorf("cannot reach the daemon at %s: %w (is `ironclaw serve` running, and are you root?)", c.path, err)
		}
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var e api.Error
		if json.Unmarshal(data, &e) == nil && e.Message != "" {
			return &e
		}
		return fmt.Errorf("daemon: %s: %s", resp.Status, bytes.TrimSpace(data))
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("the daemon's answer was cut short: %w", err)
	}
	return nil
}
