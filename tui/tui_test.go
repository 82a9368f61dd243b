package tui

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	"github.com/charmbracelet/x/exp/teatest/v2"
	"github.com/ironclaw/ironclaw/daemon/api"
	"github.com/ironclaw/ironclaw/tui/tuitest"
)

// update is the -update flag (defined by teatest's golden package).
func update() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

const (
	alice = "operator:SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	bob   = "operator:SHA256:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
)

// hostileReason is what a compromised agent might write: escapes that would
// clear the screen and retitle the terminal, a bidi override, a zero-width
// space and a tag character, and one very long line.
const hostileReason = "Please approve.\x1b[2J\x1b]0;owned\a I need \u202eeliforp\u202c this\u200b\U000e0041.\n" +
	"This is a very long line that must be wrapped and never cut: " +
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaEND"

func fixture() *tuitest.Daemon {
	d := tuitest.NewDaemon()
	d.AddSession(api.Session{ID: "0123456789abcdef0123456789abcdef", Binding: "console:local", State: "active", ProfileVersion: 3, Running: true, InboxHead: 12, Progress: 12})
	d.AddSession(api.Session{ID: "fedcba9876543210fedcba9876543210", Binding: "matrix:!room\x1b[31m:example.org", State: "active", ProfileVersion: 1, InboxHead: 4, Progress: 3})
	d.SetUsage("0123456789abcdef0123456789abcdef", 96<<20, 2_345_000)
	d.SetModelHealth("ok", "")
	d.SetTranscript("0123456789abcdef0123456789abcdef", api.Turn{Seq: 1, Role: "user", Text: "what is on today?"},
		api.Turn{Seq: 2, Role: "assistant", Text: "Nothing.\x1b[2J\x1b]0;owned\a Rest \u202eeliforp\u202c."})
	d.AddProfileVersion("0123456789abcdef0123456789abcdef", "instructions: be helpful\nmodel: tiny\n", "+instructions: be helpful\n+model: tiny\n", "")
	d.AddProfileVersion("0123456789abcdef0123456789abcdef", "instructions: be brief\nmodel: tiny\n",
		"-instructions: be helpful\n+instructions: be brief\u202e\n model: tiny\n", "00112233445566778899aabbccddeeff")
	d.AddAudit(5)
	diff := " model: tiny\n-tools: reply\n+tools: reply, remember, " + strings.Repeat("x", 150) + "\n instructions: be helpful\n"
	d.File("0123456789abcdef0123456789abcdef", "tools", "agent:0123456789abcdef0123456789abcdef", hostileReason, "base", "proposed", diff)
	d.File("fedcba9876543210fedcba9876543210", "instructions", "agent:fedcba9876543210fedcba9876543210", "be nicer", "b2", "p2", "-instructions: a\n+instructions: b\n")
	return d
}

// probe asks the running program for its frame, from the program's own
// goroutine (so the test never races the model).
type probeMsg struct{ out chan string }

type probed struct{ *Model }

func (p probed) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	if m, ok := msg.(probeMsg); ok {
		m.out <- p.Model.Render()
		return p, nil
	}
	_, cmd := p.Model.Update(msg)
	return p, cmd
}

type console struct {
	t  *testing.T
	tm *teatest.TestModel
}

func start(t *testing.T, op api.Operator, w, h int) *console {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	m := New(ctx, op, Options{Width: w, Height: h, Refresh: -1})
	tm := teatest.NewTestModel(t, probed{m}, teatest.WithInitialTermSize(w, h))
	t.Cleanup(func() { tm.Quit() })
	return &console{t: t, tm: tm}
}

// frame is the current frame without colour.
func (c *console) frame() string {
	out := make(chan string, 1)
	c.tm.Send(probeMsg{out})
	select {
	case s := <-out:
		return ansi.Strip(s)
	case <-time.After(10 * time.Second):
		c.t.Fatal("the console did not answer")
		return ""
	}
}

// waitFor waits until the frame contains every one of want.
func (c *console) waitFor(want ...string) string {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f := c.frame()
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(f, w)
		}
		if ok {
			return f
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("frame never showed %q:\n%s", want, f)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// loaded waits until every page has its data (they load at start).
func (c *console) loaded() {
	c.t.Helper()
	c.waitFor("2 waiting for you")
	c.keys("2")
	c.waitFor("fedcba987654")
	c.keys("3")
	c.waitFor("instructions", "tools")
	c.keys("4")
	c.waitFor("test.entry")
	c.keys("1")
	c.waitFor("2 waiting for you")
}

func (c *console) keys(ks ...string) {
	for _, k := range ks {
		c.tm.Send(keyMsg(k))
	}
}

func keyMsg(k string) tea.KeyPressMsg {
	switch k {
	case "enter":
		return tea.KeyPressMsg{Code: tea.KeyEnter}
	case "esc":
		return tea.KeyPressMsg{Code: tea.KeyEscape}
	case "tab":
		return tea.KeyPressMsg{Code: tea.KeyTab}
	case "down":
		return tea.KeyPressMsg{Code: tea.KeyDown}
	case "pgdown":
		return tea.KeyPressMsg{Code: tea.KeyPgDown}
	case "space":
		return tea.KeyPressMsg{Code: tea.KeySpace, Text: " "}
	}
	r := []rune(k)[0]
	return tea.KeyPressMsg{Code: r, Text: k}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if update() {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./tui -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from the golden file:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// checkFrame holds for every frame: exactly the terminal's height, no line
// wider than it, and no raw control character from the fixture.
func checkFrame(t *testing.T, f string, w, h int) {
	t.Helper()
	lines := strings.Split(f, "\n")
	if len(lines) != h {
		t.Errorf("frame has %d lines, want %d", len(lines), h)
	}
	for i, l := range lines {
		if ansi.StringWidth(l) > w {
			t.Errorf("line %d is %d wide, more than %d: %q", i, ansi.StringWidth(l), w, l)
		}
	}
	if strings.ContainsAny(f, "\x1b\a\u202e\u202c\u200b") || strings.Contains(f, "\U000e0041") {
		t.Errorf("a raw control or hidden character reached the frame: %q", f)
	}
}

var sizes = [][2]int{{80, 24}, {200, 50}}

func TestGoldenPages(t *testing.T) {
	for _, sz := range sizes {
		w, h := sz[0], sz[1]
		// Each step is keys, then what the frame must show before the next.
		type step struct {
			keys []string
			want []string
		}
		detail := step{[]string{"3", "down", "enter"}, []string{"UNTRUSTED", "+++ proposed"}}
		for _, tc := range []struct {
			name  string
			steps []step
		}{
			{"overview", []step{{nil, []string{"waiting for you"}}}},
			{"sessions", []step{{[]string{"2"}, []string{"fedcba987654"}}}},
			{"session-detail", []step{{[]string{"2", "enter"}, []string{"profile version 1"}}}},
			{"session-transcript", []step{{[]string{"2", "enter"}, []string{"profile version 1"}}, {[]string{"t"}, []string{"transcript, 2 turns"}}}},
			{"profile-history", []step{{[]string{"2", "enter"}, []string{"profile version 1"}}, {[]string{"h"}, []string{"change 0011"}}}},
			{"profile-version", []step{{[]string{"2", "enter"}, []string{"profile version 1"}}, {[]string{"h"}, []string{"change 0011"}},
				{[]string{"down", "enter"}, []string{"+++ version 2"}}}},
			{"overview-model-missing", []step{{[]string{"2"}, []string{"fedcba987654"}}, {[]string{"1"}, []string{"MODEL MISSING"}}}},
			{"approvals", []step{{[]string{"3"}, []string{"instructions"}}}},
			{"approval-detail", []step{detail}},
			{"approve-confirm", []step{detail, {[]string{"a"}, []string{"Approve and apply exactly this change?"}}}},
			{"deny-reason", []step{detail, {[]string{"d", "n", "o"}, []string{"reason: no"}}}},
			{"audit", []step{{[]string{"4"}, []string{"test.entry"}}}},
			{"chat", []step{{[]string{"5", "h", "i", "enter"}, []string{"echo: hi"}}}},
			{"help", []step{{[]string{"3", "?"}, []string{"pending/all"}}}},
		} {
			t.Run(fmt.Sprintf("%s_%dx%d", tc.name, w, h), func(t *testing.T) {
				d := fixture()
				c := start(t, d.Operator(alice), w, h)
				c.loaded()
				if tc.name == "overview-model-missing" {
					d.SetModelHealth("model missing", "the Ollama server at http://127.0.0.1:11434 does not have the model \"tiny\": run `ollama pull tiny` there")
				}
				var f string
				for _, st := range tc.steps {
					c.keys(st.keys...)
					f = c.waitFor(st.want...)
				}
				checkFrame(t, f, w, h)
				golden(t, fmt.Sprintf("%s_%dx%d", tc.name, w, h), f)
			})
		}
	}
}

// The untrusted reason is boxed, marked, flagged for what it hides, and
// shown whole: the long line wraps and its end is on screen.
func TestApprovalShowsEverythingSafely(t *testing.T) {
	c := start(t, fixture().Operator(alice), 80, 24)
	c.loaded()
	c.keys("3", "down", "enter")
	f := c.waitFor("UNTRUSTED", "+++ proposed")
	checkFrame(t, f, 80, 24)
	for _, want := range []string{`\x1b[2J\x1b]0;owned\x07`, `\u202eeliforp\u202c`, "hides bidi controls, invisible characters, tag characters", "aaaaEND"} {
		if !strings.Contains(strings.ReplaceAll(f, "\n", ""), want) && !strings.Contains(c.scrollAll(), want) {
			t.Errorf("%q not shown", want)
		}
	}
}

// scrollAll pages through the open detail and returns everything seen.
func (c *console) scrollAll() string {
	var all strings.Builder
	for range 10 {
		all.WriteString(c.frame())
		c.keys("pgdown")
	}
	return strings.ReplaceAll(all.String(), "\n", "")
}

// Approving by keys applies exactly the request shown, recorded with the
// bound operator; a second operator watching sees it decided at once, and
// deciding it again is refused.
func TestTwoOperatorsLive(t *testing.T) {
	d := fixture()
	a := start(t, d.Operator(alice), 80, 24)
	b := start(t, d.Operator(bob), 80, 24)
	// Both open the same request (the newest is first: "instructions").
	for _, c := range []*console{a, b} {
		c.loaded()
		c.keys("3", "enter")
		c.waitFor("binding", "+++ proposed")
	}
	// Bob is about to approve; Alice approves first.
	b.keys("a")
	b.waitFor("Approve and apply exactly this change?")
	a.keys("a")
	f := a.waitFor("Approve and apply exactly this change?")
	list, _ := d.Operator(alice).ListChanges(context.Background(), api.ChangeFilter{})
	id := list[0].ID
	ch, _ := d.Change(id)
	if !strings.Contains(strings.ReplaceAll(f, "\n", ""), ch.Binding[:40]) || !strings.Contains(f, id) {
		t.Fatalf("the confirmation does not show the id and binding:\n%s", f)
	}
	a.keys("y")
	a.waitFor("DECIDED: applied")
	ch, _ = d.Change(id)
	if ch.State != "applied" || ch.DecidedBy != alice {
		t.Fatalf("change is %s by %s", ch.State, ch.DecidedBy)
	}
	// Bob's screen shows Alice's decision without a refresh, and his
	// pending confirmation is gone.
	f = b.waitFor("DECIDED: applied by " + alice[:30])
	if strings.Contains(f, "Approve and apply exactly") {
		t.Fatalf("bob can still confirm a decided request:\n%s", f)
	}
	// The api refuses a second decision (as the console would have).
	_, err := d.Operator(bob).Approve(context.Background(), id, api.DecideRequest{Binding: ch.Binding})
	if api.CodeOf(err) != api.CodeConflict {
		t.Fatalf("second decision: %v", err)
	}
	// Exactly one approval in the audit log, by Alice.
	n := 0
	for _, e := range d.Audit() {
		if e.Action == "change.appli" || e.Decision == "applied" {
			n++
			if e.Actor != alice {
				t.Fatalf("approved by %s", e.Actor)
			}
		}
	}
	if n != 1 {
		t.Fatalf("%d approvals audited", n)
	}
}

func TestDenyNeedsReason(t *testing.T) {
	d := fixture()
	c := start(t, d.Operator(alice), 80, 24)
	c.loaded()
	c.keys("3", "enter")
	c.waitFor("+++ proposed")
	c.keys("d", "enter")
	c.waitFor("a denial needs a reason")
	c.keys("t", "o", "o", "space", "m", "u", "c", "h", "enter")
	c.waitFor("DECIDED: denied")
	list, _ := d.Operator(alice).ListChanges(context.Background(), api.ChangeFilter{All: true})
	ch := list[0]
	full, _ := d.Change(ch.ID)
	if full.State != "denied" || full.Note != "too much" || full.DecidedBy != alice {
		t.Fatalf("%+v", full)
	}
}

func TestResize(t *testing.T) {
	c := start(t, fixture().Operator(alice), 80, 24)
	c.loaded()
	c.keys("3", "down", "enter")
	c.waitFor("UNTRUSTED")
	for _, sz := range [][2]int{{40, 12}, {200, 50}, {80, 24}} {
		c.tm.Send(tea.WindowSizeMsg{Width: sz[0], Height: sz[1]})
		f := c.waitFor("binding")
		checkFrame(t, f, sz[0], sz[1])
	}
}

func TestLiveNewRequest(t *testing.T) {
	d := fixture()
	c := start(t, d.Operator(alice), 80, 24)
	c.loaded()
	c.keys("3")
	d.File("0123456789abcdef0123456789abcdef", "model", "agent:0123456789abcdef0123456789abcdef", "faster", "b", "p", "-model: a\n+model: b\n")
	c.waitFor("model ")
}

// A session's memory, notes and schedules are read only on the keypress,
// and that read is audited.
func TestRecordsOnlyOnKeypress(t *testing.T) {
	d := fixture()
	c := start(t, d.Operator(alice), 80, 24)
	c.loaded()
	c.keys("2", "enter")
	c.waitFor("profile version 1")
	for _, e := range d.Audit() {
		if e.Action == "session.records.read" {
			t.Fatal("records were read before the operator asked")
		}
	}
	c.keys("m")
	c.waitFor("no memory, notes or schedules")
	n := 0
	for _, e := range d.Audit() {
		if e.Action == "session.records.read" && e.Actor == alice {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d audited reads", n)
	}
}

// The transcript is read only on its keypress, audited as this operator's
// read, sanitised on screen; when the audit cannot be written nothing of
// the conversation is shown.
func TestTranscriptOnlyOnKeypressAndAudited(t *testing.T) {
	d := fixture()
	c := start(t, d.Operator(alice), 80, 24)
	c.loaded()
	c.keys("2", "enter")
	c.waitFor("profile version 1")
	shows := func() int {
		n := 0
		for _, e := range d.Audit() {
			if e.Action == "session.show" && e.Result == "transcript" && e.Actor == alice {
				n++
			}
		}
		return n
	}
	if f := c.frame(); shows() != 0 || strings.Contains(f, "what is on today") {
		t.Fatalf("the transcript was read before the operator asked:\n%s", f)
	}
	c.keys("t")
	f := c.waitFor("transcript, 2 turns", "what is on today?")
	checkFrame(t, f, 80, 24)
	if !strings.Contains(f, `\x1b[2J`) || !strings.Contains(f, `\u202e`) {
		t.Errorf("the agent's escapes were not shown escaped:\n%s", f)
	}
	if shows() != 1 {
		t.Fatalf("%d audited transcript reads, want 1", shows())
	}
	// Fail closed: a second session opened after the audit broke shows an
	// error and no turn.
	d.BreakAudit()
	c.keys("esc", "enter", "t")
	f = c.waitFor("transcript: ")
	if strings.Contains(f, "what is on today") || strings.Contains(f, "turns (") {
		t.Fatalf("a transcript was shown although its read was not audited:\n%s", f)
	}
}

// The profile history lists each version with the change that made it;
// a version shows its diff (the approvals page's diff drawing) and text.
func TestProfileHistory(t *testing.T) {
	c := start(t, fixture().Operator(alice), 200, 50)
	c.loaded()
	c.keys("2", "enter")
	c.waitFor("profile version 1")
	c.keys("h")
	f := c.waitFor("v1", "first version", "v2", "change 00112233445566778899aabbccddeeff")
	c.keys("down", "enter")
	f = c.waitFor("--- version 1", "+++ version 2", "+instructions: be brief", "canonical text of version 2", "made by change 0011")
	checkFrame(t, f, 200, 50)
	if !strings.Contains(f, `WARNING`) {
		t.Errorf("the hidden escape in the diff was not flagged:\n%s", f)
	}
	c.keys("esc")
	c.waitFor("enter: text and diff")
	c.keys("esc")
	c.waitFor("t transcript")
}

// While the sessions page is open its list (with sandbox usage) is re-read
// on the tick; hidden, it is not.
func TestSessionUsageRefreshes(t *testing.T) {
	d := fixture()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	m := New(ctx, d.Operator(alice), Options{Width: 200, Height: 50, Refresh: 20 * time.Millisecond})
	tm := teatest.NewTestModel(t, probed{m}, teatest.WithInitialTermSize(200, 50))
	t.Cleanup(func() { tm.Quit() })
	c := &console{t: t, tm: tm}
	c.keys("2")
	c.waitFor("fedcba987654")
	c.keys("enter")
	c.waitFor("usage    memory 96.0 MiB   cpu 2.345s")
	d.SetUsage("0123456789abcdef0123456789abcdef", 200<<20, 9_000_000)
	c.waitFor("usage    memory 200.0 MiB   cpu 9s")
	c.keys("esc", "4")
	c.waitFor("test.entry")
	time.Sleep(300 * time.Millisecond) // let a read in flight land (generous: a busy machine)
	list, _ := d.Calls()
	time.Sleep(300 * time.Millisecond)
	if after, _ := d.Calls(); after != list {
		t.Fatalf("the hidden sessions page was re-read %d times", after-list)
	}
}
