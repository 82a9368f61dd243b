package session

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
)

// postRaw sends an arbitrary request to a session socket, as a hostile agent
// could, and fails unless the answer is 200.
func postRaw(sock, path, body string) error {
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return net.Dial("unix", sock)
	}}}
	resp, err := hc.Post("http://x"+path, "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s", resp.Status)
	}
	return nil
}
