package proxy

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzDecodeChat drives the decoder the proxy runs on every request body
// from an agent. Whatever it accepts must re-encode to an upstream request
// whose options are within the limits and whose body decodes again.
func FuzzDecodeChat(f *testing.F) {
	for _, s := range []string{
		chatBody(""),
		chatBody(`,"options":{"num_ctx":1000000,"num_predict":-1,"temperature":0.5,"stop":["x"]}`),
		chatBody(`,"keep_alive":"5m","think":false,"format":"json"`),
		chatBody(`,"keep_alive":-1,"format":{"type":"object"}`),
		chatBody(`,"tools":[{"type":"function","function":{"name":"reply","description":"d","parameters":{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}}}]`),
		`{"model":"m","messages":[{"role":"assistant","content":"","tool_calls":[{"id":"c","function":{"index":0,"name":"t","arguments":{"a":[1,{"b":null}]}}}]},{"role":"tool","tool_name":"t","content":"r"}],"options":null}`,
		`{"model":"m","model":"n","messages":[]}`,
		`{"Model":"m"}`,
		`{"model":"m","messages":[{"role":"user","content":"x","images":["AA"]}]}`,
		`[]`, `null`, `{"model":"m","messages":[{"role":"user","content":"\ud800"}]}`,
	} {
		f.Add([]byte(s))
	}
	lim := Limits{}.withDefaults()
	f.Fuzz(func(t *testing.T, body []byte) {
		req, up, err := decodeChat(body, lim)
		if err != nil {
			if req != nil || up != nil {
				t.Fatal("a refusal returned a request")
			}
			var re *requestError
			if !errorsAs(err, &re) || re.class == "" || strings.ContainsAny(re.class, "\n\"") {
				t.Fatalf("refusal without a fixed class: %v", err)
			}
			return
		}
		if *up.Options.NumCtx < 1 || *up.Options.NumCtx > lim.MaxNumCtx || *up.Options.NumPredict < 1 || *up.Options.NumPredict > lim.MaxNumPredict {
			t.Fatalf("options not clamped: ctx %d predict %d", *up.Options.NumCtx, *up.Options.NumPredict)
		}
		if len(up.Messages) == 0 || len(up.Messages) > lim.MaxMessages || !modelName.MatchString(up.Model) {
			t.Fatal("an out-of-bounds request was accepted")
		}
		out, err := json.Marshal(up)
		if err != nil {
			t.Fatalf("an accepted request does not re-encode: %v", err)
		}
		// What goes upstream is itself a request the proxy would accept.
		if _, _, err := decodeChat(out, lim); err != nil {
			t.Fatalf("the upstream body is refused on a second pass: %v\n%s", err, out)
		}
	})
}

func errorsAs(err error, target **requestError) bool {
	re, ok := err.(*requestError)
	if ok {
		*target = re
	}
	return ok
}
