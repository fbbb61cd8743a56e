package audit

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
)

const (
	segmentExt     = ".jsonl"
	segmentNameLen = 12 // digits
)

// segmentName returns the file name of the segment whose first record is first.
func segmentName(first uint64) string {
	return fmt.Sprintf("%0*d%s", segmentNameLen, first, segmentExt)
}

// parseSegmentName returns the first index of a segment file name, or false
// for any other file.
func parseSegmentName(name string) (uint64, bool) {
	if len(name) != segmentNameLen+len(segmentExt) || filepath.Ext(name) != segmentExt {
		return 0, false
	}
	digits := name[:segmentNameLen]
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	return n, err == nil
}

// listSegments returns the first indices of the segment files in dir, sorted.
func listSegments(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var firsts []uint64
	for _, e := range ents {
		if first, ok := parseSegmentName(e.Name()); ok && e.Type().IsRegular() {
			firsts = append(firsts, first)
		}
	}
	slices.Sort(firsts)
	return firsts, nil
}

// scanned describes one record met by scan.
type scanned struct {
	rec    Record
	file   string         // its segment ("" in a stream)
	lineNo int64          // 1-based line number in its segment or stream
	off    int64          // byte offset of its line in its segment or stream
	line   []byte         // canonical bytes; valid only during the callback
	hash   [HashSize]byte // LeafHash(line)
}

// scanResult is what scan found.
type scanResult struct {
	segs []scannedSegment
	n    uint64         // records
	head [HashSize]byte // leaf hash of the last record (zero if n == 0)
	// torn is the byte count of an unterminated final line; scan leaves it
	// alone (see truncateSync).
	torn int64
}

type scannedSegment struct {
	first uint64
	name  string
	size  int64 // bytes of complete records
}

// scanOptions tunes scan.
type scanOptions struct {
	// limit stops the scan after that many records (0: no limit).
	limit uint64
	// visit, if set, is called for every verified record in order.
	visit func(s scanned) error
	// lenient reads records as an export verifier does (ParseVerifiable)
	// instead of requiring the canonical form (ParseRecord).
	lenient bool
}

// scan reads every segment in dir in order and checks the chain: dense
// indices starting at 0, segments named by their first index, every line
// canonical, every Prev the leaf hash of the line before. It returns an
// *InconsistentError for the first record that breaks the chain.
//
// An unterminated final line in the last segment is what a crash in the
// middle of a write leaves; it was never acknowledged (Append returns only
// after the whole line is fsynced), so it is reported in torn for the
// caller to cut off (or not). Anywhere else it is an inconsistency.
func scan(ctx context.Context, dir string, opts scanOptions) (res scanResult, err error) {
	firsts, err := listSegments(dir)
	if err != nil {
		return res, fmt.Errorf("list segments: %w", err)
	}
	c := newChain()
	c.lenient = opts.lenient
	defer func() { res.n, res.head = c.n, c.head }()
	for si, first := range firsts {
		if opts.limit > 0 && c.n >= opts.limit {
			break
		}
		name := segmentName(first)
		if first != c.n {
			// A segment is missing or one was added: the records it would
			// hold do not line up with the chain.
			return res, &InconsistentError{At: c.n, Want: fmt.Sprintf("a segment starting at record %d", c.n),
				Got: fmt.Sprintf("segment %s", name), File: name, Offset: 0}
		}
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return res, fmt.Errorf("open segment: %w", err)
		}
		sr, err := c.read(ctx, f, name, si == len(firsts)-1, opts.limit, opts.visit)
		f.Close()
		res.segs = append(res.segs, scannedSegment{first: first, name: name, size: sr.size})
		res.torn = sr.torn
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

// chain checks records one after another, across segments: dense indices
// from 0, canonical lines, each Prev the leaf hash of the line before.
type chain struct {
	n       uint64         // records read
	head    [HashSize]byte // leaf hash of the last one
	prevHex string         // its hex form: the next record's Prev
	br      *bufio.Reader
	long    []byte // a line longer than br's buffer
	// lenient reads lines as an export verifier does (ParseVerifiable);
	// else only the canonical form is a record (ParseRecord: the log's own
	// files, which only this package writes).
	lenient bool
}

func newChain() *chain { return &chain{br: bufio.NewReaderSize(nil, 64<<10)} }

// newVerifierChain returns a chain that reads records as VERIFYING.md
// specifies (ParseVerifiable).
func newVerifierChain() *chain {
	c := newChain()
	c.lenient = true
	return c
}

// parse reads one line as the chain's mode requires; want says what a
// failure expected.
func (c *chain) parse(line []byte) (r Record, want string, err error) {
	if c.lenient {
		r, err = ParseVerifiable(line)
		return r, "a record", err
	}
	r, err = ParseRecord(line)
	return r, "a canonical record", err
}

// readResult is what chain.read found in one segment or stream.
type readResult struct {
	size int64 // bytes of complete records
	torn int64 // bytes of an unterminated final line (only if last)
}

// read checks the records of one segment (or one stream of records) read
// from r, continuing the chain. name is used in errors ("" for a stream).
// Only when last may r end in an unterminated line (reported in torn); it
// stops after limit records in all (0: no limit) and calls visit, if set,
// for every record that verifies.
func (c *chain) read(ctx context.Context, r io.Reader, name string, last bool, limit uint64, visit func(scanned) error) (readResult, error) {
	var res readResult
	c.br.Reset(r)
	defer c.br.Reset(nil)
	var off, lineNo int64
	for limit == 0 || c.n < limit {
		if c.n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return res, err
			}
		}
		lineNo++
		fail := func(want, got string) error {
			return &InconsistentError{At: c.n, Want: want, Got: got, File: name, Line: lineNo, Offset: off}
		}
		line, err := c.br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			c.long = append(c.long[:0], line...)
			for errors.Is(err, bufio.ErrBufferFull) && len(c.long) <= maxLineBytes+1 {
				line, err = c.br.ReadSlice('\n')
				c.long = append(c.long, line...)
			}
			line = c.long
			if errors.Is(err, bufio.ErrBufferFull) {
				return res, fail("a record line", fmt.Sprintf("a line over %d bytes", maxLineBytes))
			}
		}
		if err == io.EOF {
			if len(line) == 0 {
				break
			}
			if !last {
				return res, fail("a complete record line", fmt.Sprintf("%d bytes without a newline at the end of a closed segment", len(line)))
			}
			res.torn = int64(len(line))
			break
		}
		if err != nil {
			if name == "" {
				return res, fmt.Errorf("read records: %w", err)
			}
			return res, fmt.Errorf("read segment %s: %w", name, err)
		}
		body := line[:len(line)-1]
		rec, want, perr := c.parse(body)
		if perr != nil {
			return res, fail(want, perr.Error())
		}
		if rec.Index != c.n {
			hint := "a record missing or moved before it"
			if rec.Index < c.n {
				hint = "a record repeated or moved"
			}
			return res, fail(fmt.Sprintf("index %d", c.n), fmt.Sprintf("index %d (%s)", rec.Index, hint))
		}
		if rec.Prev != c.prevHex {
			if c.n == 0 {
				return res, fail(`prev ""`, fmt.Sprintf("prev %q", rec.Prev))
			}
			return res, fail(fmt.Sprintf("prev %q, the leaf hash of record %d as found", c.prevHex, c.n-1),
				fmt.Sprintf("prev %q: record %d was altered after this one was written, or this one was", rec.Prev, c.n-1))
		}
		h := LeafHash(body)
		if visit != nil {
			if err := visit(scanned{rec: rec, file: name, lineNo: lineNo, off: off, line: body, hash: h}); err != nil {
				return res, err
			}
		}
		c.head = h
		c.prevHex = hex.EncodeToString(h[:])
		off += int64(len(line))
		res.size = off
		c.n++
	}
	return res, nil
}

// truncateSync cuts the file at path to size and makes that durable.
func truncateSync(path string, size int64) error {
	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if err := w.Truncate(size); err != nil {
		w.Close()
		return err
	}
	if err := w.Sync(); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}
