package main

import (
	"cmp"
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

// riverSettings are a bare River client's FetchCooldown and
// FetchPollInterval, and the size of its default queue and of its pool.
type riverSettings struct {
	Name              string
	FetchCooldown     time.Duration
	FetchPollInterval time.Duration
	Workers           int   // of the default queue; 0: jobs.QueueDefaultWorkers, as taskd
	Conns             int32 // of the pool; 0: taskdPoolSize, as taskd
	// Schema are statements run on the fresh database before River
	// starts (scenario 1i changes its indexes).
	Schema []string
}

var (
	taskdFetch = riverSettings{Name: "taskd settings", FetchCooldown: jobs.FetchCooldownDefault, FetchPollInterval: jobs.FetchPollIntervalDefault}
	riverFetch = riverSettings{Name: "River defaults", FetchCooldown: river.FetchCooldownDefault, FetchPollInterval: river.FetchPollIntervalDefault}
)

// bareRiver is River with nothing of taskd's around it: the same "double"
// worker (builtin.DoubleWorker, which records its output), the same default
// queue size and fetch settings, and the same insert options; no HTTP, no
// attempt-recording middleware, no heartbeats.
type bareRiver struct {
	pool   *pgxpool.Pool
	client *river.Client[pgx.Tx]
}

// startBareRiver starts bare River on dbURL, its workers running; close
// stops it.
func startBareRiver(ctx context.Context, dbURL string, fetch riverSettings) (*bareRiver, error) {
	pool, err := newPool(ctx, dbURL, cmp.Or(fetch.Conns, taskdPoolSize))
	if err != nil {
		return nil, err
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, &builtin.DoubleWorker{})
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Logger:            slog.New(slog.DiscardHandler),
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: cmp.Or(fetch.Workers, jobs.QueueDefaultWorkers)}},
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
	if err := client.Start(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return &bareRiver{pool: pool, client: client}, nil
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

// insertOne inserts one job in its own transaction, as an application on
// River does (taskd's Submit shares a transaction among the single
// submissions that wait at once: tasks.submitter).
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
