package keys

import (
	"testing"
	"time"

	"github.com/ironclaw/ironclaw/agentd/wire"
)

func BenchmarkWrap(b *testing.B) {
	var root [MasterKeySize]byte
	root[0] = 1
	m := newMaster(CustodyKeyFile, &root)
	var id wire.SessionID
	k := new(wire.Key)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Wrap(id, k); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnwrap(b *testing.B) {
	var root [MasterKeySize]byte
	root[0] = 1
	m := newMaster(CustodyKeyFile, &root)
	var id wire.SessionID
	w, err := m.Wrap(id, new(wire.Key))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Unwrap(id, w); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkArgon2idDerive measures one passphrase derivation with the
// shipped parameters: what each daemon start costs, and each guess costs an
// attacker on the same hardware.
func BenchmarkArgon2idDerive(b *testing.B) {
	p, err := newKDFParams()
	if err != nil {
		b.Fatal(err)
	}
	pass := []byte(testPass)
	start := time.Now()
	for b.Loop() {
		_ = p.derive(pass)
	}
	b.ReportMetric(float64(time.Since(start).Milliseconds())/float64(b.N), "ms/derive")
}
