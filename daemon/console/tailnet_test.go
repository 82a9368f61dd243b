package console

import (
	"context"
	"encoding/json"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"crypto/tls"
	"github.com/ironclaw/ironclaw/daemon/api"
	gossh "golang.org/x/crypto/ssh"
	"net/http"
	"tailscale.com/ipn/store/mem"
	"tailscale.com/net/netns"
	"tailscale.com/tailcfg"

	"tailscale.com/derp/derpserver"
	"tailscale.com/net/stun/stuntest"
	"tailscale.com/tsnet"
	"tailscale.com/tstest/integration/testcontrol"
	"tailscale.com/types/key"
	"tailscale.com/types/logger"
	"tailscale.com/types/nettype"
)

// The console on a tailnet (tailscale's in-process test control server and
// DERP, all on loopback; CI runs this inside a private network namespace):
// a second node of the tailnet reaches it with an operator key; nothing on
// the host's own interfaces can, and no host socket listens for it.
func TestTailnetConsoleReachableOnlyOnTheTailnet(t *testing.T) {
	for k, v := range map[string]string{
		"TS_ASSUME_NETWORK_UP_FOR_TEST": "1", "TS_DEBUG_USE_DERP_HTTP": "1",
		"TS_NO_LOGS_NO_SUPPORT": "true", "TS_DISABLE_PORTMAPPER": "1",
	} {
		t.Setenv(k, v)
	}
	netns.SetEnabled(false)
	t.Cleanup(func() { netns.SetEnabled(true) })
	derpMap := runDERPAndSTUN(t)
	control := &testcontrol.Server{DERPMap: derpMap, DNSConfig: &tailcfg.DNSConfig{Proxied: true}, MagicDNSDomain: "tail-scale.ts.net", Logf: logger.Discard}
	control.HTTPTestServer = httptest.NewUnstartedServer(control)
	control.HTTPTestServer.Start()
	t.Cleanup(control.HTTPTestServer.Close)
	t.Setenv("TS_CONTROL_URL", control.HTTPTestServer.URL)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// A port nothing on the host uses (others may run a console on 2222).
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(free.Addr().String())
	free.Close()
	h := startServerOn(t, func(ctx context.Context) (net.Listener, error) {
		ln, stop, err := ListenTailnet(ctx, Tailnet{Dir: filepath.Join(t.TempDir(), "tailnet"), Hostname: "ironclaw", Port: port})
		if err != nil {
			return nil, err
		}
		t.Cleanup(func() { stop() })
		return ln, nil
	})

	// Nothing of this process listens on the host for the console.
	for _, l := range hostTCPListeners(t) {
		if strings.HasSuffix(l, ":"+port) {
			t.Fatalf("a host socket listens on the console's port: %s", l)
		}
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second); err == nil {
		c.Close()
		t.Fatal("the console answered on the host's loopback")
	}

	// A second node of the tailnet.
	laptop := &tsnet.Server{Dir: filepath.Join(t.TempDir(), "laptop"), Hostname: "laptop", Store: new(mem.Store), Ephemeral: true, Logf: logger.Discard}
	t.Cleanup(func() { laptop.Close() })
	if _, err := laptop.Up(ctx); err != nil {
		t.Fatal(err)
	}
	lc, _ := laptop.LocalClient()
	var target string
	for target == "" {
		st, err := lc.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range st.Peer {
			if p.HostName == "ironclaw" && len(p.TailscaleIPs) > 0 {
				target = net.JoinHostPort(p.TailscaleIPs[0].String(), port)
			}
		}
		if ctx.Err() != nil {
			t.Fatal("the console's node never showed up on the tailnet")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// From the host's own network stack, the tailnet address is nothing.
	if c, err := net.DialTimeout("tcp", target, time.Second); err == nil {
		c.Close()
		t.Fatal("the console's tailnet address answered from the host network")
	}
	conn, err := laptop.Dial(ctx, "tcp", target)
	if err != nil {
		t.Fatal(err)
	}
	sc, chans, reqs, err := gossh.NewClientConn(conn, target, &gossh.ClientConfig{
		User: "me", Auth: []gossh.AuthMethod{gossh.PublicKeys(h.opKey)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 30 * time.Second,
	})
	if err != nil {
		t.Fatalf("the tailnet peer with an operator key was refused: %v", err)
	}
	client := gossh.NewClient(sc, chans, reqs)
	defer client.Close()
	out, _, err := run(t, client, "approvals --json")
	var list []api.ChangeSummary
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 {
		t.Fatalf("approvals over the tailnet: %v %q", err, out)
	}
	// A tailnet peer without an operator key gets nothing.
	conn2, err := laptop.Dial(ctx, "tcp", target)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := gossh.NewClientConn(conn2, target, &gossh.ClientConfig{
		User: "me", Auth: []gossh.AuthMethod{gossh.PublicKeys(newSigner(t))},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 30 * time.Second,
	}); err == nil {
		t.Fatal("a tailnet peer without an operator key got in")
	}
}

// hostTCPListeners lists this process's listening TCP sockets on the host
// (/proc/self/net lists the whole network namespace: keep our own sockets).
func hostTCPListeners(t *testing.T) []string {
	mine := map[string]bool{}
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, fd := range fds {
		if target, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(target, "socket:[") {
			mine[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] = true
		}
	}
	var out []string
	for _, f := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) > 9 && fs[3] == "0A" && mine[fs[9]] {
				_, port, _ := strings.Cut(fs[1], ":")
				var p int
				for _, c := range port {
					p = p*16 + strings.IndexRune("0123456789ABCDEF", c)
				}
				out = append(out, fs[1]+":"+itoa(p))
			}
		}
	}
	return out
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// runDERPAndSTUN serves a DERP relay and a STUN server on loopback and
// returns the map that points the nodes at them (as tailscale's own
// integration tests do, without their larger dependencies).
func runDERPAndSTUN(t *testing.T) *tailcfg.DERPMap {
	d := derpserver.New(key.NewNode(), logger.Discard)
	srv := httptest.NewUnstartedServer(derpserver.Handler(d))
	srv.Config.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	srv.StartTLS()
	stunAddr, stunCleanup := stuntest.ServeWithPacketListener(t, nettype.Std{})
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		d.Close()
		stunCleanup()
	})
	return &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{1: {
		RegionID: 1, RegionCode: "test",
		Nodes: []*tailcfg.DERPNode{{
			Name: "t1", RegionID: 1, HostName: "127.0.0.1", IPv4: "127.0.0.1", IPv6: "none",
			STUNPort: stunAddr.Port, DERPPort: srv.Listener.Addr().(*net.TCPAddr).Port,
			InsecureForTests: true, STUNTestIP: "127.0.0.1",
		}},
	}}}
}
