package builtin

import (
	"context"
	"encoding/json"
	"errors"
	"time"
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

// FailSnoozeMax bounds "fail"'s snooze.
const FailSnoozeMax = time.Hour

// FailArgs are the args of the "fail" kind, which exists to exercise
// retries: its first Times attempts fail with Message, or, with Permanent,
// the first discards the task at once, or, with Snooze, each of the first
// Times tries is put off by Snooze without counting as an attempt.
type FailArgs struct {
	Times     int    `json:"times"`
	Message   string `json:"message"`
	Permanent bool   `json:"permanent,omitempty"`
	// Snooze is a Go duration; "" for none.
	Snooze string `json:"snooze,omitempty"`
}

// Kind implements river.JobArgs.
func (FailArgs) Kind() string { return "fail" }

// FailResult is the result of a "fail" task that stopped failing.
type FailResult struct {
	Attempts int `json:"attempts"`
	// Snoozes is how often it was put off (River counts them); left out
	// when none.
	Snoozes int `json:"snoozes,omitempty"`
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
	var meta struct {
		Snoozes int `json:"snoozes"`
	}
	_ = json.Unmarshal(job.Metadata, &meta)
	switch {
	case job.Args.Snooze != "" && meta.Snoozes < job.Args.Times:
		d, _ := time.ParseDuration(job.Args.Snooze) // validated at submission
		return river.JobSnooze(d)
	case job.Args.Snooze == "" && attempt <= job.Args.Times:
		if job.Args.Permanent {
			// River discards a failed job whose attempt reached its
			// max_attempts, comparing the row it holds in memory; the
			// stored max_attempts is left as submitted (as for a pushed
			// task answered with a final 4xx, internal/jobs/push.go).
			job.MaxAttempts = job.Attempt
		}
		return errors.New(job.Args.Message)
	}
	return kinds.RecordOutput(ctx, FailResult{Attempts: attempt, Snoozes: meta.Snoozes})
}

var failKind = kinds.Kind{
	Run:       kinds.RunGo,
	AddWorker: func(w *river.Workers, timeout kinds.TimeoutFunc) { kinds.AddWorker(w, &FailWorker{}, timeout) },
	Name:      "fail",
	Queue:     river.QueueDefault,
	Description: "Fails its first `times` attempts with `message`, then succeeds with the attempt count; " +
		"with `permanent`, its first failure discards it at once; with `snooze`, it is put off that long `times` times without counting attempts.",
	ArgsSchema: json.RawMessage(`{"type":"object","additionalProperties":false,"required":["times"],` +
		`"properties":{"times":{"type":"integer","minimum":0,"maximum":1000},` +
		`"message":{"type":"string","minLength":1,"maxLength":4096,"default":"failed on purpose"},` +
		`"permanent":{"type":"boolean","default":false},` +
		`"snooze":{"type":"string","description":"A Go duration, 1ms to 1h, such as 2s."}}}`),
	ResultSchema: json.RawMessage(`{"type":"object","properties":{"attempts":{"type":"integer"},"snoozes":{"type":"integer"}}}`),
	Decode: func(raw json.RawMessage, fe *kinds.Errors) river.JobArgs {
		var wire struct {
			Times     *int    `json:"times"`
			Message   *string `json:"message"`
			Permanent *bool   `json:"permanent"`
			Snooze    *string `json:"snooze"`
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
		if wire.Permanent != nil {
			args.Permanent = *wire.Permanent
		}
		if wire.Snooze != nil {
			d, err := time.ParseDuration(*wire.Snooze)
			switch {
			case err != nil || d < time.Millisecond || d > FailSnoozeMax:
				fe.Add("snooze", "must be a duration between 1ms and %s, such as \"2s\"", FailSnoozeMax)
				ok = false
			case args.Permanent:
				fe.Add("snooze", "cannot be given together with permanent")
				ok = false
			default:
				args.Snooze = *wire.Snooze
			}
		}
		if !ok {
			return nil
		}
		return args
	},
}
