package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// healthcheck is `vaultd healthcheck [--url URL] [--timeout D]`: it asks
// a running vaultd's /readyz and succeeds only on 200. It is the
// container healthcheck of deploy/ (the distroless image has no curl or
// shell). Without --url it asks http://<TENANTVAULT_HTTP_ADDR>/readyz, a
// wildcard host (0.0.0.0, ::, empty) asked on the loopback; default
// 127.0.0.1:8080. It sends no credential and prints nothing on success.
func healthcheck(args []string, getenv func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet("vaultd healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	u := fs.String("url", "", "readiness URL to ask (default http://<TENANTVAULT_HTTP_ADDR>/readyz, a wildcard host asked on 127.0.0.1)")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("healthcheck takes no arguments, got %q", fs.Args())
	}
	target := *u
	if target == "" {
		var err error
		if target, err = readyzURL(getenv("TENANTVAULT_HTTP_ADDR")); err != nil {
			return err
		}
	}
	if p, err := url.Parse(target); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return fmt.Errorf("healthcheck: --url %q is not an http(s) URL", target)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %s: %w", target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s: %s", target, resp.Status, body)
	}
	return nil
}

// readyzURL is the /readyz URL of a vaultd listening on addr
// (--http-addr); "" is the default 127.0.0.1:8080.
func readyzURL(addr string) (string, error) {
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("healthcheck: TENANTVAULT_HTTP_ADDR %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	if port == "" || port == "0" {
		return "", errors.New("healthcheck: TENANTVAULT_HTTP_ADDR has no fixed port: give --url")
	}
	return "http://" + net.JoinHostPort(host, port) + "/readyz", nil
}
