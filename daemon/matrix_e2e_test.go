package daemon_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ironclaw/ironclaw/daemon/matrix/mxtest"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// The Matrix channel end to end: a real Dendrite on loopback, the real
// daemon (built with the crash points of the ironclaw_faults tag, which do
// nothing unless armed), the echo agent in runsc, and independent
// encrypting clients for the owner and a stranger.

var (
	faultOnce sync.Once
	faultBin  string
	faultErr  error
)

// faultBinary builds ironclaw with the crash points compiled in.
func faultBinary(t *testing.T) string {
	t.Helper()
	dir := buildBinaries(t)
	faultOnce.Do(func() {
		faultBin = filepath.Join(dir, "ironclaw-faults")
		cmd := exec.Command("go", "build", "-tags", "goolm,ironclaw_faults", "-trimpath", "-o", faultBin, "../cmd/ironclaw")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			faultErr = fmt.Errorf("building ironclaw with faults: %v\n%s", err, out)
		}
	})
	if faultErr != nil {
		t.Fatal(faultErr)
	}
	return faultBin
}

type mxInstall struct {
	*install
	hs                   *mxtest.Homeserver
	bot, owner, stranger id.UserID
	faultFile            string
	daemon               *exec.Cmd
	logs                 *syncBuffer
}

const (
	botPass      = "bot-secret-pass-5150"
	ownerPass    = "owner-pass-1"
	strangerPass = "stranger-pass-1"
)

func newMatrixInstall(t *testing.T) *mxInstall {
	in := newInstall(t)
	hs := mxtest.Start(t)
	m := &mxInstall{install: in, hs: hs,
		bot: hs.Register(t, "ironclaw", botPass), owner: hs.Register(t, "owner", ownerPass), stranger: hs.Register(t, "stranger", strangerPass),
		faultFile: filepath.Join(in.root, "fault-armed")}
	passFile := filepath.Join(in.root, "etc", "matrix.pass")
	if err := os.WriteFile(passFile, []byte(botPass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	in.writeConfig(fmt.Sprintf("[matrix]\nhomeserver = %q\nuser_id = %q\npassword_file = %q\nowners = [%q]\n", hs.URL, m.bot, passFile, m.owner))
	in.mustRun("init")
	return m
}

// start runs the daemon; with fault set, it kills itself at that point once.
func (m *mxInstall) start(fault string) {
	m.t.Helper()
	bin := filepath.Join(m.bin, "ironclaw")
	if fault != "" {
		bin = faultBinary(m.t)
	}
	cmd := exec.Command(bin, "--config", m.config, "serve")
	cmd.Env = os.Environ()
	if fault != "" {
		os.WriteFile(m.faultFile, nil, 0o600)
		cmd.Env = append(cmd.Env, "IRONCLAW_TEST_FAULT="+fault, "IRONCLAW_TEST_FAULT_FILE="+m.faultFile)
	}
	logs := &syncBuffer{}
	pr, pw, _ := os.Pipe()
	cmd.Stderr, cmd.Stdout = pw, pw
	if err := cmd.Start(); err != nil {
		m.t.Fatal(err)
	}
	pw.Close()
	ready := make(chan bool, 1)
	go func() {
		buf := make([]byte, 4096)
		said := false
		for {
			n, err := pr.Read(buf)
			logs.WriteString(string(buf[:n]))
			if !said && strings.Contains(logs.String(), "ironclaw ready") {
				ready <- true
				said = true
			}
			if err != nil {
				if !said {
					ready <- false
				}
				return
			}
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			cmd.Wait()
			m.t.Fatalf("daemon did not start:\n%s", logs.String())
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		m.t.Fatalf("daemon not ready in 60 s:\n%s", logs.String())
	}
	m.daemon, m.logs = cmd, logs
	m.t.Cleanup(func() {
		m.stop()
		if m.t.Failed() {
			m.t.Logf("daemon log:\n%s", logs.String())
		}
	})
}

// stop stops the daemon with SIGTERM (if it still runs).
func (m *mxInstall) stop() {
	if m.daemon == nil {
		return
	}
	cmd := m.daemon
	m.daemon = nil
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// crashed waits for the daemon to kill itself at its armed fault point.
func (m *mxInstall) crashed(within time.Duration) {
	m.t.Helper()
	cmd := m.daemon
	m.daemon = nil
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			m.t.Fatalf("the daemon exited (%v) but not by its fault point's SIGKILL:\n%s", err, m.logs.String())
		}
	case <-time.After(within):
		cmd.Process.Kill()
		m.t.Fatalf("the fault point was not reached in %v:\n%s", within, m.logs.String())
	}
}

func waitExactlyOnce(t *testing.T, c *mxtest.Client, room id.RoomID, from id.UserID, body string) {
	t.Helper()
	c.WaitFor(room, from, 90*time.Second, func(ms []mxtest.Message) bool { return mxtest.Count(ms, body) >= 1 })
	// Long enough for a duplicate to show (the outbound loop polls every 2 s).
	time.Sleep(6 * time.Second)
	msgs := c.Messages(room, from)
	if n := mxtest.Count(msgs, body); n != 1 {
		t.Fatalf("%q arrived %d times, want exactly once", body, n)
	}
	for _, msg := range msgs {
		if !msg.Encrypted {
			t.Fatalf("the bot sent plaintext into an encrypted room: %q", msg.Body)
		}
	}
}

func TestMatrixEndToEnd(t *testing.T) {
	m := newMatrixInstall(t)
	m.start("")
	owner := m.hs.Login(t, m.owner, ownerPass)
	owner.CrossSign(ownerPass) // as Element does: the owner's other sessions count only if signed
	room := owner.CreateRoom(false, m.bot)
	owner.WaitJoined(room, m.bot, 60*time.Second)

	// An owner's message is answered, encrypted, decrypted by the owner's
	// own client.
	markers := []string{"MARKER-mx-hello-4d1c"}
	owner.Send(room, "hello **"+markers[0]+"**")
	msgs := owner.WaitFor(room, m.bot, 90*time.Second, func(ms []mxtest.Message) bool { return mxtest.Count(ms, "hello **"+markers[0]+"**") == 1 })
	for _, msg := range msgs {
		if !msg.Encrypted {
			t.Fatalf("plaintext reply in an encrypted room: %+v", msg)
		}
		if msg.Body == "hello **"+markers[0]+"**" && msg.HTML != "<p>hello <strong>"+markers[0]+"</strong></p>" {
			t.Errorf("reply HTML %q", msg.HTML)
		}
	}

	// Refused or reported, and the session keeps working: media, an
	// oversized text, a plaintext event in the encrypted room, an event
	// that cannot be decrypted.
	owner.SendContent(room, map[string]any{"msgtype": "m.image", "body": "cat.png", "url": "mxc://localhost/abc"})
	owner.Send(room, strings.Repeat("x", 20<<10))
	if _, err := owner.Cli.SendMessageEvent(context.Background(), room, event.EventMessage,
		map[string]any{"msgtype": "m.text", "body": "plaintext MARKER-mx-plain-77"}, mautrix.ReqSendEvent{DontEncrypt: true}); err != nil {
		t.Fatal(err)
	}
	markers = append(markers, "MARKER-mx-plain-77")
	if _, err := owner.Cli.SendMessageEvent(context.Background(), room, event.EventEncrypted, map[string]any{
		"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgAEnB0aGlzIGlzIG5vdCBhIHJlYWwgbWVnb2xtIG1lc3NhZ2U",
		"session_id": "bm9zdWNoc2Vzc2lvbmlkZm9ydGhpc3Rlc3Q", "sender_key": "zD1Yv2A9ZJ8O1V0y6tP9o8T8fJxWwK2o0m3lY0pQe3k", "device_id": "NOSUCH",
	}); err != nil {
		t.Fatal(err)
	}
	owner.WaitFor(room, m.bot, 90*time.Second, func(ms []mxtest.Message) bool {
		var img, long, plain, undecryptable bool
		for _, msg := range ms {
			img = img || strings.Contains(msg.Body, "cannot open images")
			long = long || strings.Contains(msg.Body, "too long")
			plain = plain || strings.Contains(msg.Body, "not encrypted")
			undecryptable = undecryptable || strings.Contains(msg.Body, "could not decrypt")
		}
		return img && long && plain && undecryptable
	})
	if !strings.Contains(m.logs.String(), "undecryptable") {
		t.Error("the operator was not told of the undecryptable event (daemon log)")
	}
	markers = append(markers, "MARKER-mx-after-5e2a")
	owner.Send(room, "still there "+markers[2])
	waitExactlyOnce(t, owner, room, m.bot, "still there "+markers[2])

	// A session of the owner's account that the owner's cross-signing does
	// not vouch for — what a hostile homeserver could invent for an owner —
	// is not the owner: its message is refused with the reason, audited,
	// and nothing reaches the sandbox.
	session1 := waitSession(t, m.install, room)
	rows1 := inboxRows(t, m.install, session1)
	unsigned := m.hs.Login(t, m.owner, ownerPass)
	unsigned.WaitJoined(room, m.bot, 60*time.Second) // it knows the room (and that it is encrypted)
	markers = append(markers, "MARKER-mx-unsigned-6b0e")
	unsigned.Send(room, "from a new session "+markers[len(markers)-1])
	owner.WaitFor(room, m.bot, 90*time.Second, func(ms []mxtest.Message) bool {
		for _, msg := range ms {
			if strings.Contains(msg.Body, "cross-signing does not vouch for") {
				return true
			}
		}
		return false
	})
	time.Sleep(2 * time.Second)
	if n := inboxRows(t, m.install, session1); n != rows1 {
		t.Fatalf("a message from an unsigned session of the owner reached the inbox (%d rows, were %d)", n, rows1)
	}
	if log, _ := os.ReadFile(filepath.Join(m.install.root, "state", "audit.log")); !strings.Contains(string(log), "cross-signing does not vouch") {
		t.Error("the refusal was not audited")
	}
	unsigned.Close()

	// A stranger in a second room: a pending "add contact" request, nothing
	// reaches the sandbox, the bot is silent there; the owners hear of the
	// request in their own room; after approval the stranger is answered.
	stranger := m.hs.Login(t, m.stranger, strangerPass)
	room2 := owner.CreateRoom(false, m.bot, m.stranger)
	owner.WaitJoined(room2, m.bot, 60*time.Second)
	owner.WaitJoined(room2, m.stranger, 60*time.Second)
	session2 := waitSession(t, m.install, room2)
	rowsBefore := inboxRows(t, m.install, session2)
	markers = append(markers, "MARKER-mx-stranger-91aa")
	stranger.Send(room2, "hi from "+markers[3])
	id2 := waitPendingContact(t, m.install)
	owner.WaitFor(room, m.bot, 30*time.Second, func(ms []mxtest.Message) bool {
		for _, msg := range ms {
			if strings.Contains(msg.Body, "Approval needed: contacts change for session "+session2) && strings.Contains(msg.Body, id2) {
				return true
			}
		}
		return false
	})
	time.Sleep(3 * time.Second)
	if n := inboxRows(t, m.install, session2); n != rowsBefore {
		t.Fatalf("the stranger's message reached the session's inbox before approval (%d rows, was %d)", n, rowsBefore)
	}
	if got := stranger.Messages(room2, m.bot); len(got) != 0 {
		t.Fatalf("the bot spoke in a room with an unapproved member: %+v", got)
	}
	approve := exec.Command(filepath.Join(m.bin, "ironclaw"), "--config", m.config, "changes", "approve", id2)
	approve.Stdin = strings.NewReader("approve\n")
	if out, err := approve.CombinedOutput(); err != nil {
		t.Fatalf("approve: %v\n%s", err, out)
	}
	waitExactlyOnce(t, stranger, room2, m.bot, "hi from "+markers[3])

	// A stranger's own invite: the bot does not join until the owner
	// approves the contact request, then joins and answers.
	visitorID := m.hs.Register(t, "visitor", "visitor-pass-1")
	visitor := m.hs.Login(t, visitorID, "visitor-pass-1")
	room3 := visitor.CreateRoom(false, m.bot)
	id3 := waitPendingContact(t, m.install)
	time.Sleep(3 * time.Second)
	if mem, err := visitor.Cli.StateStore.GetMember(context.Background(), room3, m.bot); err == nil && mem.Membership == event.MembershipJoin {
		t.Fatal("the bot joined a stranger's room before the owner approved")
	}
	approve = exec.Command(filepath.Join(m.bin, "ironclaw"), "--config", m.config, "changes", "approve", id3)
	approve.Stdin = strings.NewReader("approve\n")
	if out, err := approve.CombinedOutput(); err != nil {
		t.Fatalf("approve: %v\n%s", err, out)
	}
	visitor.WaitJoined(room3, m.bot, 60*time.Second)
	// Once in ~3 runs a message sent within milliseconds of the bot's join
	// reached the bot before its room key (reported as undecryptable, as it
	// must be); a person takes longer than that to type.
	time.Sleep(2 * time.Second)
	markers = append(markers, "MARKER-mx-visitor-3c7d")
	visitor.Send(room3, "visiting "+markers[len(markers)-1])
	waitExactlyOnce(t, visitor, room3, m.bot, "visiting "+markers[len(markers)-1])

	// The owner resets their cross-signing (a new master key, as after a
	// lost recovery key): the bot, trusting the master key it saw first,
	// reads none of the owner's sessions until an operator who compared the
	// new key accepts it with `ironclaw matrix trust` (daemon stopped).
	owner.CrossSign(ownerPass)
	time.Sleep(3 * time.Second) // the bot's sync learns the owner's keys changed
	markers = append(markers, "MARKER-mx-reset-2c9d")
	owner.Send(room, "after a reset "+markers[len(markers)-1])
	owner.WaitFor(room, m.bot, 90*time.Second, func(ms []mxtest.Message) bool {
		n := 0
		for _, msg := range ms {
			if strings.Contains(msg.Body, "cross-signing does not vouch for") {
				n++
			}
		}
		return n >= 2 // the unsigned session's, then this one
	})
	m.stop()
	trust := exec.Command(filepath.Join(m.bin, "ironclaw"), "--config", m.config, "matrix", "trust", string(m.owner))
	trust.Stdin = strings.NewReader("yes\n")
	if out, err := trust.CombinedOutput(); err != nil || !strings.Contains(string(out), "has changed") || !strings.Contains(string(out), "trusted:") {
		t.Fatalf("matrix trust: %v\n%s", err, out)
	}
	if log, _ := os.ReadFile(filepath.Join(m.install.root, "state", "audit.log")); !strings.Contains(string(log), `"action":"matrix.trust"`) {
		t.Error("trusting the new master key was not audited")
	}
	m.start("")
	markers = append(markers, "MARKER-mx-trusted-7a1f")
	owner.Send(room, "trusted again "+markers[len(markers)-1])
	waitExactlyOnce(t, owner, room, m.bot, "trusted again "+markers[len(markers)-1])

	// The bot's device is cross-signed (the owner's client sees it so
	// without verifying anything by hand) and its room keys are backed up.
	for dev, ts := range owner.DeviceTrust(m.bot) {
		if ts < id.TrustStateCrossSignedTOFU || ts == id.TrustStateBlacklisted {
			t.Errorf("the bot's device %s has trust %s in the owner's client, want cross-signed", dev, ts)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for !slices.Contains(m.hs.BackedUpRooms(t, m.bot, botPass), room) {
		if time.Now().After(deadline) {
			t.Fatal("the room's keys never reached the bot's key backup")
		}
		time.Sleep(2 * time.Second)
	}

	// After the whole encrypted conversation, with the daemon stopped: no
	// message text, no Megolm session key, no password anywhere under the
	// state or runtime directory.
	m.stop()
	secrets := append([]string{}, markers...)
	secrets = append(secrets, botPass)
	for _, r := range []id.RoomID{room, room2} {
		for _, k := range owner.SessionKeysOf(r) {
			secrets = append(secrets, k)
			if raw, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(k, "=")); err == nil {
				secrets = append(secrets, string(raw[len(raw)-64:])) // the ratchet and signing key bytes
			}
		}
	}
	if len(secrets) < len(markers)+3 {
		t.Fatalf("the owner's client holds no Megolm sessions to look for")
	}
	noSecrets(t, m.install, secrets)
}

// Kill the daemon (SIGKILL, at a crash point compiled into the test build)
// between each step of a message's way in and its reply's way out, restart
// it: the owner sees the reply exactly once, every time.
func TestMatrixCrashes(t *testing.T) {
	m := newMatrixInstall(t)
	m.start("")
	owner := m.hs.Login(t, m.owner, ownerPass)
	room := owner.CreateRoom(false, m.bot)
	owner.WaitJoined(room, m.bot, 60*time.Second)
	owner.Send(room, "warm up")
	waitExactlyOnce(t, owner, room, m.bot, "warm up")
	var markers []string
	// Crashes. Each point is armed once; the restarted daemon must deliver
	// exactly once.
	for i, point := range []string{"matrix.before-send", "matrix.after-send", "matrix.after-sync", "matrix.before-inbox", "matrix.after-inbox"} {
		m.stop()
		m.start(point)
		mark := fmt.Sprintf("MARKER-mx-crash-%d-%s", i, strings.ReplaceAll(point, ".", "-"))
		markers = append(markers, mark)
		owner.Send(room, mark)
		m.crashed(90 * time.Second)
		m.start("")
		waitExactlyOnce(t, owner, room, m.bot, mark)
	}

	m.stop()
	noSecrets(t, m.install, append(markers, botPass))
}

// waitSession waits until room has a session and returns its id.
func waitSession(t *testing.T, in *install, room id.RoomID) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		out := in.mustRun("sessions")
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, "matrix:"+string(room)) {
				if f := strings.Fields(line); len(f) > 0 && len(f[0]) == 32 {
					return f[0]
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no session for %s:\n%s", room, in.mustRun("sessions"))
	return ""
}

// inboxRows counts the rows of a session's inbox (plain metadata: the
// count is visible without any key).
func inboxRows(t *testing.T, in *install, session string) int {
	t.Helper()
	conn, err := sqlite.OpenConn(filepath.Join(in.root, "state", "sessions", session, "inbox", "inbox.db"), sqlite.OpenReadOnly)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	n := -1
	if err := sqlitex.Execute(conn, "SELECT count(*) FROM rows", &sqlitex.ExecOptions{
		ResultFunc: func(st *sqlite.Stmt) error { n = st.ColumnInt(0); return nil },
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

func waitPendingContact(t *testing.T, in *install) string {
	t.Helper()
	re := regexp.MustCompile(`(?m)^([0-9a-f]{32})\s+pending\s+contacts`)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(in.mustRun("changes", "list")); m != nil {
			return m[1]
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no pending contacts request:\n%s", in.mustRun("changes", "list", "--all"))
	return ""
}

// noSecrets fails if any file under the state or runtime directory holds
// one of secrets.
func noSecrets(t *testing.T, in *install, secrets []string) {
	t.Helper()
	files := 0
	for _, dir := range []string{filepath.Join(in.root, "state"), filepath.Join(in.root, "run")} {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return nil
			}
			files++
			data, _ := os.ReadFile(p)
			for _, s := range secrets {
				if bytes.Contains(data, []byte(s)) {
					t.Errorf("%s holds a secret or message text (%.24q…)", p, s)
				}
			}
			return nil
		})
	}
	if files < 5 {
		t.Fatalf("scanned only %d files", files)
	}
}

// Benchmark (IRONCLAW_BENCH=1): owner's message → the agent's reply seen by
// the owner's client, in an encrypted room, against a plain round trip
// between two clients on the same homeserver in the same run (the peer
// echoes each message at once, also encrypted). The echo agent takes no
// model time, so nothing needs subtracting.
func TestMatrixRoundTripBenchmark(t *testing.T) {
	if os.Getenv("IRONCLAW_BENCH") == "" {
		t.Skip("set IRONCLAW_BENCH=1 (just bench)")
	}
	m := newMatrixInstall(t)
	m.start("")
	owner := m.hs.Login(t, m.owner, ownerPass)
	room := owner.CreateRoom(false, m.bot)
	owner.WaitJoined(room, m.bot, 60*time.Second)
	peerID := m.hs.Register(t, "peer", "peer-pass-1")
	peer := m.hs.Login(t, peerID, "peer-pass-1")
	peer.Echo()
	proom := owner.CreateRoom(false, peerID)
	owner.WaitJoined(proom, peerID, 60*time.Second)

	const warm, n = 3, 30
	measure := func(r id.RoomID, from id.UserID, label string) []time.Duration {
		var ds []time.Duration
		for i := range warm + n {
			body := fmt.Sprintf("%s round trip %d", label, i)
			start := time.Now()
			owner.Send(r, body)
			owner.WaitFor(r, from, 60*time.Second, func(ms []mxtest.Message) bool { return mxtest.Count(ms, body) >= 1 })
			if i >= warm {
				ds = append(ds, time.Since(start))
			}
		}
		slices.Sort(ds)
		return ds
	}
	// Interleave the two so machine noise hits both alike.
	var bot, base []time.Duration
	for range 3 {
		base = append(base, measure(proom, peerID, "peer")...)
		bot = append(bot, measure(room, m.bot, "bot")...)
	}
	slices.Sort(bot)
	slices.Sort(base)
	p := func(ds []time.Duration, q float64) time.Duration { return ds[int(q*float64(len(ds)-1))] }
	t.Logf("matrix round trip, encrypted room, %d each: ironclaw p50 %v p90 %v; two clients p50 %v p90 %v; ratio p50 %.2fx",
		len(bot), p(bot, .5), p(bot, .9), p(base, .5), p(base, .9), float64(p(bot, .5))/float64(p(base, .5)))
}
