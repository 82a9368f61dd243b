package audit

import (
	"bytes"
	"fmt"
	"os"
)

// Tail calls fn for the log's entries at path from the newest backwards,
// reading the file from its end, until fn returns false or the start is
// reached: the newest entries of a long log cost only their own lines. An
// incomplete final line (an append in progress) is skipped; a line that
// does not parse is an error, as in Scan.
func Tail(path string, fn func(Entry) bool) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	const chunk = 64 << 10
	end := fi.Size()
	var carry []byte // the start of a line whose beginning is further back
	first := true
	for end > 0 || len(carry) > 0 {
		start := max(end-chunk, 0)
		buf := make([]byte, end-start, int(end-start)+len(carry))
		if _, err := f.ReadAt(buf, start); err != nil {
			return fmt.Errorf("audit: reading: %w", err)
		}
		buf = append(buf, carry...)
		if first {
			// Whatever follows the last newline is a line still being
			// written: drop it, however many chunks it spans.
			i := bytes.LastIndexByte(buf, '\n')
			if i < 0 {
				carry, end = nil, start
				continue
			}
			buf = buf[:i+1]
			first = false
		}
		// Every complete line in buf, newest first. The first piece (before
		// the first newline) is complete only at the start of the file.
		for {
			j := bytes.LastIndexByte(buf[:max(len(buf)-1, 0)], '\n')
			if j < 0 {
				break
			}
			line := buf[j+1:]
			if len(line) > maxLine {
				return fmt.Errorf("audit: a line is longer than %d bytes", maxLine)
			}
			e, reason := parseLine(line)
			if reason != "" {
				return fmt.Errorf("audit: entry before byte %d: %s", start+int64(j)+1+int64(len(line)), reason)
			}
			if !fn(e) {
				return nil
			}
			buf = buf[:j+1]
		}
		if start == 0 {
			if len(buf) > 0 {
				e, reason := parseLine(buf)
				if reason != "" {
					return fmt.Errorf("audit: first entry: %s", reason)
				}
				fn(e)
			}
			return nil
		}
		if len(buf) > maxLine {
			return fmt.Errorf("audit: a line is longer than %d bytes", maxLine)
		}
		carry = append([]byte(nil), buf...)
		end = start
	}
	return nil
}
