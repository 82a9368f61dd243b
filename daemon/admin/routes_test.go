package admin

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ironclaw/ironclaw/daemon/api"
	"github.com/ironclaw/ironclaw/tui/tuitest"
)

// The CLI's client is daemon/api over the socket: the same values, errors
// with their code and hint, live events — bound to the socket's peer.
func TestRoutesBindTheAPI(t *testing.T) {
	dir, err := os.MkdirTemp("/tmp", "icadr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d := tuitest.NewDaemon()
	id := d.File("", "tools", "agent:0123456789abcdef0123456789abcdef", "why", "b", "p", "+x\n")
	mux := http.NewServeMux()
	Routes(mux, func(p Peer) api.Operator { return d.Operator(p.Actor()) })
	sock := filepath.Join(dir, "admin.sock")
	s, err := Listen(sock, mux)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := NewClient(sock)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	events := c.Subscribe(ctx)
	list, err := c.ListChanges(ctx, api.ChangeFilter{})
	if err != nil || len(list) != 1 || list[0].ID != id {
		t.Fatalf("list: %v %+v", err, list)
	}
	ch, err := c.Change(ctx, id)
	if err != nil || ch.Diff != "+x\n" {
		t.Fatalf("change: %v %+v", err, ch)
	}
	if _, err := c.Approve(ctx, id, api.DecideRequest{Binding: ch.Binding}); err != nil {
		t.Fatal(err)
	}
	// The decision is recorded for the socket's peer, not anyone named in the request.
	got, _ := d.Change(id)
	if want := (Peer{UID: os.Geteuid(), Name: c.Who().Actor[len("operator:local:"):]}).Actor(); got.DecidedBy != want {
		t.Fatalf("decided by %q, want the peer %q", got.DecidedBy, want)
	}
	select {
	case e := <-events:
		if e.Kind != api.EventChange || e.ID != id {
			t.Fatalf("event %+v", e)
		}
	case <-ctx.Done():
		t.Fatal("no live event over the socket")
	}
	// Deciding again is refused with the gateway's code and hint.
	_, err = c.Approve(ctx, id, api.DecideRequest{Binding: ch.Binding})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != api.CodeConflict || ae.Hint == "" {
		t.Fatalf("second approval: %#v", err)
	}
	if _, err := c.Change(ctx, "nope"); api.CodeOf(err) != api.CodeNotFound {
		t.Fatalf("unknown change: %v", err)
	}
}

// The profile history and one version travel over the socket; a version
// that is not a number is refused as invalid before the api is asked.
func TestProfileHistoryRoutes(t *testing.T) {
	dir, err := os.MkdirTemp("/tmp", "icadp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	const id = "0123456789abcdef0123456789abcdef"
	d := tuitest.NewDaemon()
	d.AddProfileVersion(id, "a\n", "+a\n", "")
	d.AddProfileVersion(id, "b\n", "-a\n+b\n", "00112233445566778899aabbccddeeff")
	mux := http.NewServeMux()
	Routes(mux, func(p Peer) api.Operator { return d.Operator(p.Actor()) })
	sock := filepath.Join(dir, "admin.sock")
	s, err := Listen(sock, mux)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := NewClient(sock)
	ctx := context.Background()
	vs, err := c.ProfileHistory(ctx, id)
	if err != nil || len(vs) != 2 || vs[1].Change != "00112233445566778899aabbccddeeff" || vs[1].Canonical != "" {
		t.Fatalf("history %+v %v", vs, err)
	}
	v, err := c.ProfileAt(ctx, id, 2)
	if err != nil || v.Diff != "-a\n+b\n" || v.Canonical != "b\n" {
		t.Fatalf("version %+v %v", v, err)
	}
	if err := c.Do(ctx, "GET", "/v1/sessions/"+id+"/profile/versions/x", nil, nil); api.CodeOf(err) != api.CodeInvalid {
		t.Fatalf("bad version: %v", err)
	}
	if _, err := c.ProfileAt(ctx, id, 9); api.CodeOf(err) != api.CodeNotFound {
		t.Fatalf("missing version: %v", err)
	}
}
