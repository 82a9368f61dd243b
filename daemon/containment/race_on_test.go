//go:build race

package containment

// raceEnabled: the race detector multiplies the memory every allocation
// touches, so memory bounds are checked against a same-run baseline.
const raceEnabled = true
