package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/taskd/taskd/internal/jobs"
	"github.com/taskd/taskd/internal/kinds/builtin"
)

// taskdPoolSize is taskd's default --db-max-conns; bare River gets a pool
// of the same size.
const taskdPoolSize = 20

// fetchSettings are a River client's FetchCooldown and FetchPollInterval.
type fetchSettings struct {
	Name              string
	FetchCooldown     time.Duration
	FetchPollInterval time.Duration
}

var (
	taskdFetch = fetchSettings{"taskd settings", jobs.FetchCooldownDefault, jobs.FetchPollIntervalDefault}
	riverFetch = fetchSettings{"River defaults", river.FetchCooldownDefault, river.FetchPollIntervalDefault}
)

// bareRiver is River with nothing of taskd's around it: the same "double"
// worker (builtin.DoubleWorker, which records its output), the same default
// queue size and fetch settings, and the same insert options; no HTTP, no
// attempt-recording middleware, no heartbeats.
type bareRiver struct {
	pool   *pgxpool.Pool
	client *river.Client[pgx.Tx]
}

// newBareRiver configures bare River on dbURL; start runs its workers.
func newBareRiver(ctx context.Context, dbURL string, fetch fetchSettings) (*bareRiver, error) {
	pool, err := newPool(ctx, dbURL, taskdPoolSize)
	if err != nil {
		return nil, err
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, &builtin.DoubleWorker{})
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Logger:            slog.New(slog.DiscardHandler),
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: jobs.QueueDefaultWorkers}},
		Workers:           workers,
		MaxAttempts:       jobs.MaxAttemptsDefault,
		JobTimeout:        jobs.JobTimeoutDefault,
		FetchCooldown:     fetch.FetchCooldown,
		FetchPollInterval: fetch.FetchPollInterval,
	})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("configuring River client: %w", err)
	}
	return &bareRiver{pool: pool, client: client}, nil
}

func (r *bareRiver) start(ctx context.Context) error {
	return r.client.Start(ctx)
}

func (r *bareRiver) close(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	err := r.client.Stop(ctx)
	r.pool.Close()
	return err
}

// insertOpts are the options taskd gives a "double" submission with no
// options of its own (jobs.Client.prepare).
func insertOpts() *river.InsertOpts {
	return &river.InsertOpts{Queue: river.QueueDefault, MaxAttempts: jobs.MaxAttemptsDefault, Priority: 1}
}

// insertOne inserts one job in its own transaction, as taskd's Submit does.
func (r *bareRiver) insertOne(ctx context.Context, value float64) error {
	return pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		_, err := r.client.InsertTx(ctx, tx, builtin.DoubleArgs{Value: value}, insertOpts())
		return err
	})
}

// insertMany inserts n jobs in one transaction with InsertManyTx, as
// taskd's SubmitBatch does.
func (r *bareRiver) insertMany(ctx context.Context, first, n int) error {
	params := make([]river.InsertManyParams, n)
	for i := range params {
		params[i] = river.InsertManyParams{Args: builtin.DoubleArgs{Value: float64(first + i)}, InsertOpts: insertOpts()}
	}
	return pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		_, err := r.client.InsertManyTx(ctx, tx, params)
		return err
	})
}
