package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/nacl/secretbox"
)

func testKey(b byte) *Key {
	var k Key
	for i := range k {
		k[i] = b + byte(i)
	}
	return &k
}

func testSession(b byte) SessionID {
	var s SessionID
	for i := range s {
		s[i] = b
	}
	return s
}

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func TestRoundTrip(t *testing.T) {
	key, sid := testKey(1), testSession(7)
	body, err := Encode(Message{From: "@alice:localhost", Text: "hello ✓"})
	if err != nil {
		t.Fatal(err)
	}
	h := Header{Session: sid, Queue: Inbox, Seq: 42, Kind: KindMessage, Time: t0}
	sealed, err := Seal(key, h, body)
	if err != nil {
		t.Fatal(err)
	}
	got, gotBody, err := Open(key, sid, Inbox, 42, sealed)
	if err != nil {
		t.Fatal(err)
	}
	if got != h || !bytes.Equal(gotBody, body) {
		t.Fatalf("round trip: got %+v %q", got, gotBody)
	}
	b, err := DecodeBody(got.Kind, gotBody)
	if err != nil {
		t.Fatal(err)
	}
	if m := b.(Message); m.Text != "hello ✓" || m.From != "@alice:localhost" {
		t.Fatalf("decoded %+v", m)
	}
	// A fresh nonce each time: sealing the same row twice differs.
	again, _ := Seal(key, h, body)
	if bytes.Equal(again[:NonceSize], sealed[:NonceSize]) {
		t.Fatal("nonce reused")
	}
}

func TestEveryBitFlipIsRefused(t *testing.T) {
	key, sid := testKey(1), testSession(7)
	body, _ := Encode(Reply{Text: "hi"})
	sealed, err := Seal(key, Header{Session: sid, Queue: Outbox, Seq: 3, Kind: KindReply, Time: t0}, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := range sealed {
		for bit := range 8 {
			c := bytes.Clone(sealed)
			c[i] ^= 1 << bit
			if _, _, err := Open(key, sid, Outbox, 3, c); err == nil {
				t.Fatalf("flip of bit %d in byte %d (nonce/box) was accepted", bit, i)
			}
		}
	}
	for n := range len(sealed) {
		if _, _, err := Open(key, sid, Outbox, 3, sealed[:n]); err == nil {
			t.Fatalf("truncation to %d bytes accepted", n)
		}
	}
}

// A header changed inside a validly sealed row (as someone holding the key —
// the agent — could do) is still caught by the place check.
func TestMisplacedRows(t *testing.T) {
	key, sid, other := testKey(1), testSession(7), testSession(8)
	body, _ := Encode(Reply{Text: "hi"})
	sealed, _ := Seal(key, Header{Session: sid, Queue: Outbox, Seq: 3, Kind: KindReply, Time: t0}, body)
	cases := []struct {
		name string
		sid  SessionID
		q    Queue
		seq  uint64
	}{
		{"other session", other, Outbox, 3},
		{"other queue", sid, Inbox, 3},
		{"moved later (replayed)", sid, Outbox, 4},
		{"moved earlier (reordered)", sid, Outbox, 2},
	}
	for _, c := range cases {
		if _, _, err := Open(key, c.sid, c.q, c.seq, sealed); !errors.Is(err, ErrMisplaced) {
			t.Errorf("%s: got %v, want ErrMisplaced", c.name, err)
		}
	}
	if _, _, err := Open(testKey(2), sid, Outbox, 3, sealed); !errors.Is(err, ErrOpen) {
		t.Errorf("another session's key: got %v, want ErrOpen", err)
	}
	// A kind that belongs to the other queue is refused when sealing and opening.
	if _, err := Seal(key, Header{Session: sid, Queue: Outbox, Seq: 1, Kind: KindMessage}, body); !errors.Is(err, ErrKind) {
		t.Errorf("sealing an inbox kind into the outbox: %v", err)
	}
	// Someone holding the key can seal any plaintext; the reader still refuses
	// a kind from the other queue and an unknown header version.
	plain := layout(1, Outbox, sid, 1, KindMessage, t0, body)
	if _, _, err := Open(key, sid, Outbox, 1, sealRaw(key, plain)); !errors.Is(err, ErrKind) {
		t.Errorf("inbox kind in the outbox: got %v, want ErrKind", err)
	}
	plain = layout(2, Outbox, sid, 1, KindReply, t0, body)
	if _, _, err := Open(key, sid, Outbox, 1, sealRaw(key, plain)); !errors.Is(err, ErrVersion) {
		t.Errorf("future header version: got %v, want ErrVersion", err)
	}
}

// layout builds a sealed plaintext by hand, independently of Seal, from the
// documented layout: version, queue, session, seq (big endian), kind, time
// (unix ns, big endian), body.
func layout(version byte, q Queue, sid SessionID, seq uint64, k Kind, tm time.Time, body []byte) []byte {
	var b bytes.Buffer
	b.WriteByte(version)
	b.WriteByte(byte(q))
	b.Write(sid[:])
	binary.Write(&b, binary.BigEndian, seq)
	b.WriteByte(byte(k))
	binary.Write(&b, binary.BigEndian, tm.UnixNano())
	b.Write(body)
	return b.Bytes()
}

func sealRaw(key *Key, plain []byte) []byte {
	var nonce [NonceSize]byte
	return secretbox.Seal(nonce[:], plain, &nonce, (*[KeySize]byte)(key))
}

// Fixed vectors pin the format: a change to the layout breaks these.
func TestVectors(t *testing.T) {
	key, sid := testKey(0), testSession(0xab)
	var nonce [NonceSize]byte
	for i := range nonce {
		nonce[i] = byte(0xf0 + i%16)
	}
	vectors := []struct {
		h    Header
		body Body
		want string
	}{
		{Header{Session: sid, Queue: Inbox, Seq: 1, Kind: KindMessage, Time: t0}, Message{From: "@a:b", Text: "hi"}, ""},
		{Header{Session: sid, Queue: Outbox, Seq: 258, Kind: KindReply, Time: t0}, Reply{Text: "yo", InReplyTo: 1}, ""},
	}
	for i := range vectors {
		v := &vectors[i]
		body, err := Encode(v.body)
		if err != nil {
			t.Fatal(err)
		}
		got, err := sealWithNonce(key, &nonce, v.h, body)
		if err != nil {
			t.Fatal(err)
		}
		v.want = hex.EncodeToString(got)
	}
	// The vectors were produced once; they must never change silently. The
	// hand-built layout checks they mean what docs/wire.md says.
	want := []string{vector0, vector1}
	for i, v := range vectors {
		if v.want != want[i] {
			t.Errorf("vector %d:\n got %s\nwant %s", i, v.want, want[i])
		}
		body, _ := Encode(v.body)
		manual := secretbox.Seal(nonce[:], layout(1, v.h.Queue, v.h.Session, v.h.Seq, v.h.Kind, v.h.Time, body), &nonce, (*[KeySize]byte)(key))
		if hex.EncodeToString(manual) != want[i] {
			t.Errorf("vector %d does not match the documented layout", i)
		}
		sealed, _ := hex.DecodeString(want[i])
		h, body, err := Open(key, v.h.Session, v.h.Queue, v.h.Seq, sealed)
		if err != nil || h != v.h {
			t.Errorf("vector %d does not open: %v %+v", i, err, h)
		}
		if _, err := DecodeBody(h.Kind, body); err != nil {
			t.Errorf("vector %d body: %v", i, err)
		}
	}
}

func TestStrictDecode(t *testing.T) {
	good := `{"text":"hi","in_reply_to":3}`
	if _, err := DecodeBody(KindReply, []byte(good)); err != nil {
		t.Fatalf("good body refused: %v", err)
	}
	bad := map[string]string{
		"unknown key":       `{"text":"hi","target":"@mallory:evil"}`,
		"duplicate key":     `{"text":"hi","text":"other"}`,
		"case variant":      `{"Text":"hi"}`,
		"case variant 2":    `{"text":"hi","In_Reply_To":3}`,
		"trailing data":     `{"text":"hi"} {"text":"again"}`,
		"invalid utf-8":     "{\"text\":\"\xff\"}",
		"not an object":     `["text"]`,
		"wrong type":        `{"text":5}`,
		"empty reply":       `{"text":""}`,
		"negative seq":      `{"text":"a","in_reply_to":-1}`,
		"nested too deep":   `{"text":"a","x":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`,
		"null body":         `null`,
		"truncated":         `{"text":"hi"`,
		"unicode escape ok": `{"text":"hi","\u0074ext":"x"}`,
	}
	for name, in := range bad {
		if _, err := DecodeBody(KindReply, []byte(in)); err == nil {
			t.Errorf("%s: %s accepted", name, in)
		}
	}
	big := `{"text":"` + strings.Repeat("a", MaxTextSize+1) + `"}`
	if _, err := DecodeBody(KindReply, []byte(big)); err == nil {
		t.Error("oversized text accepted")
	}
	if _, err := DecodeBody(Kind(99), []byte(good)); !errors.Is(err, ErrKind) {
		t.Errorf("unknown kind: %v", err)
	}
}

func TestSessionID(t *testing.T) {
	id, err := NewSessionID()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseSessionID(id.String())
	if err != nil || back != id || len(id.String()) != 32 {
		t.Fatalf("round trip %v %v", back, err)
	}
	for _, s := range []string{"", "zz", strings.ToUpper(id.String()), id.String() + "00"} {
		if _, err := ParseSessionID(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

const (
	vector0 = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfefff0f1f2f3f4f5f6f7e4ac7275cbe332194c3ddd257921b945ee4d438ce2042215e74e431e6bf035c01babbc76ee57fa39b240fe78814d502a4d9430c12a6704f53babf6b18bf08ccc59cd5e90d73b0d82c395e8832fde"
	vector1 = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfefff0f1f2f3f4f5f6f700e7359e058ebff5027ef6f11524a6faee4e438ce2042215e74e431e6bf035c01babbc76ee57fa39b343ef78814d502a4d9430c12a7513e222abf6b1b2fe9482598812bbc02609cc80e8f4852f992c02"
)

// Free JSON values (any, json.RawMessage) are checked at every depth.
func TestStrictFreeValues(t *testing.T) {
	type v struct {
		A any             `json:"a"`
		R json.RawMessage `json:"r"`
	}
	for _, ok := range []string{
		`{"a":{"x":[1,{"y":null}],"z":"s"},"r":{"k":[true]}}`,
		`{"a":[1,2],"r":"s"}`,
		`{"a":null,"r":null}`,
	} {
		var x v
		if err := StrictUnmarshal([]byte(ok), &x); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{
		`{"a":{"x":1,"x":2}}`,
		`{"r":{"k":{"d":1,"d":2}}}`,
		`{"a":[{"q":1,"q":1}]}`,
		`{"a":` + strings.Repeat("[", 20) + strings.Repeat("]", 20) + `}`,
		`{"A":1}`,
	} {
		var x v
		if err := StrictUnmarshal([]byte(bad), &x); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
