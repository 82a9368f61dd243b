package doctor

import (
	"os"
	"path/filepath"

	"github.com/ironclaw/ironclaw/daemon/keys"
)

// tailnetStateFile is what tsnet keeps in the node's directory once it has
// joined (the node key and its login).
const tailnetStateFile = "tailscaled.state"

// checkTailnet runs only when the console is on the tailnet. Doctor does not
// bring the node up (a second node with the same identity would fight the
// running daemon's): it checks that the node has joined before, or that an
// auth key is there for it to join at start.
func checkTailnet(o Options) []Check {
	cfg := o.Config
	if !cfg.Console.Tailnet {
		return nil
	}
	c := Check{Name: "tailnet", Needed: false}
	dir := filepath.Join(cfg.StateDir, "tailnet")
	if fi, err := os.Lstat(filepath.Join(dir, tailnetStateFile)); err == nil && fi.Mode().IsRegular() {
		c.Status, c.Detail = OK, "the console's tailnet node has joined before (state in "+dir+"); whether it is online now shows in `tailscale status` on another node"
		return []Check{c}
	}
	if cfg.Console.TailnetAuthKeyFile == "" {
		c.Status, c.Detail = Fail, "console.tailnet is on, the node has never joined, and no auth key is configured"
		c.Remedy = "create an auth key in the tailnet's admin console and set console.tailnet_auth_key_file to a 0600 file holding it"
		return []Check{c}
	}
	if _, err := keys.ReadSecretFile(cfg.Console.TailnetAuthKeyFile, "console.tailnet_auth_key_file"); err != nil {
		c.Status, c.Detail = Fail, err.Error()
		c.Remedy = "put the tailnet auth key on the first line of console.tailnet_auth_key_file, mode 0600"
		return []Check{c}
	}
	c.Status, c.Detail = OK, "the node has not joined yet; it joins at start with the configured auth key"
	return []Check{c}
}
