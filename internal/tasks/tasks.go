// Package tasks is taskd's use cases on tasks: validating and submitting
// tasks and batches (with idempotency keys), cancelling and retrying them.
// The HTTP handlers call it, and so will pull claims and schedules, so that
// every way in shares one validation path. It runs on River through
// internal/jobs and on taskd's rows through internal/store.
package tasks

import (
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/taskd/taskd/internal/jobs"
	"github.com/taskd/taskd/internal/store"
)

// Config configures a Service.
type Config struct {
	// Store is taskd's database access. Required.
	Store *store.Store
	// Jobs is the River client the tasks are inserted with, and whose
	// kinds and queues submissions are validated against. Required.
	Jobs *jobs.Client
}

func (c Config) validate() error {
	if c.Store == nil || c.Jobs == nil {
		return errors.New("tasks: Config.Store and Config.Jobs are required")
	}
	return nil
}

// Service submits, cancels and retries tasks.
type Service struct {
	store *store.Store
	jobs  *jobs.Client
	river *river.Client[pgx.Tx]
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Service{store: cfg.Store, jobs: cfg.Jobs, river: cfg.Jobs.River()}, nil
}
