package audit

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

var testKey = bytes.Repeat([]byte{0x42}, 32)

// TestFlipEveryByte flips every byte of a small log (three different ways)
// and requires verification to fail at exactly the line holding that byte.
// The newline ending a line belongs to that line.
func TestFlipEveryByte(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"plain", nil},
		{"mac", []Option{WithKey(testKey)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := writeLog(t, tempLogPath(t), 4, tc.opts...)
			if _, err := Verify(bytes.NewReader(data), nil, tc.opts...); err != nil {
				t.Fatal(err)
			}
			lineOf := make([]int, len(data))
			line := 1
			for i, c := range data {
				lineOf[i] = line
				if c == '\n' {
					line++
				}
			}
			for off := range data {
				for _, mask := range []byte{0x01, 0x20, 0x80} {
					mut := bytes.Clone(data)
					mut[off] ^= mask
					_, err := Verify(bytes.NewReader(mut), nil, tc.opts...)
					if err == nil {
						t.Fatalf("flip 0x%02x at offset %d (%q) not detected", mask, off, data[off])
					}
					var ve *VerifyError
					if !errors.As(err, &ve) || ve.Line != lineOf[off] || ve.Seq != uint64(lineOf[off]) {
						t.Fatalf("flip at offset %d (line %d): got %v", off, lineOf[off], err)
					}
				}
			}
		})
	}
}

func TestDeletedEntry(t *testing.T) {
	data := writeLog(t, tempLogPath(t), 5)
	ls := lines(data)
	mut := bytes.Join([][]byte{ls[0], ls[1], ls[3], ls[4]}, nil)
	_, err := Verify(bytes.NewReader(mut), nil)
	ve := wantVerifyError(t, err, 3, 3)
	if !strings.Contains(ve.Error(), "audit: entry 3 (line 3): out of sequence: has seq 4, expected 3") {
		t.Fatalf("message = %v", ve)
	}
	// Renumbering the seq to hide the gap breaks the hash instead.
	ls3 := bytes.Replace(ls[3], []byte(`"seq":4`), []byte(`"seq":3`), 1)
	mut = bytes.Join([][]byte{ls[0], ls[1], ls3, ls[4]}, nil)
	_, err = Verify(bytes.NewReader(mut), nil)
	wantVerifyError(t, err, 3, 3)
	// Deleting the first entry.
	_, err = Verify(bytes.NewReader(bytes.Join(ls[1:], nil)), nil)
	wantVerifyError(t, err, 1, 1)
}

func TestSwappedEntries(t *testing.T) {
	data := writeLog(t, tempLogPath(t), 5)
	ls := lines(data)
	mut := bytes.Join([][]byte{ls[0], ls[2], ls[1], ls[3], ls[4]}, nil)
	_, err := Verify(bytes.NewReader(mut), nil)
	wantVerifyError(t, err, 2, 2)
	mut = bytes.Join([][]byte{ls[0], ls[1], ls[2], ls[4], ls[3]}, nil)
	_, err = Verify(bytes.NewReader(mut), nil)
	wantVerifyError(t, err, 4, 4)
}

// forge builds a correctly chained entry after the last line of data, the
// way someone with write access but no key could.
func forge(t *testing.T, data []byte, mac []byte) []byte {
	t.Helper()
	ls := lines(data)
	last, reason := parseLine(ls[len(ls)-1])
	if reason != "" {
		t.Fatal(reason)
	}
	e := Entry{Seq: last.Seq + 1, Time: last.Time, Actor: "operator:alice", Action: "change.approve",
		Subject: "forged", Decision: "approved", Result: "ok", Count: 1, Prev: last.Hash}
	e.Hash = e.computeHash()
	e.MAC = mac
	line, err := e.marshal()
	if err != nil {
		t.Fatal(err)
	}
	return append(bytes.Clone(data), line...)
}

func TestOutOfBandAppend(t *testing.T) {
	t.Run("plain chain", func(t *testing.T) {
		data := writeLog(t, tempLogPath(t), 3)
		// A badly forged entry is caught by the chain alone.
		bad := forge(t, data, nil)
		bad[len(bad)-5] ^= 0x01 // inside the hash hex
		_, err := Verify(bytes.NewReader(bad), nil)
		wantVerifyError(t, err, 4, 4)
		// A correctly chained forgery is not: the documented limit of a
		// keyless hash chain. This asserts the limit is what the docs say.
		if _, err := Verify(bytes.NewReader(forge(t, data, nil)), nil); err != nil {
			t.Fatalf("unexpected: %v", err)
		}
	})
	t.Run("with key", func(t *testing.T) {
		path := tempLogPath(t)
		data := writeLog(t, path, 3, WithKey(testKey))
		rep, err := Verify(bytes.NewReader(data), nil, WithKey(testKey))
		if err != nil || !rep.MAC || !rep.MACVerified {
			t.Fatalf("genuine log: %+v, %v", rep, err)
		}
		fakeMAC := bytes.Repeat([]byte{0x17}, 32)
		for name, forged := range map[string][]byte{
			"no mac":   forge(t, data, nil),
			"fake mac": forge(t, data, fakeMAC),
		} {
			_, err := Verify(bytes.NewReader(forged), nil, WithKey(testKey))
			ve := wantVerifyError(t, err, 4, 4)
			if !strings.Contains(ve.Reason, "mac") {
				t.Fatalf("%s: reason %q", name, ve.Reason)
			}
			os.WriteFile(path, forged, 0o600)
			if l, err := Open(path, WithKey(testKey)); err == nil {
				l.Close()
				t.Fatalf("%s: Open appended after a forged entry", name)
			}
		}
		// Without the key a missing MAC is still caught (all or none)...
		_, err = Verify(bytes.NewReader(forge(t, data, nil)), nil)
		wantVerifyError(t, err, 4, 4)
		// ...but a made-up one is not: only the key can tell.
		if _, err := Verify(bytes.NewReader(forge(t, data, fakeMAC)), nil); err != nil {
			t.Fatalf("unexpected: %v", err)
		}
	})
}

func TestMACKeyHandling(t *testing.T) {
	path := tempLogPath(t)
	data := writeLog(t, path, 2, WithKey(testKey))
	for _, l := range lines(data) {
		if !bytes.Contains(l, []byte(`,"mac":"`)) {
			t.Fatalf("entry without mac: %s", l)
		}
	}
	otherKey := bytes.Repeat([]byte{1}, 32)
	_, err := VerifyFile(path, nil, WithKey(otherKey))
	wantVerifyError(t, err, 1, 1)
	if _, err := Open(path); err == nil || !strings.Contains(err.Error(), "open it with its key") {
		t.Fatalf("Open without key of a MAC log = %v", err)
	}
	if _, err := Open(path, WithKey(otherKey)); err == nil {
		t.Fatal("Open with the wrong key succeeded")
	}
	plain := tempLogPath(t)
	writeLog(t, plain, 2)
	if _, err := Open(plain, WithKey(testKey)); err == nil {
		t.Fatal("Open with a key continued a log without MACs")
	}
	if _, err := VerifyFile(path, nil, WithKey(make([]byte, 31))); err == nil {
		t.Fatal("Verify accepted a 31-byte key")
	}
}

func TestTailTruncationAgainstAnchor(t *testing.T) {
	path := tempLogPath(t)
	l := mustOpen(t, path)
	for i := range 5 {
		if _, err := l.Append(rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	seq, hash := l.Head()
	anchor := Anchor{Seq: seq, Hash: hash}
	mustClose(t, l)
	data, _ := os.ReadFile(path)
	if _, err := VerifyFile(path, &anchor); err != nil {
		t.Fatal(err)
	}
	if l, err := Open(path, WithAnchor(anchor)); err != nil {
		t.Fatal(err)
	} else {
		mustClose(t, l)
	}

	ls := lines(data)
	truncated := bytes.Join(ls[:3], nil)
	os.WriteFile(path, truncated, 0o600)
	if _, err := VerifyFile(path, nil); err != nil {
		t.Fatalf("without an anchor truncation is undetectable, so this must pass: %v", err)
	}
	_, err := VerifyFile(path, &anchor)
	ve := wantVerifyError(t, err, 4, 5)
	if !strings.Contains(ve.Reason, "truncated") {
		t.Fatalf("reason = %q", ve.Reason)
	}
	if _, err := Open(path, WithAnchor(anchor)); err == nil {
		t.Fatal("Open with anchor accepted a truncated log")
	}
	// Truncated and then torn: still refused, and the file left alone.
	torn := append(bytes.Clone(truncated), ls[3][:10]...)
	os.WriteFile(path, torn, 0o600)
	if _, err := Open(path, WithAnchor(anchor)); err == nil {
		t.Fatal("Open with anchor accepted a truncated, torn log")
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, torn) {
		t.Fatal("refused Open modified the file")
	}

	// Tail rewritten with a valid chain: the anchored entry's hash differs.
	os.WriteFile(path, truncated, 0o600)
	l = mustOpen(t, path)
	for i := range 3 {
		if _, err := l.Append(Record{Actor: "x", Action: "rewritten", Subject: string(rune('a' + i))}); err != nil {
			t.Fatal(err)
		}
	}
	mustClose(t, l)
	_, err = VerifyFile(path, &anchor)
	ve = wantVerifyError(t, err, 5, 5)
	if !strings.Contains(ve.Reason, "anchor") {
		t.Fatalf("reason = %q", ve.Reason)
	}

	// The whole log deleted.
	os.Remove(path)
	if _, err := Open(path, WithAnchor(anchor)); err == nil {
		t.Fatal("Open with anchor started a fresh log where one was deleted")
	}
}

func TestVerifyRejectsUnsafeFieldsEvenIfHashed(t *testing.T) {
	e := Entry{Seq: 1, Time: newFakeClock().Now(), Actor: "a\x1bb", Action: "x", Count: 1}
	e.Hash = e.computeHash()
	line, err := e.marshal()
	if err != nil {
		t.Fatal(err)
	}
	_, err = Verify(bytes.NewReader(line), nil)
	ve := wantVerifyError(t, err, 1, 1)
	if !strings.Contains(ve.Reason, "actor contains") {
		t.Fatalf("reason = %q", ve.Reason)
	}
}

func TestVerifyMalformed(t *testing.T) {
	good := writeLog(t, tempLogPath(t), 2)
	ls := lines(good)
	upper := bytes.Replace(ls[1], []byte(`"hash":"`), []byte(`"hash":"`), 1)
	h := bytes.Index(upper, []byte(`"hash":"`)) + 8
	copy(upper[h:], bytes.ToUpper(upper[h:h+64]))
	for name, tc := range map[string]struct {
		data []byte
		line int
	}{
		"empty line":      {append(bytes.Clone(ls[0]), '\n'), 2},
		"not json":        {[]byte("hello\n"), 1},
		"extra field":     {bytes.Replace(ls[0], []byte(`{"seq"`), []byte(`{"x":1,"seq"`), 1), 1},
		"space":           {bytes.Replace(ls[0], []byte(`,"time"`), []byte(`, "time"`), 1), 1},
		"uppercase hex":   {append(bytes.Clone(ls[0]), upper...), 2},
		"crlf":            {bytes.Replace(ls[0], []byte("}\n"), []byte("}\r\n"), 1), 1},
		"huge line":       {append(bytes.Repeat([]byte("a"), maxLine+10), '\n'), 1},
		"genesis anchor":  {ls[0], 1},
		"trailing object": {bytes.Replace(ls[0], []byte("}\n"), []byte("}{}\n"), 1), 1},
	} {
		var anchor *Anchor
		if name == "genesis anchor" {
			anchor = &Anchor{Seq: 0, Hash: [32]byte{1}}
		}
		_, err := Verify(bytes.NewReader(tc.data), anchor)
		var ve *VerifyError
		if !errors.As(err, &ve) || ve.Line != tc.line {
			t.Errorf("%s: got %v, want error at line %d", name, err, tc.line)
		}
		t.Logf("%s: %v", name, err)
	}
	if rep, err := Verify(bytes.NewReader(nil), &Anchor{}); err != nil || rep.Entries != 0 {
		t.Fatalf("empty log with genesis anchor: %+v %v", rep, err)
	}
}

// TestEditedFieldsBreakHash rewrites each field of an entry to another valid
// value (the line stays canonical, the old hash stays) and requires a hash
// mismatch: every field is covered by the hash.
func TestEditedFieldsBreakHash(t *testing.T) {
	data := writeLog(t, tempLogPath(t), 3)
	ls := lines(data)
	orig, reason := parseLine(ls[1])
	if reason != "" {
		t.Fatal(reason)
	}
	for name, edit := range map[string]func(*Entry){
		"time":     func(e *Entry) { e.Time = e.Time.Add(time.Nanosecond) },
		"actor":    func(e *Entry) { e.Actor = "operator:mallory" },
		"action":   func(e *Entry) { e.Action = "change.deny" },
		"subject":  func(e *Entry) { e.Subject = "profile:other" },
		"decision": func(e *Entry) { e.Decision = "denied" },
		"result":   func(e *Entry) { e.Result = "failed" },
		"count":    func(e *Entry) { e.Count = 2 },
	} {
		e := orig
		edit(&e)
		line, err := e.marshal()
		if err != nil {
			t.Fatal(err)
		}
		mut := bytes.Join([][]byte{ls[0], line, ls[2]}, nil)
		_, err = Verify(bytes.NewReader(mut), nil)
		ve := wantVerifyError(t, err, 2, 2)
		if ve.Reason != "hash does not match its contents" {
			t.Fatalf("%s edited: %v", name, ve)
		}
	}
	// Recomputing the edited entry's hash moves the error to the next
	// entry's prev link; patching that link too breaks the next entry's
	// hash, because prev is hashed: that is what makes it a chain.
	e := orig
	e.Subject = "rewritten"
	e.Hash = e.computeHash()
	line, _ := e.marshal()
	_, err := Verify(bytes.NewReader(bytes.Join([][]byte{ls[0], line, ls[2]}, nil)), nil)
	wantVerifyError(t, err, 3, 3)
	next, _ := parseLine(ls[2])
	next.Prev = e.Hash
	line3, _ := next.marshal()
	_, err = Verify(bytes.NewReader(bytes.Join([][]byte{ls[0], line, line3}, nil)), nil)
	if ve := wantVerifyError(t, err, 3, 3); ve.Reason != "hash does not match its contents" {
		t.Fatalf("patched prev link: %v", ve)
	}
}
