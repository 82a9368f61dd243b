// Package config is the daemon's configuration: one Config struct, built as
// defaults, then a TOML file, then IRONCLAW_* environment variables, then
// command-line flags (set by the CLI on the returned struct), and finally
// checked by Validate before anything runs.
//
// Every field is safe at its zero value or refused by Validate: there is no
// switch that turns a protection off, and booleans are named so that false
// is the safe choice (Console.Tailnet false means loopback only).
//
// Config holds no secrets and must never grow one: keys and passphrases live
// in files the config points at, so the config can be printed, logged and
// diffed freely. This package reads only the config file itself; it never
// opens the files the config names (their owners check them at start).
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/BurntSushi/toml"
)

// Config is everything the daemon is configured with. Field comments give the
// default; the TOML key is in the tag and the environment variable is
// IRONCLAW_ plus the upper-cased key path joined by "_" (for example
// console.listen is IRONCLAW_CONSOLE_LISTEN).
type Config struct {
	// StateDir holds the daemon's database, the sessions' sealed queues and
	// the key check files. Everything in it is sealed or plain metadata: a
	// copy of it yields no conversation content without the master key.
	// Default: /var/lib/ironclaw.
	StateDir string `toml:"state_dir"`

	// RuntimeDir holds the per-session unix sockets (RuntimeDir/s/<id>.sock).
	// It must be short: a socket path is limited to 108 bytes.
	// Default: /run/ironclaw.
	RuntimeDir string `toml:"runtime_dir"`

	// LogLevel is one of "debug", "info", "warn", "error". Logs never carry
	// conversation content at any level.
	// Default: "info".
	LogLevel string `toml:"log_level"`

	Keys    Keys    `toml:"keys"`
	Sandbox Sandbox `toml:"sandbox"`
	Model   Model   `toml:"model"`
	Console Console `toml:"console"`
	Limits  Limits  `toml:"limits"`
	Matrix  Matrix  `toml:"matrix"`
}

// Matrix configures the Matrix channel (docs/matrix.md). With no homeserver
// it is off. Its secrets come only from the files named here, never from the
// config or the environment.
type Matrix struct {
	// Homeserver is the bot's homeserver, https (or http on a loopback
	// address only), scheme and host only.
	// Default: "" (the Matrix channel is off).
	Homeserver string `toml:"homeserver"`

	// UserID is the bot's exact Matrix user id, e.g. @ironclaw:example.org.
	// Default: "".
	UserID string `toml:"user_id"`

	// PasswordFile holds the bot account's password on its first line; with
	// it the daemon (or `ironclaw matrix login`) logs in, creates the bot's
	// device and sets up cross-signing and key backup. Outside state_dir.
	// Default: "".
	PasswordFile string `toml:"password_file"`

	// AccessTokenFile holds an access token for an existing device instead
	// of a password. Without a password the bot cannot publish
	// cross-signing keys itself (the homeserver asks for the password): use
	// PasswordFile for a new bot. Outside state_dir.
	// Default: "".
	AccessTokenFile string `toml:"access_token_file"`

	// Owners are the exact Matrix user ids that may open conversations with
	// the bot (never display names). Anyone else becomes an "add contact"
	// change request.
	// Default: none.
	Owners []string `toml:"owners"`
}

// Keys says where the master key comes from. See docs/keys.md for what each
// custody protects against.
type Keys struct {
	// Custody is "keyfile" (a 32-byte file), "passphrase" (Argon2id) or
	// "systemd-credential" ($CREDENTIALS_DIRECTORY/CredentialName).
	// Default: "keyfile".
	Custody string `toml:"custody"`

	// KeyFile is the master key file for custody "keyfile". It must be
	// outside StateDir, or a copy of the state directory would carry its own
	// key (the keys package refuses that too).
	// Default: /etc/ironclaw/master.key.
	KeyFile string `toml:"key_file"`

	// PassphraseFile holds the passphrase for custody "passphrase", on its
	// first line. Empty means the daemon asks for it on its terminal at
	// start. Like KeyFile it must be outside StateDir.
	// Default: "" (ask).
	PassphraseFile string `toml:"passphrase_file"`

	// CredentialName is the systemd credential for custody
	// "systemd-credential" (LoadCredential= or LoadCredentialEncrypted=).
	// Default: "ironclaw-master-key".
	CredentialName string `toml:"credential_name"`
}

// Sandbox configures the gVisor sandboxes. There is deliberately no way to
// run an agent without one.
type Sandbox struct {
	// Runsc is the absolute path of the gVisor runsc binary (never looked up
	// in $PATH). It must be writable only by root.
	// Default: /opt/ironclaw/bin/runsc.
	Runsc string `toml:"runsc"`

	// RunscDigest is the expected sha256 of Runsc, 64 lower-case hex digits.
	// When set, the daemon refuses a runsc whose digest differs.
	// Default: "" (no pin in the config).
	RunscDigest string `toml:"runsc_digest"`

	// Platform is the gVisor platform: "systrap" or "ptrace". KVM is not
	// offered: on nested-virtualisation hosts it hangs.
	// Default: "systrap".
	Platform string `toml:"platform"`

	// AgentBinary is the absolute path of the static agentd binary that is
	// copied into each sandbox's read-only root.
	// Default: /opt/ironclaw/bin/agentd.
	AgentBinary string `toml:"agent_binary"`
}

// Model configures the one upstream the model proxy forwards to.
type Model struct {
	// OllamaURL is the Ollama server, http or https with an explicit host;
	// no credentials, query or path. Conversation content travels to it:
	// keep it on loopback or an encrypted network (a tailnet).
	// Default: http://127.0.0.1:11434.
	OllamaURL string `toml:"ollama_url"`

	// Default is the model name new sessions' profiles start with. It must
	// call tools well; install it on the Ollama server with `ollama pull`.
	// Default: "qwen3:4b" (docs/proxy.md says why and lists others).
	Default string `toml:"default"`
}

// Console configures the operator's SSH console.
type Console struct {
	// Listen is the console's host:port. Without Tailnet the host must be a
	// loopback IP address (the console is never on a public port).
	// Default: 127.0.0.1:2222.
	Listen string `toml:"listen"`

	// Tailnet serves the console on the tailnet (tsnet) instead of the
	// host's own network; Listen is then the address on the tailnet.
	// Default: false (loopback only).
	Tailnet bool `toml:"tailnet"`

	// Hostname is the console's machine name on the tailnet.
	// Default: "ironclaw".
	Hostname string `toml:"hostname"`

	// OperatorKeys are the SSH public keys (authorized_keys lines, without
	// options) allowed into the console. With none here and no
	// OperatorKeysFile, nobody can log in.
	// Default: none.
	OperatorKeys []string `toml:"operator_keys"`

	// OperatorKeysFile is an authorized_keys file with more operator keys.
	// Default: "" (none).
	OperatorKeysFile string `toml:"operator_keys_file"`

	// TailnetAuthKeyFile holds the tailnet auth key (first line) that joins
	// the console's node to the tailnet the first time; without it the
	// TS_AUTHKEY environment variable is used. Once joined, the node's state
	// in StateDir/tailnet is enough.
	// Default: "" (TS_AUTHKEY).
	TailnetAuthKeyFile string `toml:"tailnet_auth_key_file"`

	// TailnetUsers are the tailnet login names (WhoIs) allowed to reach the
	// console, besides holding an operator key. Empty means any identity the
	// tailnet vouches for (every connection must still pass WhoIs and an
	// operator key).
	// Default: none (any tailnet identity).
	TailnetUsers []string `toml:"tailnet_users"`
}

// Limits are host-wide maxima. A session's profile may ask for less, never
// more. Zero is refused, never read as "unlimited".
type Limits struct {
	// MaxSessions caps sessions that exist (erased ones do not count).
	// Default: 100.
	MaxSessions int64 `toml:"max_sessions"`
	// MaxRunningSandboxes caps sandboxes running at once.
	// Default: 16.
	MaxRunningSandboxes int64 `toml:"max_running_sandboxes"`
	// MaxMemoryMiB caps one sandbox's memory cgroup.
	// Default: 1024.
	MaxMemoryMiB int64 `toml:"max_memory_mib"`
	// MaxCPUMillis caps one sandbox's CPU quota, in thousandths of a core.
	// Default: 2000.
	MaxCPUMillis int64 `toml:"max_cpu_millis"`
	// MaxTmpMiB caps one sandbox's /tmp.
	// Default: 256.
	MaxTmpMiB int64 `toml:"max_tmp_mib"`
	// MaxOutboxMiB caps one session's outbox filesystem.
	// Default: 1024.
	MaxOutboxMiB int64 `toml:"max_outbox_mib"`
	// MaxOutboxInodes caps one session's outbox filesystem inodes.
	// Default: 65536.
	MaxOutboxInodes int64 `toml:"max_outbox_inodes"`
	// OutboxCopyBudgetMiB is the memory all sessions' outbox reads share at
	// once: a read waits for its share (twice the file's size), and an
	// outbox larger than half of it is refused as hostile.
	// Default: 128.
	OutboxCopyBudgetMiB int64 `toml:"outbox_copy_budget_mib"`
	// MaxTokensPerDay caps the model tokens one session may use per day.
	// Default: 2000000.
	MaxTokensPerDay int64 `toml:"max_tokens_per_day"`
	// MaxCallsPerMinute caps one session's model calls per minute.
	// Default: 120.
	MaxCallsPerMinute int64 `toml:"max_calls_per_minute"`
}

// Default returns the built-in configuration.
func Default() Config {
	return Config{
		StateDir:   "/var/lib/ironclaw",
		RuntimeDir: "/run/ironclaw",
		LogLevel:   "info",
		Keys: Keys{
			Custody:        CustodyKeyFile,
			KeyFile:        "/etc/ironclaw/master.key",
			CredentialName: "ironclaw-master-key",
		},
		Sandbox: Sandbox{
			Runsc:       "/opt/ironclaw/bin/runsc",
			Platform:    "systrap",
			AgentBinary: "/opt/ironclaw/bin/agentd",
		},
		Model: Model{
			OllamaURL: "http://127.0.0.1:11434",
			Default:   "qwen3:4b",
		},
		Console: Console{
			Listen:   "127.0.0.1:2222",
			Hostname: "ironclaw",
		},
		Limits: Limits{
			MaxSessions:         100,
			MaxRunningSandboxes: 16,
			MaxMemoryMiB:        1024,
			MaxCPUMillis:        2000,
			MaxTmpMiB:           256,
			MaxOutboxMiB:        1024,
			MaxOutboxInodes:     65536,
			OutboxCopyBudgetMiB: 128,
			MaxTokensPerDay:     2_000_000,
			MaxCallsPerMinute:   120,
		},
	}
}

// Key custodies (the same names as package keys uses).
const (
	CustodyKeyFile           = "keyfile"
	CustodyPassphrase        = "passphrase"
	CustodySystemdCredential = "systemd-credential"
)

// maxFileSize caps the config file; a real one is a few KiB.
const maxFileSize = 1 << 20

// Load builds the configuration: defaults, then the TOML file at path (if
// path is not empty; a missing file is an error), then the IRONCLAW_*
// variables that env returns (env may be nil, e.g. os.Getenv; an empty value
// counts as unset). It does not validate: the caller applies its flags to the
// result and then calls Validate.
//
// The file must be a regular file not writable by group or others and owned
// by root or the daemon's user: whoever can write it can point the daemon at
// another runsc.
func Load(path string, env func(string) string) (Config, error) {
	c := Default()
	if path != "" {
		data, err := readConfigFile(path)
		if err != nil {
			return Config{}, err
		}
		if err := decode(data, &c); err != nil {
			return Config{}, fmt.Errorf("config: %s: %w", path, err)
		}
	}
	if env != nil {
		if err := applyEnv(&c, env); err != nil {
			return Config{}, err
		}
	}
	return c, nil
}

func readConfigFile(path string) ([]byte, error) {
	// O_NOFOLLOW is not used: /etc/ironclaw/config.toml as a symlink into a
	// managed tree is common; the target's metadata is what is checked.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("config: %w (give an existing file, or no config file to use the defaults)", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("config: %s is not a regular file", path)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("config: %s is writable by group or others (mode %v); run: chmod go-w %s", path, fi.Mode().Perm(), path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if uid := uint32(os.Geteuid()); st.Uid != 0 && st.Uid != uid {
			return nil, fmt.Errorf("config: %s is owned by uid %d, not root or the daemon's user (uid %d); run: chown root %s", path, st.Uid, uid, path)
		}
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: reading %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("config: %s is over %d bytes; is it the right file?", path, maxFileSize)
	}
	return data, nil
}

// decode decodes TOML strictly into c: every key must be a known key,
// spelled exactly (the decoder would otherwise match keys case-insensitively
// and ignore unknown ones, so a misspelt security setting would silently
// keep its default).
func decode(data []byte, c *Config) error {
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return errors.New(pe.ErrorWithPosition())
		}
		return err
	}
	known := knownKeys()
	var problems []error
	var reported []toml.Key
	for _, k := range md.Keys() {
		if known[k.String()] {
			continue
		}
		if slices.ContainsFunc(reported, func(r toml.Key) bool { return hasPrefix(k, r) }) {
			continue // inside an unknown table already reported
		}
		reported = append(reported, k)
		msg := fmt.Sprintf("unknown key %q", k.String())
		if line := keyLine(data, k); line > 0 {
			msg = fmt.Sprintf("line %d: %s", line, msg)
		}
		for name := range known {
			if strings.EqualFold(name, k.String()) {
				msg += fmt.Sprintf(" (did you mean %q? keys are case-sensitive)", name)
			}
		}
		problems = append(problems, errors.New(msg+"; remove it or fix its spelling (see `ironclaw config show` for every key)"))
	}
	return errors.Join(problems...)
}

func hasPrefix(k, prefix toml.Key) bool {
	return len(k) >= len(prefix) && slices.Equal(k[:len(prefix)], prefix)
}

// knownKeys lists every key path a config file may contain, tables included.
func knownKeys() map[string]bool {
	out := map[string]bool{}
	walkFields(reflect.TypeOf(Config{}), nil, func(path []string, _ reflect.StructField) {
		for i := range path {
			out[toml.Key(path[:i+1]).String()] = true
		}
	})
	return out
}

// walkFields calls fn for every leaf field of t with its TOML key path.
func walkFields(t reflect.Type, prefix []string, fn func(path []string, f reflect.StructField)) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "" || name == "-" {
			panic("config: field " + f.Name + " has no toml tag")
		}
		path := append(slices.Clone(prefix), name)
		if f.Type.Kind() == reflect.Struct {
			walkFields(f.Type, path, fn)
			continue
		}
		fn(path, f)
	}
}

// keyLine finds the line where key k is defined, or 0. The TOML decoder
// keeps positions private, so this re-reads the file: it tracks [table]
// headers and matches "a.b = ..." lines, which covers what people write.
func keyLine(data []byte, k toml.Key) int {
	var table []string
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
			continue
		case strings.HasPrefix(line, "["):
			inner := strings.Trim(line, "[] \t")
			if i := strings.Index(line, "]"); i >= 0 {
				inner = strings.Trim(line[:i], "[ \t")
			}
			table = splitKey(inner)
			if slices.Equal(table, k) {
				return n + 1
			}
		default:
			lhs, _, ok := strings.Cut(line, "=")
			if !ok {
				continue
			}
			full := append(slices.Clone(table), splitKey(lhs)...)
			if hasPrefix(full, k) {
				return n + 1
			}
		}
	}
	return 0
}

func splitKey(s string) []string {
	parts := strings.Split(s, ".")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if uq, err := strconv.Unquote(p); err == nil {
			p = uq
		} else {
			p = strings.Trim(p, "'")
		}
		parts[i] = p
	}
	return parts
}

// EnvPrefix starts every environment variable the config reads.
const EnvPrefix = "IRONCLAW_"

// envName is the variable for a key path: IRONCLAW_CONSOLE_LISTEN.
func envName(path []string) string {
	return EnvPrefix + strings.ToUpper(strings.Join(path, "_"))
}

// EnvNames lists the environment variables Load reads, for help texts.
// Lists (console.operator_keys) have none: an authorized_keys line does not
// survive shell quoting reliably; use the file.
func EnvNames() []string {
	var out []string
	walkFields(reflect.TypeOf(Config{}), nil, func(path []string, f reflect.StructField) {
		if f.Type.Kind() != reflect.Slice {
			out = append(out, envName(path))
		}
	})
	return out
}

func applyEnv(c *Config, env func(string) string) error {
	var problems []error
	root := reflect.ValueOf(c).Elem()
	walkFields(root.Type(), nil, func(path []string, f reflect.StructField) {
		if f.Type.Kind() == reflect.Slice {
			return
		}
		name := envName(path)
		val := env(name)
		if val == "" {
			return
		}
		v := root
		for _, p := range path {
			v = fieldByTag(v, p)
		}
		switch v.Kind() {
		case reflect.String:
			v.SetString(val)
		case reflect.Bool:
			b, err := strconv.ParseBool(val)
			if err != nil {
				problems = append(problems, fmt.Errorf("config: %s=%q: want true or false", name, val))
				return
			}
			v.SetBool(b)
		case reflect.Int64:
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				problems = append(problems, fmt.Errorf("config: %s=%q: want a whole number", name, val))
				return
			}
			v.SetInt(n)
		default:
			panic("config: no environment parser for " + v.Kind().String())
		}
	})
	return errors.Join(problems...)
}

func fieldByTag(v reflect.Value, tag string) reflect.Value {
	for i := range v.NumField() {
		name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("toml"), ",")
		if name == tag {
			return v.Field(i)
		}
	}
	panic("config: no field for key " + tag)
}

// Render returns the configuration as TOML, in the form Load reads. It is
// what `ironclaw config show` prints; the config holds no secrets (they live
// in the files it names), so all of it can be shown.
func (c Config) Render() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("# IronClaw effective configuration (defaults, then file, environment and flags).\n")
	if err := toml.NewEncoder(&b).Encode(c); err != nil {
		return nil, fmt.Errorf("config: rendering: %w", err)
	}
	return b.Bytes(), nil
}
