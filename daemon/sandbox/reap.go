package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// What a daemon that died leaves behind, and how the next one finds it (all of it is
// reaped before the first sandbox starts; see supervisor.Reap):
//   - containers: `runsc run` dies with the daemon (Pdeathsig), but the sandbox and gofer
//     processes can survive it (measured). Their state is under our --root, so
//     `runsc list` finds every one; ReapContainers deletes those with our id prefix.
//   - cgroups: runsc leaks them when create fails or a process is killed. Those of reaped
//     containers go with them; ReapCgroups removes the others once they are empty.
//   - outbox mounts: ReapOutboxMounts unmounts the images of the daemon's own sessions.

// ReapContainers force-deletes every container under r's root whose id has IDPrefix, and
// its cgroups, except those keep says to keep. Call it before starting sandboxes: a live
// container of ours that no Sandbox value owns is an orphan of an earlier daemon.
func (r *Runsc) ReapContainers(ctx context.Context, keep func(id string) bool) ([]string, error) {
	if err := r.ensure(ctx); err != nil {
		return nil, fmt.Errorf("reap containers: %w", err)
	}
	if err := ensureStateRoot(r.root()); err != nil {
		return nil, fmt.Errorf("reap containers: %w", err)
	}
	ids, err := r.list(ctx)
	if err != nil {
		return nil, fmt.Errorf("reap containers: %w", err)
	}
	var reaped []string
	var errs []error
	for _, id := range ids {
		if !idPattern.MatchString(id) || (keep != nil && keep(id)) {
			continue
		}
		if _, err := runControl(ctx, r.path(), r.globalArgs(), "delete", "--force", id); err != nil {
			errs = append(errs, fmt.Errorf("reap container %s: %w", id, err))
			continue
		}
		if err := RemoveCgroups(id); err != nil {
			errs = append(errs, fmt.Errorf("reap container %s: %w", id, err))
		}
		reaped = append(reaped, id)
	}
	return reaped, errors.Join(errs...)
}

// list returns the container ids runsc knows under r's root.
func (r *Runsc) list(ctx context.Context) ([]string, error) {
	out, err := runControl(ctx, r.path(), r.globalArgs(), "list", "-quiet")
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(out)), nil
}

// ReapCgroups removes the cgroups under CgroupParent, in every hierarchy, whose ids are not
// in running, that hold no process and are older than minAge. It never kills: a cgroup with
// processes may belong to another runsc root (tests run several at once) and is left, and
// minAge keeps it from racing a sandbox that is being created right now.
func ReapCgroups(running []string, minAge time.Duration) ([]string, error) {
	h, err := DiscoverCgroups()
	if err != nil {
		return nil, err
	}
	return h.Reap(running, minAge)
}

// Reap is ReapCgroups on this set of hierarchies.
func (h *CgroupHost) Reap(running []string, minAge time.Duration) ([]string, error) {
	var reaped []string
	var errs []error
	for _, m := range h.Hierarchies {
		ents, err := os.ReadDir(filepath.Join(m.Mount, CgroupParent))
		if err != nil {
			continue // no sandbox ever ran under this hierarchy
		}
		for _, e := range ents {
			if !e.IsDir() || !idPattern.MatchString(e.Name()) || slices.Contains(running, e.Name()) {
				continue
			}
			dir := filepath.Join(m.Mount, CgroupParent, e.Name())
			var st unix.Stat_t
			if err := unix.Lstat(dir, &st); err != nil || time.Since(time.Unix(st.Ctim.Unix())) < minAge {
				continue
			}
			if busy, err := cgroupTreeBusy(dir); err != nil || busy {
				continue
			}
			if err := h.removeTree(dir); err != nil {
				errs = append(errs, err)
				continue
			}
			reaped = append(reaped, dir)
		}
	}
	return reaped, errors.Join(errs...)
}

// cgroupTreeBusy reports whether any cgroup at or below dir holds a process.
func cgroupTreeBusy(dir string) (bool, error) {
	busy := false
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && len(cgroupPids(p)) > 0 {
			busy = true
			return filepath.SkipAll
		}
		return nil
	})
	return busy, err
}

// ReapOutboxMounts unmounts every outbox image mounted at <sessionsDir>/<session>/outbox:
// at daemon start no sandbox runs, so any such mount is a leftover.
func ReapOutboxMounts(sessionsDir string) ([]string, error) {
	all, err := readMountinfo()
	if err != nil {
		return nil, fmt.Errorf("reap outbox mounts: %w", err)
	}
	// mountinfo shows real paths.
	if real, err := filepath.EvalSymlinks(sessionsDir); err == nil {
		sessionsDir = real
	}
	var reaped []string
	var errs []error
	for _, m := range all {
		if filepath.Dir(filepath.Dir(m.point)) != sessionsDir || filepath.Base(m.point) != "outbox" || m.fsType != "ext4" {
			continue
		}
		if err := unmountDir(m.point); err != nil {
			errs = append(errs, fmt.Errorf("reap outbox mount: %w", err))
			continue
		}
		reaped = append(reaped, m.point)
	}
	return reaped, errors.Join(errs...)
}
