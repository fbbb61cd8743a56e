package server_test

import (
	"log/slog"
	"testing"
)

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(&logWriter{tb: tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
