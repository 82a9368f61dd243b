package config

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

const testKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl operator@laptop"

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestDefaultsValidate(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	c, err := Load("", nil)
	if err != nil || !reflect.DeepEqual(c, Default()) {
		t.Fatalf(`Load("") = %+v, %v; want the defaults`, c, err)
	}
}

// The zero Config must not validate: every field that matters has to be set
// deliberately (by Default or the operator), never left at a zero that could
// mean "anything goes".
func TestZeroConfigRefused(t *testing.T) {
	err := Config{}.Validate()
	if err == nil {
		t.Fatal("the zero Config validates")
	}
	for _, key := range []string{"state_dir", "runtime_dir", "keys.custody", "sandbox.runsc", "sandbox.platform", "model.ollama_url", "console.listen", "limits.max_sessions"} {
		if !strings.Contains(err.Error(), "config: "+key+":") {
			t.Errorf("zero Config: no problem reported for %s", key)
		}
	}
}

// Every boolean must be safe when false. A new boolean fails this test until
// someone checks that its false value is the safe one and lists it here.
func TestBooleansAreSafeWhenFalse(t *testing.T) {
	safeFalse := map[string]string{
		"console.tailnet": "false keeps the console on loopback",
	}
	var bools []string
	walkFields(reflect.TypeOf(Config{}), nil, func(path []string, f reflect.StructField) {
		if f.Type.Kind() == reflect.Bool {
			bools = append(bools, strings.Join(path, "."))
		}
	})
	for _, b := range bools {
		if _, ok := safeFalse[b]; !ok {
			t.Errorf("boolean %s: check that false is its safe value, then list it in this test", b)
		}
	}
	d := reflect.ValueOf(Default())
	if d.FieldByName("Console").FieldByName("Tailnet").Bool() {
		t.Error("the default puts the console on the tailnet")
	}
}

func TestFileOverridesDefaults(t *testing.T) {
	p := writeConfig(t, `
state_dir = "/srv/ironclaw"

[sandbox]
platform = "ptrace"

[console]
operator_keys = ["`+testKey+`"]
`)
	c, err := Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.StateDir != "/srv/ironclaw" || c.Sandbox.Platform != "ptrace" || len(c.Console.OperatorKeys) != 1 {
		t.Fatalf("file not applied: %+v", c)
	}
	if c.RuntimeDir != Default().RuntimeDir || c.Sandbox.Runsc != Default().Sandbox.Runsc {
		t.Fatal("keys absent from the file lost their defaults")
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestUnknownKeyRefused(t *testing.T) {
	for name, tc := range map[string]struct{ body, want string }{
		"misspelt in table": {"[console]\nlisten = \"127.0.0.1:2222\"\nlistne = \"0.0.0.0:22\"\n", `line 3: unknown key "console.listne"`},
		"top level":         {"# comment\nstate_dirr = \"/x\"\n", `line 2: unknown key "state_dirr"`},
		"dotted":            {"sandbox.allow_unsandboxed = true\n", `line 1: unknown key "sandbox.allow_unsandboxed"`},
		"unknown table":     {"[web]\nport = 80\n", `line 1: unknown key "web"`},
		"case variant":      {"[Console]\nTailnet = true\n", `did you mean "console"`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Load(writeConfig(t, tc.body), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load: %v\nwant it to contain %s", err, tc.want)
			}
		})
	}
	// One report per unknown table, not one per key in it.
	_, err := Load(writeConfig(t, "[web]\nport = 80\nhost = \"x\"\n"), nil)
	if n := strings.Count(err.Error(), "unknown key"); n != 1 {
		t.Errorf("%d reports for one unknown table: %v", n, err)
	}
}

func TestBadTOMLRefused(t *testing.T) {
	for name, body := range map[string]string{
		"wrong type": "[console]\ntailnet = \"yes\"\n",
		"duplicate":  "state_dir = \"/a\"\nstate_dir = \"/b\"\n",
		"syntax":     "state_dir = \n",
	} {
		if _, err := Load(writeConfig(t, body), nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestLoadFileChecks(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "missing.toml"), nil); err == nil {
		t.Error("missing explicit file accepted")
	}
	p := writeConfig(t, "")
	if err := os.Chmod(p, 0o666); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p, nil); err == nil || !strings.Contains(err.Error(), "chmod go-w") {
		t.Errorf("world-writable file: %v", err)
	}
	if _, err := Load(t.TempDir(), nil); err == nil {
		t.Error("a directory accepted as the config file")
	}
}

func TestEnvOverride(t *testing.T) {
	p := writeConfig(t, "state_dir = \"/from/file\"\nlog_level = \"warn\"\n")
	c, err := Load(p, envMap(map[string]string{
		"IRONCLAW_STATE_DIR":             "/from/env",
		"IRONCLAW_CONSOLE_TAILNET":       "true",
		"IRONCLAW_CONSOLE_LISTEN":        ":22",
		"IRONCLAW_LIMITS_MAX_SESSIONS":   "7",
		"IRONCLAW_MODEL_OLLAMA_URL":      "http://100.64.0.2:11434",
		"IRONCLAW_SANDBOX_RUNSC_DIGEST":  "",
		"IRONCLAW_CONSOLE_OPERATOR_KEYS": "ignored: lists have no variable",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.StateDir != "/from/env" || !c.Console.Tailnet || c.Console.Listen != ":22" ||
		c.Limits.MaxSessions != 7 || c.Model.OllamaURL != "http://100.64.0.2:11434" {
		t.Fatalf("env not applied: %+v", c)
	}
	if c.LogLevel != "warn" {
		t.Error("a key set only in the file lost to the default")
	}
	if c.Console.OperatorKeys != nil {
		t.Error("a list was read from the environment")
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	_, err = Load("", envMap(map[string]string{"IRONCLAW_CONSOLE_TAILNET": "yes please", "IRONCLAW_LIMITS_MAX_SESSIONS": "lots"}))
	if err == nil || !strings.Contains(err.Error(), "IRONCLAW_CONSOLE_TAILNET") || !strings.Contains(err.Error(), "IRONCLAW_LIMITS_MAX_SESSIONS") {
		t.Errorf("bad env values: %v", err)
	}
	names := EnvNames()
	for _, want := range []string{"IRONCLAW_STATE_DIR", "IRONCLAW_KEYS_KEY_FILE", "IRONCLAW_CONSOLE_TAILNET", "IRONCLAW_LIMITS_MAX_CALLS_PER_MINUTE"} {
		if !slices.Contains(names, want) {
			t.Errorf("EnvNames lacks %s", want)
		}
	}
}

func TestBadValuesRefused(t *testing.T) {
	for name, tc := range map[string]struct {
		mutate func(*Config)
		want   string
	}{
		"kvm":                            {func(c *Config) { c.Sandbox.Platform = "kvm" }, "nested virtualisation"},
		"unknown platform":               {func(c *Config) { c.Sandbox.Platform = "none" }, "use systrap or ptrace"},
		"public console":                 {func(c *Config) { c.Console.Listen = "0.0.0.0:2222" }, "not a loopback address"},
		"lan console":                    {func(c *Config) { c.Console.Listen = "192.168.1.5:2222" }, "not a loopback address"},
		"localhost by name":              {func(c *Config) { c.Console.Listen = "localhost:2222" }, "not a loopback address"},
		"all interfaces":                 {func(c *Config) { c.Console.Listen = ":2222" }, "console.tailnet = true"},
		"bad port":                       {func(c *Config) { c.Console.Listen = "127.0.0.1:70000" }, "port must be"},
		"bad tailnet name":               {func(c *Config) { c.Console.Tailnet = true; c.Console.Hostname = "Iron Claw" }, "console.hostname"},
		"relative state":                 {func(c *Config) { c.StateDir = "state" }, "state_dir: \"state\" is relative"},
		"unclean path":                   {func(c *Config) { c.Sandbox.Runsc = "/opt/ironclaw/../bin/runsc" }, "write it as \"/opt/bin/runsc\""},
		"runsc from PATH":                {func(c *Config) { c.Sandbox.Runsc = "runsc" }, "sandbox.runsc"},
		"long runtime dir":               {func(c *Config) { c.RuntimeDir = "/run/" + strings.Repeat("x", 70) }, "must stay under 108 bytes"},
		"runtime dir too long for runsc": {func(c *Config) { c.RuntimeDir = "/run/" + strings.Repeat("x", 50) }, "runsc's state root"},
		"bad digest":                     {func(c *Config) { c.Sandbox.RunscDigest = "sha256:abc" }, "64 lower-case hex"},
		"upper digest":                   {func(c *Config) { c.Sandbox.RunscDigest = strings.Repeat("AB", 32) }, "64 lower-case hex"},
		"ollama scheme":                  {func(c *Config) { c.Model.OllamaURL = "ftp://127.0.0.1:11434" }, "http or https"},
		"ollama credentials":             {func(c *Config) { c.Model.OllamaURL = "https://user:hunter2@ollama.example" }, "carries credentials"},
		"ollama any host":                {func(c *Config) { c.Model.OllamaURL = "http://0.0.0.0:11434" }, "means any address"},
		"ollama no host":                 {func(c *Config) { c.Model.OllamaURL = "http://:11434" }, "has no host"},
		"ollama path":                    {func(c *Config) { c.Model.OllamaURL = "http://127.0.0.1:11434/api/chat" }, "only scheme, host and port"},
		"model name":                     {func(c *Config) { c.Model.Default = "tiny; rm -rf /" }, "model.default"},
		"custody":                        {func(c *Config) { c.Keys.Custody = "tpm" }, "use keyfile, passphrase or systemd-credential"},
		"keyfile in state":               {func(c *Config) { c.Keys.KeyFile = "/var/lib/ironclaw/master.key" }, "inside state_dir"},
		"passphrase in state": {func(c *Config) {
			c.Keys.Custody = CustodyPassphrase
			c.Keys.PassphraseFile = "/var/lib/ironclaw/sub/pass"
		}, "inside state_dir"},
		"credential name": {func(c *Config) {
			c.Keys.Custody = CustodySystemdCredential
			c.Keys.CredentialName = "../etc/shadow"
		}, "not a plain file name"},
		"zero limit":     {func(c *Config) { c.Limits.MaxMemoryMiB = 0 }, "zero never means unlimited"},
		"limit too low":  {func(c *Config) { c.Limits.MaxMemoryMiB = 64 }, "no session could start"},
		"log level":      {func(c *Config) { c.LogLevel = "verbose" }, "use debug, info, warn or error"},
		"operator key":   {func(c *Config) { c.Console.OperatorKeys = []string{"not a key"} }, "not an SSH public key"},
		"key options":    {func(c *Config) { c.Console.OperatorKeys = []string{`command="/bin/sh" ` + testKey} }, "options"},
		"keys file path": {func(c *Config) { c.Console.OperatorKeysFile = "keys" }, "console.operator_keys_file"},
	} {
		t.Run(name, func(t *testing.T) {
			c := Default()
			tc.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := Default()
	c.Sandbox.Platform = "kvm"
	c.Console.Listen = "0.0.0.0:22"
	c.Limits.MaxSessions = 0
	err := c.Validate()
	for _, key := range []string{"sandbox.platform", "console.listen", "limits.max_sessions"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("problem with %s not reported: %v", key, err)
		}
	}
}

func TestAllowedValues(t *testing.T) {
	for name, mutate := range map[string]func(*Config){
		"tailnet console":      func(c *Config) { c.Console.Tailnet = true; c.Console.Listen = ":22" },
		"ipv6 loopback":        func(c *Config) { c.Console.Listen = "[::1]:2222" },
		"remote ollama":        func(c *Config) { c.Model.OllamaURL = "https://ollama.tail1234.ts.net" },
		"ipv6 ollama":          func(c *Config) { c.Model.OllamaURL = "http://[::1]:11434/" },
		"digest":               func(c *Config) { c.Sandbox.RunscDigest = strings.Repeat("0f", 32) },
		"passphrase prompt":    func(c *Config) { c.Keys.Custody = CustodyPassphrase },
		"systemd credential":   func(c *Config) { c.Keys.Custody = CustodySystemdCredential },
		"keyfile beside state": func(c *Config) { c.Keys.KeyFile = "/var/lib/ironclaw-keys/master.key" },
		"operator key":         func(c *Config) { c.Console.OperatorKeys = []string{testKey} },
	} {
		c := Default()
		mutate(&c)
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestRenderRoundTrip(t *testing.T) {
	c := Default()
	c.StateDir = "/srv/ironclaw"
	c.LogLevel = "debug"
	c.Keys.Custody = CustodyPassphrase
	c.Keys.PassphraseFile = "/etc/ironclaw/pass"
	c.Sandbox.RunscDigest = strings.Repeat("ab", 32)
	c.Sandbox.Platform = "ptrace"
	c.Console.Tailnet = true
	c.Console.Listen = ":22"
	c.Console.OperatorKeys = []string{testKey, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl quote\"d"}
	c.Limits.MaxSessions = 3
	for _, cfg := range []Config{Default(), c} {
		out, err := cfg.Render()
		if err != nil {
			t.Fatal(err)
		}
		back, err := Load(writeConfig(t, string(out)), nil)
		if err != nil {
			t.Fatalf("rendered config does not load: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(back, cfg) {
			t.Fatalf("round trip changed the config:\n got %+v\nwant %+v\n%s", back, cfg, out)
		}
	}
	out, _ := Default().Render()
	for _, key := range []string{"state_dir", "[keys]", "[sandbox]", "platform = \"systrap\"", "[console]", "tailnet = false", "[limits]", "max_sessions = 100"} {
		if !strings.Contains(string(out), key) {
			t.Errorf("rendered defaults lack %s:\n%s", key, out)
		}
	}
}

func TestMatrixSection(t *testing.T) {
	good := func(c *Config) {
		c.Matrix = Matrix{Homeserver: "https://matrix.example.org", UserID: "@bot:example.org",
			PasswordFile: "/etc/ironclaw/matrix.pass", Owners: []string{"@me:example.org"}}
	}
	c := Default()
	good(&c)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.Matrix.Homeserver = "http://127.0.0.1:8008"
	if err := c.Validate(); err != nil {
		t.Fatalf("loopback http: %v", err)
	}
	for name, bad := range map[string]struct {
		mutate func(*Config)
		key    string
	}{
		"plain http remote":  {func(c *Config) { c.Matrix.Homeserver = "http://matrix.example.org" }, "matrix.homeserver"},
		"credentials in url": {func(c *Config) { c.Matrix.Homeserver = "https://u:p@matrix.example.org" }, "matrix.homeserver"},
		"path":               {func(c *Config) { c.Matrix.Homeserver = "https://x.org/_matrix" }, "matrix.homeserver"},
		"display name":       {func(c *Config) { c.Matrix.UserID = "IronClaw" }, "matrix.user_id"},
		"no secret":          {func(c *Config) { c.Matrix.PasswordFile = "" }, "matrix.password_file"},
		"two secrets":        {func(c *Config) { c.Matrix.AccessTokenFile = "/etc/ironclaw/token" }, "matrix.access_token_file"},
		"secret in state":    {func(c *Config) { c.Matrix.PasswordFile = "/var/lib/ironclaw/pass" }, "matrix.password_file"},
		"relative secret":    {func(c *Config) { c.Matrix.PasswordFile = "pass" }, "matrix.password_file"},
		"no owners":          {func(c *Config) { c.Matrix.Owners = nil }, "matrix.owners"},
		"owner display name": {func(c *Config) { c.Matrix.Owners = []string{"Me"} }, "matrix.owners"},
		"bot owns itself":    {func(c *Config) { c.Matrix.Owners = []string{"@bot:example.org"} }, "matrix.owners"},
		"half-written (off)": {func(c *Config) { c.Matrix.Homeserver = "" }, "matrix.homeserver"},
	} {
		c := Default()
		good(&c)
		bad.mutate(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), bad.key) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
