package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/policy"
	"golang.org/x/crypto/ssh"
)

// maxSocketPath is the size of sun_path; a socket path must be shorter (the
// kernel wants room for the terminating NUL).
const maxSocketPath = 108

// socketSuffixLen is what the daemon appends to RuntimeDir for a session's
// socket: "/s/" + 32 hex digits + ".sock".
const socketSuffixLen = len("/s/") + 32 + len(".sock")

// runscRootSuffix is what the daemon appends to RuntimeDir for runsc's
// state root, and maxRunscRoot the longest root runsc's control socket
// paths fit under (daemon/sandbox checks the same).
const (
	runscRootSuffix = "/rs"
	maxRunscRoot    = 54
)

var (
	hexDigest = regexp.MustCompile(`^[0-9a-f]{64}$`)
	// Ollama model names: name[:tag], optionally namespace/ and host/.
	modelName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._:/-]{0,199}$`)
	dnsLabel  = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
)

// Validate checks the whole configuration and returns every problem at once,
// each naming the key and saying what to do. It reads no files: it checks
// what the config says, not what is on disk.
func (c Config) Validate() error {
	var v validator
	v.absPath("state_dir", c.StateDir)
	v.absPath("runtime_dir", c.RuntimeDir)
	if c.RuntimeDir != "" && len(c.RuntimeDir)+socketSuffixLen >= maxSocketPath {
		v.addf("runtime_dir", "%q is too long: session sockets (%s/s/<32 hex>.sock) must stay under %d bytes, so use at most %d bytes, e.g. /run/ironclaw",
			c.RuntimeDir, c.RuntimeDir, maxSocketPath, maxSocketPath-socketSuffixLen-1)
	} else if c.RuntimeDir != "" && len(c.RuntimeDir)+len(runscRootSuffix) > maxRunscRoot {
		v.addf("runtime_dir", "%q is too long: runsc's state root %s%s holds its control sockets and must be at most %d bytes, so use at most %d bytes, e.g. /run/ironclaw",
			c.RuntimeDir, c.RuntimeDir, runscRootSuffix, maxRunscRoot, maxRunscRoot-len(runscRootSuffix))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		v.addf("log_level", "%q is not a level; use debug, info, warn or error", c.LogLevel)
	}

	k := c.Keys
	switch k.Custody {
	case CustodyKeyFile:
		if k.KeyFile == "" {
			v.addf("keys.key_file", "custody keyfile needs a key file path, e.g. /etc/ironclaw/master.key")
		} else if v.absPath("keys.key_file", k.KeyFile) {
			v.outsideState("keys.key_file", k.KeyFile, c.StateDir)
		}
	case CustodyPassphrase:
		if k.PassphraseFile != "" && v.absPath("keys.passphrase_file", k.PassphraseFile) {
			v.outsideState("keys.passphrase_file", k.PassphraseFile, c.StateDir)
		}
	case CustodySystemdCredential:
		if n := k.CredentialName; n == "" || n == "." || n == ".." || strings.ContainsAny(n, "/\x00") {
			v.addf("keys.credential_name", "%q is not a plain file name; use the name given to LoadCredential=, e.g. ironclaw-master-key", n)
		}
	default:
		v.addf("keys.custody", "%q is not a custody; use keyfile, passphrase or systemd-credential", k.Custody)
	}

	s := c.Sandbox
	v.absPath("sandbox.runsc", s.Runsc)
	v.absPath("sandbox.agent_binary", s.AgentBinary)
	if s.RunscDigest != "" && !hexDigest.MatchString(s.RunscDigest) {
		v.addf("sandbox.runsc_digest", "want the sha256 of runsc as 64 lower-case hex digits (sha256sum %s), or leave it empty", s.Runsc)
	}
	switch s.Platform {
	case "systrap", "ptrace":
	case "kvm":
		v.addf("sandbox.platform", `"kvm" is not supported: on virtual machines with nested virtualisation gVisor's KVM platform hangs; use "systrap" (or "ptrace")`)
	default:
		v.addf("sandbox.platform", "%q is not a gVisor platform IronClaw supports; use systrap or ptrace", s.Platform)
	}

	v.ollamaURL(c.Model.OllamaURL)
	if !modelName.MatchString(c.Model.Default) {
		v.addf("model.default", "%q is not an Ollama model name; use one such as qwen3:4b or llama3.2:3b", c.Model.Default)
	}

	v.console(c.Console)
	v.limits(c.Limits)
	v.matrix(c.Matrix, c.StateDir)
	return v.err()
}

type validator struct{ problems []error }

func (v *validator) addf(key, format string, args ...any) {
	v.problems = append(v.problems, fmt.Errorf("config: %s: %s", key, fmt.Sprintf(format, args...)))
}

func (v *validator) err() error { return errors.Join(v.problems...) }

// absPath requires an absolute, clean path (never a $PATH lookup or a path
// relative to wherever the daemon was started) and reports whether it is.
func (v *validator) absPath(key, p string) bool {
	switch {
	case p == "":
		v.addf(key, "is empty; give an absolute path")
	case !filepath.IsAbs(p):
		v.addf(key, "%q is relative; give an absolute path", p)
	case p != filepath.Clean(p):
		v.addf(key, "%q is not in clean form; write it as %q", p, filepath.Clean(p))
	case p == "/":
		v.addf(key, "is the root directory; give a directory of its own")
	default:
		return true
	}
	return false
}

// outsideState refuses a secret file inside the state directory: a copy of
// the state directory would then carry its own key.
func (v *validator) outsideState(key, file, stateDir string) {
	if stateDir == "" {
		return
	}
	rel, err := filepath.Rel(stateDir, file)
	if err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
		v.addf(key, "%s is inside state_dir %s, so any copy of the state directory would carry the master key; keep it elsewhere, e.g. /etc/ironclaw/", file, stateDir)
	}
}

func (v *validator) ollamaURL(raw string) {
	const key = "model.ollama_url"
	u, err := url.Parse(raw)
	if err != nil {
		v.addf(key, "%q does not parse (%v); use e.g. http://127.0.0.1:11434", raw, err)
		return
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		v.addf(key, "%q: scheme must be http or https", raw)
	case u.User != nil:
		v.addf(key, "%q carries credentials; the config holds no secrets, so remove them (put a credentialed upstream behind a local proxy)", u.Redacted())
	case u.Hostname() == "":
		v.addf(key, "%q has no host; use e.g. http://127.0.0.1:11434", raw)
	case u.Opaque != "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		v.addf(key, "%q: give only scheme, host and port (the proxy adds /api/chat itself)", raw)
	default:
		if ip, err := netip.ParseAddr(u.Hostname()); err == nil && ip.IsUnspecified() {
			v.addf(key, "%q: %s means any address, not a host; use 127.0.0.1 or the server's address", raw, ip)
		}
		if p := u.Port(); p != "" {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				v.addf(key, "%q: port must be 1 to 65535", raw)
			}
		}
	}
}

func (v *validator) console(c Console) {
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		v.addf("console.listen", "%q is not host:port; use e.g. 127.0.0.1:2222", c.Listen)
	} else {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			v.addf("console.listen", "%q: port must be 1 to 65535", c.Listen)
		}
		if !c.Tailnet {
			// A literal loopback address only: a name like "localhost" is
			// resolved through files an attacker may be able to change.
			ip, err := netip.ParseAddr(host)
			if err != nil || !ip.IsLoopback() {
				v.addf("console.listen", "%q is not a loopback address; the console listens on loopback (e.g. 127.0.0.1:2222) unless console.tailnet = true puts it on your tailnet, never on a public port", c.Listen)
			}
		}
	}
	if c.Tailnet && !dnsLabel.MatchString(c.Hostname) {
		v.addf("console.hostname", "%q is not a tailnet machine name; use lower-case letters, digits and hyphens, e.g. ironclaw", c.Hostname)
	}
	for i, line := range c.OperatorKeys {
		_, comment, options, rest, err := ssh.ParseAuthorizedKey([]byte(line))
		switch {
		case err != nil:
			v.addf("console.operator_keys", "entry %d is not an SSH public key (%v); paste a line such as the contents of ~/.ssh/id_ed25519.pub", i+1, err)
		case len(options) > 0:
			v.addf("console.operator_keys", "entry %d (%s) has authorized_keys options %q; the console does not honour them, so remove them", i+1, comment, options)
		case len(strings.TrimSpace(string(rest))) > 0:
			v.addf("console.operator_keys", "entry %d holds more than one key; give one key per entry", i+1)
		}
	}
	if c.OperatorKeysFile != "" {
		v.absPath("console.operator_keys_file", c.OperatorKeysFile)
	}
	if c.TailnetAuthKeyFile != "" {
		v.absPath("console.tailnet_auth_key_file", c.TailnetAuthKeyFile)
	}
}

func (v *validator) limits(l Limits) {
	def := profile.Default("", "").Limits
	for _, f := range []struct {
		key        string
		val, least int64
	}{
		{"limits.max_sessions", l.MaxSessions, 1},
		{"limits.max_running_sandboxes", l.MaxRunningSandboxes, 1},
		{"limits.max_memory_mib", l.MaxMemoryMiB, def.MemoryMiB},
		{"limits.max_cpu_millis", l.MaxCPUMillis, def.CPUMillis},
		{"limits.max_tmp_mib", l.MaxTmpMiB, def.TmpMiB},
		{"limits.max_outbox_mib", l.MaxOutboxMiB, def.OutboxMiB},
		{"limits.max_outbox_inodes", l.MaxOutboxInodes, def.OutboxInodes},
		// Twice the default profile's outbox: an honest full one must fit.
		{"limits.outbox_copy_budget_mib", l.OutboxCopyBudgetMiB, 2 * def.OutboxMiB},
		{"limits.max_tokens_per_day", l.MaxTokensPerDay, def.TokensPerDay},
		{"limits.max_calls_per_minute", l.MaxCallsPerMinute, def.CallsPerMinute},
	} {
		switch {
		case f.val <= 0:
			v.addf(f.key, "%d: a limit must be positive (zero never means unlimited); remove the line to get the default", f.val)
		case f.val < f.least:
			v.addf(f.key, "%d is below %d, what a new session's default profile asks for, so no session could start; raise it", f.val, f.least)
		}
	}
}

// matrix checks the [matrix] section; an empty homeserver turns it off, and
// then nothing else in it may be set (a half-written section is a mistake
// the operator should hear about).
func (v *validator) matrix(m Matrix, stateDir string) {
	if m.Homeserver == "" {
		if m.UserID != "" || m.PasswordFile != "" || m.AccessTokenFile != "" || len(m.Owners) > 0 {
			v.addf("matrix.homeserver", "is empty, which turns the Matrix channel off, but other matrix keys are set; give the homeserver URL, e.g. https://matrix.example.org")
		}
		return
	}
	u, err := url.Parse(m.Homeserver)
	switch {
	case err != nil || u.Hostname() == "":
		v.addf("matrix.homeserver", "%q is not a URL with a host; use e.g. https://matrix.example.org", m.Homeserver)
	case u.User != nil:
		v.addf("matrix.homeserver", "%q carries credentials; put the bot's password or token in matrix.password_file or matrix.access_token_file", u.Redacted())
	case u.Scheme == "http":
		// Plain http only to this machine: the access token travels with
		// every request.
		if ip, err := netip.ParseAddr(u.Hostname()); err != nil || !ip.IsLoopback() {
			v.addf("matrix.homeserver", "%q uses plain http to another machine; use https (http is accepted for a loopback address only)", m.Homeserver)
		}
	case u.Scheme != "https":
		v.addf("matrix.homeserver", "%q: scheme must be https", m.Homeserver)
	}
	if err == nil && ((u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "") {
		v.addf("matrix.homeserver", "%q: give only scheme, host and port", m.Homeserver)
	}
	if err := policy.CheckMatrixUserID(m.UserID); err != nil {
		v.addf("matrix.user_id", "%q: %v; give the bot's full user id, e.g. @ironclaw:example.org", m.UserID, err)
	}
	switch {
	case m.PasswordFile == "" && m.AccessTokenFile == "":
		v.addf("matrix.password_file", "the bot needs a password_file (or an access_token_file)")
	case m.PasswordFile != "" && m.AccessTokenFile != "":
		v.addf("matrix.access_token_file", "give a password_file or an access_token_file, not both")
	}
	for key, f := range map[string]string{"matrix.password_file": m.PasswordFile, "matrix.access_token_file": m.AccessTokenFile} {
		if f != "" && v.absPath(key, f) {
			v.outsideState(key, f, stateDir)
		}
	}
	if len(m.Owners) == 0 {
		v.addf("matrix.owners", "names nobody, so nobody could talk to the bot; list your exact user id, e.g. owners = [\"@you:example.org\"]")
	}
	for i, o := range m.Owners {
		if err := policy.CheckMatrixUserID(o); err != nil {
			v.addf("matrix.owners", "entry %d %q: %v; give an exact user id such as @you:example.org", i+1, o, err)
		} else if o == m.UserID {
			v.addf("matrix.owners", "entry %d is the bot itself; list the people who own it", i+1)
		}
	}
}
