package builtin

import (
	"context"
	"encoding/json"
	"time"

	"github.com/riverqueue/river"

	"github.com/taskd/taskd/internal/kinds"
)

// SleepMaxMS is the longest a "sleep" task may sleep: one hour.
const SleepMaxMS = 3_600_000

// SleepArgs are the args of the "sleep" kind, a stand-in for I/O-bound work.
type SleepArgs struct {
	MS int64 `json:"ms"`
}

// Kind implements river.JobArgs.
func (SleepArgs) Kind() string { return "sleep" }

// SleepResult is the result of a "sleep" task.
type SleepResult struct {
	SleptMS int64 `json:"slept_ms"`
}

// SleepWorker works "sleep" tasks.
type SleepWorker struct {
	river.WorkerDefaults[SleepArgs]
}

// Work sleeps for the given time, returning early with the context's error
// when the task is cancelled, times out or the process shuts down.
func (w *SleepWorker) Work(ctx context.Context, job *river.Job[SleepArgs]) error {
	t := time.NewTimer(time.Duration(job.Args.MS) * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	return kinds.RecordOutput(ctx, SleepResult{SleptMS: job.Args.MS})
}

var sleepKind = kinds.Kind{
	Run:         kinds.RunGo,
	AddWorker:   func(w *river.Workers, timeout kinds.TimeoutFunc) { kinds.AddWorker(w, &SleepWorker{}, timeout) },
	Name:        "sleep",
	Queue:       river.QueueDefault,
	Description: "Sleeps for ms milliseconds (0 to 3600000), honouring cancellation.",
	// The longest sleep plus a minute, whatever the service's job
	// timeout; a task's own timeout may be shorter (to try timeouts).
	Timeout: time.Duration(SleepMaxMS)*time.Millisecond + time.Minute,
	ArgsSchema: json.RawMessage(`{"type":"object","additionalProperties":false,"required":["ms"],` +
		`"properties":{"ms":{"type":"integer","minimum":0,"maximum":3600000}}}`),
	ResultSchema: json.RawMessage(`{"type":"object","properties":{"slept_ms":{"type":"integer"}}}`),
	Decode: func(raw json.RawMessage, fe *kinds.Errors) river.JobArgs {
		var wire struct {
			MS *int64 `json:"ms"`
		}
		if !kinds.DecodeArgs(raw, &wire, fe) {
			return nil
		}
		switch {
		case wire.MS == nil:
			fe.Add("ms", "is required")
		case *wire.MS < 0 || *wire.MS > SleepMaxMS:
			fe.Add("ms", "must be between 0 and %d", SleepMaxMS)
		default:
			return SleepArgs{MS: *wire.MS}
		}
		return nil
	},
}
