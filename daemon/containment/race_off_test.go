//go:build !race

package containment

const raceEnabled = false
