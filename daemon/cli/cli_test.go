package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// Whatever an error quotes — a path, or an agent's words in a stop reason —
// reaches the terminal with its control characters shown, not obeyed.
func TestErrorsAreSanitised(t *testing.T) {
	var out, errOut bytes.Buffer
	code := Main(context.Background(), []string{"--config", "/nonexistent/\x1b]0;PWNED\a\x1b[2J\u202e.toml", "config"}, strings.NewReader(""), &out, &errOut)
	if code == 0 {
		t.Fatal("a missing config file was accepted")
	}
	if strings.ContainsAny(errOut.String(), "\x1b\a\u202e") {
		t.Fatalf("raw control characters reached the terminal: %q", errOut.String())
	}
	if !strings.Contains(errOut.String(), `\x1b]0;PWNED\x07\x1b[2J\u202e`) {
		t.Fatalf("the error does not show what was there: %q", errOut.String())
	}
}

func TestVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := Main(context.Background(), []string{"version"}, nil, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "ironclaw ") {
		t.Fatalf("version: %d %q %q", code, out.String(), errOut.String())
	}
}

// A parse error quotes what it could not parse: sanitised too.
func TestParseErrorsAreSanitised(t *testing.T) {
	for _, args := range [][]string{{"--\x1b]0;PWNED\a\u202e"}, {"sessions", "\x1b[2J\u202e"}} {
		var out, errOut bytes.Buffer
		if code := Main(context.Background(), args, strings.NewReader(""), &out, &errOut); code == 0 {
			t.Fatalf("%q was accepted", args)
		}
		if strings.ContainsAny(out.String()+errOut.String(), "\x1b\a\u202e") {
			t.Errorf("%q: raw control characters reached the terminal: %q %q", args, out.String(), errOut.String())
		}
	}
}
