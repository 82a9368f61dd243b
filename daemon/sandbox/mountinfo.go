package sandbox

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// mountEntry is one line of /proc/self/mountinfo, reduced to what this package needs.
type mountEntry struct {
	point  string // mount point, unescaped
	fsType string
	source string // e.g. /dev/loop3
	super  string // superblock options, e.g. "rw,memory" for a v1 memory hierarchy
}

// readMountinfo lists the mounts of the daemon's mount namespace (which runsc, its child,
// shares).
func readMountinfo() ([]mountEntry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseMountinfo(f)
}

// parseMountinfo parses mountinfo text (tests feed it a fake host's).
func parseMountinfo(r io.Reader) ([]mountEntry, error) {
	var out []mountEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		// "id parent maj:min root mountpoint opts [optional...] - fstype source superopts"
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		fields, postFields := strings.Fields(pre), strings.Fields(post)
		if len(fields) < 5 || len(postFields) < 2 {
			continue
		}
		out = append(out, mountEntry{
			point:  unescapeMountinfo(fields[4]),
			fsType: postFields[0],
			source: unescapeMountinfo(postFields[1]),
			super:  superOpts(postFields),
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	return out, nil
}

func superOpts(post []string) string {
	if len(post) < 3 {
		return ""
	}
	return post[2]
}

// mountAt returns the topmost mount whose mount point is exactly dir, if any.
func mountAt(dir string) (mountEntry, bool, error) {
	all, err := readMountinfo()
	if err != nil {
		return mountEntry{}, false, err
	}
	var found mountEntry
	ok := false
	for _, m := range all {
		if m.point == dir {
			found, ok = m, true // later lines are mounted on top of earlier ones
		}
	}
	return found, ok, nil
}

// unescapeMountinfo undoes the octal escapes (\040 for space, ...) of mountinfo paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
