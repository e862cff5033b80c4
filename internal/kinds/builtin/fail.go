package builtin

import (
	"context"
	"encoding/json"
	"errors"
	"unicode/utf8"

	"github.com/riverqueue/river"

	"github.com/taskd/taskd/internal/kinds"
	"github.com/taskd/taskd/internal/store"
)

const (
	// FailMaxTimes bounds "fail"'s times; more than the largest max_attempts
	// would make no difference.
	FailMaxTimes = 1000
	// FailMaxMessage bounds the length of "fail"'s message, in characters.
	FailMaxMessage = 4096
	// FailDefaultMessage is "fail"'s error when its args give none.
	FailDefaultMessage = "failed on purpose"
)

// FailArgs are the args of the "fail" kind, which exists to exercise retries.
type FailArgs struct {
	Times   int    `json:"times"`
	Message string `json:"message"`
}

// Kind implements river.JobArgs.
func (FailArgs) Kind() string { return "fail" }

// FailResult is the result of a "fail" task that stopped failing.
type FailResult struct {
	Attempts int `json:"attempts"`
}

// FailWorker works "fail" tasks.
type FailWorker struct {
	river.WorkerDefaults[FailArgs]
}

// Work fails the first Times attempts with Message, then succeeds.
func (w *FailWorker) Work(ctx context.Context, job *river.Job[FailArgs]) error {
	// Counted as taskd counts attempts (store.AttemptNumber), so that
	// snoozes and interrupted attempts do not count as failures.
	attempt := store.AttemptNumber(len(job.Errors), job.Attempt)
	if attempt <= job.Args.Times {
		return errors.New(job.Args.Message)
	}
	return river.RecordOutput(ctx, FailResult{Attempts: attempt})
}

var failKind = kinds.Kind{
	Run:         kinds.RunGo,
	AddWorker:   func(w *river.Workers) { river.AddWorker(w, &FailWorker{}) },
	Name:        "fail",
	Queue:       river.QueueDefault,
	Description: "Fails its first `times` attempts with `message`, then succeeds with the attempt count.",
	ArgsSchema: json.RawMessage(`{"type":"object","additionalProperties":false,"required":["times"],` +
		`"properties":{"times":{"type":"integer","minimum":0,"maximum":1000},` +
		`"message":{"type":"string","minLength":1,"maxLength":4096,"default":"failed on purpose"}}}`),
	ResultSchema: json.RawMessage(`{"type":"object","properties":{"attempts":{"type":"integer"}}}`),
	Decode: func(raw json.RawMessage, fe *kinds.Errors) river.JobArgs {
		var wire struct {
			Times   *int    `json:"times"`
			Message *string `json:"message"`
		}
		if !kinds.DecodeArgs(raw, &wire, fe) {
			return nil
		}
		args := FailArgs{Message: FailDefaultMessage}
		ok := true
		switch {
		case wire.Times == nil:
			fe.Add("times", "is required")
			ok = false
		case *wire.Times < 0 || *wire.Times > FailMaxTimes:
			fe.Add("times", "must be between 0 and %d", FailMaxTimes)
			ok = false
		default:
			args.Times = *wire.Times
		}
		if wire.Message != nil {
			switch {
			case *wire.Message == "":
				fe.Add("message", "must not be empty")
				ok = false
			case utf8.RuneCountInString(*wire.Message) > FailMaxMessage:
				fe.Add("message", "must be at most %d characters", FailMaxMessage)
				ok = false
			default:
				args.Message = *wire.Message
			}
		}
		if !ok {
			return nil
		}
		return args
	},
}
