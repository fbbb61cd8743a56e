package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/kafka"
	"github.com/tenantvault/tenantvault/vault"
	"github.com/tenantvault/tenantvault/vault/httpapi"
)

const (
	defaultAddr    = "http://127.0.0.1:8080"
	defaultDataDir = "./vault-data"
)

type cli struct {
	stdout, stderr io.Writer
	getenv         func(string) string

	// Global flags; empty means "not given": env() fills them in.
	addr, token, dataDir, breakGlass, output string

	// breakGlassHeader is the reason send states to the vault
	// (httpapi.BreakGlassHeader), set by tenantCredential when
	// --break-glass is given: the vault records it and flags the read.
	breakGlassHeader string
}

func (c *cli) env(name, def string) string {
	if v := c.getenv("TENANTVAULT_" + name); v != "" {
		return v
	}
	return def
}

// Errors callers and tests branch on.
var (
	// errNeedTenantToken: a tenant-data command without a tenant token.
	errNeedTenantToken = errors.New("this command reads a tenant's data: give the tenant's API token with --token or TENANTVAULT_TOKEN (the admin token is used here only with --break-glass REASON, which the vault records and alerts on as a break_glass read)")
	// errBadBreakGlass: a --break-glass reason that cannot be sent.
	errBadBreakGlass = fmt.Errorf("--break-glass REASON must be 1 to %d bytes of printable text (no control characters)", vault.MaxBreakGlassLen)
	// errNeedTenant: a tenant-data command without --tenant.
	errNeedTenant = errors.New("--tenant is required (or set TENANTVAULT_TENANT)")
)

// baseURL is --addr, else TENANTVAULT_ADDR, else the default; an address
// without a scheme is taken as http://.
func (c *cli) baseURL() (string, error) {
	addr := c.addr
	if addr == "" {
		addr = c.env("ADDR", defaultAddr)
	}
	return normalizeAddr(addr)
}

func normalizeAddr(addr string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("--addr / TENANTVAULT_ADDR %q: %s; want a URL like %s", addr, why, defaultAddr)
	}
	s := strings.TrimSpace(addr)
	if s == "" {
		return bad("empty")
	}
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return bad("not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return bad("the scheme must be http or https")
	}
	if u.Host == "" || u.Hostname() == "" {
		return bad("no host")
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return bad("no query, fragment or user info allowed")
	}
	return strings.TrimSuffix(u.String(), "/"), nil
}

func (c *cli) dataDirValue() string {
	if c.dataDir != "" {
		return c.dataDir
	}
	return c.env("DATA_DIR", defaultDataDir)
}

func (c *cli) tokenValue() string {
	if c.token != "" {
		return c.token
	}
	return c.env("TOKEN", "")
}

// adminCredential is the token of admin commands: --token /
// TENANTVAULT_TOKEN, else the admin token in the data dir.
func (c *cli) adminCredential() (string, error) {
	if t := c.tokenValue(); t != "" {
		return t, nil
	}
	return c.adminToken()
}

func (c *cli) adminToken() (string, error) {
	path := filepath.Join(c.dataDirValue(), "admin.token")
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("no token: set --token or TENANTVAULT_TOKEN, or run where %s exists (%w)", path, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// tenantCredential is the token of tenant-data commands: --token /
// TENANTVAULT_TOKEN; the admin token only with --break-glass REASON.
// With --break-glass the reason goes to the vault with every request
// (with --token too: the token may be an admin's), which records it in
// the audit log and raises a break_glass alert.
func (c *cli) tenantCredential() (string, error) {
	reason := strings.TrimSpace(c.breakGlass)
	if c.breakGlass != "" && !validBreakGlass(reason) {
		return "", errBadBreakGlass
	}
	c.breakGlassHeader = reason
	if t := c.tokenValue(); t != "" {
		return t, nil
	}
	if reason == "" {
		return "", errNeedTenantToken
	}
	tok, err := c.adminToken()
	if err != nil {
		return "", err
	}
	fmt.Fprintf(c.stderr, "break-glass: reading tenant data with the admin token (reason: %s); the vault records the reason and raises a break_glass alert\n", reason)
	return tok, nil
}

// validBreakGlass reports whether reason can travel in a header and the
// vault takes it: printable, at most vault.MaxBreakGlassLen bytes.
func validBreakGlass(reason string) bool {
	if reason == "" || len(reason) > vault.MaxBreakGlassLen || !utf8.ValidString(reason) {
		return false
	}
	for _, r := range reason {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// apiError is the API's error body.
type apiError struct {
	Status  int
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s (HTTP %d): %s", e.Code, e.Status, e.Message)
}

// send does one API request with token and returns the response, whose
// body the caller closes; an error status is returned as an error.
func (c *cli) send(ctx context.Context, token, method, path string, body []byte) (*http.Response, error) {
	base, err := c.baseURL()
	if err != nil {
		return nil, err
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if c.breakGlassHeader != "" {
		req.Header.Set(httpapi.BreakGlassHeader, c.breakGlassHeader)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, reachError(base, err)
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

// reachError says that vaultd is not reachable, without the raw dial
// error, when err is one; else it wraps err.
func reachError(base string, err error) error {
	var op *net.OpError
	var dns *net.DNSError
	if (errors.As(err, &op) && op.Op == "dial") || errors.As(err, &dns) {
		return fmt.Errorf("cannot reach vaultd at %s: is it running? (set --addr or TENANTVAULT_ADDR)", base)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("request to vaultd at %s: %w", base, err)
	}
	return fmt.Errorf("request to vaultd at %s failed: %w", base, err)
}

// request does one API request with token and returns the answer's bytes.
func (c *cli) request(ctx context.Context, token, method, path string, body any) ([]byte, error) {
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := c.send(ctx, token, method, path, b)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(io.LimitReader(resp.Body, 64<<20))
}

// adminRequest is request with the admin credential.
func (c *cli) adminRequest(ctx context.Context, method, path string, body any) ([]byte, error) {
	tok, err := c.adminCredential()
	if err != nil {
		return nil, err
	}
	return c.request(ctx, tok, method, path, body)
}

// call does one admin API request and decodes the JSON answer into out
// (if not nil).
func (c *cli) call(ctx context.Context, method, path string, body, out any) error {
	b, err := c.adminRequest(ctx, method, path, body)
	if err != nil || out == nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// show does one admin API request and prints the answer (-o).
func (c *cli) show(ctx context.Context, method, path string, body any) error {
	b, err := c.adminRequest(ctx, method, path, body)
	if err != nil {
		return err
	}
	return c.print(b)
}

// showTenantData GETs a tenant-data path with the tenant credential and
// prints the answer.
func (c *cli) showTenantData(ctx context.Context, path string) error {
	tok, err := c.tenantCredential()
	if err != nil {
		return err
	}
	b, err := c.request(ctx, tok, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	return c.print(b)
}

// print writes an API answer as -o says: the server's bytes, indented.
func (c *cli) print(b []byte) error {
	return printBody(c.stdout, c.output, b)
}

// checkOutput fails early on a wrong -o, before any request.
func (c *cli) checkOutput(*cobra.Command, []string) error {
	switch c.output {
	case outputJSON, outputYAML, outputTable:
		return nil
	}
	return fmt.Errorf("-o %q: want json, yaml or table", c.output)
}

func (c *cli) tenantCreateCmd() *cobra.Command {
	var recreate bool
	var k *kafkaConfigFlags
	cmd := &cobra.Command{
		Use:   "create ID",
		Short: "Create a tenant; prints its API token once (stdout) and its Kafka producer credential once",
		Long: `Create a tenant. Its API token is printed once on stdout; its Kafka producer
credential once, to --kafka-config FILE (0600, librdkafka properties for kcat -F)
or else to stderr. An id that was shredded is created again, empty and with new
keys, only with --recreate.`,
		Args: nArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.tenantCreate(cmd.Context(), args[0], recreate, k)
		},
	}
	cmd.Flags().BoolVar(&recreate, "recreate", false, "re-create an id that was shredded (empty, new keys)")
	k = c.kafkaFlags(cmd.Flags())
	return cmd
}

func (c *cli) tenantCreate(ctx context.Context, id string, recreate bool, k *kafkaConfigFlags) error {
	var out struct {
		ID    string           `json:"id"`
		Topic string           `json:"topic"`
		Token string           `json:"token"`
		Kafka *kafkaCredential `json:"kafka"`
	}
	if err := c.call(ctx, http.MethodPost, "/v1/tenants", map[string]any{"id": id, "recreate": recreate}, &out); err != nil {
		if !recreate && c.wasShredded(ctx, id, err) {
			return fmt.Errorf("tenant %s was shredded: to create the id again (empty, with new keys) run 'vaultctl tenant create %s --recreate' (%w)", id, id, err)
		}
		return err
	}
	fmt.Fprintf(c.stderr, "tenant %s created; its producers publish to topic %s. Its API token follows (stdout); it is shown only this once.\n", out.ID, out.Topic)
	if err := c.showKafkaCredential(out.ID, out.Kafka, k); err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, out.Token)
	return nil
}

// wasShredded reports whether a refused create of id failed because the id
// is a shredded tenant's: a conflict, and the tenant list says so.
func (c *cli) wasShredded(ctx context.Context, id string, err error) bool {
	var ae *apiError
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict {
		return false
	}
	var list struct {
		Tenants []struct {
			ID    string `json:"id"`
			State string `json:"state"`
		} `json:"tenants"`
	}
	if c.call(ctx, http.MethodGet, "/v1/tenants", nil, &list) != nil {
		return strings.Contains(ae.Message, "shredded")
	}
	for _, t := range list.Tenants {
		if t.ID == id {
			return t.State == "shredded"
		}
	}
	return false
}

func (c *cli) tenantListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List tenants (admin)",
		Args:    cobra.NoArgs,
		PreRunE: c.checkOutput,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.show(cmd.Context(), http.MethodGet, "/v1/tenants", nil)
		},
	}
}

func (c *cli) publishCmd() *cobra.Command {
	var p publishArgs
	var k *kafkaConfigFlags
	cmd := &cobra.Command{
		Use:   "publish --tenant T --stream S --type TYPE [--data JSON]",
		Short: "Publish one CloudEvent to tenant.T.events over Kafka, as the tenant's producer",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.publish(p, k)
		},
	}
	f := cmd.Flags()
	c.tenantFlag(cmd, &p.tenant)
	f.StringVar(&p.stream, "stream", "", "stream id: the CloudEvents subject and Kafka key (required)")
	f.StringVar(&p.typ, "type", "", "event type, e.g. order.placed (required)")
	f.StringVar(&p.data, "data", "", "event data, JSON")
	f.StringVar(&p.id, "id", "", "event id, the idempotency key (default: a new UUID)")
	f.StringVar(&p.source, "source", "vaultctl", "event source")
	k = c.kafkaFlags(f)
	return cmd
}

type publishArgs struct{ tenant, stream, typ, data, id, source string }

func (c *cli) publish(p publishArgs, k *kafkaConfigFlags) error {
	brokers, auth, err := k.resolve()
	if err != nil {
		return err
	}
	if p.tenant == "" {
		return errNeedTenant
	}
	t, err := events.ParseTenantID(p.tenant)
	if err != nil {
		return err
	}
	if p.stream == "" || p.typ == "" {
		return errors.New("publish: --stream and --type are required")
	}
	if p.id == "" {
		p.id = uuid.NewString()
	}
	e := events.Event{ID: p.id, Source: p.source, SpecVersion: events.SpecVersion, Type: p.typ, Subject: p.stream, Time: time.Now().UTC(), DataContentType: "application/json"}
	if p.data != "" {
		if !json.Valid([]byte(p.data)) {
			return errors.New("publish: --data is not valid JSON")
		}
		e.Data = json.RawMessage(p.data)
	}
	if err := e.Validate(); err != nil {
		return err
	}
	b, err := e.Encode()
	if err != nil {
		return err
	}
	pub, err := kafka.NewPublisher(kafka.PublisherConfig{Brokers: brokers, Auth: auth, WriteTimeout: 15 * time.Second})
	if err != nil {
		return err
	}
	defer pub.Close()
	msg := message.NewMessage(e.ID, b)
	msg.Metadata.Set(kafka.MetadataKey, e.Subject)
	msg.Metadata.Set("content-type", events.ContentTypeCloudEventsJSON)
	if err := pub.Publish(events.TopicFor(t), msg); err != nil {
		if auth.User == "" {
			return fmt.Errorf("publish: %w (the broker refuses clients that do not log in: give the tenant's Kafka credential with --kafka-config FILE, as 'vaultctl tenant create %s --kafka-config FILE' writes it)", err, t)
		}
		return fmt.Errorf("publish to %s as %s: %w", events.TopicFor(t), auth, err)
	}
	fmt.Fprintf(c.stdout, "published %s to %s\n", e.ID, events.TopicFor(t))
	return nil
}

// tenantFlag is --tenant, defaulting to TENANTVAULT_TENANT.
func (c *cli) tenantFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "tenant", c.env("TENANT", ""), "tenant id (TENANTVAULT_TENANT)")
}

// tenantPath is /v1/tenants/{tenant}: --tenant is required. The id is
// checked by the server, which audits a bad one.
func tenantPath(tenant string) (string, error) {
	if tenant == "" {
		return "", errNeedTenant
	}
	return "/v1/tenants/" + url.PathEscape(tenant), nil
}

// tenantDataCmd is a command that reads one tenant's data: --tenant and
// the tenant's token are required; path builds the request path.
func (c *cli) tenantDataCmd(cmd *cobra.Command, path func(base string, args []string) string) *cobra.Command {
	var tenant string
	c.tenantFlag(cmd, &tenant)
	cmd.PreRunE = c.checkOutput
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		base, err := tenantPath(tenant)
		if err != nil {
			return err
		}
		return c.showTenantData(cmd.Context(), path(base, args))
	}
	return cmd
}

func (c *cli) streamsCmd() *cobra.Command {
	var cursor string
	var limit int
	cmd := c.tenantDataCmd(&cobra.Command{
		Use:   "streams --tenant T",
		Short: "List a tenant's streams (the tenant's token)",
		Args:  cobra.NoArgs,
	}, func(base string, _ []string) string {
		q := url.Values{"limit": {strconv.Itoa(limit)}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		return base + "/streams?" + q.Encode()
	})
	cmd.Flags().StringVar(&cursor, "cursor", "", "continue from this cursor")
	cmd.Flags().IntVar(&limit, "limit", 100, "page size")
	return cmd
}

func (c *cli) getCmd() *cobra.Command {
	return c.tenantDataCmd(&cobra.Command{
		Use:   "get --tenant T STREAM",
		Short: "Current state of a stream (the tenant's token)",
		Long: `Current state of a stream, as the server sent it: -o json (the default) is
the server's bytes indented, numbers and key order untouched.`,
		Args: nArgs("STREAM"),
	}, func(base string, args []string) string {
		return base + "/streams/" + url.PathEscape(args[0])
	})
}

func (c *cli) eventsCmd() *cobra.Command {
	var after uint64
	var limit int
	cmd := c.tenantDataCmd(&cobra.Command{
		Use:   "events --tenant T STREAM",
		Short: "Event history of a stream (the tenant's token)",
		Args:  nArgs("STREAM"),
	}, func(base string, args []string) string {
		q := url.Values{"after": {strconv.FormatUint(after, 10)}, "limit": {strconv.Itoa(limit)}}
		return base + "/streams/" + url.PathEscape(args[0]) + "/events?" + q.Encode()
	})
	cmd.Flags().Uint64Var(&after, "after", 0, "only versions after this one")
	cmd.Flags().IntVar(&limit, "limit", 100, "page size")
	return cmd
}

func (c *cli) quarantineCmd() *cobra.Command {
	var limit int
	cmd := c.tenantDataCmd(&cobra.Command{
		Use:   "quarantine --tenant T",
		Short: "Rejected input of a tenant (the tenant's token)",
		Args:  cobra.NoArgs,
	}, func(base string, _ []string) string {
		return base + "/quarantine?limit=" + strconv.Itoa(limit)
	})
	cmd.Flags().IntVar(&limit, "limit", 100, "page size")
	return cmd
}

// auditListCmd lists audit records: the command "audit" itself (where
// an argument is a mistyped subcommand) and "audit list".
func (c *cli) auditListCmd(use, short string) *cobra.Command {
	var tenant, action, since, until, after string
	var flagged bool
	var limit int
	cmd := &cobra.Command{
		Use:     use,
		Short:   short,
		Args:    cobra.ArbitraryArgs,
		PreRunE: c.checkOutput,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return unknownSubcommand(cmd, args[0])
			}
			q := url.Values{"limit": {strconv.Itoa(limit)}}
			for k, v := range map[string]string{"tenant": tenant, "action": action, "since": since, "until": until, "after": after} {
				if v != "" {
					q.Set(k, v)
				}
			}
			if flagged {
				q.Set("flagged", "true")
			}
			return c.show(cmd.Context(), http.MethodGet, "/v1/audit?"+q.Encode(), nil)
		},
	}
	f := cmd.Flags()
	f.StringVar(&tenant, "tenant", "", "only records of this tenant")
	f.BoolVar(&flagged, "flagged", false, "only flagged records")
	f.StringVar(&action, "action", "", "only this action")
	f.StringVar(&since, "since", "", "only records at or after this RFC 3339 time")
	f.StringVar(&until, "until", "", "only records before this RFC 3339 time")
	f.StringVar(&after, "after", "", "only records after this index")
	f.IntVar(&limit, "limit", 100, "page size")
	return cmd
}
