package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/ironclaw/ironclaw/daemon/config"
	"github.com/ironclaw/ironclaw/daemon/sandbox"
)

// Status is a check's outcome.
type Status string

// Outcomes. Only Fail on a Needed check makes the report Broken.
const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "fail"
	Skip Status = "skip"
)

// Check is one line of the report.
type Check struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	// Detail says what was found (never a secret or conversation content).
	Detail string `json:"detail"`
	// Remedy is the exact command or setting that fixes a warn or fail.
	Remedy string `json:"remedy,omitempty"`
	// Needed is true when a conversation cannot run while this check fails.
	Needed bool `json:"needed"`
}

// Report is every check, in a fixed order.
type Report struct {
	Checks []Check `json:"checks"`
	// Broken is true when a Needed check failed: `ironclaw doctor` exits 1.
	Broken bool `json:"broken"`
}

// Options is what doctor checks and how it reaches the outside.
type Options struct {
	Config config.Config
	// UID is the user the daemon runs as (os.Geteuid() from the CLI).
	UID int
	// HTTP talks to Ollama; a client with a 5 s timeout if nil.
	HTTP *http.Client
	// Cgroups discovers the host's cgroups; sandbox.DiscoverCgroups if nil.
	Cgroups func() (*sandbox.CgroupHost, error)
	// RunscDigest and AgentdDigest are the release's recorded digests
	// (images/runsc.sha256, images/agentd.sha256), lowercase hex.
	RunscDigest, AgentdDigest string
	// NoSandboxStart skips starting a throw-away sandbox (tests of the other
	// checks on machines without root).
	NoSandboxStart bool
}

// Run performs every check. It never fails as a whole: a check that cannot
// be made says so in its own line.
func Run(ctx context.Context, o Options) Report {
	if o.HTTP == nil {
		o.HTTP = &http.Client{Timeout: 5 * time.Second}
	}
	if o.Cgroups == nil {
		o.Cgroups = sandbox.DiscoverCgroups
	}
	var r Report
	add := func(cs ...Check) { r.Checks = append(r.Checks, cs...) }
	runscOK := checkRunsc(ctx, o, add)
	add(checkCgroups(o)...)
	agentOK := checkAgentd(o, add)
	if runscOK && agentOK && !o.NoSandboxStart {
		add(checkSandboxStart(ctx, o))
	} else {
		why := "runsc or agentd failed above"
		if o.NoSandboxStart {
			why = "not requested"
		}
		add(Check{Name: "sandbox.start", Status: Skip, Detail: "a trivial sandbox was not started: " + why, Needed: true})
	}
	add(checkOutboxFS())
	add(checkDirs(o)...)
	add(checkDisk(o))
	add(checkCustody(o))
	add(checkOllama(ctx, o)...)
	add(checkMatrix(ctx, o)...)
	add(checkTailnet(o)...)
	for _, c := range r.Checks {
		if c.Status == Fail && c.Needed {
			r.Broken = true
		}
	}
	return r
}

// Text writes the report for a terminal: one line per check, the remedy
// under each warn or fail.
func (r Report) Text(w io.Writer) error {
	var b strings.Builder
	for _, c := range r.Checks {
		fmt.Fprintf(&b, "%-4s  %-22s %s\n", strings.ToUpper(string(c.Status)), c.Name, c.Detail)
		if c.Remedy != "" && (c.Status == Fail || c.Status == Warn) {
			fmt.Fprintf(&b, "      %-22s fix: %s\n", "", c.Remedy)
		}
	}
	if r.Broken {
		b.WriteString("\nbroken: a conversation cannot run until every FAIL marked needed is fixed\n")
	} else {
		b.WriteString("\nready: everything a conversation needs is in place\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// JSON writes the report as one JSON object.
func (r Report) JSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}
