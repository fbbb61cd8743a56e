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
	rec  Record
	off  int64  // byte offset of its line in its segment
	line []byte // canonical bytes; valid only during the callback
}

// scanResult is what scan found.
type scanResult struct {
	segs []scannedSegment
	n    uint64         // records
	head [HashSize]byte // leaf hash of the last record (zero if n == 0)
	// torn is the byte count of an unterminated final line, cut off when
	// repair was set and left alone otherwise.
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
	// repair truncates an unterminated final line of the last segment.
	repair bool
	// visit, if set, is called for every verified record in order.
	visit func(s scanned) error
}

// scan reads every segment in dir in order and checks the chain: dense
// indices starting at 0, segments named by their first index, every line
// canonical, every Prev the leaf hash of the line before. It returns an
// *ErrInconsistent for the first record that breaks the chain.
//
// An unterminated final line in the last segment is what a crash in the
// middle of a write leaves; it was never acknowledged (Append returns only
// after the whole line is fsynced), so it is reported in torn and, with
// repair, cut off. Anywhere else it is an inconsistency.
func scan(ctx context.Context, dir string, opts scanOptions) (scanResult, error) {
	var res scanResult
	firsts, err := listSegments(dir)
	if err != nil {
		return res, fmt.Errorf("list segments: %w", err)
	}
	var prevHex string
	br := bufio.NewReaderSize(nil, 64<<10)
	var long []byte // a line longer than br's buffer
	for si, first := range firsts {
		if opts.limit > 0 && res.n >= opts.limit {
			break
		}
		name := segmentName(first)
		if first != res.n {
			// A segment is missing or one was added: the records it would
			// hold do not line up with the chain.
			return res, &ErrInconsistent{At: res.n, Want: fmt.Sprintf("a segment starting at record %d", res.n),
				Got: fmt.Sprintf("segment %s", name), File: name, Offset: 0}
		}
		last := si == len(firsts)-1
		path := filepath.Join(dir, name)
		f, err := os.Open(path)
		if err != nil {
			return res, fmt.Errorf("open segment: %w", err)
		}
		res.segs = append(res.segs, scannedSegment{first: first, name: name})
		seg := &res.segs[len(res.segs)-1]
		br.Reset(f)
		var off int64
		for {
			if opts.limit > 0 && res.n >= opts.limit {
				break
			}
			if res.n%1024 == 0 {
				if err := ctx.Err(); err != nil {
					f.Close()
					return res, err
				}
			}
			line, err := br.ReadSlice('\n')
			if errors.Is(err, bufio.ErrBufferFull) {
				long = append(long[:0], line...)
				for errors.Is(err, bufio.ErrBufferFull) && len(long) <= maxLineBytes+1 {
					line, err = br.ReadSlice('\n')
					long = append(long, line...)
				}
				line = long
				if errors.Is(err, bufio.ErrBufferFull) {
					f.Close()
					return res, &ErrInconsistent{At: res.n, Want: "a record line", Got: fmt.Sprintf("a line over %d bytes", maxLineBytes),
						File: name, Offset: off}
				}
			}
			if err == io.EOF {
				if len(line) == 0 {
					break
				}
				if !last {
					f.Close()
					return res, &ErrInconsistent{At: res.n, Want: "a complete record line", Got: fmt.Sprintf("%d bytes without a newline at the end of a closed segment", len(line)),
						File: name, Offset: off}
				}
				res.torn = int64(len(line))
				break
			}
			if err != nil {
				f.Close()
				return res, fmt.Errorf("read segment %s: %w", name, err)
			}
			body := line[:len(line)-1]
			rec, perr := ParseRecord(body)
			if perr != nil {
				f.Close()
				return res, &ErrInconsistent{At: res.n, Want: "a canonical record", Got: perr.Error(), File: name, Offset: off}
			}
			if rec.Index != res.n {
				f.Close()
				return res, &ErrInconsistent{At: res.n, Want: fmt.Sprintf("index %d", res.n), Got: fmt.Sprintf("index %d", rec.Index),
					File: name, Offset: off}
			}
			if rec.Prev != prevHex {
				f.Close()
				return res, &ErrInconsistent{At: res.n, Want: fmt.Sprintf("prev %q", prevHex), Got: fmt.Sprintf("prev %q", rec.Prev),
					File: name, Offset: off}
			}
			res.head = LeafHash(body)
			prevHex = hex.EncodeToString(res.head[:])
			if opts.visit != nil {
				if err := opts.visit(scanned{rec: rec, off: off, line: body}); err != nil {
					f.Close()
					return res, err
				}
			}
			off += int64(len(line))
			seg.size = off
			res.n++
		}
		if res.torn > 0 && opts.repair {
			if err := truncateSync(path, off); err != nil {
				f.Close()
				return res, fmt.Errorf("cut torn tail of %s: %w", name, err)
			}
		}
		if err := f.Close(); err != nil {
			return res, fmt.Errorf("close segment %s: %w", name, err)
		}
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

// syncDir makes the creation of a file in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
