package matrix

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"maunium.net/go/mautrix/crypto/sql_store_upgrade"
)

// mautrix's crypto store refuses a database written by a newer version and
// migrates an older one in place: the channel refuses the first with a
// clear message and copies the second aside before the migration.
func TestCryptoStoreBackupBeforeUpgrade(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "crypto.db")
	db, err := openCryptoDB(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("crypto.db mode: %v %v", fi.Mode(), err)
	}
	if err := backupBeforeUpgrade(ctx, db, path); err != nil {
		t.Fatalf("a new store: %v", err)
	}
	latest := len(sql_store_upgrade.Table)
	if _, err := db.Exec(ctx, "CREATE TABLE crypto_version (version INTEGER, compat INTEGER); INSERT INTO crypto_version VALUES ($1, $1)", latest-1); err != nil {
		t.Fatal(err)
	}
	if err := backupBeforeUpgrade(ctx, db, path); err != nil {
		t.Fatal(err)
	}
	bak := path + ".v" + strconv.Itoa(latest-1) + ".bak"
	if fi, err := os.Stat(bak); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("no backup before the upgrade: %v", err)
	}
	db.Exec(ctx, "UPDATE crypto_version SET version = $1", latest+1)
	if err := backupBeforeUpgrade(ctx, db, path); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("a store from a newer version: %v", err)
	}
	db.Exec(ctx, "UPDATE crypto_version SET version = $1", latest)
	if err := backupBeforeUpgrade(ctx, db, path); err != nil {
		t.Fatal(err)
	}
	// A symlink in its place is refused.
	link := filepath.Join(dir, "link.db")
	os.Symlink(path, link)
	if _, err := openCryptoDB(link); err == nil {
		t.Fatal("opened a symlink as the crypto store")
	}
}
