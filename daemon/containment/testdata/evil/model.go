package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/ironclaw/ironclaw/agentd/model"
	"github.com/ironclaw/ironclaw/agentd/wire"
)

// chatOnce makes one honest call with agentd's own provider and says what came back.
func chatOnce(ctx context.Context, modelName string) string {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	resp, err := model.NewOllama(wire.SandboxSocket).Chat(ctx, model.Request{
		Model: modelName, NumCtx: 512, NumPredict: 16,
		Messages: []model.Message{{Role: model.RoleUser, Content: "ping"}},
	})
	if err != nil {
		return "model error: " + err.Error()
	}
	return fmt.Sprintf("model said: %q (tokens %d+%d)", resp.Message.Content, resp.PromptTokens, resp.EvalTokens)
}

// modelAttacks send the model proxy what it must refuse. "ok" means the proxy forwarded
// it (a 2xx answer): a breach.
func modelAttacks(ctx context.Context, allowed string) {
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", wire.SandboxSocket)
		},
		DisableKeepAlives: true, // the socket serves few connections at once
	}}
	do := func(method, path, body string, hdr map[string]string) (int, string, error) {
		req, err := http.NewRequestWithContext(ctx, method, "http://ironclaw"+path, strings.NewReader(body))
		if err != nil {
			return 0, "", err
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, "", err
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return resp.StatusCode, string(b), nil
	}
	try := func(name, method, path, body string, hdr map[string]string) {
		code, answer, err := do(method, path, body, hdr)
		r := Result{Attack: name, OK: err == nil && code/100 == 2, N: int64(code)}
		if err != nil {
			r.Err = err.Error()
		} else {
			r.Detail = answer
		}
		emit(r)
	}
	msg := `[{"role":"user","content":"hi"}]`
	body := func(extra string) string {
		return `{"model":"` + allowed + `","messages":` + msg + `,"stream":false` + extra + `}`
	}
	try("model.pull", "POST", "/api/pull", `{"model":"evil/backdoor"}`, nil)
	try("model.create", "POST", "/api/create", `{"model":"evil","from":"`+allowed+`","system":"obey"}`, nil)
	try("model.delete", "DELETE", "/api/delete", `{"model":"`+allowed+`"}`, nil)
	try("model.generate", "POST", "/api/generate", `{"model":"`+allowed+`","prompt":"hi"}`, nil)
	try("model.tags", "GET", "/api/tags", "", nil)
	try("model.push", "POST", "/api/push", `{"model":"`+allowed+`"}`, nil)
	try("model.chat_get", "GET", "/api/chat", "", nil)
	try("model.chat_traversal", "POST", "/api/chat/../pull", body(""), nil)
	try("model.other_model", "POST", "/api/chat", `{"model":"llama3.1:405b","messages":`+msg+`}`, nil)
	try("model.unknown_key", "POST", "/api/chat", body(`,"raw":true`), nil)
	try("model.runner_option", "POST", "/api/chat", body(`,"options":{"num_gpu":999,"num_thread":64}`), nil)
	try("model.case_variant", "POST", "/api/chat", `{"Model":"`+allowed+`","messages":`+msg+`}`, nil)
	try("model.duplicate_key", "POST", "/api/chat", `{"model":"`+allowed+`","model":"llama3.1:405b","messages":`+msg+`}`, nil)
	try("model.images", "POST", "/api/chat", `{"model":"`+allowed+`","messages":[{"role":"user","content":"x","images":["AAAA"]}]}`, nil)
	try("model.malformed", "POST", "/api/chat", `{"model":`, nil)
	try("model.oversized", "POST", "/api/chat", body(`,"format":"`+strings.Repeat("A", 2<<20)+`"`), nil)
	try("model.too_many_messages", "POST", "/api/chat", `{"model":"`+allowed+`","messages":[`+strings.Repeat(`{"role":"user","content":"x"},`, 400)+`{"role":"user","content":"x"}]}`, nil)
	// Headers the agent sets must not reach the upstream (the host checks what arrived);
	// the call itself is allowed.
	code, _, err := do("POST", "/api/chat", body(""), map[string]string{"Authorization": "Bearer evil", "X-Forwarded-For": "10.0.0.1", "Host": "evil.example"})
	emit(Result{Attack: "info.model_headers", N: int64(code), Err: errString(err)})
	slowRequest(ctx, body(""))
	// Three calls at once (the host scripts slow answers): the concurrency cap refuses some.
	codes := make(chan int, 3)
	for range 3 {
		go func() {
			code, _, _ := do("POST", "/api/chat", body(""), nil)
			codes <- code
		}()
	}
	busy := 0
	for range 3 {
		if <-codes == wire.ModelStatusBudget {
			busy++
		}
	}
	emit(Result{Attack: "model.concurrent", OK: busy == 0, N: int64(busy)})
	// A flood of allowed calls: the per-minute rate must stop it.
	refused := 0
	for range 40 {
		if code, _, err := do("POST", "/api/chat", body(""), nil); err == nil && code == wire.ModelStatusBudget {
			refused++
		}
	}
	emit(Result{Attack: "model.rate_flood", OK: refused == 0, N: int64(refused)})
}

// slowRequest trickles a body slower than the socket's read timeout allows.
func slowRequest(ctx context.Context, body string) {
	c, err := net.Dial("unix", wire.SandboxSocket)
	if err != nil {
		emit(Result{Attack: "model.slow_body", Err: err.Error()})
		return
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(body), body[:5])
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	b, _ := io.ReadAll(io.LimitReader(c, 4096))
	status := string(b)
	if i := strings.IndexByte(status, '\r'); i > 0 {
		status = status[:i]
	}
	emit(Result{Attack: "model.slow_body", OK: strings.Contains(status, " 200 "), Detail: status})
}
