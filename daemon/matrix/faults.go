//go:build !ironclaw_faults

package matrix

// fault marks a point where the crash tests kill the daemon; it does
// nothing in every real build (see faults_on.go, built only with the
// ironclaw_faults tag by the tests).
func fault(string) {}
