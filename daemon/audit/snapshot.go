package audit

import (
	"fmt"
	"io"
)

// CopyDurable writes the log's durable entries (those Append has
// acknowledged: written and fsynced) to w, and returns the anchor of the
// last one copied. It is safe while others append: entries staged later are
// not part of the copy, so it always ends on a whole, verified line. A
// backup uses it; the copy verifies with the same key and anchor.
func (l *Log) CopyDurable(w io.Writer) (Anchor, error) {
	l.mu.Lock()
	size, head, closing := l.durableOff, l.durable, l.closing
	l.mu.Unlock()
	if closing {
		return Anchor{}, ErrClosed
	}
	if _, err := io.Copy(w, io.NewSectionReader(l.f, 0, size)); err != nil {
		return Anchor{}, fmt.Errorf("audit: copying %s: %w", l.path, err)
	}
	return head, nil
}
