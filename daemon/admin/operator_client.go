package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os/user"
	"strconv"

	"github.com/ironclaw/ironclaw/daemon/api"
)

// The client side of the binding: *Client is an api.Operator whose operator
// is whoever the daemon sees on the other end of the socket.
var _ api.Operator = (*Client)(nil)

// Who names the local account this process runs as; the daemon decides
// from the socket's peer credentials, not from this.
func (c *Client) Who() api.Identity {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return api.Identity{Actor: "operator:local:" + name, Via: "admin"}
}

func do[T any](ctx context.Context, c *Client, method, path string, in any) (T, error) {
	var out T
	err := c.Do(ctx, method, path, in, &out)
	return out, err
}

func (c *Client) Status(ctx context.Context) (api.Status, error) {
	return do[api.Status](ctx, c, "GET", "/v1/status", nil)
}

func (c *Client) PinAgent(ctx context.Context) (api.Status, error) {
	return do[api.Status](ctx, c, "POST", "/v1/agent/pin", nil)
}

func (c *Client) ListChanges(ctx context.Context, f api.ChangeFilter) ([]api.ChangeSummary, error) {
	path := "/v1/changes"
	if f.All {
		path += "?all=1"
	}
	return do[[]api.ChangeSummary](ctx, c, "GET", path, nil)
}

func (c *Client) Change(ctx context.Context, id string) (api.Change, error) {
	return do[api.Change](ctx, c, "GET", "/v1/changes/"+url.PathEscape(id), nil)
}

func (c *Client) Approve(ctx context.Context, id string, d api.DecideRequest) (api.Decision, error) {
	return do[api.Decision](ctx, c, "POST", "/v1/changes/"+url.PathEscape(id)+"/approve", d)
}

func (c *Client) Deny(ctx context.Context, id string, d api.DecideRequest) (api.Decision, error) {
	return do[api.Decision](ctx, c, "POST", "/v1/changes/"+url.PathEscape(id)+"/deny", d)
}

func (c *Client) Propose(ctx context.Context, r api.ChangeRequest) (api.Ticket, error) {
	return do[api.Ticket](ctx, c, "POST", "/v1/changes", r)
}

func (c *Client) ListSessions(ctx context.Context) ([]api.Session, error) {
	return do[[]api.Session](ctx, c, "GET", "/v1/sessions", nil)
}

func (c *Client) Profile(ctx context.Context, id string) (api.Profile, error) {
	return do[api.Profile](ctx, c, "GET", "/v1/sessions/"+url.PathEscape(id)+"/profile", nil)
}

func (c *Client) EraseSession(ctx context.Context, id string) error {
	return c.Do(ctx, "DELETE", "/v1/sessions/"+url.PathEscape(id), nil, nil)
}

func (c *Client) RestartSession(ctx context.Context, id string) error {
	return c.Do(ctx, "POST", "/v1/sessions/"+url.PathEscape(id)+"/restart", nil, nil)
}

func (c *Client) CreateSession(ctx context.Context, binding string) (api.Session, error) {
	return do[api.Session](ctx, c, "POST", "/v1/sessions", map[string]string{"binding": binding})
}

func (c *Client) StopSession(ctx context.Context, id string) error {
	return c.Do(ctx, "POST", "/v1/sessions/"+url.PathEscape(id)+"/stop", nil, nil)
}

func (c *Client) ResetOutbox(ctx context.Context, id string) error {
	return c.Do(ctx, "POST", "/v1/sessions/"+url.PathEscape(id)+"/reset-outbox", nil, nil)
}

func (c *Client) SessionRecords(ctx context.Context, id string) (api.Records, error) {
	return do[api.Records](ctx, c, "GET", "/v1/sessions/"+url.PathEscape(id)+"/records", nil)
}

func (c *Client) Transcript(ctx context.Context, id string) (api.Transcript, error) {
	return do[api.Transcript](ctx, c, "GET", "/v1/sessions/"+url.PathEscape(id)+"/transcript", nil)
}

func (c *Client) ProfileHistory(ctx context.Context, id string) ([]api.ProfileVersion, error) {
	return do[[]api.ProfileVersion](ctx, c, "GET", "/v1/sessions/"+url.PathEscape(id)+"/profile/versions", nil)
}

func (c *Client) ProfileAt(ctx context.Context, id string, version uint64) (api.ProfileVersion, error) {
	return do[api.ProfileVersion](ctx, c, "GET", fmt.Sprintf("/v1/sessions/%s/profile/versions/%d", url.PathEscape(id), version), nil)
}

func (c *Client) Chat(ctx context.Context, r api.ChatRequest) (api.ChatReply, error) {
	return do[api.ChatReply](ctx, c, "POST", "/v1/chat", r)
}

func (c *Client) AuditEntries(ctx context.Context, q api.AuditQuery) ([]api.AuditEntry, error) {
	v := url.Values{}
	if q.Contains != "" {
		v.Set("contains", q.Contains)
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return do[[]api.AuditEntry](ctx, c, "GET", "/v1/audit?"+v.Encode(), nil)
}

func (c *Client) VerifyAudit(ctx context.Context) (api.AuditReport, error) {
	return do[api.AuditReport](ctx, c, "POST", "/v1/audit/verify", nil)
}

// Subscribe streams events until ctx ends. If the daemon cannot be reached
// the channel is closed at once.
func (c *Client) Subscribe(ctx context.Context) <-chan api.Event {
	out := make(chan api.Event, 16)
	req, err := http.NewRequestWithContext(ctx, "GET", "http://ironclaw/v1/events", nil)
	if err != nil {
		close(out)
		return out
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		close(out)
		return out
	}
	go func() {
		defer close(out)
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var e api.Event
			if json.Unmarshal(sc.Bytes(), &e) != nil {
				return
			}
			select {
			case out <- e:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}
