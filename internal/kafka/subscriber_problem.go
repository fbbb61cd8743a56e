package kafka

import (
	"context"
	"log/slog"
)

// problem logs a recurring failure at Warn the first time and at Debug
// while it lasts, so an unreachable broker does not flood the log.
type problem struct {
	log  *slog.Logger
	what string
	on   bool
}

func (p *problem) report(ctx context.Context, err error, args ...any) {
	lvl := slog.LevelWarn
	if p.on {
		lvl = slog.LevelDebug
	}
	p.on = true
	p.log.Log(ctx, lvl, "kafka subscriber: "+p.what, append(args, "err", err)...)
}

func (p *problem) resolved(ctx context.Context) {
	if p.on {
		p.log.Log(ctx, slog.LevelInfo, "kafka subscriber: "+p.what+": recovered")
	}
	p.on = false
}
