// Package store reads and writes taskd's state in PostgreSQL: River's job
// table as taskd sees it (tasks) and taskd's own tables (attempts, batches,
// idempotency keys, processes). Queries live in queries/*.sql; sqlc generates
// package dbsqlc from them, and this package maps its rows to taskd's own
// types so that no sqlc or pgtype type leaves it.
package store

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskd/taskd/internal/store/dbsqlc"
)

// ErrNotFound is returned when a task, batch or key does not exist (or no
// longer does: finished tasks are deleted after their retention period).
var ErrNotFound = errors.New("not found")

// DBTX is what the store's transactional methods run on: a pool, a
// connection or a pgx.Tx owned by the caller.
type DBTX = dbsqlc.DBTX

// Store is taskd's access to PostgreSQL.
type Store struct {
	pool *pgxpool.Pool
	q    *dbsqlc.Queries
}

// New returns a Store on pool.
func New(pool *pgxpool.Pool) *Store {
	return &Store{pool: pool, q: dbsqlc.New(pool)}
}

// Pool returns the pool the store runs on.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	return s.pool.Ping(ctx)
}

// interpretError turns driver errors callers branch on into the store's own.
func interpretError(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// Task is a task as taskd shows it: a River job plus what taskd records.
type Task struct {
	ID          int64
	Kind        string
	Queue       string
	State       string
	Args        json.RawMessage
	Priority    int
	Attempt     int
	MaxAttempts int
	Tags        []string
	CreatedAt   time.Time
	ScheduledAt time.Time
	// StartedAt is when the latest attempt started; nil before the first.
	StartedAt *time.Time
	// FinishedAt is when the task reached a final state.
	FinishedAt *time.Time
	// Worker is the client that ran (or runs) the latest attempt.
	Worker string
	// Result is the recorded output, nil until there is one.
	Result json.RawMessage
	// Errors are the errors of failed attempts, oldest first.
	Errors []TaskError
	// CancelRequested is set once a cancellation was asked for (River marks
	// every cancelled task so, whether it was running or not).
	CancelRequested bool
	// BatchID is the batch the task was submitted in; 0 when none.
	BatchID int64
	// AfterBatch is the batch whose callback ("then") the task is; 0 when
	// none.
	AfterBatch int64
	// Policy is the retry policy and timeout the task set of its own at
	// submission, as kept in its metadata ({"backoff": ..., "timeout":
	// ...}; {} when none); internal/jobs reads it.
	Policy json.RawMessage
	// Schedule is the schedule that enqueued the task; "" when none did.
	Schedule string
	// Attempts is filled by Task only, oldest first.
	Attempts []Attempt
}

// TaskError is one failed attempt's error as River recorded it.
type TaskError struct {
	Attempt int
	At      time.Time
	Message string
}

// Attempt is one attempt at running a task.
type Attempt struct {
	TaskID     int64
	Attempt    int
	Worker     string
	StartedAt  time.Time
	FinishedAt *time.Time // nil while running
	Outcome    string
	Error      string
	Duration   time.Duration
	// HTTPStatus is the status a pushed attempt's endpoint answered; 0 for
	// other kinds and when no response came.
	HTTPStatus int
	// Output is a completed attempt's output (JSON), for FinishWaited; it
	// is not stored with the attempt.
	Output []byte
}

// AttemptNumber is the number of a task's current (or latest) attempt,
// given how many errors River recorded and River's attempt counter. Failed
// attempts are counted from the errors, because River lowers its counter
// again when an attempt is snoozed or interrupted by shutdown; the counter
// still counts attempts after a manual retry of a task that had completed
// without errors.
func AttemptNumber(errorCount, riverAttempt int) int {
	return max(errorCount+1, riverAttempt)
}

// Attempt outcomes.
const (
	OutcomeCompleted = "completed"
	// OutcomeCompletedUnsaved is an attempt whose work completed (its row
	// was written as completed) but whose process died before River saved
	// the task's completion and result; the rescue changed the row to this,
	// and the task ran again. The attempt after it is therefore a duplicate
	// execution, and counting these rows counts duplicate executions.
	OutcomeCompletedUnsaved = "completed_unsaved"
	OutcomeFailed           = "failed"
	OutcomeTimeout          = "timeout"
	OutcomePanic            = "panic"
	OutcomeCancelled        = "cancelled"
	OutcomeSnoozed          = "snoozed"
	OutcomeInterrupted      = "interrupted"
	// OutcomeLost is an attempt cut off by the death of its process before
	// its work finished (no row had been written for it); the rescue
	// records it.
	OutcomeLost = "lost"
	// OutcomeRunning is shown for the attempt in progress; it is never
	// stored.
	OutcomeRunning = "running"
)

// Outcomes lists every attempt outcome, OutcomeRunning included.
var Outcomes = []string{
	OutcomeCompleted, OutcomeCompletedUnsaved, OutcomeFailed, OutcomeTimeout, OutcomePanic,
	OutcomeCancelled, OutcomeSnoozed, OutcomeInterrupted, OutcomeLost, OutcomeRunning,
}

// Task states (River's).
const (
	StateAvailable = "available"
	StateCancelled = "cancelled"
	StateCompleted = "completed"
	StateDiscarded = "discarded"
	StatePending   = "pending"
	StateRetryable = "retryable"
	StateRunning   = "running"
	StateScheduled = "scheduled"
)

// States lists every task state.
var States = []string{StateAvailable, StateCancelled, StateCompleted, StateDiscarded, StatePending, StateRetryable, StateRunning, StateScheduled}

// IsFinal reports whether state is one a task does not leave by itself.
func IsFinal(state string) bool {
	return state == StateCompleted || state == StateCancelled || state == StateDiscarded
}

// riverAttemptError is the JSON River stores for each failed attempt.
type riverAttemptError struct {
	At      time.Time `json:"at"`
	Attempt int       `json:"attempt"`
	Error   string    `json:"error"`
}

func decodeErrors(raw [][]byte) ([]TaskError, error) {
	errs := make([]TaskError, 0, len(raw))
	for _, r := range raw {
		var e riverAttemptError
		if err := json.Unmarshal(r, &e); err != nil {
			return nil, fmt.Errorf("decoding attempt error: %w", err)
		}
		errs = append(errs, TaskError{Attempt: e.Attempt, At: e.At, Message: e.Error})
	}
	return errs, nil
}

// taskRow is what TaskGetByID and TaskList have in common.
type taskRow = dbsqlc.TaskGetByIDRow

func taskFromRow(r taskRow) (*Task, error) {
	errs, err := decodeErrors(r.Errors)
	if err != nil {
		return nil, err
	}
	t := &Task{
		ID:              r.ID,
		Kind:            r.Kind,
		Queue:           r.Queue,
		State:           string(r.State),
		Args:            json.RawMessage(r.Args),
		Priority:        int(r.Priority),
		Attempt:         int(r.Attempt),
		MaxAttempts:     int(r.MaxAttempts),
		Tags:            r.Tags,
		CreatedAt:       r.CreatedAt,
		ScheduledAt:     r.ScheduledAt,
		StartedAt:       r.AttemptedAt,
		FinishedAt:      r.FinalizedAt,
		Errors:          errs,
		CancelRequested: r.CancelRequested,
		BatchID:         r.BatchID,
		AfterBatch:      r.AfterBatch,
		Policy:          json.RawMessage(r.Policy),
		Schedule:        r.Schedule,
	}
	if t.Tags == nil {
		t.Tags = []string{}
	}
	if len(r.AttemptedBy) > 0 {
		t.Worker = r.AttemptedBy[len(r.AttemptedBy)-1]
	}
	if len(r.Output) > 0 && string(r.Output) != "null" {
		t.Result = json.RawMessage(r.Output)
	}
	return t, nil
}

// Task returns the task with its attempts. A running task's attempt in
// progress is listed last with outcome "running".
func (s *Store) Task(ctx context.Context, id int64) (*Task, error) {
	var row dbsqlc.TaskGetByIDRow
	err := s.Retry(ctx, func() (err error) {
		row, err = s.q.TaskGetByID(ctx, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("getting task %d: %w", id, interpretError(err))
	}
	t, err := taskFromRow(row)
	if err != nil {
		return nil, err
	}
	stored, err := decodeAttempts(row.Attempts)
	if err != nil {
		return nil, fmt.Errorf("decoding attempts of task %d: %w", id, err)
	}
	t.Attempts = make([]Attempt, 0, len(stored)+1)
	for _, r := range stored {
		a := Attempt{
			TaskID:     id,
			Attempt:    r.Attempt,
			Worker:     r.Worker,
			StartedAt:  r.StartedAt,
			FinishedAt: &r.FinishedAt,
			Outcome:    r.Outcome,
			Duration:   time.Duration(r.DurationMS * float64(time.Millisecond)),
		}
		if r.Error != nil {
			a.Error = *r.Error
		}
		if r.HTTPStatus != nil {
			a.HTTPStatus = *r.HTTPStatus
		}
		t.Attempts = append(t.Attempts, a)
	}
	// The attempt in progress, unless its row is written already: the
	// middleware writes it just before River saves the task's new state.
	if t.State == StateRunning && t.StartedAt != nil && !attemptRecorded(t.Attempts, AttemptNumber(len(t.Errors), t.Attempt), *t.StartedAt) {
		t.Attempts = append(t.Attempts, Attempt{
			TaskID:    id,
			Attempt:   AttemptNumber(len(t.Errors), t.Attempt),
			Worker:    t.Worker,
			StartedAt: *t.StartedAt,
			Outcome:   OutcomeRunning,
			Duration:  time.Since(*t.StartedAt),
		})
	}
	return t, nil
}

// RawTask is a task's row as Task reads it (TaskGetByID), before Task
// maps it: errors, output and attempts still the JSON PostgreSQL built.
// It is for cmd/taskd-bench's read baseline, which runs the very statement
// of GET /v1/tasks/{id} without taskd's work around it; taskd uses Task.
type RawTask struct {
	ID                     int64
	Kind, Queue, State     string
	Args                   []byte
	Priority, Attempt      int16
	MaxAttempts            int16
	Tags                   []string
	CreatedAt, ScheduledAt time.Time
	AttemptedAt            *time.Time
	FinalizedAt            *time.Time
	Output                 []byte   // the output's JSON; nil when none
	Errors                 [][]byte // River's error objects
	CancelRequested        bool
	BatchID, AfterBatch    int64 // 0: none
	Schedule               string
	Attempts               []byte // a JSON array
}

// RawTask reads task id's row (see RawTask); ErrNotFound when there is
// none.
func (s *Store) RawTask(ctx context.Context, id int64) (*RawTask, error) {
	r, err := s.q.TaskGetByID(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("getting task %d: %w", id, interpretError(err))
	}
	return &RawTask{
		ID: r.ID, Kind: r.Kind, Queue: r.Queue, State: string(r.State), Args: r.Args,
		Priority: r.Priority, Attempt: r.Attempt, MaxAttempts: r.MaxAttempts, Tags: r.Tags,
		CreatedAt: r.CreatedAt, ScheduledAt: r.ScheduledAt, AttemptedAt: r.AttemptedAt, FinalizedAt: r.FinalizedAt,
		Output: r.Output, Errors: r.Errors, CancelRequested: r.CancelRequested,
		BatchID: r.BatchID, AfterBatch: r.AfterBatch, Schedule: r.Schedule, Attempts: r.Attempts,
	}, nil
}

// attemptRecorded reports whether attempts hold the attempt numbered n that
// started at start.
func attemptRecorded(attempts []Attempt, n int, start time.Time) bool {
	for _, a := range attempts {
		if a.Attempt == n && a.StartedAt.Equal(start) {
			return true
		}
	}
	return false
}

// ListParams filters and pages TaskList. Zero values mean "any".
type ListParams struct {
	States []string
	Kind   string
	Queue  string
	// Queues, when not nil, limits the list to these queues (a tenant's
	// token, auth.Principal.Queues); empty but not nil: no queue at all.
	Queues []string
	// BeforeID continues a listing after the task with this ID (keyset
	// pagination, newest first).
	BeforeID int64
	Limit    int
}

// TaskList lists tasks newest first. Attempts are not filled.
func (s *Store) TaskList(ctx context.Context, p ListParams) ([]*Task, error) {
	// An unnamed statement is planned with its parameter values every time,
	// which a cached prepared statement would not be after five runs.
	q := dbsqlc.New(execMode{db: s.pool, mode: pgx.QueryExecModeExec})
	var rows []dbsqlc.TaskListRow
	err := s.Retry(ctx, func() (err error) {
		rows, err = q.TaskList(ctx, listArgs(p))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing tasks: %w", err)
	}
	tasks := make([]*Task, 0, len(rows))
	for _, r := range rows {
		t, err := taskFromRow(taskRow(r))
		if err != nil {
			return nil, err
		}
		tasks = append(tasks, t)
	}
	return tasks, nil
}

func listArgs(p ListParams) dbsqlc.TaskListParams {
	var arg dbsqlc.TaskListParams
	switch len(p.States) {
	case 0:
	case 1:
		// A single state is matched with = so that the (state, id) index
		// also gives the order.
		arg.State = &p.States[0]
	default:
		arg.States = p.States
	}
	if p.Kind != "" {
		arg.Kind = &p.Kind
	}
	if p.Queue != "" {
		arg.Queue = &p.Queue
	}
	if p.Queues != nil {
		// Never nil here: an empty list must match nothing, not everything.
		arg.Queues = append([]string{}, p.Queues...)
	}
	if p.BeforeID > 0 {
		arg.BeforeID = &p.BeforeID
	}
	arg.Max = int32(p.Limit)
	return arg
}

// ExplainTaskList returns PostgreSQL's plan for TaskList with p, run the
// way TaskList runs it. With analyze, the query is executed too (EXPLAIN
// (ANALYZE, BUFFERS)). For operators and the benchmark.
func (s *Store) ExplainTaskList(ctx context.Context, p ListParams, analyze bool) (string, error) {
	c := &captureDB{}
	if _, err := dbsqlc.New(c).TaskList(ctx, listArgs(p)); !errors.Is(err, errCaptured) {
		return "", fmt.Errorf("capturing list query: %w", err)
	}
	explain := "EXPLAIN "
	if analyze {
		explain = "EXPLAIN (ANALYZE, BUFFERS) "
	}
	rows, err := s.pool.Query(ctx, explain+c.sql, append([]any{pgx.QueryExecModeExec}, c.args...)...)
	if err != nil {
		return "", fmt.Errorf("explaining list query: %w", err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", fmt.Errorf("explaining list query: %w", err)
	}
	return strings.Join(lines, "\n"), nil
}

// captureDB records the statement a sqlc query would run instead of
// running it.
type captureDB struct {
	sql  string
	args []any
}

var errCaptured = errors.New("statement captured")

func (c *captureDB) Exec(_ context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	c.sql, c.args = sql, args
	return pgconn.CommandTag{}, errCaptured
}

func (c *captureDB) Query(_ context.Context, sql string, args ...any) (pgx.Rows, error) {
	c.sql, c.args = sql, args
	return nil, errCaptured
}

func (c *captureDB) CopyFrom(context.Context, pgx.Identifier, []string, pgx.CopyFromSource) (int64, error) {
	return 0, errCaptured
}

func (c *captureDB) QueryRow(_ context.Context, sql string, args ...any) pgx.Row {
	c.sql, c.args = sql, args
	return errRow{}
}

type errRow struct{}

func (errRow) Scan(...any) error { return errCaptured }

// execMode runs queries in a given pgx query exec mode.
type execMode struct {
	db   DBTX
	mode pgx.QueryExecMode
}

func (e execMode) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return e.db.Exec(ctx, sql, append([]any{e.mode}, args...)...)
}

func (e execMode) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return e.db.Query(ctx, sql, append([]any{e.mode}, args...)...)
}

func (e execMode) CopyFrom(ctx context.Context, table pgx.Identifier, cols []string, src pgx.CopyFromSource) (int64, error) {
	return e.db.CopyFrom(ctx, table, cols, src)
}

func (e execMode) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return e.db.QueryRow(ctx, sql, append([]any{e.mode}, args...)...)
}

// TaskQueue returns the queue of task id, ErrNotFound when there is no
// such task.
func (s *Store) TaskQueue(ctx context.Context, id int64) (string, error) {
	var queue string
	err := s.Retry(ctx, func() (err error) {
		queue, err = s.q.TaskQueue(ctx, id)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("getting the queue of task %d: %w", id, interpretError(err))
	}
	return queue, nil
}

// TaskLockStateTx locks the task's row for the rest of tx and returns its
// state.
func (s *Store) TaskLockStateTx(ctx context.Context, tx pgx.Tx, id int64) (string, error) {
	state, err := s.q.WithTx(tx).TaskLockState(ctx, id)
	if err != nil {
		return "", fmt.Errorf("locking task %d: %w", id, interpretError(err))
	}
	return state, nil
}

// TaskClearResultTx removes a task's recorded result.
func (s *Store) TaskClearResultTx(ctx context.Context, tx pgx.Tx, id int64) error {
	if err := s.q.WithTx(tx).TaskClearOutput(ctx, id); err != nil {
		return fmt.Errorf("clearing result of task %d: %w", id, err)
	}
	return nil
}

// AttemptInsertMany stores finished attempts with one COPY, unchecked:
// it is for attempts of tasks the caller still runs, which exist because
// River deletes no running task. Attempts that may belong to deleted
// tasks go through AttemptInsertMissing (task_attempts has no foreign key
// to keep them out; migration 00017).
func (s *Store) AttemptInsertMany(ctx context.Context, attempts []Attempt) error {
	if _, err := s.q.AttemptCopy(ctx, attemptRows(attempts)); err != nil {
		return fmt.Errorf("inserting %d attempts: %w", len(attempts), err)
	}
	return nil
}

// AttemptInsertMissing stores those of attempts that are not stored yet
// (the same task, attempt number and start), dropping those of missing
// tasks. It is slower than AttemptInsertMany but safe to repeat: it is for
// retrying a write that failed, since a write whose connection was lost
// while committing may have committed anyway, and for attempts whose task
// may have been deleted meanwhile.
func (s *Store) AttemptInsertMissing(ctx context.Context, attempts []Attempt) error {
	if _, err := s.q.AttemptInsertChecked(ctx, checkedParams(attemptRows(attempts))); err != nil {
		return fmt.Errorf("inserting %d attempts: %w", len(attempts), err)
	}
	return nil
}

func attemptRows(attempts []Attempt) []dbsqlc.AttemptCopyParams {
	rows := make([]dbsqlc.AttemptCopyParams, len(attempts))
	for i, a := range attempts {
		rows[i] = dbsqlc.AttemptCopyParams{
			TaskID:     a.TaskID,
			Attempt:    int32(a.Attempt),
			Worker:     a.Worker,
			StartedAt:  a.StartedAt,
			FinishedAt: a.StartedAt.Add(a.Duration),
			Outcome:    a.Outcome,
			DurationMs: float64(a.Duration) / float64(time.Millisecond),
		}
		if a.FinishedAt != nil {
			rows[i].FinishedAt = *a.FinishedAt
		}
		if a.Error != "" {
			rows[i].Error = &a.Error
		}
		if a.HTTPStatus != 0 {
			status := int32(a.HTTPStatus)
			rows[i].HttpStatus = &status
		}
	}
	return rows
}

// checkedParams are rows as AttemptInsertChecked takes them: one array a
// column, NULLs as zero values.
func checkedParams(rows []dbsqlc.AttemptCopyParams) dbsqlc.AttemptInsertCheckedParams {
	n := len(rows)
	arg := dbsqlc.AttemptInsertCheckedParams{
		TaskID:     make([]int64, n),
		Attempt:    make([]int32, n),
		Worker:     make([]string, n),
		StartedAt:  make([]time.Time, n),
		FinishedAt: make([]time.Time, n),
		Outcome:    make([]string, n),
		Error:      make([]string, n),
		DurationMs: make([]float64, n),
		HttpStatus: make([]int32, n),
	}
	for i, r := range rows {
		arg.TaskID[i], arg.Attempt[i], arg.Worker[i] = r.TaskID, r.Attempt, r.Worker
		arg.StartedAt[i], arg.FinishedAt[i], arg.Outcome[i] = r.StartedAt, r.FinishedAt, r.Outcome
		if r.Error != nil {
			arg.Error[i] = *r.Error
		}
		arg.DurationMs[i] = r.DurationMs
		if r.HttpStatus != nil {
			arg.HttpStatus[i] = *r.HttpStatus
		}
	}
	return arg
}

// Batch is a group of tasks submitted together.
type Batch struct {
	ID        int64
	TaskIDs   []int64
	CreatedAt time.Time
	// ThenTaskID is the batch's callback task once it was inserted; 0
	// before, and when the batch has none.
	ThenTaskID int64
	// ThenError says why the callback was not inserted; "" unless that
	// happened.
	ThenError string
	// Tasks are the batch's tasks still present, in submission order; only
	// ID, Queue, State, Result and Errors are filled.
	Tasks []*Task
}

// BatchNextIDTx takes the ID of a batch about to be inserted, so that its
// tasks can carry it.
func (s *Store) BatchNextIDTx(ctx context.Context, tx pgx.Tx) (int64, error) {
	id, err := s.q.WithTx(tx).BatchNextID(ctx)
	if err != nil {
		return 0, fmt.Errorf("taking a batch ID: %w", err)
	}
	return id, nil
}

// BatchInsertTx records batch id (from BatchNextIDTx) of already inserted
// tasks, with its callback request (JSON; nil when it has none).
func (s *Store) BatchInsertTx(ctx context.Context, tx pgx.Tx, id int64, taskIDs []int64, then json.RawMessage) (*Batch, error) {
	row, err := s.q.WithTx(tx).BatchInsert(ctx, dbsqlc.BatchInsertParams{ID: id, TaskIds: taskIDs, ThenRequest: then})
	if err != nil {
		return nil, fmt.Errorf("inserting batch: %w", err)
	}
	return &Batch{ID: row.ID, TaskIDs: taskIDs, CreatedAt: row.CreatedAt}, nil
}

// Batch returns a batch with its tasks in submission order. Tasks already
// deleted by retention are left out.
func (s *Store) Batch(ctx context.Context, id int64) (*Batch, error) {
	var (
		row  dbsqlc.BatchGetByIDRow
		rows []dbsqlc.BatchTasksRow
	)
	err := s.Retry(ctx, func() (err error) {
		row, err = s.q.BatchGetByID(ctx, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("getting batch %d: %w", id, interpretError(err))
	}
	err = s.Retry(ctx, func() (err error) {
		rows, err = s.q.BatchTasks(ctx, row.TaskIds)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("getting tasks of batch %d: %w", id, err)
	}
	byID := make(map[int64]*Task, len(rows))
	for _, r := range rows {
		errs, err := decodeErrors(r.Errors)
		if err != nil {
			return nil, err
		}
		t := &Task{ID: r.ID, Queue: r.Queue, State: string(r.State), Errors: errs}
		if len(r.Output) > 0 && string(r.Output) != "null" {
			t.Result = json.RawMessage(r.Output)
		}
		byID[r.ID] = t
	}
	b := &Batch{ID: row.ID, TaskIDs: row.TaskIds, CreatedAt: row.CreatedAt, Tasks: make([]*Task, 0, len(rows))}
	if row.ThenTaskID != nil {
		b.ThenTaskID = *row.ThenTaskID
	}
	if row.ThenError != nil {
		b.ThenError = *row.ThenError
	}
	for _, tid := range row.TaskIds {
		if t, ok := byID[tid]; ok {
			b.Tasks = append(b.Tasks, t)
		}
	}
	return b, nil
}

// BatchDeleteEmpty deletes up to max batches older than minAge none of whose
// tasks is left, except those whose callback is still to be decided.
func (s *Store) BatchDeleteEmpty(ctx context.Context, minAge time.Duration, max int) (int64, error) {
	n, err := s.q.BatchDeleteEmpty(ctx, dbsqlc.BatchDeleteEmptyParams{MinAgeSecs: minAge.Seconds(), Max: int32(max)})
	if err != nil {
		return 0, fmt.Errorf("deleting empty batches: %w", err)
	}
	return n, nil
}

// IdempotencyKey is a stored Idempotency-Key with what it created.
type IdempotencyKey struct {
	Key         string
	RequestHash []byte
	TaskID      int64 // 0 when the key created a batch
	BatchID     int64 // 0 when the key created a task
}

// IdempotencyKeyInsertTx stores key for the task or batch created in tx. It
// returns false, storing nothing, when the key exists already. A concurrent
// transaction inserting the same key makes it wait until that one ends.
func (s *Store) IdempotencyKeyInsertTx(ctx context.Context, tx pgx.Tx, k IdempotencyKey) (bool, error) {
	arg := dbsqlc.IdempotencyKeyInsertParams{Key: k.Key, RequestHash: k.RequestHash}
	if k.TaskID != 0 {
		arg.TaskID = &k.TaskID
	}
	if k.BatchID != 0 {
		arg.BatchID = &k.BatchID
	}
	n, err := s.q.WithTx(tx).IdempotencyKeyInsert(ctx, arg)
	if err != nil {
		return false, fmt.Errorf("inserting idempotency key: %w", err)
	}
	return n == 1, nil
}

// IdempotencyKeysInsertTx stores the keys of tasks inserted together in
// tx (TaskID set), in key order, and returns for each whether it was
// stored: false when the key existed already, or when an earlier one of
// keys has it. The caller removes the tasks of keys not stored
// (TasksDeleteUncommittedTx) before it commits.
func (s *Store) IdempotencyKeysInsertTx(ctx context.Context, tx pgx.Tx, keys []IdempotencyKey) ([]bool, error) {
	arg := dbsqlc.IdempotencyKeyInsertTasksParams{
		Keys:          make([]string, len(keys)),
		RequestHashes: make([][]byte, len(keys)),
		TaskIds:       make([]int64, len(keys)),
	}
	for i, k := range keys {
		arg.Keys[i], arg.RequestHashes[i], arg.TaskIds[i] = k.Key, k.RequestHash, k.TaskID
	}
	stored, err := s.q.WithTx(tx).IdempotencyKeyInsertTasks(ctx, arg)
	if err != nil {
		return nil, fmt.Errorf("inserting idempotency keys: %w", err)
	}
	ok := make([]bool, len(keys))
	for i, k := range keys {
		ok[i] = slices.Contains(stored, k.TaskID)
	}
	return ok, nil
}

// TasksDeleteUncommittedTx deletes tasks inserted earlier in tx, which
// no other transaction has seen: those whose idempotency keys were taken.
func (s *Store) TasksDeleteUncommittedTx(ctx context.Context, tx pgx.Tx, ids []int64) error {
	if err := s.q.WithTx(tx).TasksDeleteUncommitted(ctx, ids); err != nil {
		return fmt.Errorf("deleting tasks whose keys were taken: %w", err)
	}
	return nil
}

// IdempotencyKey returns a stored key.
func (s *Store) IdempotencyKey(ctx context.Context, key string) (*IdempotencyKey, error) {
	var row dbsqlc.IdempotencyKeyGetRow
	err := s.Retry(ctx, func() (err error) {
		row, err = s.q.IdempotencyKeyGet(ctx, key)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("getting idempotency key: %w", interpretError(err))
	}
	k := &IdempotencyKey{Key: row.Key, RequestHash: row.RequestHash}
	if row.TaskID != nil {
		k.TaskID = *row.TaskID
	}
	if row.BatchID != nil {
		k.BatchID = *row.BatchID
	}
	return k, nil
}

// ProcessRegister records a starting process (River client).
func (s *Store) ProcessRegister(ctx context.Context, clientID, hostname string, pid int) error {
	err := s.q.ProcessRegister(ctx, dbsqlc.ProcessRegisterParams{ClientID: clientID, Hostname: hostname, Pid: int32(pid)})
	if err != nil {
		return fmt.Errorf("registering process %s: %w", clientID, err)
	}
	return nil
}

// ProcessHeartbeat marks a process alive. It returns ErrNotFound when the
// process's row is gone (deleted as stale), so that the caller registers
// again.
func (s *Store) ProcessHeartbeat(ctx context.Context, clientID string) error {
	n, err := s.q.ProcessHeartbeat(ctx, clientID)
	if err != nil {
		return fmt.Errorf("heartbeat of process %s: %w", clientID, err)
	}
	if n == 0 {
		return fmt.Errorf("heartbeat of process %s: %w", clientID, ErrNotFound)
	}
	return nil
}

// ProcessDelete removes a stopping process's row.
func (s *Store) ProcessDelete(ctx context.Context, clientID string) error {
	if err := s.q.ProcessDelete(ctx, clientID); err != nil {
		return fmt.Errorf("deleting process %s: %w", clientID, err)
	}
	return nil
}

// ProcessDeleteStale removes rows of processes silent for longer than age.
func (s *Store) ProcessDeleteStale(ctx context.Context, age time.Duration) (int64, error) {
	n, err := s.q.ProcessDeleteStale(ctx, age.Seconds())
	if err != nil {
		return 0, fmt.Errorf("deleting stale processes: %w", err)
	}
	return n, nil
}

// RescuedTask is a task taken back from a dead process by RescueLost.
type RescuedTask struct {
	TaskID int64
	// Outcome is what the attempt the process was running is recorded as:
	// OutcomeLost when it had no row (the process died while working),
	// OutcomeCompletedUnsaved when its work had completed but River had not
	// saved that, or the outcome its row already had.
	Outcome string
	// State is the task's new state: available, or discarded or cancelled.
	State string
	// Attempt and AttemptedAt are River's, of the fetch rescued (set by
	// RescueOrphans only): a completion of that fetch that arrives later
	// must not be written (see jobs.completionPilot).
	Attempt     int
	AttemptedAt *time.Time
}

// RescueLost makes up to max running tasks whose process has not
// heartbeated for staleAfter available again (discarded when out of
// attempts, cancelled when a cancellation was asked for). The attempt each
// was running keeps the one row its process wrote, a "completed" one
// becoming "completed_unsaved", or gets a "lost" row when it has none. It
// returns the tasks ordered by ID.
func (s *Store) RescueLost(ctx context.Context, staleAfter time.Duration, max int) ([]RescuedTask, error) {
	rows, err := s.q.ProcessRescueLost(ctx, dbsqlc.ProcessRescueLostParams{StaleSecs: staleAfter.Seconds(), Max: int32(max)})
	if err != nil {
		return nil, fmt.Errorf("rescuing lost tasks: %w", err)
	}
	rescued := make([]RescuedTask, len(rows))
	for i, r := range rows {
		rescued[i] = RescuedTask{TaskID: r.ID, Outcome: r.Outcome, State: r.NewState}
	}
	slices.SortFunc(rescued, func(a, b RescuedTask) int { return cmp.Compare(a.TaskID, b.TaskID) })
	return rescued, nil
}

// ProcessRunningStale returns up to max running tasks that process clientID
// was handed (by their last attempt) at least staleAfter ago, ordered by
// ID: the candidates of RescueOrphans.
func (s *Store) ProcessRunningStale(ctx context.Context, clientID string, staleAfter time.Duration, max int) ([]int64, error) {
	ids, err := s.q.ProcessRunningStale(ctx, dbsqlc.ProcessRunningStaleParams{ClientID: clientID, StaleSecs: staleAfter.Seconds(), Max: int32(max)})
	if err != nil {
		return nil, fmt.Errorf("listing running tasks of process %s: %w", clientID, unavailable(err))
	}
	return ids, nil
}

// RescueOrphans is RescueLost for tasks among ids that process clientID,
// alive, was handed at least staleAfter ago but does not work: a fetch whose
// answer the connection lost after the server committed it (or a
// completion River dropped as it stopped). The caller passes only tasks it
// does not work; a task handed out again since (to anyone) is left alone.
func (s *Store) RescueOrphans(ctx context.Context, clientID string, ids []int64, staleAfter time.Duration) ([]RescuedTask, error) {
	rows, err := s.q.ProcessRescueOrphans(ctx, dbsqlc.ProcessRescueOrphansParams{Ids: ids, ClientID: clientID, StaleSecs: staleAfter.Seconds()})
	if err != nil {
		return nil, fmt.Errorf("rescuing orphaned tasks: %w", unavailable(err))
	}
	rescued := make([]RescuedTask, len(rows))
	for i, r := range rows {
		rescued[i] = RescuedTask{TaskID: r.ID, Outcome: r.Outcome, State: r.NewState, Attempt: int(r.RiverAttempt), AttemptedAt: r.AttemptedAt}
	}
	slices.SortFunc(rescued, func(a, b RescuedTask) int { return cmp.Compare(a.TaskID, b.TaskID) })
	return rescued, nil
}
