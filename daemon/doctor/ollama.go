package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
)

// maxOllamaBody caps what doctor reads from Ollama: /api/tags lists models,
// /api/show includes the Modelfile and template.
const maxOllamaBody = 8 << 20

// checkOllama asks the configured Ollama for its models (/api/tags) and the
// default model's capabilities (/api/show). It sends no conversation.
func checkOllama(ctx context.Context, o Options) []Check {
	base := strings.TrimRight(o.Config.Model.OllamaURL, "/")
	name := o.Config.Model.Default
	reach := Check{Name: "ollama", Needed: true}
	var tags struct {
		Models []struct {
			Name  string `json:"name"`
			Model string `json:"model"`
		} `json:"models"`
	}
	if err := ollamaCall(ctx, o.HTTP, http.MethodGet, base+"/api/tags", nil, &tags); err != nil {
		reach.Status, reach.Detail = Fail, err.Error()
		reach.Remedy = "start Ollama (`OLLAMA_HOST=" + strings.TrimPrefix(strings.TrimPrefix(base, "http://"), "https://") + " ollama serve`, or `systemctl start ollama`), or set model.ollama_url to where it runs"
		return []Check{reach, {Name: "ollama.model", Status: Skip, Needed: true, Detail: "Ollama is not reachable"}}
	}
	reach.Status, reach.Detail = OK, fmt.Sprintf("%s answers (%d models)", base, len(tags.Models))

	model := Check{Name: "ollama.model", Needed: true}
	found := slices.ContainsFunc(tags.Models, func(m struct {
		Name  string `json:"name"`
		Model string `json:"model"`
	}) bool {
		return sameModel(m.Name, name) || sameModel(m.Model, name)
	})
	if !found {
		model.Status, model.Detail = Fail, "the default model "+name+" is not on this Ollama"
		model.Remedy = "ollama pull " + name + "  (or `ollama create " + name + " -f Modelfile`), or set model.default to one of `ollama list`"
		return []Check{reach, model}
	}
	var show struct {
		Capabilities []string `json:"capabilities"`
	}
	body, _ := json.Marshal(map[string]string{"model": name})
	if err := ollamaCall(ctx, o.HTTP, http.MethodPost, base+"/api/show", body, &show); err != nil {
		model.Status, model.Detail, model.Remedy = Fail, "model "+name+": "+err.Error(), "ollama show "+name
		return []Check{reach, model}
	}
	if !slices.Contains(show.Capabilities, "tools") {
		model.Status = Fail
		model.Detail = fmt.Sprintf("model %s is present but cannot call tools (capabilities: %s); the agent replies, remembers and schedules through tools", name, strings.Join(show.Capabilities, ", "))
		model.Remedy = "set model.default to a model whose template supports tools (`ollama show MODEL` lists \"tools\" under Capabilities)"
		return []Check{reach, model}
	}
	model.Status, model.Detail = OK, "model "+name+" is present and can call tools"
	return []Check{reach, model}
}

// sameModel compares Ollama model names, where "tiny" means "tiny:latest".
func sameModel(a, b string) bool {
	norm := func(s string) string {
		if !strings.Contains(s[strings.LastIndex(s, "/")+1:], ":") {
			return s + ":latest"
		}
		return s
	}
	return a != "" && b != "" && norm(a) == norm(b)
}

func ollamaCall(ctx context.Context, c *http.Client, method, url string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("bad model.ollama_url: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return doJSON(c, req, out)
}

// doJSON sends req and decodes a 200 answer of at most maxOllamaBody bytes.
func doJSON(c *http.Client, req *http.Request, out any) error {
	method := req.Method
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach %s: %w", req.URL.Host, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxOllamaBody))
	if err != nil {
		return fmt.Errorf("reading Ollama's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: answered %s", method, req.URL.Path, resp.Status)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: not the expected API (%v)", method, req.URL.Path, err)
	}
	return nil
}
