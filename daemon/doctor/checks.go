package doctor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/ironclaw/ironclaw/daemon/config"
	"github.com/ironclaw/ironclaw/daemon/hostcheck"
	"github.com/ironclaw/ironclaw/daemon/keys"
	"github.com/ironclaw/ironclaw/daemon/sandbox"
	"github.com/ironclaw/ironclaw/daemon/supervisor"
)

// checkRunsc runs the daemon's own runsc check (present, root-owned, the
// pinned digest, answers --version) and compares the pin with the release.
func checkRunsc(ctx context.Context, o Options, add func(...Check)) bool {
	cfg := o.Config
	want := cfg.Sandbox.RunscDigest
	if want == "" {
		want = o.RunscDigest
	}
	r := &sandbox.Runsc{Path: cfg.Sandbox.Runsc, Platform: cfg.Sandbox.Platform, WantDigest: want, Root: "/run/ironclaw-doctor"}
	c := Check{Name: "runsc", Needed: true}
	if err := r.Check(ctx); err != nil {
		c.Status, c.Detail = Fail, err.Error()
		c.Remedy = fmt.Sprintf(".ci/install-runsc.sh %s  (builds and installs the pinned runsc, sha256 %s)", filepath.Dir(cfg.Sandbox.Runsc), short(want))
		add(c)
		return false
	}
	c.Status, c.Detail = OK, fmt.Sprintf("%s is the pinned build (sha256 %s)", cfg.Sandbox.Runsc, short(want))
	add(c)
	if cfg.Sandbox.RunscDigest != "" && cfg.Sandbox.RunscDigest != o.RunscDigest {
		add(Check{Name: "runsc.release", Status: Warn,
			Detail: fmt.Sprintf("sandbox.runsc_digest pins %s, not this release's runsc (%s): it was not built from the source this ironclaw records", short(cfg.Sandbox.RunscDigest), short(o.RunscDigest)),
			Remedy: "remove sandbox.runsc_digest from the config and run .ci/install-runsc.sh, or keep your pin on purpose"})
	} else {
		add(Check{Name: "runsc.release", Status: OK, Detail: "matches images/runsc.sha256 of this release"})
	}
	return true
}

// checkCgroups reports the layout and whether each controller a sandbox's
// limits need is usable.
func checkCgroups(o Options) []Check {
	h, err := o.Cgroups()
	if err != nil {
		return []Check{{Name: "cgroups", Status: Fail, Needed: true, Detail: err.Error(), Remedy: "make /proc/self/mountinfo readable (is /proc mounted?)"}}
	}
	out := []Check{{Name: "cgroups", Status: OK, Detail: "layout " + string(h.Layout())}}
	if h.Layout() == sandbox.CgroupNone {
		out[0].Status, out[0].Needed = Fail, true
		out[0].Remedy = "mount cgroup2: mount -t cgroup2 none /sys/fs/cgroup (or boot with systemd)"
	}
	// memory and cpu carry the profile's limits; pids is read for usage only
	// (RLIMIT_NPROC bounds the agent: a pids limit counts runsc's threads).
	for _, ctl := range []struct {
		name   string
		needed bool
	}{{"memory", true}, {"cpu", true}, {"pids", false}} {
		c := Check{Name: "cgroups." + ctl.name, Needed: ctl.needed}
		x, err := h.Controller(ctl.name)
		if err != nil {
			c.Status, c.Detail, c.Remedy = Fail, "not usable", err.Error()
			if !ctl.needed {
				c.Status = Warn
			}
		} else {
			v := "v1"
			if x.V2 {
				v = "v2"
			}
			c.Status, c.Detail = OK, fmt.Sprintf("%s at %s", v, x.Mount)
		}
		out = append(out, c)
	}
	return out
}

// checkAgentd compares the installed agentd with the release's recorded
// digest (the owner's proof that the sandboxed agent is this source) and
// with the digest the state directory pins for new sessions.
func checkAgentd(o Options, add func(...Check)) bool {
	cfg := o.Config
	got, err := supervisor.FileDigest(cfg.Sandbox.AgentBinary)
	if err != nil {
		add(Check{Name: "agentd", Status: Fail, Needed: true, Detail: err.Error(),
			Remedy: "just setup  (builds agentd with images/build.sh and installs it at " + cfg.Sandbox.AgentBinary + ")"})
		return false
	}
	hexd := strings.TrimPrefix(got, "sha256:")
	c := Check{Name: "agentd.release", Detail: "installed " + cfg.Sandbox.AgentBinary + " is sha256 " + short(hexd)}
	if hexd == o.AgentdDigest {
		c.Status, c.Detail = OK, c.Detail+", the digest this release records (images/agentd.sha256): built from this source"
	} else {
		c.Status = Fail
		c.Detail += fmt.Sprintf(", but this release records %s: it was not built from this source (or by another Go toolchain)", short(o.AgentdDigest))
		c.Remedy = "rebuild from this checkout with `images/build.sh ./cmd/agentd` (with the Go toolchain named in images/agentd.sha256) and install it with `just setup`, or find out where the installed one came from"
	}
	add(Check{Name: "agentd", Status: OK, Needed: true, Detail: "present"}, c)
	pinned, err := os.ReadFile(filepath.Join(cfg.StateDir, "agentd.digest"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// the state directory check reports an uninitialised directory
	case err != nil:
		add(Check{Name: "agentd.pin", Status: Warn, Detail: err.Error()})
	case strings.TrimSpace(string(pinned)) != got:
		add(Check{Name: "agentd.pin", Status: Warn,
			Detail: "new sessions pin " + short(strings.TrimPrefix(strings.TrimSpace(string(pinned)), "sha256:")) + ", not the installed agentd",
			Remedy: "ironclaw agent pin  (existing sessions move only through approved software changes)"})
	default:
		add(Check{Name: "agentd.pin", Status: OK, Detail: "new sessions run the installed agentd"})
	}
	return true
}

// checkDirs applies the rule serve applies at start (hostcheck.CheckDir), so
// doctor fails exactly where serve would refuse; it also wants the state
// directory 0700 (its listing is nobody else's business) and warns if not.
func checkDirs(o Options) []Check {
	cfg := o.Config
	st := Check{Name: "state_dir", Needed: true}
	fi, lerr := os.Lstat(cfg.StateDir)
	switch err := hostcheck.CheckDir(cfg.StateDir, o.UID); {
	case errors.Is(lerr, fs.ErrNotExist):
		st.Status, st.Detail, st.Remedy = Fail, cfg.StateDir+" does not exist", "ironclaw init"
	case err != nil:
		st.Status, st.Detail, st.Remedy = Fail, err.Error(), fixOf(err)
	default:
		if _, err := os.Lstat(filepath.Join(cfg.StateDir, keys.CheckFileName)); err != nil {
			st.Status, st.Detail, st.Remedy = Fail, cfg.StateDir+" is not initialised (no "+keys.CheckFileName+")", "ironclaw init  (or point state_dir at your existing state)"
		} else if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			st.Status, st.Detail, st.Remedy = Warn, fmt.Sprintf("%s has mode %04o: others may list it", cfg.StateDir, perm), "chmod 700 "+cfg.StateDir
		} else {
			st.Status, st.Detail = OK, cfg.StateDir+" is private (0700, trusted owners, no symlinks)"
		}
	}
	rt := Check{Name: "runtime_dir", Needed: true}
	_, lerr = os.Lstat(cfg.RuntimeDir)
	switch err := hostcheck.CheckDir(cfg.RuntimeDir, o.UID); {
	case errors.Is(lerr, fs.ErrNotExist):
		rt.Status, rt.Detail = OK, cfg.RuntimeDir+" does not exist yet; serve creates it 0700"
	case err != nil:
		rt.Status, rt.Detail, rt.Remedy = Fail, err.Error(), fixOf(err)
	default:
		rt.Status, rt.Detail = OK, cfg.RuntimeDir+" can be trusted"
	}
	return []Check{st, rt}
}

// fixOf picks the command out of a hostcheck refusal, which ends with it
// ("…: chmod go-w /x"); otherwise the whole message says what to change.
func fixOf(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		if tail := msg[i+2:]; strings.HasPrefix(tail, "chmod ") || strings.HasPrefix(tail, "chown ") {
			return tail
		}
	}
	return msg
}

// Disk thresholds for the state directory's filesystem: below minFree a
// store write or an outbox image may fail mid-conversation.
const (
	minFree  = 256 << 20
	warnFree = 2 << 30
)

func checkDisk(o Options) Check {
	dir := existingParent(o.Config.StateDir)
	avail, total, err := freeSpace(dir)
	c := Check{Name: "disk", Needed: true}
	if err != nil {
		c.Status, c.Detail = Fail, err.Error()
		return c
	}
	c.Detail = fmt.Sprintf("%s free of %s on the filesystem of %s", mib(avail), mib(total), dir)
	switch {
	case avail < minFree:
		c.Status, c.Remedy = Fail, fmt.Sprintf("free at least %s there (sessions' outbox images and the store grow on it)", mib(minFree))
	case avail < warnFree:
		c.Status, c.Remedy = Warn, "free some space soon: below "+mib(minFree)+" conversations stop"
	default:
		c.Status = OK
	}
	return c
}

// checkCustody says what the configured custody protects against, and warns
// when a key file shares the filesystem it is meant to protect.
func checkCustody(o Options) Check {
	cfg := o.Config
	c := Check{Name: "keys.custody", Needed: true}
	switch cfg.Keys.Custody {
	case config.CustodyKeyFile:
		fi, err := os.Lstat(cfg.Keys.KeyFile)
		if err != nil {
			c.Status, c.Detail, c.Remedy = Fail, "key file: "+err.Error(), "ironclaw init  (creates it), or set keys.key_file to your key"
			return c
		}
		st, _ := fi.Sys().(*syscall.Stat_t)
		if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 != 0 || st == nil || int(st.Uid) != o.UID {
			c.Status, c.Detail = Fail, fmt.Sprintf("key file %s must be a regular file of ours with mode 0600 (is %v)", cfg.Keys.KeyFile, fi.Mode())
			c.Remedy = fmt.Sprintf("chown %d %s && chmod 600 %s", o.UID, cfg.Keys.KeyFile, cfg.Keys.KeyFile)
			return c
		}
		same, err := sameFilesystem(cfg.Keys.KeyFile, existingParent(cfg.StateDir))
		if err == nil && same {
			c.Status = Warn
			c.Detail = "key file " + cfg.Keys.KeyFile + " is on the same filesystem as the state directory: a copy of the state directory yields nothing, but a stolen disk holds both the key and the sealed data"
			c.Remedy = "move custody off this disk: `ironclaw keys rotate --to passphrase` (nothing on disk opens the data; you type it at each start) or --to systemd-credential with LoadCredentialEncrypted= (sealed to this machine's TPM); see docs/keys.md"
			return c
		}
		c.Status, c.Detail = OK, "key file "+cfg.Keys.KeyFile+" (0600) on another filesystem than the state"
	case config.CustodyPassphrase:
		c.Status, c.Detail = OK, "passphrase (Argon2id): nothing on disk opens the data; the daemon needs the passphrase at every start"
	case config.CustodySystemdCredential:
		dir := os.Getenv("CREDENTIALS_DIRECTORY")
		if dir == "" {
			c.Status = Warn
			c.Detail = "systemd credential " + cfg.Keys.CredentialName + ": doctor runs outside the unit, so it cannot see the credential"
			c.Remedy = "systemctl status ironclaw  (a missing credential stops the unit at start with a clear error)"
			return c
		}
		if _, err := os.Stat(filepath.Join(dir, cfg.Keys.CredentialName)); err != nil {
			c.Status, c.Detail = Fail, "systemd credential: "+err.Error()
			c.Remedy = "add LoadCredential=" + cfg.Keys.CredentialName + ":/etc/ironclaw/master.key (or LoadCredentialEncrypted=) to the unit"
			return c
		}
		c.Status, c.Detail = OK, "systemd credential "+cfg.Keys.CredentialName+" is present"
	default:
		c.Status, c.Detail = Fail, "unknown custody "+cfg.Keys.Custody
	}
	return c
}

func existingParent(p string) string {
	for {
		if _, err := os.Stat(p); err == nil || p == "/" || p == "." {
			return p
		}
		p = filepath.Dir(p)
	}
}

func short(hexd string) string {
	if len(hexd) > 12 {
		return hexd[:12] + "…"
	}
	if hexd == "" {
		return "(none)"
	}
	return hexd
}

func mib(b uint64) string {
	if b >= 10<<30 {
		return fmt.Sprintf("%d GiB", b>>30)
	}
	return fmt.Sprintf("%d MiB", b>>20)
}

// outboxTools are what sandbox.PrepareOutbox runs to give each session its
// size-capped outbox filesystem; it looks only in these directories, never
// $PATH (it runs them as root).
var (
	outboxTools   = []string{"mkfs.ext4", "e2fsck", "resize2fs"}
	outboxToolDir = []string{"/usr/sbin", "/sbin"}
	loopControl   = "/dev/loop-control"
)

// checkOutboxFS checks what every conversation's outbox filesystem needs:
// e2fsprogs and loop devices. (The trivial sandbox above uses a plain
// directory, so it does not cover this.)
func checkOutboxFS() Check {
	c := Check{Name: "outbox.fs", Needed: true}
	for _, tool := range outboxTools {
		found := false
		for _, d := range outboxToolDir {
			if fi, err := os.Stat(filepath.Join(d, tool)); err == nil && fi.Mode().IsRegular() {
				found = true
				break
			}
		}
		if !found {
			c.Status, c.Detail = Fail, tool+" is not in /usr/sbin or /sbin"
			c.Remedy = "apt-get install e2fsprogs"
			return c
		}
	}
	if fi, err := os.Stat(loopControl); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		c.Status, c.Detail = Fail, loopControl+" is missing: no loop devices for the outbox images"
		c.Remedy = "modprobe loop  (and echo loop > /etc/modules-load.d/ironclaw.conf to load it at boot)"
		return c
	}
	c.Status, c.Detail = OK, "e2fsprogs and loop devices for the size-capped outbox filesystems"
	return c
}
