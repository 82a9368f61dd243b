// Package doctor answers "can this machine run IronClaw, and if not, what do
// I do?" (`ironclaw doctor`). Each check looks at one thing a conversation
// or the owner's proof depends on — runsc and a sandbox that really starts,
// the cgroup controllers, the installed agentd against the release's
// recorded digest, the state and runtime directories, free disk, key
// custody, Ollama and its model — and a failed check always names the exact
// command or setting that fixes it.
//
// Doctor only looks: it never writes the state directory, never loads the
// master key (so it never prompts for a passphrase) and never sends anything
// to Ollama but the two metadata requests /api/tags and /api/show. The one
// thing it runs is a throw-away sandbox of the installed agentd with no
// session key, which exits at once; its runsc root, bundle and cgroup are
// removed afterwards.
package doctor
