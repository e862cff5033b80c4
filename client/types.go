// Package client is the public Go client of taskd's HTTP API v1, and the
// one definition of its wire types: the server encodes its answers with
// these types, so what a Go program decodes is what taskd sends.
package client

import (
	"encoding/json"
	"time"
)

// TaskRequest is one task to submit: the body of POST /v1/tasks and an
// item of POST /v1/batches. Only Kind is required; nil fields take the
// server's defaults.
type TaskRequest struct {
	Kind        *string         `json:"kind"`
	Args        json.RawMessage `json:"args"`
	Queue       *string         `json:"queue"`
	Priority    *int            `json:"priority"`
	MaxAttempts *int            `json:"max_attempts"`
	// ScheduledAt is an RFC 3339 time; Delay a Go duration such as "90s".
	// At most one of them.
	ScheduledAt *string  `json:"scheduled_at"`
	Delay       *string  `json:"delay"`
	Tags        []string `json:"tags"`
	// Backoff replaces fields of the kind's retry policy for this task;
	// fields left nil keep the kind's.
	Backoff *Backoff `json:"backoff"`
	// Timeout bounds one attempt, as a Go duration ("30s"); for an
	// external kind it is the lease a claim gets when it asks for none.
	// Nil: the kind's.
	Timeout *string `json:"timeout"`
}

// Backoff is a retry policy: after failed attempt n the task waits
// Initial × Multiplier^(n-1), at most Max, spread by ±Jitter (a fraction
// of the wait). Durations are Go durations ("1s", "1h"). In a request any
// field may be left out (nil) and is then the kind's; in a task or kind
// every field is set, showing the policy in effect.
type Backoff struct {
	Initial    *string  `json:"initial,omitempty"`
	Max        *string  `json:"max,omitempty"`
	Multiplier *float64 `json:"multiplier,omitempty"`
	Jitter     *float64 `json:"jitter,omitempty"`
}

// BatchRequest is the body of POST /v1/batches.
type BatchRequest struct {
	Tasks []TaskRequest `json:"tasks"`
	// Then is the batch's callback: a task inserted once, when every task
	// of the batch has reached a final state (completed, cancelled or
	// discarded). It carries the batch's ID as AfterBatch, and its Delay
	// counts from then. nil: no callback.
	Then *TaskRequest `json:"then,omitempty"`
}

// TaskSummary is a task as lists show it, without its attempts.
type TaskSummary struct {
	ID              int64           `json:"id"`
	Kind            string          `json:"kind"`
	Queue           string          `json:"queue"`
	State           string          `json:"state"`
	Args            json.RawMessage `json:"args"`
	Priority        int             `json:"priority"`
	Attempt         int             `json:"attempt"`
	MaxAttempts     int             `json:"max_attempts"`
	Tags            []string        `json:"tags"`
	CreatedAt       time.Time       `json:"created_at"`
	ScheduledAt     time.Time       `json:"scheduled_at"`
	StartedAt       *time.Time      `json:"started_at"`
	FinishedAt      *time.Time      `json:"finished_at"`
	Result          json.RawMessage `json:"result"`
	Errors          []TaskError     `json:"errors"`
	CancelRequested bool            `json:"cancel_requested"`
	// BatchID is the batch the task was submitted in, nil when none.
	BatchID *int64 `json:"batch_id"`
	// AfterBatch is the batch whose callback (BatchRequest.Then) the task
	// is, nil when none: its handler reads the batch's results with
	// GET /v1/batches/{id}.
	AfterBatch *int64 `json:"after_batch"`
	// Schedule is the schedule (of the server's configuration file) that
	// enqueued the task, nil when none did.
	Schedule *string `json:"schedule"`
	// NextRetryAt is when a failed task is tried again, nil unless a retry
	// is scheduled.
	NextRetryAt *time.Time `json:"next_retry_at"`
	// Backoff is the retry policy in effect: the task's own fields, the
	// rest its kind's or the service's default.
	Backoff Backoff `json:"backoff"`
	// Timeout is the attempt timeout in effect (the task's, else its
	// kind's, else the service's); for an external kind, the lease a claim
	// gets when it asks for none. Nil only when the service runs without
	// any attempt timeout (--job-timeout -1ns).
	Timeout *string `json:"timeout"`
}

// Task is one task with every attempt, as GET /v1/tasks/{id} shows it.
type Task struct {
	TaskSummary
	Attempts []Attempt `json:"attempts"`
}

// TaskError is the error of one failed attempt.
type TaskError struct {
	Attempt int       `json:"attempt"`
	At      time.Time `json:"at"`
	Message string    `json:"message"`
}

// Attempt is one attempt at running a task. Outcome is one of completed,
// completed_unsaved, failed, timeout, panic, cancelled, snoozed,
// interrupted, lost, or running for the attempt in progress.
type Attempt struct {
	Attempt    int        `json:"attempt"`
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
	Outcome    string     `json:"outcome"`
	Error      *string    `json:"error"`
	DurationMS float64    `json:"duration_ms"`
	Worker     string     `json:"worker"`
	// HTTPStatus is what the endpoint of a kind run over HTTP answered;
	// nil for other kinds and when no response came.
	HTTPStatus *int `json:"http_status"`
}

// TaskList is a page of GET /v1/tasks. NextCursor is nil on the last page.
type TaskList struct {
	Tasks      []TaskSummary `json:"tasks"`
	NextCursor *string       `json:"next_cursor"`
}

// BatchCreated answers POST /v1/batches: the batch and its tasks' IDs in
// submission order.
type BatchCreated struct {
	ID      int64   `json:"id"`
	TaskIDs []int64 `json:"task_ids"`
}

// Batch is a batch's progress, as GET /v1/batches/{id} shows it.
type Batch struct {
	ID     int64          `json:"id"`
	Total  int            `json:"total"`
	Counts map[string]int `json:"counts"`
	Done   bool           `json:"done"`
	Tasks  []BatchTask    `json:"tasks"`
	// ThenTaskID is the batch's callback task (BatchRequest.Then), nil
	// until it was inserted and when the batch has none.
	ThenTaskID *int64 `json:"then_task_id"`
	// ThenError says why the callback was not inserted (its request no
	// longer validated when the batch was done, say after a configuration
	// change); nil unless that happened.
	ThenError *string `json:"then_error"`
}

// BatchTask is one task of a Batch.
type BatchTask struct {
	ID     int64           `json:"id"`
	State  string          `json:"state"`
	Result json.RawMessage `json:"result"`
	Errors []TaskError     `json:"errors"`
}

// Kind is one kind of task, as GET /v1/kinds lists it.
type Kind struct {
	Name  string `json:"name"`
	Queue string `json:"queue"`
	// Run says who works the kind's tasks: go (taskd itself), http (taskd
	// pushes them to an endpoint) or external (workers claim them).
	Run          string          `json:"run"`
	Description  string          `json:"description"`
	ArgsSchema   json.RawMessage `json:"args_schema"`
	ResultSchema json.RawMessage `json:"result_schema"`
	// MaxAttempts is the kind's default max_attempts; 0: the service's.
	MaxAttempts int `json:"max_attempts"`
	// Timeout bounds one attempt (or lease); empty: the service's.
	Timeout string `json:"timeout,omitempty"`
	// Backoff is the kind's retry policy, every field set.
	Backoff Backoff `json:"backoff"`
	// Limits are the cluster-wide limits on the kind's tasks.
	Limits []Limit `json:"limits"`
}

// Limit is a cluster-wide limit on starting tasks of one kind or one queue,
// from the configuration file: at most Concurrency running at once, at
// most ConcurrencyPerKey per distinct value of the args field
// ConcurrencyKey, at most Rate starts per second, minute or hour ("10/s";
// per key when ConcurrencyKey is set). A task that must wait for a limit
// waits without using an attempt.
type Limit struct {
	Kind              string `json:"kind,omitempty"`
	Queue             string `json:"queue,omitempty"`
	Concurrency       int    `json:"concurrency,omitempty"`
	ConcurrencyKey    string `json:"concurrency_key,omitempty"`
	ConcurrencyPerKey int    `json:"concurrency_per_key,omitempty"`
	Rate              string `json:"rate,omitempty"`
}

// KindList answers GET /v1/kinds.
type KindList struct {
	Kinds []Kind `json:"kinds"`
}

// Problem is an RFC 9457 problem details object: every error answer.
type Problem struct {
	Type   string       `json:"type"`
	Title  string       `json:"title"`
	Status int          `json:"status"`
	Detail string       `json:"detail,omitempty"`
	Errors []FieldError `json:"errors,omitempty"`
}

// FieldError names one invalid field of a request.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// ClaimRequest is the body of POST /v1/claims: an external worker asks for
// tasks of kinds that run outside taskd (run: external). Durations are Go
// duration strings ("30s").
type ClaimRequest struct {
	// Kinds to claim; empty: every external kind.
	Kinds []string `json:"kinds,omitempty"`
	// Queues limits the claim to these queues; empty: any.
	Queues []string `json:"queues,omitempty"`
	// Max is how many tasks at most (1–100, default 1).
	Max *int `json:"max,omitempty"`
	// Wait is how long to wait for a task when none is ready (0s–60s,
	// default 30s).
	Wait *string `json:"wait,omitempty"`
	// Lease is how long the worker holds each task before it is offered
	// again (5s–1h; default the kind's timeout, else 60s).
	Lease *string `json:"lease,omitempty"`
	// Worker names the worker in the task's attempts.
	Worker *string `json:"worker,omitempty"`
}

// ClaimedTask is a task handed to an external worker. Lease is the token
// that completes, fails or heartbeats it.
type ClaimedTask struct {
	ID             int64           `json:"id"`
	Kind           string          `json:"kind"`
	Args           json.RawMessage `json:"args"`
	Attempt        int             `json:"attempt"`
	MaxAttempts    int             `json:"max_attempts"`
	Queue          string          `json:"queue"`
	BatchID        *int64          `json:"batch_id"`
	AfterBatch     *int64          `json:"after_batch"`
	Schedule       *string         `json:"schedule"`
	Lease          string          `json:"lease"`
	LeaseExpiresAt time.Time       `json:"lease_expires_at"`
}

// ClaimList is the answer to POST /v1/claims; Tasks is empty when nothing
// arrived within the wait.
type ClaimList struct {
	Tasks []ClaimedTask `json:"tasks"`
}

// CompleteRequest is the body of POST /v1/tasks/{id}/complete.
type CompleteRequest struct {
	Lease  *string         `json:"lease"`
	Result json.RawMessage `json:"result,omitempty"`
}

// FailRequest is the body of POST /v1/tasks/{id}/fail. RetryAfter
// replaces the backoff before the next attempt once; Permanent discards
// the task at once; Interrupted gives the task back without counting the
// attempt (a worker shutting down before it could finish), as taskd does
// with its own running tasks when it stops.
type FailRequest struct {
	Lease       *string `json:"lease"`
	Error       *string `json:"error"`
	RetryAfter  *string `json:"retry_after,omitempty"`
	Permanent   *bool   `json:"permanent,omitempty"`
	Interrupted *bool   `json:"interrupted,omitempty"`
}

// HeartbeatRequest is the body of POST /v1/tasks/{id}/heartbeat. Extend
// is how far from now the lease is moved (default: the lease's length).
type HeartbeatRequest struct {
	Lease  *string `json:"lease"`
	Extend *string `json:"extend,omitempty"`
}

// Heartbeat is the answer to a heartbeat: when the lease now ends, and
// whether a cancellation of the task was asked for (the worker should stop
// and fail it).
type Heartbeat struct {
	LeaseExpiresAt  time.Time `json:"lease_expires_at"`
	CancelRequested bool      `json:"cancel_requested"`
}

// Queue is a queue as GET /v1/queues shows it. Counts covers unfinished
// tasks only (available, running, retryable, scheduled, pending): counting
// finished ones would read every retained row.
type Queue struct {
	Name   string         `json:"name"`
	Counts map[string]int `json:"counts"`
	// Running is how many of its tasks run now, in every process.
	Running int `json:"running"`
	// OldestAvailableAgeSeconds is how long the oldest task ready to run
	// has waited; nil when none is ready.
	OldestAvailableAgeSeconds *float64 `json:"oldest_available_age_seconds"`
	// Paused is set while the queue is paused (in every process).
	Paused bool `json:"paused"`
	// Workers is the answering process's workers for the queue (0: it does
	// not work it).
	Workers int `json:"workers"`
	// Limits are the cluster-wide limits on the queue's tasks.
	Limits []Limit `json:"limits"`
}

// Ready is the answer of GET /readyz when the process is ready (503
// otherwise, with a problem).
type Ready struct {
	Status string `json:"status"`
	// Leader is set while this process is River's elected leader, the one
	// process of a cluster that runs the work that must run once (River's
	// maintenance, the schedules). An api process never leads.
	Leader bool `json:"leader"`
}

// QueueList is the answer to GET /v1/queues.
type QueueList struct {
	Queues []Queue `json:"queues"`
}

// Schedule is a periodic task of the server's configuration file, as GET
// /v1/schedules shows it.
type Schedule struct {
	Name string `json:"name"`
	// Spec is when it fires, as the file says it.
	Spec  ScheduleSpec `json:"spec"`
	Kind  string       `json:"kind"`
	Queue string       `json:"queue"`
	// LastTaskID is the task its latest tick enqueued, nil before the
	// first; LastEnqueuedAt when that was.
	LastTaskID     *int64     `json:"last_task_id"`
	LastEnqueuedAt *time.Time `json:"last_enqueued_at"`
	// NextRunAt is when its next task is due: its next tick, or its latest
	// while that waits for a leader to enqueue it; nil for a cron
	// expression with no tick within 5 years.
	NextRunAt *time.Time `json:"next_run_at"`
}

// ScheduleSpec is when a schedule fires: exactly one of Cron (a cron
// expression, "*/5 * * * *") and Every (an interval, "30s").
type ScheduleSpec struct {
	Cron  string `json:"cron,omitempty"`
	Every string `json:"every,omitempty"`
}

// ScheduleList is the answer to GET /v1/schedules.
type ScheduleList struct {
	Schedules []Schedule `json:"schedules"`
}
