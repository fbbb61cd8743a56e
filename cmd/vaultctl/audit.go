package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tenantvault/tenantvault/audit"
)

func (c *cli) alerts(ctx context.Context, args []string) error {
	fs := c.flags("audit alerts")
	tenant := fs.String("tenant", "", "only alerts of this tenant")
	limit := fs.Int("limit", 100, "page size")
	after := fs.String("after", "", "only alerts after this record index")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	q := url.Values{"limit": {strconv.Itoa(*limit)}}
	if *tenant != "" {
		q.Set("tenant", *tenant)
	}
	if *after != "" {
		q.Set("after", *after)
	}
	var out any
	if err := c.call(ctx, http.MethodGet, "/v1/alerts?"+q.Encode(), nil, &out); err != nil {
		return err
	}
	return c.print(out)
}

// raw does an API GET and returns the response body unread (the caller
// closes it).
func (c *cli) raw(ctx context.Context, path string) (*http.Response, error) {
	tok, err := c.credential()
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(c.addr, "/")+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var e struct {
			Error apiError `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error.Code != "" {
			e.Error.Status = resp.StatusCode
			return nil, &e.Error
		}
		return nil, fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, b)
	}
	return resp, nil
}

func (c *cli) rawBytes(ctx context.Context, path string) ([]byte, error) {
	resp, err := c.raw(ctx, path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
}

func (c *cli) auditCheckpoint(ctx context.Context, args []string) error {
	fs := c.flags("audit checkpoint")
	size := fs.String("size", "", "the checkpoint of this tree size (default: the latest)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	path := "/v1/audit/checkpoint"
	if *size != "" {
		path += "?size=" + url.QueryEscape(*size)
	}
	b, err := c.rawBytes(ctx, path)
	if err != nil {
		return err
	}
	_, err = c.stdout.Write(b)
	return err
}

func (c *cli) auditPublicKey(ctx context.Context, args []string) error {
	if _, err := parse(c.flags("audit public-key"), args); err != nil {
		return err
	}
	b, err := c.rawBytes(ctx, "/v1/audit/public-key")
	if err != nil {
		return err
	}
	_, err = c.stdout.Write(b)
	return err
}

func (c *cli) auditExport(ctx context.Context, args []string) error {
	fs := c.flags("audit export")
	from := fs.Uint64("from", 0, "first record index")
	to := fs.String("to", "", "stop before this record index (default: all)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	q := url.Values{"from": {strconv.FormatUint(*from, 10)}}
	if *to != "" {
		q.Set("to", *to)
	}
	resp, err := c.raw(ctx, "/v1/audit/export?"+q.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(c.stdout, resp.Body)
	return err
}

// verifySource is where verify and replay read the log, the checkpoint and
// the key from: files when given, else the live vault.
type verifySource struct {
	dir, export, checkpoint, publicKey string
	fetched                            []byte // the checkpoint, fetched from --checkpoint-topic
}

func (c *cli) sourceFlags(fs interface {
	StringVar(*string, string, string, string)
}) *verifySource {
	s := &verifySource{}
	fs.StringVar(&s.dir, "dir", "", "verify the segment files in this directory (a copy of <data-dir>/audit), offline")
	fs.StringVar(&s.export, "export", "", "verify this exported file (vaultctl audit export), offline")
	fs.StringVar(&s.checkpoint, "checkpoint", "", "signed checkpoint file (default: <dir>/checkpoints/latest with --dir, else the live vault's)")
	fs.StringVar(&s.publicKey, "public-key", "", "verifier key, or @FILE (default: the live vault's, which then vouches for itself)")
	return s
}

func (c *cli) checkpointAndKey(ctx context.Context, s *verifySource) (cp []byte, key string, err error) {
	switch {
	case s.fetched != nil:
		cp = s.fetched
	case s.checkpoint != "":
		cp, err = os.ReadFile(s.checkpoint)
	case s.dir != "":
		cp, err = os.ReadFile(filepath.Join(s.dir, "checkpoints", "latest"))
	default:
		cp, err = c.rawBytes(ctx, "/v1/audit/checkpoint")
	}
	if err != nil {
		return nil, "", fmt.Errorf("checkpoint: %w", err)
	}
	if key, err = c.publicKey(ctx, s); err != nil {
		return nil, "", err
	}
	return cp, key, nil
}

// publicKey is the log's verifier key: --public-key, or the vault's own.
func (c *cli) publicKey(ctx context.Context, s *verifySource) (string, error) {
	switch {
	case strings.HasPrefix(s.publicKey, "@"):
		b, err := os.ReadFile(s.publicKey[1:])
		if err != nil {
			return "", fmt.Errorf("public key: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	case s.publicKey != "":
		return s.publicKey, nil
	}
	b, err := c.rawBytes(ctx, "/v1/audit/public-key")
	if err != nil {
		return "", fmt.Errorf("public key: %w", err)
	}
	fmt.Fprintln(c.stderr, "warning: using the vault's own public key; pass --public-key from a copy you trust for an independent check")
	return strings.TrimSpace(string(b)), nil
}

// records opens the log to verify as one stream of lines.
func (c *cli) records(ctx context.Context, s *verifySource) (io.ReadCloser, error) {
	switch {
	case s.export != "":
		return os.Open(s.export)
	case s.dir != "":
		segs, err := filepath.Glob(filepath.Join(s.dir, "[0-9]*.jsonl"))
		if err != nil {
			return nil, err
		}
		if len(segs) == 0 {
			return nil, fmt.Errorf("no audit segment files in %s", s.dir)
		}
		sort.Strings(segs)
		var rs []io.Reader
		var files []*os.File
		for _, name := range segs {
			f, err := os.Open(name)
			if err != nil {
				for _, f := range files {
					f.Close()
				}
				return nil, err
			}
			files = append(files, f)
			rs = append(rs, f)
		}
		return multiCloser{io.MultiReader(rs...), files}, nil
	}
	resp, err := c.raw(ctx, "/v1/audit/export")
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

type multiCloser struct {
	io.Reader
	files []*os.File
}

func (m multiCloser) Close() error {
	var errs []error
	for _, f := range m.files {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}

func (c *cli) auditVerify(ctx context.Context, args []string) error {
	fs := c.flags("audit verify")
	src := c.sourceFlags(fs)
	old := fs.String("old-checkpoint", "", "an older signed checkpoint: check that the log only grew since")
	exact := fs.Bool("exact", false, "fail if any record is past the checkpoint (unverified)")
	wf := c.witnessFlags(fs)
	_, err := parse(fs, args)
	if err != nil {
		return err
	}
	if wf.topic != "" {
		if src.checkpoint != "" {
			return errors.New("--checkpoint and --checkpoint-topic: give one")
		}
		if src.publicKey == "" {
			return errors.New("--checkpoint-topic needs --public-key: the topic's records are keyed by the log's verifier key (vaults may share it)")
		}
		key, err := c.publicKey(ctx, src)
		if err != nil {
			return err
		}
		if src.fetched, err = wf.fetchCheckpoint(ctx, key); err != nil {
			return err
		}
	}
	cp, key, err := c.checkpointAndKey(ctx, src)
	if err != nil {
		return err
	}
	if err := c.checkCosigned(cp, key, wf); err != nil {
		return err
	}
	rc, err := c.records(ctx, src)
	if err != nil {
		return err
	}
	defer rc.Close()
	// Keep the stream for the old checkpoint, verified against the same records.
	var copyForOld bytes.Buffer
	var in io.Reader = rc
	if *old != "" {
		in = io.TeeReader(rc, &copyForOld)
	}
	rep, err := audit.VerifyExport(ctx, in, cp, key)
	if err != nil {
		return fmt.Errorf("audit log does NOT verify: %w", err)
	}
	if err := c.printVerified(rep, *exact); err != nil {
		return err
	}
	if *old == "" {
		return nil
	}
	oldCP, err := os.ReadFile(*old)
	if err != nil {
		return fmt.Errorf("old checkpoint: %w", err)
	}
	oc, err := audit.OpenCheckpoint(oldCP, key)
	if err != nil {
		return fmt.Errorf("old checkpoint: %w", err)
	}
	if oc.Size > rep.Checkpoint.Size {
		return fmt.Errorf("the log did NOT only grow: the old checkpoint has size %d, the new one only %d (a rollback, or the checkpoints are swapped)", oc.Size, rep.Checkpoint.Size)
	}
	// The same records hold the old tree as a prefix ...
	if _, err := audit.VerifyExport(ctx, &copyForOld, oldCP, key); err != nil {
		return fmt.Errorf("the log does NOT contain the tree of the old checkpoint (size %d): %w", oc.Size, err)
	}
	// ... and, against the live vault, its consistency proof says the same.
	if src.dir == "" && src.export == "" {
		var proof struct{ Hashes [][]byte }
		if err := c.call(ctx, http.MethodGet, fmt.Sprintf("/v1/audit/proof/consistency?from=%d&to=%d", oc.Size, rep.Checkpoint.Size), nil, &proof); err != nil {
			return fmt.Errorf("consistency proof: %w", err)
		}
		if err := audit.VerifyConsistency(oldCP, cp, proof.Hashes, key); err != nil {
			return fmt.Errorf("the log did NOT only grow since the old checkpoint: %w", err)
		}
	}
	fmt.Fprintf(c.stdout, "ok: consistent with the old checkpoint of size %d (the log only grew)\n", oc.Size)
	return nil
}

// errUnverified is the failure of --exact.
var errUnverified = errors.New("--exact: the log holds records past the checkpoint, which it does not verify")

// printVerified says exactly what a verification covered: the records the
// checkpoint signed, the receipts, and what lies past the checkpoint
// (chained, but signed by nothing yet). With exact, anything past the
// checkpoint is a failure.
func (c *cli) printVerified(rep audit.Report, exact bool) error {
	cp := rep.Checkpoint
	fmt.Fprintf(c.stdout, "ok: %d records verified against checkpoint %s size %d root %s\n", rep.Verified(), cp.Origin, cp.Size, base64.StdEncoding.EncodeToString(cp.Root[:]))
	if rep.Receipts > 0 {
		fmt.Fprintf(c.stdout, "ok: %d shred receipts verified (signature, tenant, key ids, audit index)\n", rep.Receipts)
	}
	if rep.ShredsWithoutReceipt > 0 {
		fmt.Fprintf(c.stdout, "warning: %d tenant.shred records hold no signed receipt\n", rep.ShredsWithoutReceipt)
	}
	if u := rep.Unverified(); u > 0 {
		fmt.Fprintf(c.stdout, "UNVERIFIED: %d records past the checkpoint (index %d to %d): chained, but covered by no signed checkpoint; verify them against a newer one\n", u, cp.Size, rep.Records-1)
	}
	if rep.TornBytes > 0 {
		fmt.Fprintf(c.stdout, "UNVERIFIED: %d bytes of an unterminated last line (not a record yet)\n", rep.TornBytes)
	}
	if exact && (rep.Unverified() > 0 || rep.TornBytes > 0) {
		return errUnverified
	}
	return nil
}

func (c *cli) auditReplay(ctx context.Context, args []string) error {
	fs := c.flags("audit replay")
	src := c.sourceFlags(fs)
	tenant := fs.String("tenant", "", "only records of this tenant")
	since := fs.String("since", "", "only records at or after this RFC 3339 time")
	until := fs.String("until", "", "only records before this RFC 3339 time")
	flagged := fs.Bool("flagged", false, "only flagged records")
	format := fs.String("format", "jsonl", "jsonl or csv")
	exact := fs.Bool("exact", false, "stop with an error at the first record past the checkpoint (unverified)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	var t1, t2 time.Time
	for _, p := range []struct {
		s   string
		dst *time.Time
	}{{*since, &t1}, {*until, &t2}} {
		if p.s == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, p.s)
		if err != nil {
			return fmt.Errorf("--since/--until %q is not an RFC 3339 time", p.s)
		}
		*p.dst = t
	}
	if *format != "jsonl" && *format != "csv" {
		return fmt.Errorf("--format %q: want jsonl or csv", *format)
	}
	cp, key, err := c.checkpointAndKey(ctx, src)
	if err != nil {
		return err
	}
	oc, err := audit.OpenCheckpoint(cp, key)
	if err != nil {
		return err
	}
	rc, err := c.records(ctx, src)
	if err != nil {
		return err
	}
	defer rc.Close()

	cw := csv.NewWriter(c.stdout)
	if *format == "csv" {
		cw.Write([]string{"index", "time", "principal", "tenant", "action", "resource", "outcome", "flagged", "reason", "key_ids", "count", "verified"})
	}
	enc := json.NewEncoder(c.stdout)
	prog := newProgress(c.stderr, oc.Size)
	matched, unverified := 0, 0
	rep, err := audit.ReplayExport(ctx, rc, cp, key, func(r audit.Record) error {
		prog.tick(r.Index + 1)
		past := r.Index >= oc.Size // chained only: no checkpoint signed it
		if past && r.Index == oc.Size {
			if *exact {
				return errUnverified
			}
			cw.Flush()
			fmt.Fprintf(c.stderr, "UNVERIFIED from here: records from index %d on are past the checkpoint (size %d) and covered by no signature; they are marked unverified\n", oc.Size, oc.Size)
		}
		if (*tenant != "" && r.Tenant != *tenant) || (*flagged && !r.Flagged) ||
			(!t1.IsZero() && r.Time.Before(t1)) || (!t2.IsZero() && !r.Time.Before(t2)) {
			return nil
		}
		matched++
		if past {
			unverified++
		}
		if *format == "jsonl" {
			return enc.Encode(replayed{Record: r, Unverified: past})
		}
		ids := make([]string, len(r.KeyIDs))
		for i, id := range r.KeyIDs {
			ids[i] = strconv.FormatUint(uint64(id), 10)
		}
		return cw.Write([]string{strconv.FormatUint(r.Index, 10), r.Time.Format(time.RFC3339Nano), string(r.Principal), r.Tenant, string(r.Action),
			r.Resource, string(r.Outcome), strconv.FormatBool(r.Flagged), r.Reason, strings.Join(ids, " "), strconv.Itoa(r.Count), strconv.FormatBool(!past)})
	})
	cw.Flush()
	prog.done()
	if errors.Is(err, errUnverified) {
		return fmt.Errorf("replay stopped at record %d: %w", oc.Size, err)
	}
	if err != nil {
		return fmt.Errorf("replay stopped: the audit log does NOT verify (records above are not trustworthy): %w", err)
	}
	if err := cw.Error(); err != nil {
		return err
	}
	if rep.Unverified() == 0 && rep.TornBytes == 0 {
		fmt.Fprintf(c.stderr, "replayed %d records, %d matched; all verified against checkpoint size %d\n", rep.Records, matched, rep.Checkpoint.Size)
		return nil
	}
	fmt.Fprintf(c.stderr, "replayed %d records, %d matched; %d verified against checkpoint size %d, %d past it NOT verified (%d of them matched, marked unverified)\n",
		rep.Records, matched, rep.Verified(), rep.Checkpoint.Size, rep.Unverified(), unverified)
	if rep.TornBytes > 0 {
		fmt.Fprintf(c.stderr, "UNVERIFIED: %d bytes of an unterminated last line (not a record yet) were not replayed\n", rep.TornBytes)
	}
	if *exact {
		return errUnverified
	}
	return nil
}

// replayed is a record as replay prints it in JSON lines: marked when it is
// past the checkpoint.
type replayed struct {
	audit.Record
	Unverified bool `json:"unverified,omitempty"`
}

// progress draws a one-line progress bar on a terminal, and nothing
// elsewhere.
type progress struct {
	w     io.Writer
	total uint64
	on    bool
	last  time.Time
}

func newProgress(w io.Writer, total uint64) *progress {
	p := &progress{w: w, total: total}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.on = true
		}
	}
	return p
}

func (p *progress) tick(n uint64) {
	if !p.on || time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.last = time.Now()
	const width = 30
	frac := 1.0
	if p.total > 0 {
		frac = min(float64(n)/float64(p.total), 1)
	}
	fill := int(frac * width)
	fmt.Fprintf(p.w, "\r[%s%s] %d/%d records verified", strings.Repeat("=", fill), strings.Repeat(" ", width-fill), n, p.total)
}

func (p *progress) done() {
	if p.on {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
