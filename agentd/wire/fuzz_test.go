package wire

import (
	"reflect"
	"testing"
)

// FuzzOpen feeds arbitrary sealed rows and bodies to the reader's path: it
// must never panic, and anything it accepts must be well-formed.
func FuzzOpen(f *testing.F) {
	key, sid := testKey(1), testSession(7)
	body, _ := Encode(Reply{Text: "hi"})
	sealed, _ := Seal(key, Header{Session: sid, Queue: Outbox, Seq: 1, Kind: KindReply, Time: t0}, body)
	f.Add(sealed)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		h, b, err := Open(key, sid, Outbox, 1, data)
		if err != nil {
			return
		}
		if h.Session != sid || h.Queue != Outbox || h.Seq != 1 {
			t.Fatalf("accepted a misplaced header %+v", h)
		}
		_, _ = DecodeBody(h.Kind, b)
	})
}

// FuzzDecodeBody checks the strict decoder: never panics, and whatever it
// accepts re-encodes and decodes to the same value.
func FuzzDecodeBody(f *testing.F) {
	for _, s := range []string{`{"text":"hi"}`, `{"text":"hi","in_reply_to":3}`, `{"from":"@a:b","text":"x"}`,
		`{"change":"tools","proposed":"p","reason":"r"}`, `{"version":1,"canonical":"c"}`, `{"text":"a","text":"b"}`,
		`{"op":"set","key":"tea","text":"green"}`, `{"op":"add","id":"s1","at":1800000000,"every":3600,"text":"x"}`,
		`{"handled":1,"memory":[{"key":"a","text":"b"}],"history":[{"seq":2,"role":"user","text":"x"}]}`,
		`{"id":"s1","text":"x","due":5,"late":true}`, `{"tool":"shell"}`, `{"op":"write","name":"n","text":"t"}`} {
		for _, k := range []Kind{KindMessage, KindProfile, KindReply, KindChangeRequest, KindState, KindDelivered,
			KindFired, KindMemory, KindNote, KindSchedule, KindToolRefused} {
			f.Add(uint8(k), []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, k uint8, data []byte) {
		b, err := DecodeBody(Kind(k), data)
		if err != nil {
			return
		}
		again, err := Encode(b)
		if err != nil {
			t.Fatalf("accepted body does not re-encode: %v", err)
		}
		b2, err := DecodeBody(Kind(k), again)
		if err != nil || !reflect.DeepEqual(b2, b) {
			t.Fatalf("re-decoded %+v (%v), want %+v", b2, err, b)
		}
	})
}
