// Command vaultd runs tenantvault: with no flags, an embedded Kafka-protocol
// broker on 127.0.0.1:9092, the HTTP API on 127.0.0.1:8080 and data in
// ./vault-data. Every flag also reads from a TENANTVAULT_* environment
// variable; see -help. --version prints the build and exits. `vaultd
// healthcheck` asks a running vaultd's /readyz (the container healthcheck
// of deploy/).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/tenantvault/tenantvault/internal/buildinfo"
	"github.com/tenantvault/tenantvault/internal/server"
)

func main() {
	if wantsVersion(os.Args[1:]) {
		fmt.Println(versionLine())
		return
	}
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "vaultd:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) > 0 && args[0] == "healthcheck" {
		return healthcheck(args[1:], os.Getenv, os.Stderr)
	}
	var s server.Server
	if err := s.Config.ParseFlags("vaultd", args, os.Getenv); err != nil {
		return err
	}
	s.Logger = newLogger(s.Config.LogLevel, s.Config.LogFormat)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := s.Open(ctx); err != nil {
		return err
	}
	err := s.Run(ctx)
	s.Logger.Info("shutting down")
	return errors.Join(err, s.Close())
}

func newLogger(level, format string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// wantsVersion reports whether args ask for the version: --version (or
// -version) before any "--". It is not one of the server's flags, so it
// reads no environment variable and starts nothing.
func wantsVersion(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "--version", "-version", "--version=true", "-version=true":
			return true
		}
	}
	return false
}

// versionLine is what vaultd --version prints.
func versionLine() string {
	return "vaultd " + buildinfo.Read().String()
}
