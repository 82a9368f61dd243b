package profile

import (
	"strings"
)

// NoNewline marks, on a line of its own, that the diff line just above it
// ends its text without a newline. Canonical renderings always end in one;
// the marker exists so that Diff stays exact on any input, and it cannot be
// confused with a diff line because it starts with none of " ", "-", "+".
const NoNewline = `\ No newline at end of file`

// Diff returns an exact line diff of two texts, normally two canonical
// renderings. Every line of both texts appears exactly once, in order, with a
// one-character prefix: " " for a line in both, "-" for a line only in old,
// "+" for a line only in new. Within each run of changes the removed lines
// come before the added ones.
//
// The diff is whole-file (every unchanged line is shown, there are no hunk
// headers) on purpose: the owner approves the full profile, not a fragment,
// and both versions can be rebuilt from the diff alone, so a hash of the diff
// binds an approval to both the old and the new bytes.
//
// The edit script is minimal (Myers' O(ND) algorithm in linear space) and
// depends only on the inputs, so the same pair always gives the same bytes.
func Diff(old, new []byte) string {
	a, b := splitLines(old), splitLines(new)
	// Compare small integers, not strings: every line is interned once.
	ids := map[string]int{}
	intern := func(lines []string) []int {
		out := make([]int, len(lines))
		for i, l := range lines {
			id, ok := ids[l]
			if !ok {
				id = len(ids)
				ids[l] = id
			}
			out[i] = id
		}
		return out
	}
	d := differ{a: intern(a), b: intern(b)}
	d.del = make([]bool, len(a))
	d.ins = make([]bool, len(b))
	d.compare(0, len(a), 0, len(b))

	var sb strings.Builder
	emit := func(prefix byte, line string) {
		sb.WriteByte(prefix)
		sb.WriteString(line)
		if !strings.HasSuffix(line, "\n") {
			sb.WriteString("\n" + NoNewline + "\n")
		}
	}
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		for i < len(a) && d.del[i] {
			emit('-', a[i])
			i++
		}
		for j < len(b) && d.ins[j] {
			emit('+', b[j])
			j++
		}
		switch {
		case i < len(a) && j < len(b):
			// Unmarked lines pair up in order and are equal: that is
			// what compare guarantees.
			emit(' ', a[i])
			i++
			j++
		case i < len(a):
			// Unreachable when compare is right; kept so that a bug
			// shows as a visible change rather than lost lines.
			d.del[i] = true
		case j < len(b):
			d.ins[j] = true
		}
	}
	return sb.String()
}

// splitLines cuts s after each newline; the last line may lack one.
func splitLines(s []byte) []string {
	if len(s) == 0 {
		return nil
	}
	lines := strings.SplitAfter(string(s), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

// differ marks which lines of a are deleted and which of b are inserted;
// the unmarked lines form a longest common subsequence.
type differ struct {
	a, b     []int
	del, ins []bool
}

// compare diffs a[aLo:aHi] against b[bLo:bHi].
func (d *differ) compare(aLo, aHi, bLo, bHi int) {
	for aLo < aHi && bLo < bHi && d.a[aLo] == d.b[bLo] {
		aLo++
		bLo++
	}
	for aLo < aHi && bLo < bHi && d.a[aHi-1] == d.b[bHi-1] {
		aHi--
		bHi--
	}
	if aLo == aHi || bLo == bHi {
		for i := aLo; i < aHi; i++ {
			d.del[i] = true
		}
		for j := bLo; j < bHi; j++ {
			d.ins[j] = true
		}
		return
	}
	x, y, ok := d.bisect(aLo, aHi, bLo, bHi)
	if !ok {
		// No common line at all: delete everything, insert everything.
		d.compare(aLo, aHi, bHi, bHi)
		d.compare(aHi, aHi, bLo, bHi)
		return
	}
	d.compare(aLo, x, bLo, y)
	d.compare(x, aHi, y, bHi)
}

// bisect finds the middle snake of Myers' algorithm: a point (x, y) that a
// shortest edit path of a[aLo:aHi] → b[bLo:bHi] passes through, found by
// running the forward and reverse searches until they overlap. Both ranges
// are non-empty and share neither first nor last line (compare trims them),
// so the point is never a corner and the recursion always shrinks.
func (d *differ) bisect(aLo, aHi, bLo, bHi int) (x, y int, ok bool) {
	a, b := d.a[aLo:aHi], d.b[bLo:bHi]
	n, m := len(a), len(b)
	maxD := (n + m + 1) / 2
	// Diagonals -maxD-1 … maxD+1 are read; the margin keeps the tiny
	// cases (n = m = 1) inside the arrays.
	off := maxD + 1
	vlen := 2*maxD + 3
	v1 := make([]int, vlen)
	v2 := make([]int, vlen)
	for i := range v1 {
		v1[i] = -1
		v2[i] = -1
	}
	v1[off+1] = 0
	v2[off+1] = 0
	delta := n - m
	// With an odd delta the paths meet on a forward step, otherwise on
	// a reverse step.
	front := delta%2 != 0
	// Diagonals that ran off an edge of the grid are skipped from then on.
	k1start, k1end, k2start, k2end := 0, 0, 0, 0
	for step := 0; step < maxD; step++ {
		for k1 := -step + k1start; k1 <= step-k1end; k1 += 2 {
			k1o := off + k1
			var x1 int
			if k1 == -step || (k1 != step && v1[k1o-1] < v1[k1o+1]) {
				x1 = v1[k1o+1]
			} else {
				x1 = v1[k1o-1] + 1
			}
			y1 := x1 - k1
			for x1 < n && y1 < m && a[x1] == b[y1] {
				x1++
				y1++
			}
			v1[k1o] = x1
			switch {
			case x1 > n:
				k1end += 2
			case y1 > m:
				k1start += 2
			case front:
				k2o := off + delta - k1
				if k2o >= 0 && k2o < vlen && v2[k2o] != -1 {
					if x1 >= n-v2[k2o] {
						return aLo + x1, bLo + y1, true
					}
				}
			}
		}
		for k2 := -step + k2start; k2 <= step-k2end; k2 += 2 {
			k2o := off + k2
			var x2 int
			if k2 == -step || (k2 != step && v2[k2o-1] < v2[k2o+1]) {
				x2 = v2[k2o+1]
			} else {
				x2 = v2[k2o-1] + 1
			}
			y2 := x2 - k2
			for x2 < n && y2 < m && a[n-x2-1] == b[m-y2-1] {
				x2++
				y2++
			}
			v2[k2o] = x2
			switch {
			case x2 > n:
				k2end += 2
			case y2 > m:
				k2start += 2
			case !front:
				k1o := off + delta - k2
				if k1o >= 0 && k1o < vlen && v1[k1o] != -1 {
					x1 := v1[k1o]
					y1 := off + x1 - k1o
					if x1 >= n-x2 {
						return aLo + x1, bLo + y1, true
					}
				}
			}
		}
	}
	return 0, 0, false
}
