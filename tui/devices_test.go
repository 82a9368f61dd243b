package tui

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ironclaw/ironclaw/daemon/api"
)

// hostileDevice is a device name a Matrix user chose: it would clear the
// screen, retitle the terminal and reverse the text after it.
const hostileDevice = "Alice's phone\x1b[2J\x1b]0;owned\a\u202eenohp\u202c\u200b\U000e0041"

func matrixFixture() api.MatrixDevices {
	return api.MatrixDevices{Enabled: true, CrossSigned: true, BackupVersion: "3",
		Bot: api.Device{User: "@ironclaw:example.org", Device: "IRONCLAWBOT", Name: "IronClaw",
			Fingerprint: "Aa1B bC2d Dd3E eF4g Gg5H hI6j Jj7K kL8m Mm9N nO0p Pp1Q", Trust: "cross-signed-verified"},
		Senders: []api.Device{
			{User: "@alice:example.org", Device: "ALICEPHONE", Name: hostileDevice, Fingerprint: "Zz1Y yX2w Ww3V vU4t Tt5S sR6q Qq7P pO8n Nn9M mL0k Kk1J", Trust: "cross-signed-verified"},
			{User: "@alice:example.org", Device: "ALICELAPTOP", Name: "laptop", Fingerprint: "Hh1H hH1h Hh1H hH1h Hh1H hH1h Hh1H hH1h Hh1H hH1h Hh1H", Trust: "unverified"},
			{User: "@bob:example.org", Device: "BOBDESK", Name: "desk", Fingerprint: "Bb2B bB2b Bb2B bB2b Bb2B bB2b Bb2B bB2b Bb2B bB2b Bb2B", Trust: "cross-signed-tofu"},
			{User: "@mallory\u202e:evil.example", Device: "EVIL", Name: "not me", Fingerprint: "Ee6E eE6e Ee6E eE6e Ee6E eE6e Ee6E eE6e Ee6E eE6e Ee6E", Trust: "blacklisted"},
		}}
}

func TestGoldenDevices(t *testing.T) {
	for _, sz := range sizes {
		w, h := sz[0], sz[1]
		for _, tc := range []struct {
			name string
			m    api.MatrixDevices
			want string
		}{
			{"devices", matrixFixture(), "this bot"},
			{"devices-off", api.MatrixDevices{}, "Matrix is not configured"},
		} {
			t.Run(fmt.Sprintf("%s_%dx%d", tc.name, w, h), func(t *testing.T) {
				d := fixture()
				d.SetMatrixDevices(tc.m)
				c := start(t, d.Operator(alice), w, h)
				c.loaded()
				c.keys("6")
				f := c.waitFor(tc.want)
				checkFrame(t, f, w, h)
				golden(t, fmt.Sprintf("%s_%dx%d", tc.name, w, h), f)
			})
		}
	}
}

// A device name and a user id are untrusted: their escapes and bidi
// controls are shown as visible escapes, and a device the bot does not
// trust is marked in words.
func TestDevicesSanitisedAndMarked(t *testing.T) {
	d := fixture()
	d.SetMatrixDevices(matrixFixture())
	c := start(t, d.Operator(alice), 80, 24)
	c.loaded()
	c.keys("6")
	c.waitFor("this bot")
	var all strings.Builder
	for range 6 {
		f := c.frame()
		checkFrame(t, f, 80, 24)
		all.WriteString(f)
		c.keys("pgdown")
	}
	seen := all.String()
	for _, want := range []string{`\x1b[2J\x1b]0;owned\x07`, `\u202eenohp\u202c`, `@mallory\u202e:evil.example`,
		"! UNVERIFIED", "✗ BLACKLISTED", "✓ cross-signed, verified", "~ cross-signed", "2 not trusted", "ALICELAPTOP"} {
		if !strings.Contains(seen, want) {
			t.Errorf("%q not shown:\n%s", want, seen)
		}
	}
}
