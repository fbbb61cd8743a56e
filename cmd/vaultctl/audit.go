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

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tenantvault/tenantvault/audit"
)

func (c *cli) alertsCmd() *cobra.Command {
	var tenant, after string
	var limit int
	cmd := &cobra.Command{
		Use:     "alerts [--tenant T]",
		Short:   "Boundary violations (admin)",
		Args:    cobra.NoArgs,
		PreRunE: c.checkOutput,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{"limit": {strconv.Itoa(limit)}}
			if tenant != "" {
				q.Set("tenant", tenant)
			}
			if after != "" {
				q.Set("after", after)
			}
			return c.show(cmd.Context(), http.MethodGet, "/v1/alerts?"+q.Encode(), nil)
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "only alerts of this tenant")
	cmd.Flags().IntVar(&limit, "limit", 100, "page size")
	cmd.Flags().StringVar(&after, "after", "", "only alerts after this record index")
	return cmd
}

// raw does an API GET and returns the response body unread (the caller
// closes it).
func (c *cli) raw(ctx context.Context, path string) (*http.Response, error) {
	tok, err := c.adminCredential()
	if err != nil {
		return nil, err
	}
	return c.send(ctx, tok, http.MethodGet, path, nil)
}

func (c *cli) rawBytes(ctx context.Context, path string) ([]byte, error) {
	resp, err := c.raw(ctx, path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
}

func (c *cli) auditCheckpointCmd() *cobra.Command {
	var size string
	cmd := &cobra.Command{
		Use:   "checkpoint [--size N]",
		Short: "The latest (or an older) signed checkpoint",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := "/v1/audit/checkpoint"
			if size != "" {
				path += "?size=" + url.QueryEscape(size)
			}
			return c.copyRaw(cmd.Context(), path)
		},
	}
	cmd.Flags().StringVar(&size, "size", "", "the checkpoint of this tree size (default: the latest)")
	return cmd
}

// copyRaw writes the answer to an API GET to stdout as it is.
func (c *cli) copyRaw(ctx context.Context, path string) error {
	b, err := c.rawBytes(ctx, path)
	if err != nil {
		return err
	}
	_, err = c.stdout.Write(b)
	return err
}

func (c *cli) auditPublicKeyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "public-key",
		Short: "The checkpoints' verifier key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.copyRaw(cmd.Context(), "/v1/audit/public-key")
		},
	}
}

func (c *cli) auditExportCmd() *cobra.Command {
	var from uint64
	var to string
	cmd := &cobra.Command{
		Use:   "export [--from I] [--to I]",
		Short: "The raw log, one canonical record per line (progress on stderr when it is a terminal)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{"from": {strconv.FormatUint(from, 10)}}
			if to != "" {
				q.Set("to", to)
			}
			resp, err := c.raw(cmd.Context(), "/v1/audit/export?"+q.Encode())
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			return exportTo(c.stdout, resp.Body, newProgress(c.stderr, 0, "records exported"))
		},
	}
	cmd.Flags().Uint64Var(&from, "from", 0, "first record index")
	cmd.Flags().StringVar(&to, "to", "", "stop before this record index (default: all)")
	return cmd
}

// exportTo copies an export to w, counting its records on prog (which
// draws only on a terminal).
func exportTo(w io.Writer, r io.Reader, prog *progress) error {
	cw := &countingWriter{w: w, prog: prog}
	_, err := io.Copy(cw, r)
	prog.done()
	if err != nil {
		return fmt.Errorf("export stopped after %d records: %w", cw.lines, err)
	}
	return nil
}

// verifySource is where verify and replay read the log, the checkpoint and
// the key from: files when given, else the live vault.
type verifySource struct {
	dir, export, checkpoint, publicKey string
	fetched                            []byte // the checkpoint, fetched from --checkpoint-topic
}

func (c *cli) sourceFlags(fs *pflag.FlagSet) *verifySource {
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

func (c *cli) auditVerifyCmd() *cobra.Command {
	var o verifyOptions
	cmd := &cobra.Command{
		Use:   "verify [--dir DIR | --export FILE] [--checkpoint FILE] [--public-key KEY|@FILE]",
		Short: "Verify a log (exported, or the live vault's) against a signed checkpoint",
		Long: `Verify a log (exported, or the live vault's) against a signed checkpoint, naming
the first bad record, and every shred receipt in it; records past the checkpoint
are reported UNVERIFIED (with --exact they fail); with --old-checkpoint, also that
the log only grew since that checkpoint.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.auditVerify(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	o.src = c.sourceFlags(f)
	f.StringVar(&o.old, "old-checkpoint", "", "an older signed checkpoint: check that the log only grew since")
	f.BoolVar(&o.exact, "exact", false, "fail if any record is past the checkpoint (unverified)")
	o.wf = c.witnessFlags(f)
	return cmd
}

// verifyOptions are audit verify's flags.
type verifyOptions struct {
	src   *verifySource
	old   string
	exact bool
	wf    *witnessFlags
}

func (c *cli) auditVerify(ctx context.Context, o verifyOptions) error {
	src, wf, old, exact := o.src, o.wf, &o.old, &o.exact
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

func (c *cli) auditReplayCmd() *cobra.Command {
	var o replayOptions
	cmd := &cobra.Command{
		Use:   "replay [--tenant T] [--since T1] [--until T2] [--flagged] [--format jsonl|csv]",
		Short: "Stream the matching audit records, verifying every record as it goes",
		Long: `Stream the matching records, verifying every record (chain, checkpoint root,
re-derived flags) as it goes; records past the checkpoint are marked unverified
(--exact: stop before them). Source flags as for audit verify.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.auditReplay(cmd.Context(), &o)
		},
	}
	f := cmd.Flags()
	o.src = c.sourceFlags(f)
	f.StringVar(&o.tenant, "tenant", "", "only records of this tenant")
	f.StringVar(&o.since, "since", "", "only records at or after this RFC 3339 time")
	f.StringVar(&o.until, "until", "", "only records before this RFC 3339 time")
	f.BoolVar(&o.flagged, "flagged", false, "only flagged records")
	f.StringVar(&o.format, "format", "jsonl", "jsonl or csv")
	f.BoolVar(&o.exact, "exact", false, "stop with an error at the first record past the checkpoint (unverified)")
	return cmd
}

// replayOptions are audit replay's flags.
type replayOptions struct {
	src                          *verifySource
	tenant, since, until, format string
	flagged, exact               bool
	t1, t2                       time.Time // since, until parsed
}

// validate parses the time bounds and checks the format.
func (o *replayOptions) validate() error {
	for _, p := range []struct {
		s   string
		dst *time.Time
	}{{o.since, &o.t1}, {o.until, &o.t2}} {
		if p.s == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, p.s)
		if err != nil {
			return fmt.Errorf("--since/--until %q is not an RFC 3339 time", p.s)
		}
		*p.dst = t
	}
	if o.format != "jsonl" && o.format != "csv" {
		return fmt.Errorf("--format %q: want jsonl or csv", o.format)
	}
	return nil
}

// match reports whether r passes the filters.
func (o *replayOptions) match(r audit.Record) bool {
	return (o.tenant == "" || r.Tenant == o.tenant) && (!o.flagged || r.Flagged) &&
		(o.t1.IsZero() || !r.Time.Before(o.t1)) && (o.t2.IsZero() || r.Time.Before(o.t2))
}

// replayWriter prints replayed records as JSON lines or CSV.
type replayWriter struct {
	csv bool
	cw  *csv.Writer
	enc *json.Encoder
}

func newReplayWriter(w io.Writer, format string) *replayWriter {
	rw := &replayWriter{csv: format == "csv", cw: csv.NewWriter(w), enc: json.NewEncoder(w)}
	if rw.csv {
		rw.cw.Write([]string{"index", "time", "principal", "tenant", "action", "resource", "outcome", "flagged", "reason", "key_ids", "count", "verified"})
	}
	return rw
}

// write prints r; past says it is beyond the checkpoint (unverified).
func (rw *replayWriter) write(r audit.Record, past bool) error {
	if !rw.csv {
		return rw.enc.Encode(replayed{Record: r, Unverified: past})
	}
	ids := make([]string, len(r.KeyIDs))
	for i, id := range r.KeyIDs {
		ids[i] = strconv.FormatUint(uint64(id), 10)
	}
	return rw.cw.Write([]string{strconv.FormatUint(r.Index, 10), r.Time.Format(time.RFC3339Nano), string(r.Principal), r.Tenant, string(r.Action),
		r.Resource, string(r.Outcome), strconv.FormatBool(r.Flagged), r.Reason, strings.Join(ids, " "), strconv.Itoa(r.Count), strconv.FormatBool(!past)})
}

// flush writes out buffered CSV and returns its error.
func (rw *replayWriter) flush() error {
	rw.cw.Flush()
	return rw.cw.Error()
}

// replayCount is what a replay matched.
type replayCount struct{ matched, unverified int }

func (c *cli) auditReplay(ctx context.Context, o *replayOptions) error {
	if err := o.validate(); err != nil {
		return err
	}
	cp, key, err := c.checkpointAndKey(ctx, o.src)
	if err != nil {
		return err
	}
	oc, err := audit.OpenCheckpoint(cp, key)
	if err != nil {
		return err
	}
	rc, err := c.records(ctx, o.src)
	if err != nil {
		return err
	}
	defer rc.Close()

	rw := newReplayWriter(c.stdout, o.format)
	prog := newProgress(c.stderr, oc.Size, "records verified")
	var n replayCount
	rep, err := audit.ReplayExport(ctx, rc, cp, key, func(r audit.Record) error {
		prog.tick(r.Index + 1)
		return c.replayRecord(o, oc.Size, rw, &n, r)
	})
	flushErr := rw.flush()
	prog.done()
	if errors.Is(err, errUnverified) {
		return fmt.Errorf("replay stopped at record %d: %w", oc.Size, err)
	}
	if err != nil {
		return fmt.Errorf("replay stopped: the audit log does NOT verify (records above are not trustworthy): %w", err)
	}
	if flushErr != nil {
		return flushErr
	}
	return c.replaySummary(rep, n, o.exact)
}

// replayRecord handles one verified record: it marks the point where the
// checkpoint ends, filters, and prints.
func (c *cli) replayRecord(o *replayOptions, size uint64, rw *replayWriter, n *replayCount, r audit.Record) error {
	past := r.Index >= size // chained only: no checkpoint signed it
	if past && r.Index == size {
		if o.exact {
			return errUnverified
		}
		rw.cw.Flush()
		fmt.Fprintf(c.stderr, "UNVERIFIED from here: records from index %d on are past the checkpoint (size %d) and covered by no signature; they are marked unverified\n", size, size)
	}
	if !o.match(r) {
		return nil
	}
	n.matched++
	if past {
		n.unverified++
	}
	return rw.write(r, past)
}

// replaySummary says on stderr what the replay verified; with exact,
// anything past the checkpoint is a failure.
func (c *cli) replaySummary(rep audit.Report, n replayCount, exact bool) error {
	if rep.Unverified() == 0 && rep.TornBytes == 0 {
		fmt.Fprintf(c.stderr, "replayed %d records, %d matched; all verified against checkpoint size %d\n", rep.Records, n.matched, rep.Checkpoint.Size)
		return nil
	}
	fmt.Fprintf(c.stderr, "replayed %d records, %d matched; %d verified against checkpoint size %d, %d past it NOT verified (%d of them matched, marked unverified)\n",
		rep.Records, n.matched, rep.Verified(), rep.Checkpoint.Size, rep.Unverified(), n.unverified)
	if rep.TornBytes > 0 {
		fmt.Fprintf(c.stderr, "UNVERIFIED: %d bytes of an unterminated last line (not a record yet) were not replayed\n", rep.TornBytes)
	}
	if exact {
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
