package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tenantvault/tenantvault/events"
)

// readConns is the read phase's concurrency: as many client goroutines,
// each making one request at a time over keep-alive connections.
const readConns = 16

// Reads is what the read phase measures: the vault's GETs of streams'
// state, and the same load against a bare net/http handler.
type Reads struct {
	Connections int
	Vault       ReadStats
	BareHTTP    ReadStats
	// Ratio is the vault's reads/s against the bare handler's.
	Ratio float64
}

// ReadStats are one read load's figures: the requests answered, over how
// long, their rate, the median and 99th-percentile latency, and the mean
// size of an answer's body.
type ReadStats struct {
	Reads                int
	Seconds, ReadsPerSec float64
	P50Ms, P99Ms         float64
	BodyBytes            int
}

// benchReads measures reads on the vault at base once its ingest is done:
// for c.readSeconds, readConns clients GET /v1/tenants/{t}/streams/{s}
// of a random tenant of tenants and a random stream among the first
// streams (s-0, ...) with the tenant's API token (tokens), each answer
// required to be 200. The vault audits every read durably before it
// answers: that is part of what is measured. Then the same load, for as
// long, against a bare net/http handler in the process, on 127.0.0.1,
// that answers every request with the body of one of the vault's answers.
func benchReads(ctx context.Context, c config, base string, tenants []events.TenantID, tokens map[events.TenantID]string, streams int) (_ *Reads, err error) {
	d := time.Duration(c.readSeconds * float64(time.Second))
	target := func(base string) func(*rand.Rand) (string, string) {
		return func(rng *rand.Rand) (url, token string) {
			t := tenants[rng.IntN(len(tenants))]
			return base + "/v1/tenants/" + string(t) + "/streams/s-" + strconv.Itoa(rng.IntN(streams)), tokens[t]
		}
	}
	// A typical answer, for the bare handler.
	rng := rand.New(rand.NewPCG(1, 2))
	url, token := target(base)(rng)
	body, err := get(ctx, http.DefaultClient, url, token)
	if err != nil {
		return nil, err
	}
	r := &Reads{Connections: readConns}
	if r.Vault, err = readLoad(ctx, d, target(base)); err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	bare := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- bare.Serve(ln) }()
	defer func() {
		if cerr := bare.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
	}()
	if r.BareHTTP, err = readLoad(ctx, d, target("http://"+ln.Addr().String())); err != nil {
		return nil, fmt.Errorf("bare handler: %w", err)
	}
	r.Ratio = r.Vault.ReadsPerSec / r.BareHTTP.ReadsPerSec
	return r, nil
}

// readLoad runs readConns clients for d, each making GETs of the URLs
// target picks, with the tokens it gives, one at a time over a shared
// transport that keeps readConns connections alive; any answer but 200
// fails it.
func readLoad(ctx context.Context, d time.Duration, target func(*rand.Rand) (url, token string)) (ReadStats, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: readConns, MaxConnsPerHost: readConns, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	lat := make([][]time.Duration, readConns)
	sizes := make([]int64, readConns)
	g, gctx := errgroup.WithContext(ctx)
	start := time.Now()
	deadline := start.Add(d)
	for i := range readConns {
		g.Go(func() error {
			rng := rand.New(rand.NewPCG(uint64(i), uint64(start.UnixNano())))
			for time.Now().Before(deadline) && gctx.Err() == nil {
				url, token := target(rng)
				t0 := time.Now()
				b, err := get(gctx, client, url, token)
				if err != nil {
					return err
				}
				lat[i] = append(lat[i], time.Since(t0))
				sizes[i] += int64(len(b))
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return ReadStats{}, err
	}
	elapsed := time.Since(start)
	all := slices.Concat(lat...)
	if len(all) == 0 {
		return ReadStats{}, errors.New("no read answered")
	}
	slices.Sort(all)
	var sum int64
	for _, b := range sizes {
		sum += b
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return ReadStats{
		Reads: len(all), Seconds: elapsed.Seconds(), ReadsPerSec: float64(len(all)) / elapsed.Seconds(),
		P50Ms: ms(percentile(all, 0.50)), P99Ms: ms(percentile(all, 0.99)), BodyBytes: int(sum / int64(len(all))),
	}, nil
}

// get GETs url with a bearer token through client and returns the body
// of the answer, which must be 200.
func get(ctx context.Context, client *http.Client, url, token string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d: %.200s", url, resp.StatusCode, b)
	}
	return b, nil
}

// percentile is the nearest-rank p-quantile (0 < p <= 1) of sorted, which
// is not empty.
func percentile[T any](sorted []T, p float64) T {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
