package rotate

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/audit"
	"github.com/ironclaw/ironclaw/daemon/keys"
	"github.com/ironclaw/ironclaw/daemon/store"
)

// The purposes and the opener mirror the daemon's openStores.
const (
	purposeStore = "ironclaw store content v1"
	purposeAudit = "ironclaw audit mac v1"
)

func opener(stateDir string) Opener {
	return func(m *keys.Master) (*store.Store, *audit.Log, error) {
		ck := m.SubKey(purposeStore)
		st, err := store.OpenWrapped(filepath.Join(stateDir, "ironclaw.db"), m, purposeStore, &ck)
		if err != nil {
			return nil, nil, err
		}
		legacy := m.SubKey(purposeAudit)
		ak, err := st.DaemonKey(context.Background(), m, purposeAudit, &legacy)
		if err != nil {
			st.Close()
			return nil, nil, err
		}
		lg, err := audit.Open(filepath.Join(stateDir, "audit.log"), audit.WithKey(ak[:]))
		if err != nil {
			st.Close()
			return nil, nil, err
		}
		return st, lg, nil
	}
}

// fixture is a state directory with sessions whose keys the test remembers.
type fixture struct {
	state, keyFile string
	sessions       map[wire.SessionID]wire.Key
	profileText    string
}

func newFixture(t testing.TB, n int) *fixture {
	t.Helper()
	base := t.TempDir()
	f := &fixture{state: filepath.Join(base, "state"), keyFile: filepath.Join(base, "etc", "master.key"), sessions: map[wire.SessionID]wire.Key{}}
	os.MkdirAll(filepath.Dir(f.keyFile), 0o700)
	m, err := keys.Init(keys.Source{Custody: keys.CustodyKeyFile, StateDir: f.state, KeyFile: f.keyFile})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Destroy()
	st, lg, err := opener(f.state)(m)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	defer lg.Close()
	f.profileText = "sealed instructions that must survive rotation"
	for i := 0; i < n; i++ {
		var id wire.SessionID
		rand.Read(id[:])
		k, _ := keys.NewSessionKey()
		w, err := m.Wrap(id, k)
		if err != nil {
			t.Fatal(err)
		}
		p := profile.Default("tiny", "sha256:"+strings.Repeat("ab", 32))
		p.Instructions = f.profileText
		if err := st.CreateSession(context.Background(), id, fmt.Sprintf("console:%d", i), w, p); err != nil {
			t.Fatal(err)
		}
		f.sessions[id] = *k
	}
	if _, err := lg.Append(audit.Record{Actor: "test", Action: "fixture", Subject: "s", Result: "ok"}); err != nil {
		t.Fatal(err)
	}
	return f
}

// works reports whether src opens everything: the check file, the store's
// daemon keys, every session key (equal to what was created), a sealed
// profile, and the audit log (verified in full by Open).
func (f *fixture) works(t *testing.T, src keys.Source) error {
	t.Helper()
	m, err := keys.Load(src)
	if err != nil {
		return err
	}
	defer m.Destroy()
	st, lg, err := opener(f.state)(m)
	if err != nil {
		return err
	}
	defer st.Close()
	defer lg.Close()
	list, err := st.ListSessions(context.Background())
	if err != nil {
		return err
	}
	if len(list) != len(f.sessions) {
		return fmt.Errorf("%d sessions, want %d", len(list), len(f.sessions))
	}
	for _, s := range list {
		k, err := m.Unwrap(s.ID, s.WrappedKey)
		if err != nil {
			return err
		}
		if *k != f.sessions[s.ID] {
			return fmt.Errorf("session %s: key changed", s.ID)
		}
	}
	_, p, err := st.CurrentProfile(context.Background(), list[0].ID)
	if err != nil {
		return err
	}
	if p.Instructions != f.profileText {
		return errors.New("profile changed")
	}
	if _, err := lg.Verify(nil); err != nil {
		return err
	}
	return nil
}

func (f *fixture) keyfileSource(path string) keys.Source {
	return keys.Source{Custody: keys.CustodyKeyFile, StateDir: f.state, KeyFile: path}
}

func (f *fixture) options(old, new keys.Source) Options {
	return Options{StateDir: f.state, StorePath: filepath.Join(f.state, "ironclaw.db"), Old: old, New: new, Open: opener(f.state), Actor: "operator:test"}
}

// TestCustodyMoves goes key file → passphrase → systemd credential → key
// file, and every session survives every move; each old key stops working.
func TestCustodyMoves(t *testing.T) {
	f := newFixture(t, 5)
	ctx := context.Background()
	kf := f.keyfileSource(f.keyFile)
	passFile := filepath.Join(filepath.Dir(f.keyFile), "pass")
	os.WriteFile(passFile, []byte("correct horse battery staple\n"), 0o600)
	pass := keys.Source{Custody: keys.CustodyPassphrase, StateDir: f.state, PassphraseFile: passFile}
	oldKey, _ := os.ReadFile(f.keyFile)

	res, err := Rotate(ctx, f.options(kf, pass))
	if err != nil || res.Sessions != 5 {
		t.Fatalf("keyfile → passphrase: %+v %v", res, err)
	}
	if err := f.works(t, pass); err != nil {
		t.Fatalf("passphrase after the move: %v", err)
	}
	if err := f.works(t, kf); !errors.Is(err, keys.ErrWrongMaster) {
		t.Fatalf("the old key file still opens the state: %v", err)
	}
	if b, _ := os.ReadFile(f.keyFile); string(b) != string(oldKey) {
		t.Fatal("the old key file was changed (it is the operator's to shred)")
	}

	credDir := filepath.Join(filepath.Dir(f.keyFile), "cred")
	os.Mkdir(credDir, 0o700)
	credSrc := filepath.Join(filepath.Dir(f.keyFile), "credential.key")
	cred := keys.Source{Custody: keys.CustodySystemdCredential, StateDir: f.state, KeyFile: credSrc}
	if _, err := Rotate(ctx, f.options(pass, cred)); err != nil {
		t.Fatalf("passphrase → systemd credential: %v", err)
	}
	// What systemd's LoadCredential=ironclaw-master-key:<credSrc> does.
	b, _ := os.ReadFile(credSrc)
	os.WriteFile(filepath.Join(credDir, keys.DefaultCredentialName), b, 0o400)
	t.Setenv("CREDENTIALS_DIRECTORY", credDir)
	credLoad := keys.Source{Custody: keys.CustodySystemdCredential, StateDir: f.state}
	if err := f.works(t, credLoad); err != nil {
		t.Fatalf("credential after the move: %v", err)
	}
	if err := f.works(t, pass); !errors.Is(err, keys.ErrWrongMaster) {
		t.Fatalf("the old passphrase still opens the state: %v", err)
	}

	newKF := filepath.Join(filepath.Dir(f.keyFile), "second.key")
	if _, err := Rotate(ctx, f.options(credLoad, f.keyfileSource(newKF))); err != nil {
		t.Fatalf("credential → key file: %v", err)
	}
	if err := f.works(t, f.keyfileSource(newKF)); err != nil {
		t.Fatal(err)
	}
	// Rotating onto an existing foreign file is refused and changes nothing.
	if _, err := Rotate(ctx, f.options(f.keyfileSource(newKF), f.keyfileSource(f.keyFile))); err == nil {
		t.Fatal("rotation over an existing file was allowed")
	}
	if err := f.works(t, f.keyfileSource(newKF)); err != nil {
		t.Fatalf("a refused rotation broke the key in force: %v", err)
	}
	if _, err := os.Stat(filepath.Join(f.state, JournalName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("journal left behind")
	}
}

// TestRotateFailsClosedWhileDaemonRuns: the audit log's lock stands for the
// running daemon.
func TestRotateFailsClosedWhileDaemonRuns(t *testing.T) {
	f := newFixture(t, 1)
	m, _ := keys.Load(f.keyfileSource(f.keyFile))
	st, lg, err := opener(f.state)(m)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	defer lg.Close()
	_, err = Rotate(context.Background(), f.options(f.keyfileSource(f.keyFile), f.keyfileSource(f.keyFile)))
	if err == nil || !strings.Contains(err.Error(), "stop the daemon") {
		t.Fatalf("rotation under a running daemon: %v", err)
	}
}

const childEnv = "IRONCLAW_ROTATE_CHILD"

// TestRotateChild is the process the crash test kills; it does nothing
// unless started by TestRotateKilledAtRandomPoints.
func TestRotateChild(t *testing.T) {
	spec := os.Getenv(childEnv)
	if spec == "" {
		t.Skip("helper process")
	}
	state, keyFile, _ := strings.Cut(spec, "|")
	o := Options{StateDir: state, StorePath: filepath.Join(state, "ironclaw.db"),
		Old:  keys.Source{Custody: keys.CustodyKeyFile, StateDir: state, KeyFile: keyFile},
		New:  keys.Source{Custody: keys.CustodyKeyFile, StateDir: state, KeyFile: keyFile},
		Open: opener(state), Actor: "operator:test",
		step: func(string) { time.Sleep(time.Duration(mrand.IntN(20)) * time.Millisecond) },
	}
	if _, err := Rotate(context.Background(), o); err != nil {
		t.Fatal(err)
	}
}

// TestRotateKilledAtRandomPoints kills a rotating process at random moments
// and requires that, after recovery, exactly one of the old and new keys
// opens everything, and every session key is intact.
func TestRotateKilledAtRandomPoints(t *testing.T) {
	f := newFixture(t, 300)
	kf := f.keyfileSource(f.keyFile)
	outcomes := map[string]int{}
	for i := 0; i < 16; i++ {
		oldKey, err := os.ReadFile(f.keyFile)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestRotateChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), childEnv+"="+f.state+"|"+f.keyFile)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("round %d: child failed on its own: %v", i, err)
			}
			outcomes["completed"]++
		case <-time.After(time.Duration(mrand.IntN(400)) * time.Millisecond):
			cmd.Process.Signal(syscall.SIGKILL)
			<-done
			outcomes["killed"]++
		}
		what, err := Recover(f.state, filepath.Join(f.state, "ironclaw.db"))
		if err != nil {
			t.Fatalf("round %d: recover: %v", i, err)
		}
		if what != "" {
			outcomes[what]++
		}
		// The old key, kept aside, and the key in force now.
		oldPath := filepath.Join(filepath.Dir(f.keyFile), fmt.Sprintf("old-%d.key", i))
		os.WriteFile(oldPath, oldKey, 0o600)
		newErr := f.works(t, kf)
		oldErr := f.works(t, f.keyfileSource(oldPath))
		cur, _ := os.ReadFile(f.keyFile)
		switch {
		case string(cur) == string(oldKey):
			if oldErr != nil {
				t.Fatalf("round %d: key unchanged but it no longer opens the state: %v", i, oldErr)
			}
		default:
			if newErr != nil {
				t.Fatalf("round %d: new key in force but it does not open the state: %v", i, newErr)
			}
			if oldErr == nil {
				t.Fatalf("round %d: both the old and the new key open the state", i)
			}
			outcomes["rotated"]++
		}
		for _, name := range []string{f.keyFile + ".new", filepath.Join(f.state, "master.check.new"), filepath.Join(f.state, JournalName)} {
			if _, err := os.Stat(name); err == nil {
				t.Fatalf("round %d: %s left after recovery", i, name)
			}
		}
	}
	t.Logf("outcomes: %v", outcomes)
	if outcomes["killed"] == 0 {
		t.Log("no round was killed mid-way (a very slow machine?)")
	}
}

// BenchmarkRotate measures one rotation of a state with 1,000 sessions,
// against the baseline of loading the key and opening the state once (what
// every daemon start does), in the same run.
func BenchmarkRotate(b *testing.B) {
	f := newFixture(b, 1000)
	kf := f.keyfileSource(f.keyFile)
	b.Run("baseline-open", func(b *testing.B) {
		for range b.N {
			m, err := keys.Load(kf)
			if err != nil {
				b.Fatal(err)
			}
			st, lg, err := opener(f.state)(m)
			if err != nil {
				b.Fatal(err)
			}
			lg.Close()
			st.Close()
			m.Destroy()
		}
	})
	b.Run("rotate-1000-sessions", func(b *testing.B) {
		for range b.N {
			if _, err := Rotate(context.Background(), f.options(kf, kf)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestRecoverWaitsForARunningRotation: a daemon starting while a rotation
// runs must not roll it back from under it (which would lose the new key).
func TestRecoverWaitsForARunningRotation(t *testing.T) {
	f := newFixture(t, 3)
	kf := f.keyfileSource(f.keyFile)
	o := f.options(kf, kf)
	reached := make(chan struct{})
	resume := make(chan struct{})
	o.step = func(name string) {
		if name == "staged" {
			close(reached)
			<-resume
		}
	}
	done := make(chan error, 1)
	go func() { _, err := Rotate(context.Background(), o); done <- err }()
	<-reached
	if _, err := Recover(f.state, filepath.Join(f.state, "ironclaw.db")); err == nil || !strings.Contains(err.Error(), "rotation is running") {
		t.Fatalf("recover during a rotation: %v", err)
	}
	close(resume)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := f.works(t, kf); err != nil {
		t.Fatal(err)
	}
}
