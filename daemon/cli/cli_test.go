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

func TestSanitize(t *testing.T) {
	for in, want := range map[string]string{
		"plain\ttext\n":      "plain\ttext\n",
		"\x1b[31mred":        `\x1b[31mred`,
		"bidi \u202eevil":    `bidi \u202eevil`,
		"c1 \u009bcontrol":   `c1 \x9bcontrol`,
		"isolate \u2066x":    `isolate \u2066x`,
		"bell\a and del\x7f": `bell\x07 and del\x7f`,
	} {
		if got := sanitize(in); got != want {
			t.Errorf("sanitize(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := Main(context.Background(), []string{"version"}, nil, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "ironclaw ") {
		t.Fatalf("version: %d %q %q", code, out.String(), errOut.String())
	}
}
