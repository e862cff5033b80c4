package tasks

import (
	"context"
	"log/slog"
	"time"
)

// notifications is a store listener (store.InsertListener,
// store.FinishedListener): Next returns each notification's payload, read
// as T.
type notifications[T any] interface {
	Next(ctx context.Context) (T, error)
	Close(ctx context.Context) error
}

// relisten keeps a listener open until ctx ends: it connects with open,
// pausing between failed tries from relistenMin doubling to relistenMax,
// calls connected (when not nil) each time it listens again, and hands
// every notification to handle. what names the listener in the log; while
// it is down, its users rely on their periodic recheck.
func relisten[T any](ctx context.Context, logger *slog.Logger, what string, open func(context.Context) (notifications[T], error), connected func(), handle func(T)) {
	pause := relistenMin
	for ctx.Err() == nil {
		l, err := open(ctx)
		if err != nil {
			if ctx.Err() == nil {
				logger.Warn(what+" cannot connect; its waiters rely on the periodic recheck",
					slog.String("error", err.Error()), slog.Duration("retry_in", pause))
			}
			select {
			case <-ctx.Done():
			case <-time.After(pause):
			}
			pause = min(2*pause, relistenMax)
			continue
		}
		pause = relistenMin
		if connected != nil {
			connected()
		}
		for {
			payload, err := l.Next(ctx)
			if err != nil {
				if ctx.Err() == nil {
					logger.Warn(what+" lost its connection; reconnecting", slog.String("error", err.Error()))
					select {
					case <-ctx.Done():
					case <-time.After(relistenMin):
					}
				}
				break
			}
			handle(payload)
		}
		_ = l.Close(context.WithoutCancel(ctx))
	}
}
