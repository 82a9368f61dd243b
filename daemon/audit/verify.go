package audit

import (
	"bufio"
	"crypto/hmac"
	"errors"
	"fmt"
	"io"
	"os"
)

// maxLine bounds one line. A valid entry is far shorter (five fields of at
// most MaxFieldLen bytes, each at most doubled by JSON escaping, plus ~300
// bytes of framing); the bound keeps a hostile file from exhausting memory.
const maxLine = 64 << 10

// Anchor names an entry the log must contain: the daemon stores the head it
// last saw ([Log.Head]) somewhere the log's writer cannot rewrite, and
// verification against it detects a truncated or replaced tail, which the
// chain alone cannot.
type Anchor struct {
	Seq  uint64
	Hash [32]byte
}

// Report summarises a verification. On error it describes the prefix that
// verified before the first bad entry.
type Report struct {
	Entries     uint64 // entries that verified
	Head        Anchor // last verified entry; zero for an empty log
	MAC         bool   // entries carry MACs
	MACVerified bool   // MACs were checked against a key
	Anchored    bool   // an anchor was given and the log contains it
}

// VerifyError names the first bad entry of a log.
type VerifyError struct {
	Line   int    // 1-based line number in the file
	Seq    uint64 // the entry's position in the chain (the seq it should have)
	Reason string

	torn   bool  // incomplete final line: Open may cut it off
	offset int64 // byte offset of the bad line
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("audit: entry %d (line %d): %s", e.Seq, e.Line, e.Reason)
}

type verifyOpts struct {
	key    []byte
	anchor *Anchor
}

// Verify reads a whole log from r and checks every entry: canonical form,
// field rules, contiguous sequence numbers, the link to the previous hash,
// the entry's own hash, MACs (all entries or none carry one; with a key every
// one must match) and, if anchor is not nil, that the log contains the
// anchored entry with the anchored hash. The first problem is returned as a
// *VerifyError; other errors are read errors. Options other than WithKey are
// ignored.
//
// Without a key, MAC fields are only checked for form: anyone who can write
// the file can append a correctly chained entry, with or without a made-up
// MAC. Only verification with the key detects that.
func Verify(r io.Reader, anchor *Anchor, opts ...Option) (Report, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return Report{}, err
	}
	rep, _, err := verifyStream(r, verifyOpts{key: o.key, anchor: anchor})
	return rep, err
}

// VerifyFile is Verify on the file at path. Verifying a log another process
// is appending to may report an incomplete final line; use [Log.Verify] on a
// live log.
func VerifyFile(path string, anchor *Anchor, opts ...Option) (Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return Report{}, fmt.Errorf("audit: verify: %w", err)
	}
	defer f.Close()
	return Verify(f, anchor, opts...)
}

// verifyStream is the one verifier used by Verify, VerifyFile, Log.Verify and
// Open. It also returns the byte length of the verified prefix.
func verifyStream(r io.Reader, o verifyOpts) (Report, int64, error) {
	var (
		rep     Report
		br      = bufio.NewReader(r)
		buf     []byte
		line    int
		off     int64
		prev    [32]byte // genesis: 32 zero bytes
		hasMAC  bool
		anchorK = o.anchor != nil && o.anchor.Seq == 0
	)
	rep.MACVerified = o.key != nil
	if anchorK && o.anchor.Hash != ([32]byte{}) {
		return rep, 0, &VerifyError{Line: 1, Seq: 0, Reason: "anchor for entry 0 must carry the genesis hash (all zeros)"}
	}
	for {
		raw, err := readLine(br, buf[:0])
		buf = raw
		if len(raw) == 0 && err == io.EOF {
			break
		}
		line++
		seq := rep.Entries + 1
		bad := func(reason string) (Report, int64, error) {
			return rep, off, &VerifyError{Line: line, Seq: seq, Reason: reason, offset: off}
		}
		switch {
		case err == errLineTooLong:
			return bad(fmt.Sprintf("line is longer than %d bytes", maxLine))
		case err == io.EOF:
			return rep, off, &VerifyError{Line: line, Seq: seq, offset: off, torn: true,
				Reason: "incomplete final line (no trailing newline): a crash mid-write or a damaged tail"}
		case err != nil:
			return rep, off, fmt.Errorf("audit: read line %d: %w", line, err)
		}
		if len(raw) == 1 {
			return bad("empty line")
		}
		e, reason := parseLine(raw)
		if reason != "" {
			return bad(reason)
		}
		if reason := e.checkFields(); reason != "" {
			return bad(reason)
		}
		if e.Seq != seq {
			return bad(fmt.Sprintf("out of sequence: has seq %d, expected %d (an entry was removed, reordered or inserted)", e.Seq, seq))
		}
		if e.Prev != prev {
			return bad("prev does not match the previous entry's hash (an entry was removed, reordered or inserted)")
		}
		if e.computeHash() != e.Hash {
			return bad("hash does not match its contents")
		}
		switch {
		case seq == 1:
			hasMAC = e.MAC != nil
		case hasMAC && e.MAC == nil:
			return bad("mac missing although earlier entries carry one (entry added out of band?)")
		case !hasMAC && e.MAC != nil:
			return bad("mac present although earlier entries carry none")
		}
		if o.key != nil {
			if e.MAC == nil {
				return bad("mac missing but a key was given (log written without a key, or entry added out of band)")
			}
			if !hmac.Equal(e.MAC, computeMAC(o.key, e.Hash)) {
				return bad("mac does not match (entry not written with this key: added out of band, altered, or wrong key)")
			}
		}
		if o.anchor != nil && o.anchor.Seq == seq {
			if o.anchor.Hash != e.Hash {
				return bad("hash differs from the anchor (the log was rewritten from here on)")
			}
			anchorK = true
		}
		prev = e.Hash
		off += int64(len(raw))
		rep.Entries = seq
		rep.Head = Anchor{Seq: seq, Hash: e.Hash}
		rep.MAC = hasMAC
	}
	if o.anchor != nil && !anchorK {
		return rep, off, &VerifyError{
			Line:   line + 1,
			Seq:    o.anchor.Seq,
			Reason: fmt.Sprintf("missing: the log ends at entry %d but the anchor says entry %d exists (the tail was truncated)", rep.Entries, o.anchor.Seq),
			offset: off,
		}
	}
	rep.Anchored = o.anchor != nil
	return rep, off, nil
}

var errLineTooLong = errors.New("line too long")

// readLine appends the next line (with its '\n') to buf. A short buffered
// reader is grown into buf only as far as lines need, up to maxLine.
func readLine(br *bufio.Reader, buf []byte) ([]byte, error) {
	for {
		chunk, err := br.ReadSlice('\n')
		buf = append(buf, chunk...)
		if len(buf) > maxLine {
			return buf, errLineTooLong
		}
		if err != bufio.ErrBufferFull {
			return buf, err
		}
	}
}

// isTorn reports whether err says only that the final line is incomplete.
func isTorn(err error) (*VerifyError, bool) {
	var ve *VerifyError
	if errors.As(err, &ve) && ve.torn {
		return ve, true
	}
	return nil, false
}
