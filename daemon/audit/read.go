package audit

import (
	"bufio"
	"fmt"
	"io"
	"os"
)

// Scan reads the log in r in order and calls fn for each entry that parses
// in canonical form. It stops without error at an incomplete final line (a
// log being appended to) and with an error at the first line that does not
// parse; it checks neither the chain nor MACs (Verify does). Fields are
// already terminal-safe: Append sanitised them before writing.
func Scan(r io.Reader, fn func(Entry)) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var buf []byte
	for line := 1; ; line++ {
		raw, err := readLine(br, buf[:0])
		buf = raw
		switch {
		case len(raw) == 0 && err == io.EOF, err == io.EOF:
			return nil
		case err == errLineTooLong:
			return fmt.Errorf("audit: line %d is longer than %d bytes", line, maxLine)
		case err != nil:
			return fmt.Errorf("audit: reading: %w", err)
		}
		e, reason := parseLine(raw)
		if reason != "" {
			return fmt.Errorf("audit: line %d: %s", line, reason)
		}
		fn(e)
	}
}

// ScanFile is Scan on the file at path.
func ScanFile(path string, fn func(Entry)) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	return Scan(f, fn)
}
