package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"unicode/utf8"

	"github.com/riverqueue/river"
)

const (
	// FailMaxTimes bounds "fail"'s times; more than the largest max_attempts
	// would make no difference.
	FailMaxTimes = 1000
	// FailMaxMessage bounds the length of "fail"'s message, in characters.
	FailMaxMessage = 4096

	failDefaultMessage = "failed on purpose"
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
	attempt := attemptNumber(job.JobRow)
	if attempt <= job.Args.Times {
		return errors.New(job.Args.Message)
	}
	return river.RecordOutput(ctx, FailResult{Attempts: attempt})
}

var failKind = Kind{
	Name:        "fail",
	Queue:       river.QueueDefault,
	Description: "Fails its first `times` attempts with `message`, then succeeds with the attempt count.",
	Schema: json.RawMessage(`{"type":"object","additionalProperties":false,"required":["times"],` +
		`"properties":{"times":{"type":"integer","minimum":0,"maximum":1000},` +
		`"message":{"type":"string","minLength":1,"maxLength":4096,"default":"failed on purpose"}}}`),
	Result: json.RawMessage(`{"type":"object","properties":{"attempts":{"type":"integer"}}}`),
	decode: func(raw json.RawMessage, fe *fieldErrors) river.JobArgs {
		var wire struct {
			Times   *int    `json:"times"`
			Message *string `json:"message"`
		}
		if !decodeArgs(raw, &wire, fe) {
			return nil
		}
		args := FailArgs{Message: failDefaultMessage}
		ok := true
		switch {
		case wire.Times == nil:
			fe.add("times", "is required")
			ok = false
		case *wire.Times < 0 || *wire.Times > FailMaxTimes:
			fe.add("times", "must be between 0 and %d", FailMaxTimes)
			ok = false
		default:
			args.Times = *wire.Times
		}
		if wire.Message != nil {
			switch {
			case *wire.Message == "":
				fe.add("message", "must not be empty")
				ok = false
			case utf8.RuneCountInString(*wire.Message) > FailMaxMessage:
				fe.add("message", "must be at most %d characters", FailMaxMessage)
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
