package ollamatest

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestTinyGGUFIsStableAndSmall(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.gguf"), filepath.Join(dir, "b.gguf")
	start := time.Now()
	if err := WriteTinyGGUF(a); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if err := WriteTinyGGUF(b); err != nil {
		t.Fatal(err)
	}
	da, _ := os.ReadFile(a)
	db, _ := os.ReadFile(b)
	if !bytes.Equal(da, db) {
		t.Fatal("two writes differ")
	}
	if string(da[:4]) != "GGUF" || binary.LittleEndian.Uint32(da[4:]) != 3 {
		t.Fatalf("header %q", da[:8])
	}
	t.Logf("%d bytes in %v", len(da), took)
	if len(da) > 1<<20 {
		t.Fatalf("%d bytes: not tiny", len(da))
	}
}
