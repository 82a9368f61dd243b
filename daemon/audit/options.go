package audit

import (
	"errors"
	"time"
)

// DefaultRefuseWindow is how long Refuse folds identical refusals together.
const DefaultRefuseWindow = time.Second

// Option configures Open, and (WithKey only) Verify and VerifyFile.
type Option func(*options)

type options struct {
	key        []byte
	keyErr     error
	anchor     *Anchor
	window     time.Duration
	clock      clock
	wrapFile   func(file) file // tests: fault injection
	maxAggKeys int
}

// WithKey makes the log carry, and verification require, an
// HMAC-SHA256(key, hash) on every entry. The key must be 32 bytes, be
// dedicated to the audit log, and live outside the log's directory (otherwise
// whoever can forge entries can forge MACs too).
func WithKey(key []byte) Option {
	return func(o *options) {
		if len(key) != 32 {
			o.keyErr = errors.New("audit: MAC key must be 32 bytes")
			return
		}
		o.key = append([]byte(nil), key...)
	}
}

// WithAnchor makes Open refuse a log that does not contain the anchored entry
// (a truncated or rewritten tail). Pass the head the daemon stored last time.
func WithAnchor(a Anchor) Option {
	return func(o *options) { o.anchor = &a }
}

// WithRefuseWindow sets the Refuse aggregation window (default
// DefaultRefuseWindow). Zero or less turns aggregation off: every refusal is
// written and fsynced on its own.
func WithRefuseWindow(d time.Duration) Option {
	return func(o *options) { o.window = d }
}

// withClock injects a clock; tests only.
func withClock(c clock) Option { return func(o *options) { o.clock = c } }

// withFile wraps the log's file before the committer starts; tests only.
func withFile(wrap func(file) file) Option { return func(o *options) { o.wrapFile = wrap } }

func buildOptions(opts []Option) (options, error) {
	o := options{window: DefaultRefuseWindow, clock: realClock{}, maxAggKeys: 4096}
	for _, opt := range opts {
		opt(&o)
	}
	return o, o.keyErr
}

// clock is the time source; injectable so aggregation windows can be tested
// without sleeping.
type clock interface {
	Now() time.Time
	// Until returns a channel that receives once the clock reaches t (at
	// once if it already has) and a function that releases the timer. It
	// takes an instant, not a duration, so a caller holding a stale Now
	// cannot set its wake-up later than the deadline it meant.
	Until(t time.Time) (<-chan time.Time, func() bool)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Until(at time.Time) (<-chan time.Time, func() bool) {
	t := time.NewTimer(time.Until(at))
	return t.C, t.Stop
}
