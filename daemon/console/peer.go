package console

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strings"
)

// source is the failure limiter's key for a connection: the remote IP,
// or, on loopback, the local user the connecting socket belongs to. Every
// local user shares the loopback address, so keyed by address one user
// failing keys on purpose would lock every other (the operator) out of a
// console that listens only on loopback; keyed by user they lock out only
// themselves. If the user cannot be found, the address is the key (the
// shared bucket: never a way around the limit).
func source(local, remote net.Addr) string {
	ip, port := addrIPPort(remote)
	if ip == nil {
		return remote.String()
	}
	if ip.IsLoopback() {
		if lip, lport := addrIPPort(local); lip != nil {
			if uid, ok := socketUID(ip, port, lip, lport); ok {
				return "uid:" + uid + "@loopback"
			}
		}
	}
	return ip.String()
}

func addrIPPort(a net.Addr) (net.IP, int) {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP, ta.Port
	}
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return nil, 0
	}
	var p int
	fmt.Sscan(port, &p)
	return net.ParseIP(host), p
}

// socketUID finds, in /proc/net/tcp and tcp6, the socket whose local end is
// (ip, port) and whose remote end is (rip, rport) — the client's side of a
// loopback connection — and returns the uid that owns it.
func socketUID(ip net.IP, port int, rip net.IP, rport int) (string, bool) {
	want := map[string]bool{}
	for _, l := range procAddrs(ip, port) {
		for _, r := range procAddrs(rip, rport) {
			want[l+" "+r] = true
		}
	}
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(file)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // the header
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid ...
			fs := strings.Fields(sc.Text())
			if len(fs) > 7 && want[fs[1]+" "+fs[2]] {
				f.Close()
				return fs[7], true
			}
		}
		f.Close()
	}
	return "", false
}

// procAddrs renders ip:port as /proc/net/tcp{,6} does: the address as
// 32-bit words in host (little-endian) order, in hex; an IPv4 address also
// as the IPv4-mapped IPv6 one, for dual-stack sockets.
func procAddrs(ip net.IP, port int) []string {
	var out []string
	if v4 := ip.To4(); v4 != nil {
		out = append(out, fmt.Sprintf("%08X:%04X", binary.LittleEndian.Uint32(v4), port))
	}
	if v6 := ip.To16(); v6 != nil {
		var b strings.Builder
		for i := 0; i < 16; i += 4 {
			fmt.Fprintf(&b, "%08X", binary.LittleEndian.Uint32(v6[i:i+4]))
		}
		out = append(out, fmt.Sprintf("%s:%04X", b.String(), port))
	}
	return out
}
