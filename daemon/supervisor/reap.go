package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ironclaw/ironclaw/daemon/sandbox"
)

// reapCgroupMinAge keeps Reap away from a cgroup that runsc is creating right now (under
// another --root: tests run several daemons' worth of sandboxes at once).
const reapCgroupMinAge = 30 * time.Second

// ReapReport lists what Reap removed.
type ReapReport struct {
	Containers []string // orphaned containers deleted (ids)
	Cgroups    []string // empty leaked cgroups removed (paths)
	Mounts     []string // outbox filesystems unmounted (mount points)
	Bundles    []string // bundle directories removed (paths)
}

// Empty reports whether nothing was found.
func (r ReapReport) Empty() bool {
	return len(r.Containers)+len(r.Cgroups)+len(r.Mounts)+len(r.Bundles) == 0
}

// Reap removes what an earlier daemon that died left behind: its containers (our --root,
// our id prefix; `runsc delete --force`, which also kills a sandbox that outlived its
// `runsc run`), their cgroups and other empty leaked ones, outbox filesystems still mounted
// under our sessions directory, and stale bundles (Start refuses an existing bundle, so a
// leftover one would keep its session from ever starting). Call it once, after New and
// before the first message: it refuses to run while any conversation is open. What it finds
// is audited as "sandbox.reap".
func (s *Supervisor) Reap(ctx context.Context) (ReapReport, error) {
	s.mu.Lock()
	open := len(s.running)
	s.mu.Unlock()
	if open > 0 {
		return ReapReport{}, fmt.Errorf("supervisor: Reap must run before any conversation opens (%d open)", open)
	}
	var rep ReapReport
	var errs []error
	var err error
	if rep.Containers, err = s.cfg.Runsc.ReapContainers(ctx, nil); err != nil {
		errs = append(errs, err)
	}
	if rep.Cgroups, err = sandbox.ReapCgroups(nil, reapCgroupMinAge); err != nil {
		errs = append(errs, err)
	}
	if rep.Mounts, err = sandbox.ReapOutboxMounts(filepath.Join(s.cfg.StateDir, "sessions")); err != nil {
		errs = append(errs, err)
	}
	bundles := filepath.Join(s.cfg.StateDir, "bundles")
	ents, err := os.ReadDir(bundles)
	if err != nil {
		errs = append(errs, fmt.Errorf("reap bundles: %w", err))
	}
	for _, e := range ents {
		p := filepath.Join(bundles, e.Name())
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, fmt.Errorf("reap bundle: %w", err))
			continue
		}
		rep.Bundles = append(rep.Bundles, p)
	}
	rerr := errors.Join(errs...)
	if !rep.Empty() || rerr != nil {
		result := fmt.Sprintf("containers=%d [%s] cgroups=%d mounts=%d bundles=%d",
			len(rep.Containers), strings.Join(rep.Containers, " "), len(rep.Cgroups), len(rep.Mounts), len(rep.Bundles))
		if rerr != nil {
			result += "; errors: " + rerr.Error()
		}
		if aerr := s.audit("daemon", "sandbox.reap", s.cfg.StateDir, "", result); aerr != nil {
			return rep, errors.Join(rerr, fmt.Errorf("supervisor: audit: %w", aerr))
		}
		s.cfg.Log.Warn("reaped what an earlier daemon left", "result", result)
	}
	if rerr != nil {
		return rep, fmt.Errorf("supervisor: reap: %w (fix these before starting agents; `runsc --root %s list` shows containers)", rerr, s.runscRoot())
	}
	return rep, nil
}

func (s *Supervisor) runscRoot() string {
	if s.cfg.Runsc.Root == "" {
		return sandbox.DefaultRoot
	}
	return s.cfg.Runsc.Root
}
