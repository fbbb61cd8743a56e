package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"
)

// LogSink writes each alert as one structured slog line at Warn level.
type LogSink struct{ Logger *slog.Logger }

// Name implements Sink.
func (LogSink) Name() string { return "log" }

// Send implements Sink.
func (s LogSink) Send(ctx context.Context, a Alert) error {
	s.Logger.LogAttrs(ctx, slog.LevelWarn, "tenant boundary violation",
		slog.String("alert", "boundary"), slog.Uint64("index", a.Index), slog.String("violation", a.Violation),
		slog.String("reason", a.Reason), slog.String("principal", string(a.Principal)), slog.String("tenant", a.Tenant),
		slog.String("action", string(a.Action)), slog.String("outcome", string(a.Outcome)))
	return nil
}

// WebhookSink POSTs each alert as JSON to URL, retrying failures (network
// errors, 5xx, 429) with exponential backoff.
type WebhookSink struct {
	URL         string
	Client      *http.Client  // default: 5 s timeout
	MaxAttempts int           // default 8
	Backoff     time.Duration // first retry delay, doubled each time up to 30 s; default 200ms
}

// Name implements Sink.
func (WebhookSink) Name() string { return "webhook" }

// Send implements Sink.
func (s WebhookSink) Send(ctx context.Context, a Alert) error {
	client, attempts, backoff := s.Client, s.MaxAttempts, s.Backoff
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	if attempts <= 0 {
		attempts = 8
	}
	if backoff <= 0 {
		backoff = 200 * time.Millisecond
	}
	body, err := json.Marshal(a)
	if err != nil {
		return err
	}
	var last error
	for i := 0; i < attempts; i++ {
		if i > 0 {
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
			backoff = min(2*backoff, 30*time.Second)
		}
		last = s.post(ctx, client, body)
		if last == nil || errors.Is(last, ErrPermanent) {
			return last
		}
	}
	return fmt.Errorf("webhook: %d attempts: %w", attempts, last)
}

func (s WebhookSink) post(ctx context.Context, client *http.Client, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrPermanent, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "tenantvault-alerts")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode < 300:
		return nil
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout:
		return fmt.Errorf("webhook answered %d", resp.StatusCode)
	default:
		return fmt.Errorf("%w: webhook answered %d", ErrPermanent, resp.StatusCode)
	}
}

// KafkaSink publishes each alert as JSON to a Kafka topic, keyed by tenant.
type KafkaSink struct {
	Topic   string // default "vault.alerts"
	Publish func(ctx context.Context, topic string, key, value []byte) error
}

// DefaultAlertTopic is the Kafka topic of alerts.
const DefaultAlertTopic = "vault.alerts"

// Name implements Sink.
func (KafkaSink) Name() string { return "kafka" }

// Send implements Sink.
func (s KafkaSink) Send(ctx context.Context, a Alert) error {
	topic := s.Topic
	if topic == "" {
		topic = DefaultAlertTopic
	}
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return s.Publish(ctx, topic, []byte(a.Tenant), b)
}
