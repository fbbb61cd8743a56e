package audit

import (
	"context"
	"fmt"
	"io"
	"sort"
)

// Export writes the canonical lines of records [from, to) — each followed
// by "\n", exactly as stored — to w: the stream VerifyExport and
// ReplayExport read (from 0). to is clamped to the records durable when
// Export starts. It copies whole runs of a segment file at a time.
func (l *Log) Export(ctx context.Context, w io.Writer, from, to uint64) (uint64, error) {
	l.filesMu.RLock()
	defer l.filesMu.RUnlock()
	if l.filesClosed {
		return 0, ErrClosed
	}
	l.mu.RLock()
	n := l.idx.size
	meta := l.idx.meta[:n]
	segs := l.idx.segs[:len(l.idx.segs):len(l.idx.segs)]
	l.mu.RUnlock()
	to = min(to, n)
	if from >= to {
		return 0, nil
	}
	var written uint64
	for i := from; i < to; {
		if err := ctx.Err(); err != nil {
			return written, err
		}
		s := sort.Search(len(segs), func(k int) bool { return segs[k].first > i }) - 1
		end := to
		if s+1 < len(segs) {
			end = min(end, segs[s+1].first)
		}
		start := int64(meta[i].off)
		last := &meta[end-1]
		stop := int64(last.off) + int64(last.size&^flaggedBit) + 1 // through the newline
		if _, err := io.Copy(w, io.NewSectionReader(segs[s].r, start, stop-start)); err != nil {
			return written, fmt.Errorf("audit: export records %d..%d: %w", i, end-1, err)
		}
		written += end - i
		i = end
	}
	return written, nil
}
