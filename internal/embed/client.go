package embed

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"
)

// maxDim is the largest dimension an embedder may answer
// (events.MaxEmbeddingDim; not imported, to keep this a leaf).
const maxDim = 4096

// maxResponseBytes bounds an embeddings response.
const maxResponseBytes = 64 << 20

// Client calls an OpenAI-compatible embeddings endpoint: POST URL with
// {"model", "input": [texts], "encoding_format": "float"}, answered with
// {"data": [{"index", "embedding": [...]}]}. Failures of the endpoint
// (connection, 429, 5xx) are retried Retries times with exponential
// backoff; any other answer fails at once.
type Client struct {
	URL    string // the endpoint: http(s)://host/v1/embeddings
	Model  string // the request's model; may be empty for servers that serve one
	APIKey string // sent as a bearer token when set
	// HTTP is the client used; default one with a 30 s timeout.
	HTTP *http.Client
	// Retries is how many times a failed call is retried (default 2;
	// negative: none), waiting Backoff (default 200 ms), then twice
	// that, and so on.
	Retries int
	Backoff time.Duration
}

// String names the client without its key.
func (c *Client) String() string { return "embedder " + c.URL }

// ErrUnavailable is a call that failed after its retries (the endpoint
// unreachable, or answering 429 or 5xx).
var ErrUnavailable = errors.New("embed: embedder unavailable")

// Embed returns the embedding of each text, in order.
func (c *Client) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	if len(texts) == 0 {
		return nil, nil
	}
	body, err := json.Marshal(struct {
		Model  string   `json:"model,omitempty"`
		Input  []string `json:"input"`
		Format string   `json:"encoding_format"`
	}{c.Model, texts, "float"})
	if err != nil {
		return nil, fmt.Errorf("embed: encode request: %w", err)
	}
	retries, backoff := c.Retries, c.Backoff
	if retries == 0 {
		retries = 2
	}
	if backoff <= 0 {
		backoff = 200 * time.Millisecond
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	var last error
	for attempt := 0; attempt <= max(retries, 0); attempt++ {
		if attempt > 0 {
			t := time.NewTimer(backoff << (attempt - 1))
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, ctx.Err()
			case <-t.C:
			}
		}
		vs, retry, err := c.call(ctx, hc, body, len(texts))
		if err == nil {
			return vs, nil
		}
		if !retry || ctx.Err() != nil {
			return nil, err
		}
		last = err
	}
	return nil, fmt.Errorf("%w: %w", ErrUnavailable, last)
}

// call makes one request; retry reports whether a failure may pass.
func (c *Client) call(ctx context.Context, hc *http.Client, body []byte, n int) (_ [][]float32, retry bool, _ error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(body))
	if err != nil {
		return nil, false, fmt.Errorf("embed: request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.APIKey)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, true, errors.New("embed: the embedder did not answer") // the error may quote the URL's query; the key is in a header
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, true, errors.New("embed: reading the embedder's answer failed")
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return nil, true, fmt.Errorf("embed: the embedder answered %d", resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return nil, false, fmt.Errorf("embed: the embedder answered %d", resp.StatusCode)
	case len(b) > maxResponseBytes:
		return nil, false, fmt.Errorf("embed: the embedder's answer is over %d bytes", maxResponseBytes)
	}
	vs, err := ParseResponse(b, n)
	return vs, false, err
}

// ParseResponse reads an OpenAI-compatible embeddings answer for n
// inputs: n embeddings, each input's at its index, all of one dimension
// (1..4096) of finite float32 values. The error never quotes the input.
func ParseResponse(b []byte, n int) ([][]float32, error) {
	var r struct {
		Data []struct {
			Index     *int      `json:"index"`
			Embedding []float64 `json:"embedding"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, errors.New("embed: the embedder's answer is not an embeddings JSON object")
	}
	if len(r.Data) != n {
		return nil, fmt.Errorf("embed: the embedder answered %d embeddings for %d texts", len(r.Data), n)
	}
	out := make([][]float32, n)
	dim := -1
	for i, d := range r.Data {
		at := i
		if d.Index != nil {
			at = *d.Index
		}
		if at < 0 || at >= n || out[at] != nil {
			return nil, errors.New("embed: the embedder's answer has a bad or repeated index")
		}
		if len(d.Embedding) == 0 || len(d.Embedding) > maxDim || (dim >= 0 && len(d.Embedding) != dim) {
			return nil, errors.New("embed: the embedder's embeddings are empty, too long or of different dimensions")
		}
		dim = len(d.Embedding)
		v := make([]float32, dim)
		for j, x := range d.Embedding {
			if math.IsNaN(x) || math.Abs(x) > math.MaxFloat32 {
				return nil, errors.New("embed: the embedder's embedding holds a value out of float32 range")
			}
			v[j] = float32(x)
		}
		out[at] = v
	}
	return out, nil
}

// Parse returns the embedder of vaultd's --embedder value: "" is none
// (nil), "hash:N" the Hash embedder of N dimensions, an http:// or
// https:// URL a Client of model with apiKey ("/v1/embeddings" is added to
// a URL whose path does not end in "/embeddings").
func Parse(spec, model, apiKey string) (Embedder, error) {
	switch {
	case spec == "":
		return nil, nil
	case len(spec) > 5 && spec[:5] == "hash:":
		n, err := strconv.Atoi(spec[5:])
		if err != nil || n < 1 || n > maxDim {
			return nil, fmt.Errorf("embed: %q: want hash:N with N from 1 to %d", spec, maxDim)
		}
		return Hash{Dim: n}, nil
	}
	u, err := parseURL(spec)
	if err != nil {
		return nil, err
	}
	return &Client{URL: u, Model: model, APIKey: apiKey}, nil
}

// Embedder is what Parse returns (vault.Embedder has the same method).
type Embedder interface {
	Embed(ctx context.Context, texts []string) ([][]float32, error)
}

var (
	_ Embedder = Hash{}
	_ Embedder = (*Client)(nil)
)
