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

// cgroupMounts returns the mount points of every cgroup (v1) and cgroup2 hierarchy. This
// machine has the hybrid layout: v1 controllers under /sys/fs/cgroup/<controller>, a named
// "systemd" hierarchy and cgroup2 at /sys/fs/cgroup/unified; runsc creates a directory for
// the sandbox in each v1 hierarchy. Reading mountinfo keeps this right on pure v2 hosts too.
func cgroupMounts() ([]string, error) {
	all, err := readMountinfo()
	if err != nil {
		return nil, fmt.Errorf("list cgroup hierarchies: %w", err)
	}
	var mounts []string
	for _, m := range all {
		if m.fsType == "cgroup" || m.fsType == "cgroup2" {
			mounts = append(mounts, m.point)
		}
	}
	return mounts, nil
}

// CgroupDirs returns every existing cgroup directory that runsc may have created for the
// container id: <hierarchy>/ironclaw/<id> (our cgroupsPath) and <hierarchy>/<id> (runsc's
// default when a spec has no cgroupsPath), in every mounted hierarchy.
func CgroupDirs(id string) ([]string, error) {
	if !idPattern.MatchString(id) {
		return nil, fmt.Errorf("cgroup lookup: %q is not a sandbox id", id)
	}
	mounts, err := cgroupMounts()
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, m := range mounts {
		for _, d := range []string{filepath.Join(m, CgroupParent, id), filepath.Join(m, id)} {
			if fi, err := os.Lstat(d); err == nil && fi.IsDir() {
				dirs = append(dirs, d)
			}
		}
	}
	return dirs, nil
}

// RemoveCgroups removes the cgroups runsc created for the container id, which it leaks when
// create fails or a sandbox process is killed. Only call it once the container is stopped:
// any process still in such a cgroup is a remnant of that sandbox and is killed. The daemon
// also calls it at start for ids it finds under CgroupParent and no longer runs.
func RemoveCgroups(id string) error {
	dirs, err := CgroupDirs(id)
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range dirs {
		if err := removeCgroupTree(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeCgroupTree removes a cgroup and any child cgroups, deepest first. cgroupfs only
// allows rmdir of an empty cgroup (its control files vanish with it).
func removeCgroupTree(root string) error {
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
		if err := rmdirCgroup(d); err != nil {
			return err
		}
	}
	return nil
}

func rmdirCgroup(dir string) error {
	deadline := time.Now().Add(cgroupRemoveWait)
	for {
		err := syscall.Rmdir(dir)
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
