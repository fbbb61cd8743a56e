package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// progress draws a one-line progress bar on a terminal, and nothing
// elsewhere (a pipe, a file, a test's buffer). It names what it counts,
// and draws no bar while the total is unknown or zero: "0/0" is not done.
type progress struct {
	w     io.Writer
	what  string // what is counted: "records verified"
	total uint64 // 0: unknown, only the count is shown
	on    bool
	last  time.Time
}

func newProgress(w io.Writer, total uint64, what string) *progress {
	return &progress{w: w, total: total, what: what, on: isTerminal(w)}
}

// isTerminal reports whether w is a character device (a TTY).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// tick shows n done, at most every 100ms.
func (p *progress) tick(n uint64) {
	if !p.on || time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.last = time.Now()
	fmt.Fprint(p.w, "\r"+p.line(n))
}

// line is the progress line for n done.
func (p *progress) line(n uint64) string {
	if p.total == 0 {
		return fmt.Sprintf("%d %s", n, p.what)
	}
	const width = 30
	frac := min(float64(n)/float64(p.total), 1)
	fill := int(frac * width)
	return fmt.Sprintf("[%s%s] %d/%d %s", strings.Repeat("=", fill), strings.Repeat(" ", width-fill), n, p.total, p.what)
}

// done clears the line.
func (p *progress) done() {
	if p.on {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

// countingWriter counts the lines written through it and ticks a progress.
type countingWriter struct {
	w     io.Writer
	lines uint64
	prog  *progress
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.lines += uint64(strings.Count(string(b[:n]), "\n"))
	c.prog.tick(c.lines)
	return n, err
}
