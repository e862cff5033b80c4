//go:build chaos

package builtin

// The fault suite's kinds (internal/chaos), compiled in with `-tags chaos`
// only: "chaos_work" sleeps like "sleep" but writes every execution to a
// side table of the suite's, so that duplicates are counted by executions
// rather than inferred from taskd's own records; "chaos_exit" kills its
// process, the poison task of R6. Neither may ever be in the shipped
// binary (TestShippedBinaryHasNoChaosKinds).

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/taskd/taskd/internal/kinds"
)

func init() {
	chaosKinds = []kinds.Kind{chaosWorkKind, chaosExitKind}
}

// ChaosWorkArgs are the args of "chaos_work".
type ChaosWorkArgs struct {
	MS int64 `json:"ms"`
}

// Kind implements river.JobArgs.
func (ChaosWorkArgs) Kind() string { return "chaos_work" }

// ChaosWorker works "chaos_work" tasks: it inserts a row into
// chaos_executions (task, attempt, a new execution UUID, PID, start), sleeps
// ms milliseconds honouring its context, and stamps the row's end and
// outcome. The table is the suite's (chaos.Setup creates it). Its pool
// connects to TASKD_CHAOS_DATABASE_URL, else DATABASE_URL, so that a test
// faulting taskd's own connections can keep the record on a direct one.
type ChaosWorker struct {
	river.WorkerDefaults[ChaosWorkArgs]
}

var chaosPool struct {
	once sync.Once
	pool *pgxpool.Pool
	err  error
}

func chaosDB(ctx context.Context) (*pgxpool.Pool, error) {
	chaosPool.once.Do(func() {
		url := os.Getenv("TASKD_CHAOS_DATABASE_URL")
		if url == "" {
			url = os.Getenv("DATABASE_URL")
		}
		cfg, err := pgxpool.ParseConfig(url)
		if err != nil {
			chaosPool.err = fmt.Errorf("chaos: parsing the database URL: %w", err)
			return
		}
		cfg.MaxConns = 4
		// Not "taskd": R2 terminates taskd's connections by name, and the
		// record of executions must not be what it faults.
		cfg.ConnConfig.RuntimeParams["application_name"] = "taskd-chaos"
		chaosPool.pool, chaosPool.err = pgxpool.NewWithConfig(context.Background(), cfg)
	})
	return chaosPool.pool, chaosPool.err
}

// Work records the execution, sleeps and records how it ended.
func (w *ChaosWorker) Work(ctx context.Context, job *river.Job[ChaosWorkArgs]) error {
	db, err := chaosDB(ctx)
	if err != nil {
		return err
	}
	// The record gets its own deadline: an execution that cannot be
	// recorded fails (and is retried) rather than running unseen.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	var execution string
	err = db.QueryRow(rctx, `INSERT INTO chaos_executions (task_id, attempt, pid)
		VALUES ($1, $2, $3) RETURNING execution::text`, job.ID, job.Attempt, os.Getpid()).Scan(&execution)
	cancel()
	if err != nil {
		return fmt.Errorf("chaos: recording the execution: %w", err)
	}
	t := time.NewTimer(time.Duration(job.Args.MS) * time.Millisecond)
	defer t.Stop()
	outcome := "slept"
	select {
	case <-ctx.Done():
		outcome = "cancelled: " + context.Cause(ctx).Error()
	case <-t.C:
	}
	rctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	_, _ = db.Exec(rctx, `UPDATE chaos_executions SET ended_at = clock_timestamp(), outcome = $2
		WHERE execution = $1`, execution, outcome)
	cancel()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return kinds.RecordOutput(ctx, map[string]any{"execution": execution})
}

var chaosWorkKind = kinds.Kind{
	Run:         kinds.RunGo,
	AddWorker:   func(w *river.Workers, timeout kinds.TimeoutFunc) { kinds.AddWorker(w, &ChaosWorker{}, timeout) },
	Name:        "chaos_work",
	Queue:       river.QueueDefault,
	Description: "Fault suite only: sleeps ms milliseconds, recording each execution in chaos_executions.",
	Timeout:     time.Duration(SleepMaxMS)*time.Millisecond + time.Minute,
	ArgsSchema: json.RawMessage(`{"type":"object","additionalProperties":false,"required":["ms"],` +
		`"properties":{"ms":{"type":"integer","minimum":0,"maximum":3600000}}}`),
	ResultSchema: json.RawMessage(`{"type":"object","properties":{"execution":{"type":"string"}}}`),
	Decode: func(raw json.RawMessage, fe *kinds.Errors) river.JobArgs {
		var wire struct {
			MS *int64 `json:"ms"`
		}
		if !kinds.DecodeArgs(raw, &wire, fe) {
			return nil
		}
		if wire.MS == nil || *wire.MS < 0 || *wire.MS > SleepMaxMS {
			fe.Add("ms", "is required, between 0 and %d", SleepMaxMS)
			return nil
		}
		return ChaosWorkArgs{MS: *wire.MS}
	},
}

// ChaosExitArgs are the args of "chaos_exit".
type ChaosExitArgs struct {
	// AfterMS delays the exit, so that neighbours are running when it
	// comes.
	AfterMS int64 `json:"after_ms"`
}

// Kind implements river.JobArgs.
func (ChaosExitArgs) Kind() string { return "chaos_exit" }

// ChaosExitWorker kills its own process with os.Exit(3): no deferred
// function, no River completer, no goodbye to the database.
type ChaosExitWorker struct {
	river.WorkerDefaults[ChaosExitArgs]
}

// Work exits the process after AfterMS.
func (w *ChaosExitWorker) Work(ctx context.Context, job *river.Job[ChaosExitArgs]) error {
	time.Sleep(time.Duration(job.Args.AfterMS) * time.Millisecond)
	fmt.Fprintf(os.Stderr, "chaos_exit: task %d attempt %d exits the process\n", job.ID, job.Attempt)
	os.Exit(3)
	return nil
}

var chaosExitKind = kinds.Kind{
	Run:         kinds.RunGo,
	AddWorker:   func(w *river.Workers, timeout kinds.TimeoutFunc) { kinds.AddWorker(w, &ChaosExitWorker{}, timeout) },
	Name:        "chaos_exit",
	Queue:       river.QueueDefault,
	Description: "Fault suite only: exits the process that runs it (a poison task).",
	ArgsSchema: json.RawMessage(`{"type":"object","additionalProperties":false,` +
		`"properties":{"after_ms":{"type":"integer","minimum":0,"maximum":60000}}}`),
	ResultSchema: json.RawMessage(`{"type":"object"}`),
	Decode: func(raw json.RawMessage, fe *kinds.Errors) river.JobArgs {
		var wire struct {
			AfterMS int64 `json:"after_ms"`
		}
		if raw != nil && string(raw) != "null" && !kinds.DecodeArgs(raw, &wire, fe) {
			return nil
		}
		if wire.AfterMS < 0 || wire.AfterMS > 60000 {
			fe.Add("after_ms", "must be between 0 and 60000")
			return nil
		}
		return ChaosExitArgs{AfterMS: wire.AfterMS}
	},
}
