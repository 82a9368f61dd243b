package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// outboxSession lays out what queue.Create leaves: <dir>/outbox/outbox.db owned by the
// agent, in a root-owned 0711 session directory.
func outboxSession(t *testing.T, db []byte) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("the outbox filesystem tests must run as root (CI does): they mount loop devices")
	}
	sess := filepath.Join(t.TempDir(), "session")
	if err := os.Mkdir(sess, 0o711); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(sess, "outbox")
	if err := os.Mkdir(out, 0o700); err != nil {
		t.Fatal(err)
	}
	if db != nil {
		if err := os.WriteFile(filepath.Join(out, outboxDB), db, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(filepath.Join(out, outboxDB), nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Lchown(out, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ReleaseOutbox(out); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return out
}

func TestPrepareOutboxMovesDBAndCaps(t *testing.T) {
	db := bytes.Repeat([]byte("sqlite-ish "), 1000)
	out := outboxSession(t, db)
	if err := PrepareOutbox(out, 2, 64); err != nil {
		t.Fatalf("PrepareOutbox: %v", err)
	}
	if ok, err := OutboxMounted(out); err != nil || !ok {
		t.Fatalf("OutboxMounted = %v, %v after PrepareOutbox", ok, err)
	}
	// Idempotent while mounted.
	if err := PrepareOutbox(out, 2, 64); err != nil {
		t.Fatalf("second PrepareOutbox: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(out, outboxDB))
	if err != nil || !bytes.Equal(got, db) {
		t.Fatalf("outbox.db inside the image: %d bytes, %v; want the %d bytes queue.Create left", len(got), err, len(db))
	}
	for _, p := range []string{out, filepath.Join(out, outboxDB)} {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != nobody || st.Gid != nobody {
			t.Errorf("%s owned by %d:%d, want the agent %d:%d", p, st.Uid, st.Gid, nobody, nobody)
		}
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(out, &sfs); err != nil {
		t.Fatal(err)
	}
	if sfs.Flags&unix.ST_NOSUID == 0 || sfs.Flags&unix.ST_NODEV == 0 || sfs.Flags&unix.ST_NOEXEC == 0 {
		t.Errorf("outbox mount flags %#x lack nosuid/nodev/noexec", sfs.Flags)
	}

	// Bytes: writing stops with ENOSPC at the cap.
	n, err := fill(filepath.Join(out, "fill"))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("filling the outbox: %v after %d bytes, want ENOSPC", err, n)
	}
	if n > 2<<20 || n < 1<<20 {
		t.Errorf("filled %d bytes into a 2 MiB outbox, want between 1 MiB and 2 MiB", n)
	}
	if err := os.Remove(filepath.Join(out, "fill")); err != nil {
		t.Fatal(err)
	}
	// Inodes: creating files stops with ENOSPC at the cap.
	created := 0
	for ; created < 1000; created++ {
		f, err := os.Create(filepath.Join(out, fmt.Sprintf("i%d", created)))
		if err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Errorf("creating file %d: %v, want ENOSPC", created, err)
			}
			break
		}
		f.Close()
	}
	if created >= 64 || created < 32 {
		t.Errorf("created %d files in a 64-inode outbox, want fewer than 64 (ext4 keeps some) and at least 32", created)
	}
	if err := os.WriteFile(filepath.Join(out, "keep"), []byte("persists"), 0o600); err == nil {
		t.Errorf("a file was created after ENOSPC on inodes")
	}
	os.Remove(filepath.Join(out, "i0"))
	if err := os.WriteFile(filepath.Join(out, "keep"), []byte("persists"), 0o600); err != nil {
		t.Fatal(err)
	}

	// The image on the host is bounded by its size, however the agent fills it.
	var ist unix.Stat_t
	if err := unix.Stat(out+OutboxImageSuffix, &ist); err != nil {
		t.Fatal(err)
	}
	if ist.Blocks*512 > 2<<20 || ist.Size != 2<<20 || ist.Mode&0o777 != 0o600 || ist.Uid != 0 {
		t.Errorf("image: size %d, %d bytes allocated, mode %o, uid %d; want 2 MiB, at most 2 MiB allocated, 0600, root", ist.Size, ist.Blocks*512, ist.Mode&0o777, ist.Uid)
	}

	if err := ReleaseOutbox(out); err != nil {
		t.Fatalf("ReleaseOutbox: %v", err)
	}
	if ok, _ := OutboxMounted(out); ok {
		t.Fatal("still mounted after ReleaseOutbox")
	}
	// Nothing is left underneath: the only copy of outbox.db is in the image.
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Errorf("left under the mount point: %v", ents)
	}
	// Autoclear detaches the loop device asynchronously after the unmount:
	// give the kernel a moment (seen: one run in six still attached at once).
	devs := loopDevicesFor(t, out+OutboxImageSuffix)
	for end := time.Now().Add(3 * time.Second); len(devs) != 0 && time.Now().Before(end); {
		time.Sleep(20 * time.Millisecond)
		devs = loopDevicesFor(t, out+OutboxImageSuffix)
	}
	if len(devs) != 0 {
		t.Errorf("loop devices still attached 3 s after release: %v", devs)
	}

	// Remount, bigger: the data persisted and the filesystem grew.
	if err := PrepareOutbox(out, 4, 64); err != nil {
		t.Fatalf("PrepareOutbox (grow): %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(out, "keep")); err != nil || string(b) != "persists" {
		t.Errorf("file written before release: %q, %v", b, err)
	}
	if err := unix.Statfs(out, &sfs); err != nil {
		t.Fatal(err)
	}
	if total := int64(sfs.Blocks) * sfs.Bsize; total < 3<<20 {
		t.Errorf("filesystem is %d bytes after growing to 4 MiB", total)
	}
}

func TestPrepareOutboxRefuses(t *testing.T) {
	t.Run("symlinked outbox.db", func(t *testing.T) {
		out := outboxSession(t, nil)
		if err := os.Symlink("/etc/shadow", filepath.Join(out, outboxDB)); err != nil {
			t.Fatal(err)
		}
		err := PrepareOutbox(out, 2, 64)
		if err == nil || !strings.Contains(err.Error(), "link") {
			t.Errorf("PrepareOutbox over a symlinked outbox.db = %v, want a refusal", err)
		}
		if ok, _ := OutboxMounted(out); ok {
			t.Errorf("left mounted after a failed PrepareOutbox")
		}
	})
	t.Run("symlinked outbox dir", func(t *testing.T) {
		out := outboxSession(t, []byte("x"))
		link := out + "-link"
		if err := os.Symlink(out, link); err != nil {
			t.Fatal(err)
		}
		if err := PrepareOutbox(link, 2, 64); err == nil {
			t.Errorf("PrepareOutbox through a symlink succeeded")
			ReleaseOutbox(link)
		}
	})
	t.Run("foreign image", func(t *testing.T) {
		out := outboxSession(t, []byte("x"))
		if err := os.WriteFile(out+OutboxImageSuffix, []byte("not ours"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := PrepareOutbox(out, 2, 64); err == nil || !strings.Contains(err.Error(), "0600") {
			t.Errorf("PrepareOutbox with a 0644 image = %v, want a refusal", err)
		}
	})
	t.Run("limits", func(t *testing.T) {
		for _, c := range []struct{ size, inodes int64 }{{0, 64}, {2, 1}, {MaxOutboxMiB + 1, 64}} {
			if err := PrepareOutbox("/nonexistent/outbox", c.size, c.inodes); err == nil {
				t.Errorf("PrepareOutbox(%d MiB, %d inodes) accepted", c.size, c.inodes)
			}
		}
	})
}

// fill writes 64 KiB chunks to path until an error and returns how much was written.
func fill(path string) (int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := bytes.Repeat([]byte{0xa5}, 64<<10)
	var n int64
	for n < 1<<30 {
		m, err := f.Write(buf)
		n += int64(m)
		if err != nil {
			return n, err
		}
		if err := f.Sync(); err != nil { // delayed allocation reports ENOSPC at write or sync
			return n, err
		}
	}
	return n, nil
}

// loopDevicesFor lists loop devices whose backing file is img.
func loopDevicesFor(t *testing.T, img string) []string {
	t.Helper()
	matches, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var devs []string
	for _, m := range matches {
		if b, err := os.ReadFile(m); err == nil && strings.TrimSpace(string(b)) == img {
			devs = append(devs, m)
		}
	}
	return devs
}
