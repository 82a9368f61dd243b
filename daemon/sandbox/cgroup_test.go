package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeHost builds a cgroup tree in a temporary directory laid out like a real host and
// returns the CgroupHost parsed from a matching mountinfo. On a plain filesystem a
// directory with control files is not empty, so rmdir removes the files first, as
// cgroupfs does by itself.
func fakeHost(t *testing.T, layout CgroupLayout) (*CgroupHost, string) {
	t.Helper()
	root := t.TempDir()
	var mi strings.Builder
	n := 30
	line := func(point, fstype, super string) {
		n++
		mi.WriteString(strings.Join([]string{itoa(n), "23", "0:" + itoa(n), "/", point, "rw,relatime", "-", fstype, fstype, super}, " ") + "\n")
	}
	mi.WriteString("22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n")
	switch layout {
	case CgroupV2:
		must(t, os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpuset cpu io memory hugetlb pids rdma misc\n"), 0o644))
		line(root, "cgroup2", "rw,nsdelegate,memory_recursiveprot")
	case CgroupHybrid:
		for _, c := range []string{"cpu", "cpuacct", "memory", "pids"} {
			must(t, os.MkdirAll(filepath.Join(root, c), 0o755))
			line(filepath.Join(root, c), "cgroup", "rw,"+c)
		}
		must(t, os.MkdirAll(filepath.Join(root, "systemd"), 0o755))
		line(filepath.Join(root, "systemd"), "cgroup", "rw,xattr,name=systemd")
		must(t, os.MkdirAll(filepath.Join(root, "unified"), 0o755))
		must(t, os.WriteFile(filepath.Join(root, "unified", "cgroup.controllers"), nil, 0o644))
		line(filepath.Join(root, "unified"), "cgroup2", "rw")
	}
	mounts, err := parseMountinfo(strings.NewReader(mi.String()))
	if err != nil {
		t.Fatal(err)
	}
	h := cgroupHostFrom(mounts)
	h.rmdir = func(dir string) error {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if !e.IsDir() {
				if e.Name() == "cgroup.procs" {
					if b, _ := os.ReadFile(filepath.Join(dir, e.Name())); len(strings.TrimSpace(string(b))) > 0 {
						return syscall.EBUSY
					}
				}
				os.Remove(filepath.Join(dir, e.Name()))
			}
		}
		return syscall.Rmdir(dir)
	}
	return h, root
}

func itoa(i int) string { return strconv.Itoa(i) }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

const fakeID = IDPrefix + "0123456789abcdef0123456789abcdef"

// sandboxCgroup creates what runsc creates for a sandbox with our cgroupsPath, with usage
// files in the layout's format.
func sandboxCgroup(t *testing.T, h *CgroupHost, id string) []string {
	t.Helper()
	var dirs []string
	for _, x := range h.Hierarchies {
		if len(x.Controllers) == 0 && !x.V2 {
			continue // the named systemd hierarchy: runsc leaves it alone
		}
		if x.V2 && len(x.Controllers) == 0 {
			continue // hybrid's empty unified hierarchy
		}
		d := filepath.Join(x.Mount, CgroupParent, id)
		must(t, os.MkdirAll(filepath.Join(d, "sub"), 0o755))
		must(t, os.WriteFile(filepath.Join(d, "cgroup.procs"), nil, 0o644))
		files := map[string]string{}
		if x.V2 {
			files = map[string]string{"memory.current": "18874368\n", "pids.current": "23\n", "cpu.stat": "usage_usec 4500\nuser_usec 3000\nsystem_usec 1500\n"}
		} else {
			switch x.Controllers[0] {
			case "memory":
				files["memory.usage_in_bytes"] = "18874368\n"
			case "pids":
				files["pids.current"] = "23\n"
			case "cpuacct":
				files["cpuacct.usage"] = "4500000\n"
			}
		}
		for name, v := range files {
			must(t, os.WriteFile(filepath.Join(d, name), []byte(v), 0o644))
		}
		dirs = append(dirs, d)
	}
	return dirs
}

func TestCgroupLayouts(t *testing.T) {
	for _, layout := range []CgroupLayout{CgroupV2, CgroupHybrid} {
		t.Run(string(layout), func(t *testing.T) {
			h, _ := fakeHost(t, layout)
			if got := h.Layout(); got != layout {
				t.Fatalf("layout %s, want %s", got, layout)
			}
			for _, c := range []string{"memory", "cpu", "pids"} {
				x, err := h.Controller(c)
				if err != nil {
					t.Fatalf("%s: %v", c, err)
				}
				if x.V2 != (layout == CgroupV2) {
					t.Fatalf("%s found in %+v", c, x)
				}
			}
			if _, err := h.Controller("rdma"); (err == nil) != (layout == CgroupV2) {
				t.Fatalf("rdma: %v", err)
			}

			dirs := sandboxCgroup(t, h, fakeID)
			got, err := h.Dirs(fakeID)
			if err != nil || !slices.Equal(got, dirs) {
				t.Fatalf("Dirs = %v, %v; want %v", got, err, dirs)
			}
			u, err := h.Usage(fakeID)
			if err != nil {
				t.Fatal(err)
			}
			if u != (CgroupUsage{MemoryBytes: 18874368, CPUUsec: 4500, Pids: 23}) {
				t.Fatalf("usage %+v", u)
			}

			// A busy cgroup is left by Reap (it may be another root's live sandbox).
			must(t, os.WriteFile(filepath.Join(dirs[0], "sub", "cgroup.procs"), []byte("999999\n"), 0o644))
			reaped, err := h.Reap(nil, 0)
			if err != nil || len(reaped) != len(dirs)-1 {
				t.Fatalf("reap with one busy: %v %v", reaped, err)
			}
			if _, err := os.Stat(dirs[0]); err != nil {
				t.Fatal("busy cgroup was removed")
			}
			// Running ids and young cgroups are kept.
			must(t, os.WriteFile(filepath.Join(dirs[0], "sub", "cgroup.procs"), nil, 0o644))
			if r, _ := h.Reap([]string{fakeID}, 0); len(r) != 0 {
				t.Fatalf("reaped a running sandbox's cgroup: %v", r)
			}
			if r, _ := h.Reap(nil, time.Hour); len(r) != 0 {
				t.Fatalf("reaped a young cgroup: %v", r)
			}
			reaped, err = h.Reap(nil, 0)
			if err != nil || len(reaped) != 1 {
				t.Fatalf("reap: %v %v", reaped, err)
			}
			if left, _ := h.Dirs(fakeID); len(left) != 0 {
				t.Fatalf("left: %v", left)
			}

			// Remove (a stopped sandbox's teardown) takes children first.
			sandboxCgroup(t, h, fakeID)
			if err := h.Remove(fakeID); err != nil {
				t.Fatal(err)
			}
			if left, _ := h.Dirs(fakeID); len(left) != 0 {
				t.Fatalf("left after Remove: %v", left)
			}
		})
	}
}

func TestCgroupControllerMissing(t *testing.T) {
	h, root := fakeHost(t, CgroupV2)
	must(t, os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpu io\n"), 0o644))
	mounts := []mountEntry{{point: root, fsType: "cgroup2"}}
	h = cgroupHostFrom(mounts)
	if _, err := h.Controller("memory"); err == nil || !strings.Contains(err.Error(), "cgroup.controllers") {
		t.Fatalf("missing v2 memory: %v", err)
	}
	if _, err := (&CgroupHost{}).Controller("memory"); err == nil || !strings.Contains(err.Error(), "no cgroup filesystem") {
		t.Fatalf("no cgroups: %v", err)
	}
	if _, err := h.Usage("nope"); err == nil {
		t.Fatal("bad id accepted")
	}
	if _, err := h.Usage(fakeID); err == nil || !errors.Is(err, os.ErrNotExist) && !strings.Contains(err.Error(), "memory") {
		t.Fatalf("usage of a missing cgroup: %v", err)
	}
}

// TestCgroupThisHost checks discovery on the machine the tests run on: whatever its
// layout, memory, cpu and pids must be found (every sandbox relies on them).
func TestCgroupThisHost(t *testing.T) {
	h, err := DiscoverCgroups()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("layout %s", h.Layout())
	if h.Layout() == CgroupNone {
		t.Skip("no cgroups mounted here")
	}
	for _, c := range []string{"memory", "cpu", "pids"} {
		if _, err := h.Controller(c); err != nil {
			t.Errorf("%s: %v", c, err)
		}
	}
}
