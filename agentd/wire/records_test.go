package wire

import (
	"encoding/hex"
	"reflect"
	"strings"
	"testing"
)

// Fixed vectors for the record kinds: a change to their JSON or kind numbers
// breaks these.
func TestRecordVectors(t *testing.T) {
	key, sid := testKey(0), testSession(0xab)
	var nonce [NonceSize]byte
	for i := range nonce {
		nonce[i] = byte(0xf0 + i%16)
	}
	cases := []struct {
		h    Header
		body Body
		want string
	}{
		{Header{Session: sid, Queue: Inbox, Seq: 9, Kind: KindState, Time: t0},
			State{Handled: 7, Memory: []Memory{{Key: "tea", Text: "green"}}, Schedules: []Schedule{{ID: "s1", At: 1800000000, Every: 3600, Text: "stretch"}},
				History: []Turn{{Seq: 6, Role: TurnUser, Text: "hi"}, {Seq: 8, Role: TurnAssistant, Text: "hello"}}}, vectorState},
		{Header{Session: sid, Queue: Outbox, Seq: 4, Kind: KindMemory, Time: t0}, MemoryOp{Op: OpSet, Key: "tea", Text: "green"}, vectorMemory},
	}
	for i, c := range cases {
		body, err := Encode(c.body)
		if err != nil {
			t.Fatal(err)
		}
		got, err := sealWithNonce(key, &nonce, c.h, body)
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(got) != c.want {
			t.Errorf("vector %d:\n got %x\nwant %s", i, got, c.want)
		}
		h, b, err := Open(key, c.h.Session, c.h.Queue, c.h.Seq, got)
		if err != nil || h != c.h {
			t.Fatalf("vector %d does not open: %v", i, err)
		}
		back, err := DecodeBody(h.Kind, b)
		if err != nil || !reflect.DeepEqual(back, c.body) {
			t.Fatalf("vector %d decodes to %+v (%v)", i, back, err)
		}
	}
}

const (
	vectorState  = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfefff0f1f2f3f4f5f6f79912902cc3693c82cc914b9f1dd52ab8ee4d438ce2042215e74e431e6bf035c01babbc76ee57fa39b248fc78814d502a4d9430c12a6917f432e5a9f7e9ab8182598c1989dd310082c3ecfbc866c6645da87d711913f4a356bb55a15e124a5cc0aa8e42b7fec089016078e1327cdc324bc2b0234ebd95a075aff2548f67d18ebe23ae293918873ce040bacad430eac634ca7738b9f99b7e15caae6fe23d39939f7ff32e705531535e23f531a8b300cea0183e0ed7e56f931aa05dfec4acf08ee3b1382eed71761f8bb8f1c7eb95912dfcd2f40f7b16b1f19f0be6e5c8482a70ba0ba1b10c4c35bbd4f0fd1f874c549e674812c098cedd283aadcdb15e22d197bd2ba943d8b19a41c3c198945bfcce0f28f8ea96cb249dd7a572"
	vectorMemory = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfefff0f1f2f3f4f5f6f735c636e55929313e05c3cedbf3e62c1aee4e438ce2042215e74e431e6bf035c01babbc76ee57fa39b245ec78814d502a4d9430c12a6e06b86cabbff6bfb39a8c108405c688610dc59895acc879c6650bb065271b00b3ea1aed4d"
)

func TestRecordBodiesStrict(t *testing.T) {
	good := map[Kind]string{
		KindState:       `{"handled":1,"memory":[{"key":"a","text":"b"}],"notes":null,"schedules":[],"history":[{"seq":2,"role":"user","text":"x"}]}`,
		KindDelivered:   `{"text":"hi","in_reply_to":3}`,
		KindFired:       `{"id":"s1","text":"stretch","due":1800000000,"late":true}`,
		KindMemory:      `{"op":"set","key":"tea","text":"green"}`,
		KindNote:        `{"op":"write","name":"todo.md","text":"- milk"}`,
		KindSchedule:    `{"op":"add","id":"s1","at":1800000000,"every":3600,"text":"stretch"}`,
		KindToolRefused: `{"tool":"shell"}`,
	}
	for k, s := range good {
		if _, err := DecodeBody(k, []byte(s)); err != nil {
			t.Errorf("%s: good body refused: %v", k, err)
		}
	}
	bad := []struct {
		k Kind
		s string
	}{
		{KindState, `{"handled":1,"memory":[{"key":"a","text":"b","Key":"c"}]}`},
		{KindState, `{"handled":1,"memory":[{"key":"a","text":"b"},{"key":"a","text":"c"}]}`},
		{KindState, `{"history":[{"seq":2,"role":"user","text":"x"},{"seq":2,"role":"user","text":"y"}]}`},
		{KindState, `{"history":[{"seq":2,"role":"system","text":"x"}]}`},
		{KindMemory, `{"op":"set","key":"../etc","text":"x"}`},
		{KindMemory, `{"op":"set","key":"a","text":"` + strings.Repeat("x", MaxMemoryText+1) + `"}`},
		{KindMemory, `{"op":"drop","key":"a"}`},
		{KindMemory, `{"op":"remove","key":"a","text":"x"}`},
		{KindMemory, `{"op":"set","op":"remove","key":"a"}`},
		{KindNote, `{"op":"write","name":"","text":"x"}`},
		{KindNote, `{"Op":"write","name":"a","text":"x"}`},
		{KindSchedule, `{"op":"add","id":"s1","at":1800000000,"every":5,"text":"x"}`},
		{KindSchedule, `{"op":"add","id":"s1","at":0,"text":"x"}`},
		{KindSchedule, `{"op":"cancel","id":"s1","text":"x"}`},
		{KindToolRefused, `{"tool":""}`},
		{KindFired, `{"id":"a b","text":"x","due":1}`},
	}
	for _, c := range bad {
		if _, err := DecodeBody(c.k, []byte(c.s)); err == nil {
			t.Errorf("%s: %s accepted", c.k, c.s)
		}
	}
	// Record kinds stay in their queue.
	for _, k := range []Kind{KindState, KindDelivered, KindFired} {
		if !k.allowedIn(Inbox) || k.allowedIn(Outbox) {
			t.Errorf("%s must be an inbox kind only", k)
		}
	}
	for _, k := range []Kind{KindMemory, KindNote, KindSchedule, KindToolRefused} {
		if k.allowedIn(Inbox) || !k.allowedIn(Outbox) {
			t.Errorf("%s must be an outbox kind only", k)
		}
	}
}

func TestEncodeStateTrimsHistory(t *testing.T) {
	var s State
	for i := range MaxHistoryTurns {
		s.History = append(s.History, Turn{Seq: uint64(i + 1), Role: TurnUser, Text: strings.Repeat("\x01", MaxTextSize/2)})
	}
	data, kept, err := EncodeState(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > maxStateBody || len(kept.History) == 0 || len(kept.History) == MaxHistoryTurns {
		t.Fatalf("kept %d turns in %d bytes", len(kept.History), len(data))
	}
	if kept.History[len(kept.History)-1].Seq != MaxHistoryTurns {
		t.Fatal("the newest turn was dropped")
	}
}

func TestHandshakeRoundTrip(t *testing.T) {
	h := Handshake{Session: testSession(3), Key: *testKey(4), Handled: 7, OutboxTaken: 9, State: 11}
	b := h.Marshal()
	if len(b) != HandshakeSize {
		t.Fatalf("%d bytes", len(b))
	}
	got, err := ParseHandshake(b)
	if err != nil || *got != h {
		t.Fatalf("%+v %v", got, err)
	}
	if _, err := ParseHandshake(b[:len(b)-1]); err == nil {
		t.Fatal("short handshake accepted")
	}
}
