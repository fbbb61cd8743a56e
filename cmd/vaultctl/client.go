package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/kafka"
)

type cli struct {
	stdout, stderr io.Writer
	getenv         func(string) string

	addr, token, dataDir string
}

// flags returns a flag set with the common flags.
func (c *cli) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("vaultctl "+name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.StringVar(&c.addr, "addr", c.env("ADDR", "http://127.0.0.1:8080"), "vaultd API base URL")
	fs.StringVar(&c.token, "token", c.env("TOKEN", ""), "bearer token (default: the admin token in <data-dir>/admin.token)")
	fs.StringVar(&c.dataDir, "data-dir", c.env("DATA_DIR", "./vault-data"), "vaultd data directory, to find admin.token")
	return fs
}

func (c *cli) env(name, def string) string {
	if v := c.getenv("TENANTVAULT_" + name); v != "" {
		return v
	}
	return def
}

// parse parses args, allowing flags after positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func (c *cli) credential() (string, error) {
	if c.token != "" {
		return c.token, nil
	}
	b, err := os.ReadFile(filepath.Join(c.dataDir, "admin.token"))
	if err != nil {
		return "", fmt.Errorf("no token: set --token or TENANTVAULT_TOKEN, or run where %s exists (%w)", filepath.Join(c.dataDir, "admin.token"), err)
	}
	return strings.TrimSpace(string(b)), nil
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

// call does one API request and decodes the JSON answer into out (if not nil).
func (c *cli) call(ctx context.Context, method, path string, body, out any) error {
	tok, err := c.credential()
	if err != nil {
		return err
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.addr, "/")+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error apiError `json:"error"`
		}
		if json.Unmarshal(b, &e) != nil || e.Error.Code == "" {
			return fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, b)
		}
		e.Error.Status = resp.StatusCode
		return &e.Error
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

func (c *cli) print(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (c *cli) tenantCreate(ctx context.Context, args []string) error {
	fs := c.flags("tenant create")
	recreate := fs.Bool("recreate", false, "re-create an id that was shredded (empty, new keys)")
	k := c.kafkaFlags(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: vaultctl tenant create ID [--kafka-config FILE]")
	}
	var out struct {
		ID    string           `json:"id"`
		Topic string           `json:"topic"`
		Token string           `json:"token"`
		Kafka *kafkaCredential `json:"kafka"`
	}
	if err := c.call(ctx, http.MethodPost, "/v1/tenants", map[string]any{"id": pos[0], "recreate": *recreate}, &out); err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, "tenant %s created; its producers publish to topic %s. Its API token follows (stdout); it is shown only this once.\n", out.ID, out.Topic)
	if err := c.showKafkaCredential(out.ID, out.Kafka, k); err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, out.Token)
	return nil
}

func (c *cli) tenantList(ctx context.Context, args []string) error {
	if _, err := parse(c.flags("tenant list"), args); err != nil {
		return err
	}
	var out any
	if err := c.call(ctx, http.MethodGet, "/v1/tenants", nil, &out); err != nil {
		return err
	}
	return c.print(out)
}

func (c *cli) publish(ctx context.Context, args []string) error {
	fs := c.flags("publish")
	tenant := fs.String("tenant", "", "tenant id (required)")
	stream := fs.String("stream", "", "stream id: the CloudEvents subject and Kafka key (required)")
	typ := fs.String("type", "", "event type, e.g. order.placed (required)")
	data := fs.String("data", "", "event data, JSON")
	id := fs.String("id", "", "event id, the idempotency key (default: a new UUID)")
	source := fs.String("source", "vaultctl", "event source")
	k := c.kafkaFlags(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	brokers, auth, err := k.resolve()
	if err != nil {
		return err
	}
	t, err := events.ParseTenantID(*tenant)
	if err != nil {
		return err
	}
	if *stream == "" || *typ == "" {
		return errors.New("publish: --stream and --type are required")
	}
	if *id == "" {
		*id = uuid.NewString()
	}
	e := events.Event{ID: *id, Source: *source, SpecVersion: events.SpecVersion, Type: *typ, Subject: *stream, Time: time.Now().UTC(), DataContentType: "application/json"}
	if *data != "" {
		if !json.Valid([]byte(*data)) {
			return errors.New("publish: --data is not valid JSON")
		}
		e.Data = json.RawMessage(*data)
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

func (c *cli) tenantFlag(fs *flag.FlagSet) *string {
	return fs.String("tenant", c.env("TENANT", ""), "tenant id (TENANTVAULT_TENANT)")
}

func (c *cli) streams(ctx context.Context, args []string) error {
	fs := c.flags("streams")
	tenant := c.tenantFlag(fs)
	cursor := fs.String("cursor", "", "continue from this cursor")
	limit := fs.Int("limit", 100, "page size")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	var out any
	q := url.Values{"limit": {strconv.Itoa(*limit)}}
	if *cursor != "" {
		q.Set("cursor", *cursor)
	}
	if err := c.call(ctx, http.MethodGet, "/v1/tenants/"+url.PathEscape(*tenant)+"/streams?"+q.Encode(), nil, &out); err != nil {
		return err
	}
	return c.print(out)
}

func (c *cli) get(ctx context.Context, args []string) error {
	fs := c.flags("get")
	tenant := c.tenantFlag(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: vaultctl get --tenant T STREAM")
	}
	var out any
	if err := c.call(ctx, http.MethodGet, "/v1/tenants/"+url.PathEscape(*tenant)+"/streams/"+url.PathEscape(pos[0]), nil, &out); err != nil {
		return err
	}
	return c.print(out)
}

func (c *cli) events(ctx context.Context, args []string) error {
	fs := c.flags("events")
	tenant := c.tenantFlag(fs)
	after := fs.Uint64("after", 0, "only versions after this one")
	limit := fs.Int("limit", 100, "page size")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: vaultctl events --tenant T STREAM")
	}
	q := url.Values{"after": {strconv.FormatUint(*after, 10)}, "limit": {strconv.Itoa(*limit)}}
	var out any
	if err := c.call(ctx, http.MethodGet, "/v1/tenants/"+url.PathEscape(*tenant)+"/streams/"+url.PathEscape(pos[0])+"/events?"+q.Encode(), nil, &out); err != nil {
		return err
	}
	return c.print(out)
}

func (c *cli) quarantine(ctx context.Context, args []string) error {
	fs := c.flags("quarantine")
	tenant := c.tenantFlag(fs)
	limit := fs.Int("limit", 100, "page size")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	var out any
	if err := c.call(ctx, http.MethodGet, "/v1/tenants/"+url.PathEscape(*tenant)+"/quarantine?limit="+strconv.Itoa(*limit), nil, &out); err != nil {
		return err
	}
	return c.print(out)
}

func (c *cli) audit(ctx context.Context, args []string) error {
	fs := c.flags("audit")
	tenant := fs.String("tenant", "", "only records of this tenant")
	flagged := fs.Bool("flagged", false, "only flagged records")
	action := fs.String("action", "", "only this action")
	since := fs.String("since", "", "only records at or after this RFC 3339 time")
	until := fs.String("until", "", "only records before this RFC 3339 time")
	after := fs.String("after", "", "only records after this index")
	limit := fs.Int("limit", 100, "page size")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	q := url.Values{"limit": {strconv.Itoa(*limit)}}
	for k, v := range map[string]string{"tenant": *tenant, "action": *action, "since": *since, "until": *until, "after": *after} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if *flagged {
		q.Set("flagged", "true")
	}
	var out any
	if err := c.call(ctx, http.MethodGet, "/v1/audit?"+q.Encode(), nil, &out); err != nil {
		return err
	}
	return c.print(out)
}
