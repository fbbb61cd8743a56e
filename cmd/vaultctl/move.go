package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// importKeyJSON is GET /v1/import-key's answer.
type importKeyJSON struct {
	Keyset      json.RawMessage `json:"keyset"`
	Fingerprint string          `json:"fingerprint"`
}

func (c *cli) tenantImportKeyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "import-key",
		Short: "Print this vault's public import key (for `tenant export --to FILE` on a source vault)",
		Args:  nArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			base, err := c.baseURL()
			if err != nil {
				return err
			}
			k, err := fetchImportKey(cmd.Context(), base)
			if err != nil {
				return err
			}
			b, _ := json.MarshalIndent(k, "", "  ")
			_, err = fmt.Fprintf(c.stdout, "%s\n", b)
			return err
		},
	}
}

// fetchImportKey reads GET base/v1/import-key (public).
func fetchImportKey(ctx context.Context, base string) (importKeyJSON, error) {
	var k importKeyJSON
	b, err := publicGet(ctx, base, "/v1/import-key")
	if err != nil {
		return k, fmt.Errorf("import key of %s: %w", base, err)
	}
	if err := json.Unmarshal(b, &k); err != nil || len(k.Keyset) == 0 {
		return k, fmt.Errorf("import key of %s: not an import key answer", base)
	}
	return k, nil
}

// fetchPublicKey reads GET base/v1/audit/public-key (public).
func fetchPublicKey(ctx context.Context, base string) (string, error) {
	b, err := publicGet(ctx, base, "/v1/audit/public-key")
	if err != nil {
		return "", fmt.Errorf("audit public key of %s: %w", base, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func publicGet(ctx context.Context, base, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, reachError(base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, b)
	}
	return b, nil
}

// importKeyFrom reads the destination's import key from to: a vaultd URL
// (GET /v1/import-key there), or a file `vaultctl tenant import-key` wrote.
func importKeyFrom(ctx context.Context, to string) (importKeyJSON, error) {
	if to == "" {
		return importKeyJSON{}, errors.New("--to is required: the destination vault's address, or a file of its import key (vaultctl tenant import-key)")
	}
	if strings.HasPrefix(to, "http://") || strings.HasPrefix(to, "https://") {
		return fetchImportKey(ctx, strings.TrimRight(to, "/"))
	}
	b, err := os.ReadFile(to)
	if err != nil {
		return importKeyJSON{}, fmt.Errorf("--to %s: not a URL (http:// or https://), and %w", to, err)
	}
	var k importKeyJSON
	if err := json.Unmarshal(b, &k); err != nil || len(k.Keyset) == 0 {
		return importKeyJSON{}, fmt.Errorf("--to %s is not an import key file (vaultctl tenant import-key writes one)", to)
	}
	return k, nil
}

func (c *cli) tenantExportCmd() *cobra.Command {
	var to, out string
	cmd := &cobra.Command{
		Use:   "export ID --to DEST > ID.tvbundle",
		Short: "Export a tenant's bundle (tenantvault-bundle/v1), its keyset encrypted to DEST's import key; freezes its ingest here (admin)",
		Long: `Export a tenant's bundle: its store as sealed records, its keyset encrypted
(HPKE) to the destination's import key, its consumer offsets and its audit
records with inclusion proofs, signed by this vault. DEST is the destination
vault's address (its GET /v1/import-key is read) or a file written there by
vaultctl tenant import-key. The tenant's ingest stops here until the move
ends (vaultctl tenant move, or POST /v1/tenants/ID/moved) or is given up
(POST /v1/tenants/ID/export/thaw). A progress line is drawn on a terminal.`,
		Args: nArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			k, err := importKeyFrom(cmd.Context(), to)
			if err != nil {
				return err
			}
			w := c.stdout
			if out != "" && out != "-" {
				f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
				if err != nil {
					return err
				}
				defer f.Close()
				w = f
			}
			n, err := c.exportTo(cmd.Context(), id, k, w)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.stderr, "exported %s: %d records\n", id, n)
			return nil
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "destination vault address, or its import key file")
	cmd.Flags().StringVar(&out, "out", "", "write the bundle to this new file instead of stdout")
	return cmd
}

// exportTo streams the export of id into w and returns the records.
func (c *cli) exportTo(ctx context.Context, id string, k importKeyJSON, w io.Writer) (uint64, error) {
	tok, err := c.adminCredential()
	if err != nil {
		return 0, err
	}
	path := "/v1/tenants/" + url.PathEscape(id) + "/export?import_key=" + base64.RawURLEncoding.EncodeToString(k.Keyset)
	resp, err := c.send(ctx, tok, http.MethodGet, path, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	prog := newProgress(c.stderr, 0, "records exported")
	fc := &frameCounter{prog: prog}
	_, err = io.Copy(w, io.TeeReader(resp.Body, fc))
	prog.done()
	if err != nil {
		return fc.records, fmt.Errorf("export %s: %w", id, err)
	}
	if !fc.signed() {
		return fc.records, fmt.Errorf("export %s: the bundle is cut short (the source failed midway: see its log and audit)", id)
	}
	return fc.records, nil
}

func (c *cli) tenantImportCmd() *cobra.Command {
	var sourceKey, from string
	cmd := &cobra.Command{
		Use:   "import FILE --from SOURCE | --source-key KEY",
		Short: "Import a tenant from a bundle, verified whole before anything is written (admin)",
		Long: `Import a tenant from a bundle (FILE, or - for stdin) into the vault at --addr.
The bundle must be signed by the source vault: give its address (--from, whose
GET /v1/audit/public-key is read) or its audit public key (--source-key). The
vault verifies the signature, hashes, counts, records root and audit proofs,
and opens sealed values with the keyset before anything is written; then it
consumes the tenant's topic from the bundle's offsets.`,
		Args:    nArgs("FILE"),
		PreRunE: c.checkOutput,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			key, err := sourceKeyFrom(ctx, sourceKey, from)
			if err != nil {
				return err
			}
			var rd io.Reader = os.Stdin
			var size int64
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				if fi, err := f.Stat(); err == nil {
					size = fi.Size()
				}
				rd = f
			}
			prog := newProgress(c.stderr, uint64(size), "bytes sent")
			b, err := c.importFrom(ctx, &progressReader{r: rd, prog: prog}, key)
			prog.done()
			if err != nil {
				return err
			}
			return c.print(b)
		},
	}
	cmd.Flags().StringVar(&sourceKey, "source-key", "", "the source vault's audit public key")
	cmd.Flags().StringVar(&from, "from", "", "the source vault's address (its audit public key is read there)")
	return cmd
}

func sourceKeyFrom(ctx context.Context, key, from string) (string, error) {
	switch {
	case key != "":
		return key, nil
	case from != "":
		return fetchPublicKey(ctx, strings.TrimRight(from, "/"))
	}
	return "", errors.New("--from SOURCE or --source-key KEY is required: the bundle must be signed by the vault it came from")
}

// importFrom posts a bundle to the vault at --addr.
func (c *cli) importFrom(ctx context.Context, rd io.Reader, sourceKey string) ([]byte, error) {
	tok, err := c.adminCredential()
	if err != nil {
		return nil, err
	}
	base, err := c.baseURL()
	if err != nil {
		return nil, err
	}
	return postBundle(ctx, base, tok, rd, sourceKey)
}

func postBundle(ctx context.Context, base, tok string, rd io.Reader, sourceKey string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/tenants/import?source_key="+url.QueryEscape(sourceKey), rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/vnd.tenantvault.bundle.v1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, reachError(base, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 300 {
		var e struct {
			Error apiError `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error.Code != "" {
			e.Error.Status = resp.StatusCode
			return nil, &e.Error
		}
		return nil, fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, b)
	}
	return b, nil
}

func (c *cli) tenantMoveCmd() *cobra.Command {
	var to, toToken string
	cmd := &cobra.Command{
		Use:   "move ID --to DEST",
		Short: "Move a tenant to the vault at DEST: export, import there, then end it here (admin of both)",
		Long: `Move a tenant from the vault at --addr (the source) to the vault at --to (the
destination, on the same Kafka cluster): it exports the tenant's bundle,
streams it into the destination's import (which verifies all of it before
writing anything, and consumes the tenant's topic from the bundle's offsets),
and, once the destination answered, tells the source the tenant moved
(POST /v1/tenants/ID/moved with the manifest hash the destination
imported): the source destroys its keys, removes its store and answers 410
(reason moved) from then on. The destination's admin token is --to-token
or TENANTVAULT_TO_TOKEN. If the import fails, the source keeps the tenant,
frozen: move again, or thaw it (POST /v1/tenants/ID/export/thaw).`,
		Args:    nArgs("ID"),
		PreRunE: c.checkOutput,
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.move(cmd.Context(), args[0], to, toToken)
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "destination vault address")
	cmd.Flags().StringVar(&toToken, "to-token", "", "destination admin token (TENANTVAULT_TO_TOKEN)")
	return cmd
}

func (c *cli) move(ctx context.Context, id, to, toToken string) error {
	to, err := normalizeAddr(to)
	if err != nil || to == "" {
		return errors.New("--to is required: the destination vault's address")
	}
	if toToken == "" {
		toToken = c.getenv("TENANTVAULT_TO_TOKEN")
	}
	if toToken == "" {
		return errors.New("--to-token (or TENANTVAULT_TO_TOKEN) is required: the destination's admin token")
	}
	src, err := c.baseURL()
	if err != nil {
		return err
	}
	k, err := fetchImportKey(ctx, to)
	if err != nil {
		return err
	}
	srcKey, err := fetchPublicKey(ctx, src)
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	exported := make(chan error, 1)
	go func() {
		_, err := c.exportTo(ctx, id, k, pw)
		pw.CloseWithError(err)
		exported <- err
	}()
	b, ierr := postBundle(ctx, to, toToken, pr, srcKey)
	pr.CloseWithError(errors.New("import ended"))
	eerr := <-exported
	if ierr != nil {
		return fmt.Errorf("move %s: import at %s: %w (export: %v); the source keeps the tenant, frozen", id, to, ierr, eerr)
	}
	var res struct {
		ManifestSHA256 string `json:"manifest_sha256"`
	}
	if err := json.Unmarshal(b, &res); err != nil || res.ManifestSHA256 == "" {
		return fmt.Errorf("move %s: the destination's answer names no manifest", id)
	}
	moved, err := c.adminRequest(ctx, http.MethodPost, "/v1/tenants/"+url.PathEscape(id)+"/moved",
		map[string]string{"destination": to, "manifest_sha256": res.ManifestSHA256})
	if err != nil {
		return fmt.Errorf("move %s: imported at %s, but the source did not end it (repeat: POST /v1/tenants/%s/moved): %w", id, to, id, err)
	}
	out, _ := json.Marshal(map[string]json.RawMessage{"imported": b, "moved": bytes.TrimSpace(moved)})
	return c.print(out)
}

// progressReader ticks a progress with the bytes read.
type progressReader struct {
	r    io.Reader
	n    uint64
	prog *progress
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += uint64(n)
	p.prog.tick(p.n)
	return n, err
}

// frameCounter follows a bundle's frames as its bytes pass, counting the
// records, for the progress line; it knows where a frame starts, not
// whether the bundle verifies (the importer checks that).
type frameCounter struct {
	prog    *progress
	state   int    // 0: the first line, 1: a kind, 2: a length, 3: a payload
	kind    byte   // the current frame's
	lenBuf  []byte // its uvarint length, as it arrives
	skip    uint64 // payload bytes still to pass
	records uint64
	last    byte // kind of the last frame begun
}

func (f *frameCounter) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		switch f.state {
		case 0:
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				return n, nil
			}
			b, f.state = b[i+1:], 1
		case 1:
			f.kind, b, f.state = b[0], b[1:], 2
		case 2:
			f.lenBuf, b = append(f.lenBuf, b[0]), b[1:]
			if f.lenBuf[len(f.lenBuf)-1] < 0x80 {
				f.skip, _ = binary.Uvarint(f.lenBuf)
				f.lenBuf, f.last, f.state = f.lenBuf[:0], f.kind, 3
				if f.kind == 'R' {
					f.records++
					f.prog.tick(f.records)
				}
				if f.skip == 0 {
					f.state = 1
				}
			}
		case 3:
			k := min(uint64(len(b)), f.skip)
			b, f.skip = b[k:], f.skip-k
			if f.skip == 0 {
				f.state = 1
			}
		}
	}
	return n, nil
}

// signed reports whether the bundle ended right after its signature.
func (f *frameCounter) signed() bool { return f.last == 'S' && f.state == 1 }
