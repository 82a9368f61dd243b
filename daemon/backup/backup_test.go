package backup

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var testKey = [32]byte{7, 7, 7}

// archive writes a small archive and returns its bytes.
func archive(t testing.TB) []byte {
	t.Helper()
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "db"), bytes.Repeat([]byte("sealed"), 1000), 0o600)
	var buf bytes.Buffer
	w, err := NewWriter(&buf, &testKey)
	if err != nil {
		t.Fatal(err)
	}
	id := "0123456789abcdef0123456789abcdef"
	for _, step := range []error{
		w.Bytes("master.check", []byte(`{"format":1}`)),
		w.File("ironclaw.db", filepath.Join(src, "db")),
		w.Dir("sessions"), w.Dir("sessions/" + id), w.Dir("sessions/" + id + "/inbox"),
		w.File("sessions/"+id+"/inbox/inbox.db", filepath.Join(src, "db")),
		w.Close(),
	} {
		if step != nil {
			t.Fatal(step)
		}
	}
	return buf.Bytes()
}

func fileOf(t testing.TB, b []byte) *os.File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "a")
	os.WriteFile(p, b, 0o600)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestRoundTrip(t *testing.T) {
	f := fileOf(t, archive(t))
	v, err := Verify(f, &testKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	names, err := v.Extract(dir)
	if err != nil || len(names) != 6 {
		t.Fatalf("%v %v", names, err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "ironclaw.db"))
	if !bytes.Equal(b, bytes.Repeat([]byte("sealed"), 1000)) {
		t.Fatal("content changed")
	}
	kd := t.TempDir()
	if err := ReadKeyFiles(f, kd); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(kd, "master.check")); string(b) != `{"format":1}` {
		t.Fatalf("%q", b)
	}
}

func TestTamperTruncateWrongKey(t *testing.T) {
	good := archive(t)
	other := [32]byte{8}
	cases := map[string]struct {
		b   []byte
		key *[32]byte
	}{
		"wrong key":   {good, &other},
		"truncated":   {good[:len(good)/2], &testKey},
		"no trailer":  {good[:len(good)-TrailerSize], &testKey},
		"tiny":        {good[:10], &testKey},
		"empty":       {nil, &testKey},
		"flipped":     {flip(good, len(good)/3), &testKey},
		"flipped mac": {flip(good, len(good)-1), &testKey},
		"bad magic":   {flip(good, 0), &testKey},
	}
	for name, c := range cases {
		f := fileOf(t, c.b)
		// Extract is reachable only through what Verify returns.
		if v, err := Verify(f, c.key); !errors.Is(err, ErrNotAuthentic) || v != nil {
			t.Errorf("%s: Verify: %v", name, err)
		}
	}
}

// archiveOf writes an archive of the same names as archive, with db as
// the store's and the inbox's content.
func archiveOf(t testing.TB, key *[32]byte, db []byte) []byte {
	t.Helper()
	src := filepath.Join(t.TempDir(), "db")
	os.WriteFile(src, db, 0o600)
	var buf bytes.Buffer
	w, err := NewWriter(&buf, key)
	if err != nil {
		t.Fatal(err)
	}
	id := "0123456789abcdef0123456789abcdef"
	for _, step := range []error{
		w.Bytes("master.check", []byte(`{"format":1}`)),
		w.File("ironclaw.db", src),
		w.Dir("sessions"), w.Dir("sessions/" + id), w.Dir("sessions/" + id + "/inbox"),
		w.File("sessions/"+id+"/inbox/inbox.db", src),
		w.Close(),
	} {
		if step != nil {
			t.Fatal(step)
		}
	}
	return buf.Bytes()
}

// du is the bytes of the files under dir.
func du(t *testing.T, dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			fi, _ := d.Info()
			n += fi.Size()
		}
		return nil
	})
	return n
}

// TestChangedAfterVerifyWritesNoMore: whoever can write the archive file
// rewrites it between Verify and Extract (the same open file, read twice).
// Extract fails and has written no more than the authenticated archive
// holds: never the 8 MiB entries of the substitute, even one made under
// the right key (another genuine backup swapped in).
func TestChangedAfterVerifyWritesNoMore(t *testing.T) {
	small := bytes.Repeat([]byte("sealed"), 1000)
	huge := bytes.Repeat([]byte("X"), 8<<20)
	other := [32]byte{8}
	for name, swap := range map[string][]byte{
		"bigger, foreign key":      archiveOf(t, &other, huge),
		"bigger, same key":         archiveOf(t, &testKey, huge),
		"same sizes, other bytes":  archiveOf(t, &testKey, bytes.Repeat([]byte("SEALED"), 1000)),
		"cut short after verify":   archiveOf(t, &testKey, small)[:3000],
		"bigger file, same header": append(archiveOf(t, &testKey, small), huge...),
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "a")
			if err := os.WriteFile(p, archiveOf(t, &testKey, small), 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			v, err := Verify(f, &testKey)
			if err != nil {
				t.Fatal(err)
			}
			// Rewritten in place: the restore's open file sees the new bytes.
			if err := os.WriteFile(p, swap, 0o600); err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			names, err := v.Extract(dir)
			if !errors.Is(err, ErrNotAuthentic) {
				t.Errorf("Extract of a changed archive: %v %v", names, err)
			}
			if n := du(t, dir); n > v.Total() {
				t.Fatalf("Extract wrote %d bytes of a changed archive; the verified one holds %d", n, v.Total())
			}
		})
	}
}

// TestTooLargeRefusedUnread: a file larger than any backup is refused
// before a byte of it is read (a sparse file stands in for 256 GiB).
func TestTooLargeRefusedUnread(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a")
	if err := os.WriteFile(p, archive(t), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, maxArchive+1); err != nil {
		t.Skipf("no sparse file here: %v", err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := Verify(f, &testKey); !errors.Is(err, ErrNotAuthentic) || !strings.Contains(err.Error(), "no backup is larger") {
		t.Fatalf("Verify of a %d-byte file: %v", int64(maxArchive+1), err)
	}
	if err := ReadKeyFiles(f, t.TempDir()); !errors.Is(err, ErrNotAuthentic) {
		t.Fatalf("ReadKeyFiles of a %d-byte file: %v", int64(maxArchive+1), err)
	}
}

// TestWriterRefusesPastTheCap: the writer never makes an archive that
// Verify would refuse for its size.
func TestWriterRefusesPastTheCap(t *testing.T) {
	w, err := NewWriter(io.Discard, &testKey)
	if err != nil {
		t.Fatal(err)
	}
	w.total = maxArchive - 1<<20 - 10
	if err := w.Bytes("master.check", make([]byte, 11)); err == nil {
		t.Fatal("the writer grew an archive past maxArchive")
	}
}

// TestDiskTooSmallWritesNothing: a verified archive that does not fit on
// the target's filesystem is refused before a byte is written.
func TestDiskTooSmallWritesNothing(t *testing.T) {
	f := fileOf(t, archive(t))
	v, err := Verify(f, &testKey)
	if err != nil {
		t.Fatal(err)
	}
	defer func(old func(string) (uint64, error)) { freeBytes = old }(freeBytes)
	freeBytes = func(string) (uint64, error) { return uint64(v.Total()) + headroom - 1, nil }
	dir := t.TempDir()
	if _, err := v.Extract(dir); err == nil || !strings.Contains(err.Error(), "free space there") {
		t.Fatalf("Extract onto a full disk: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("Extract onto a full disk wrote %v", ents)
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x40
	return c
}

func TestNamesRefused(t *testing.T) {
	var buf bytes.Buffer
	w, _ := NewWriter(&buf, &testKey)
	for _, n := range []string{"../etc/passwd", "/etc/passwd", "sessions/../x", "master.key", "sessions/abc/inbox/inbox.db", "sessions/0123456789abcdef0123456789abcdef/outbox/outbox.db"} {
		if err := w.Bytes(n, nil); err == nil {
			t.Errorf("%q accepted", n)
		}
	}
}

// FuzzExtract: whatever the bytes, Verify and Extract (as Restore calls
// them) never write outside the directory and never succeed without the
// MAC.
func FuzzExtract(f *testing.F) {
	good := archive(f)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte(magic))
	f.Fuzz(func(t *testing.T, b []byte) {
		file := fileOf(t, b)
		dir := t.TempDir()
		var names []string
		v, err := Verify(file, &testKey)
		if err == nil {
			names, err = v.Extract(dir)
		}
		if err == nil && !bytes.Equal(b, good) {
			// Only a correctly MACed archive extracts; with a fixed key the
			// fuzzer cannot forge one.
			t.Fatalf("forged archive extracted: %v", names)
		}
		_ = ReadKeyFiles(file, t.TempDir())
	})
}
