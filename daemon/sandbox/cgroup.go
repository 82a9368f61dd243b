package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cgroupRemoveWait bounds how long RemoveCgroups waits for a cgroup's last processes to
// exit (runsc delete --force kills asynchronously).
const cgroupRemoveWait = 3 * time.Second

// CgroupLayout names how a host mounts its cgroups.
type CgroupLayout string

// The layouts. This VM is hybrid: v1 controllers under /sys/fs/cgroup/<controller>, a
// named "systemd" v1 hierarchy and an empty cgroup2 at /sys/fs/cgroup/unified. A stock
// Debian 12 under systemd is pure v2: one cgroup2 at /sys/fs/cgroup holding every
// controller.
const (
	CgroupNone   CgroupLayout = "none"
	CgroupV1     CgroupLayout = "v1"
	CgroupHybrid CgroupLayout = "hybrid"
	CgroupV2     CgroupLayout = "v2"
)

// v1Controllers are the controller names a v1 hierarchy's mount options may carry (the
// rest of the options are rw, relatime, name=..., and the like).
var v1Controllers = []string{"blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "hugetlb",
	"memory", "misc", "net_cls", "net_prio", "perf_event", "pids", "rdma"}

// Hierarchy is one mounted cgroup hierarchy.
type Hierarchy struct {
	Mount string
	V2    bool
	// Controllers attached to it: from the mount options for v1, from cgroup.controllers at
	// the root for v2 (a controller bound to a v1 hierarchy never shows in the v2 one).
	Controllers []string
}

// CgroupHost is the host's cgroup hierarchies as the daemon sees them. Every cgroup path
// the sandbox package reads or removes comes from here, so tests run the same code over a
// fake tree in a temporary directory for both layouts.
type CgroupHost struct {
	Hierarchies []Hierarchy
	// rmdir removes one (empty) cgroup; syscall.Rmdir on a real cgroupfs, where a cgroup's
	// control files vanish with it. Tests on a plain directory tree replace it.
	rmdir func(string) error
}

// DiscoverCgroups reads the daemon's mountinfo (runsc, its child, shares the mount
// namespace). Reading mountinfo rather than assuming /sys/fs/cgroup keeps this right on
// v1, hybrid and pure v2 hosts alike.
func DiscoverCgroups() (*CgroupHost, error) {
	all, err := readMountinfo()
	if err != nil {
		return nil, fmt.Errorf("list cgroup hierarchies: %w", err)
	}
	return cgroupHostFrom(all), nil
}

func cgroupHostFrom(all []mountEntry) *CgroupHost {
	h := &CgroupHost{rmdir: syscall.Rmdir}
	for _, m := range all {
		switch m.fsType {
		case "cgroup":
			var ctrls []string
			for _, o := range strings.Split(m.super, ",") {
				if slices.Contains(v1Controllers, o) {
					ctrls = append(ctrls, o)
				}
			}
			h.Hierarchies = append(h.Hierarchies, Hierarchy{Mount: m.point, Controllers: ctrls})
		case "cgroup2":
			b, _ := os.ReadFile(filepath.Join(m.point, "cgroup.controllers"))
			h.Hierarchies = append(h.Hierarchies, Hierarchy{Mount: m.point, V2: true, Controllers: strings.Fields(string(b))})
		}
	}
	return h
}

// Layout says which of the layouts the host has. A v2 mount next to v1 ones is hybrid
// even when it holds no controller (as here): runsc then uses the v1 hierarchies.
func (h *CgroupHost) Layout() CgroupLayout {
	var v1, v2 bool
	for _, x := range h.Hierarchies {
		if x.V2 {
			v2 = true
		} else {
			v1 = true
		}
	}
	switch {
	case v1 && v2:
		return CgroupHybrid
	case v1:
		return CgroupV1
	case v2:
		return CgroupV2
	}
	return CgroupNone
}

// Controller returns the hierarchy the named controller is attached to. On v2 it must
// also be delegable from the root (runsc enables it in /ironclaw's subtree_control).
func (h *CgroupHost) Controller(name string) (Hierarchy, error) {
	for _, x := range h.Hierarchies {
		if slices.Contains(x.Controllers, name) {
			return x, nil
		}
	}
	switch h.Layout() {
	case CgroupNone:
		return Hierarchy{}, fmt.Errorf("no cgroup filesystem is mounted: mount cgroup2 at /sys/fs/cgroup (`mount -t cgroup2 none /sys/fs/cgroup`) or boot with systemd")
	case CgroupV2:
		return Hierarchy{}, fmt.Errorf("the %s controller is not in %s/cgroup.controllers: enable it in the kernel (CONFIG_MEMCG, CONFIG_CGROUP_PIDS...) or, if systemd holds it, set DefaultMemoryAccounting=yes / Delegate=yes in the unit", name, h.Hierarchies[0].Mount)
	}
	return Hierarchy{}, fmt.Errorf("the %s controller is not mounted in any cgroup hierarchy: mount it (`mkdir -p /sys/fs/cgroup/%s && mount -t cgroup -o %s cgroup /sys/fs/cgroup/%s`) or boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1)", name, name, name, name)
}

// Dirs returns every existing cgroup directory that runsc may have created for the
// container id: <hierarchy>/ironclaw/<id> (our cgroupsPath) and <hierarchy>/<id> (runsc's
// default when a spec has no cgroupsPath), in every mounted hierarchy.
func (h *CgroupHost) Dirs(id string) ([]string, error) {
	if !idPattern.MatchString(id) {
		return nil, fmt.Errorf("cgroup lookup: %q is not a sandbox id", id)
	}
	var dirs []string
	for _, m := range h.Hierarchies {
		for _, d := range []string{filepath.Join(m.Mount, CgroupParent, id), filepath.Join(m.Mount, id)} {
			if fi, err := os.Lstat(d); err == nil && fi.IsDir() {
				dirs = append(dirs, d)
			}
		}
	}
	return dirs, nil
}

// Remove removes the cgroups runsc created for the container id in every hierarchy.
func (h *CgroupHost) Remove(id string) error {
	dirs, err := h.Dirs(id)
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range dirs {
		if err := h.removeTree(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// CgroupUsage is what a sandbox's cgroups say it uses now.
type CgroupUsage struct {
	MemoryBytes uint64 // v2 memory.current, v1 memory.usage_in_bytes
	CPUUsec     uint64 // v2 cpu.stat usage_usec, v1 cpuacct.usage (ns) / 1000
	Pids        uint64 // pids.current (sandbox host threads, not agent threads)
}

// Usage reads the sandbox id's current usage from whichever hierarchy holds each
// controller: the same call is right on v1, hybrid and v2.
func (h *CgroupHost) Usage(id string) (CgroupUsage, error) {
	if !idPattern.MatchString(id) {
		return CgroupUsage{}, fmt.Errorf("cgroup usage: %q is not a sandbox id", id)
	}
	var u CgroupUsage
	var errs []error
	read := func(ctrl, v1file, v2file string, set func(uint64)) {
		x, err := h.Controller(ctrl)
		if err != nil {
			errs = append(errs, err)
			return
		}
		dir := filepath.Join(x.Mount, CgroupParent, id)
		if x.V2 {
			v, err := readCgroupValue(filepath.Join(dir, v2file))
			if err != nil {
				errs = append(errs, err)
				return
			}
			set(v)
			return
		}
		v, err := readCgroupValue(filepath.Join(dir, v1file))
		if err != nil {
			errs = append(errs, err)
			return
		}
		set(v)
	}
	read("memory", "memory.usage_in_bytes", "memory.current", func(v uint64) { u.MemoryBytes = v })
	read("pids", "pids.current", "pids.current", func(v uint64) { u.Pids = v })
	// CPU time is accounted by cpuacct on v1 and by cpu (cpu.stat) on v2.
	if x, err := h.Controller("cpu"); err == nil && x.V2 {
		read("cpu", "", "cpu.stat:usage_usec", func(v uint64) { u.CPUUsec = v })
	} else {
		read("cpuacct", "cpuacct.usage", "", func(v uint64) { u.CPUUsec = v / 1000 })
	}
	return u, errors.Join(errs...)
}

// readCgroupValue reads a single-number control file, or "file:key" from a flat-keyed one
// such as cpu.stat.
func readCgroupValue(spec string) (uint64, error) {
	path, key, keyed := strings.Cut(spec, ":")
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("cgroup usage: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if keyed {
		found := false
		for _, line := range strings.Split(s, "\n") {
			if k, v, ok := strings.Cut(line, " "); ok && k == key {
				s, found = v, true
				break
			}
		}
		if !found {
			return 0, fmt.Errorf("cgroup usage: %s has no %s", path, key)
		}
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cgroup usage: %s: %w", path, err)
	}
	return v, nil
}

// cgroupMounts returns the mount points of every cgroup (v1) and cgroup2 hierarchy.
func cgroupMounts() ([]string, error) {
	h, err := DiscoverCgroups()
	if err != nil {
		return nil, err
	}
	var mounts []string
	for _, x := range h.Hierarchies {
		mounts = append(mounts, x.Mount)
	}
	return mounts, nil
}

// CgroupDirs returns every existing cgroup directory that runsc may have created for the
// container id, on this host (see CgroupHost.Dirs).
func CgroupDirs(id string) ([]string, error) {
	h, err := DiscoverCgroups()
	if err != nil {
		return nil, err
	}
	return h.Dirs(id)
}

// RemoveCgroups removes the cgroups runsc created for the container id, which it leaks when
// create fails or a sandbox process is killed. Only call it once the container is stopped:
// any process still in such a cgroup is a remnant of that sandbox and is killed. The daemon
// also calls it at start for ids it finds under CgroupParent and no longer runs.
func RemoveCgroups(id string) error {
	h, err := DiscoverCgroups()
	if err != nil {
		return err
	}
	return h.Remove(id)
}

// removeTree removes a cgroup and any child cgroups, deepest first. cgroupfs only allows
// rmdir of a cgroup without children (its control files vanish with it); on v2 that holds
// for /ironclaw/<id> too, whose children runsc may create for the containers inside.
func (h *CgroupHost) removeTree(root string) error {
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("remove cgroup %s: %w", root, err)
	}
	slices.Reverse(dirs)
	for _, d := range dirs {
		if err := h.rmdirCgroup(d); err != nil {
			return err
		}
	}
	return nil
}

func (h *CgroupHost) rmdirCgroup(dir string) error {
	deadline := time.Now().Add(cgroupRemoveWait)
	for {
		err := h.rmdir(dir)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) {
			return fmt.Errorf("remove cgroup %s: %w", dir, err)
		}
		// Busy: processes are still in it. They belong to this sandbox (runsc put them there),
		// so finish them off and wait for the kernel to empty the cgroup.
		pids := cgroupPids(dir)
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("remove cgroup %s: still busy after %v (pids %v): find who holds it with `cat %s/cgroup.procs`",
				dir, cgroupRemoveWait, pids, dir)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cgroupPids lists the processes in one cgroup (cgroup.procs has the same format on v1
// and v2).
func cgroupPids(dir string) []int {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		// Never ourselves: the daemon is not in a sandbox cgroup, but a bug must not kill it.
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}
