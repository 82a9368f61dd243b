package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// What Preflight found wrong, for callers that show it as a state.
var (
	ErrUnreachable  = errors.New("no Ollama server answers")
	ErrModelMissing = errors.New("does not have the model")
)

// Preflight asks the upstream whether it has model (Ollama's POST /api/show),
// so that the daemon can say at start what a first chat would otherwise
// discover: the server is down, or the model is not pulled. It is the
// daemon's own call, never the agent's. A nil error means the model is
// there.
func Preflight(ctx context.Context, client *http.Client, upstream, model string) error {
	u, err := url.Parse(upstream)
	if err != nil {
		return fmt.Errorf("model.ollama_url %q: %w", upstream, err)
	}
	body, _ := json.Marshal(map[string]string{"model": model})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.JoinPath("/api/show").String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%w at %s (%v): start it (`ollama serve`) or set model.ollama_url", ErrUnreachable, upstream, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	switch resp.StatusCode {
	case http.StatusOK:
		return nil
	case http.StatusNotFound:
		return fmt.Errorf("the Ollama server at %s %w %q: run `ollama pull %s` there (until then every chat answers that the model is missing)", upstream, ErrModelMissing, model, model)
	default:
		return fmt.Errorf("the Ollama server at %s answered %s when asked about %q", upstream, resp.Status, model)
	}
}
