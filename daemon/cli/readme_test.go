package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The README's commands work on a stock Debian 12 root login, which has no
// sudo: no command line in its shell blocks starts with sudo, and every
// `ironclaw` command it shows is one this CLI knows (asked for its help).
func TestReadmeCommands(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	in := false
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "```") {
			in = !in && strings.HasPrefix(line, "```sh")
			continue
		}
		cmd, _, _ := strings.Cut(line, "#")
		fields := strings.Fields(cmd)
		if !in || len(fields) == 0 {
			continue
		}
		if fields[0] == "sudo" {
			t.Errorf("README command needs sudo, which a Debian root login lacks: %s", line)
		}
		if filepath.Base(fields[0]) != "ironclaw" {
			continue
		}
		n++
		var sub []string
		for _, f := range fields[1:] {
			if strings.HasPrefix(f, "-") || f == "ID" || strings.ContainsAny(f, `"./`) {
				break
			}
			sub = append(sub, f)
		}
		var out, errOut bytes.Buffer
		if code := Main(context.Background(), append(sub, "--help"), strings.NewReader(""), &out, &errOut); code != 0 {
			t.Errorf("README shows `ironclaw %s`, which this CLI does not know: %s", strings.Join(sub, " "), errOut.String())
		}
	}
	if n < 5 {
		t.Fatalf("found only %d ironclaw commands in the README", n)
	}
}
