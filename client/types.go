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
}

// BatchRequest is the body of POST /v1/batches.
type BatchRequest struct {
	Tasks []TaskRequest `json:"tasks"`
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
	Name         string          `json:"name"`
	Queue        string          `json:"queue"`
	Description  string          `json:"description"`
	ArgsSchema   json.RawMessage `json:"args_schema"`
	ResultSchema json.RawMessage `json:"result_schema"`
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
