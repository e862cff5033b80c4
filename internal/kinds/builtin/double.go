package builtin

import (
	"context"
	"encoding/json"
	"math"

	"github.com/riverqueue/river"

	"github.com/taskd/taskd/internal/kinds"
)

// DoubleArgs are the args of the "double" kind: the FastAPI article's
// process_data, which doubles a number.
type DoubleArgs struct {
	Value float64 `json:"value"`
}

// Kind implements river.JobArgs.
func (DoubleArgs) Kind() string { return "double" }

// DoubleResult is the result of a "double" task.
type DoubleResult struct {
	Result float64 `json:"result"`
}

// DoubleWorker works "double" tasks.
type DoubleWorker struct {
	river.WorkerDefaults[DoubleArgs]
}

// Work records value*2 as the task's result.
func (w *DoubleWorker) Work(ctx context.Context, job *river.Job[DoubleArgs]) error {
	return kinds.RecordOutput(ctx, DoubleResult{Result: job.Args.Value * 2})
}

var doubleKind = kinds.Kind{
	Run:         kinds.RunGo,
	AddWorker:   func(w *river.Workers, timeout kinds.TimeoutFunc) { kinds.AddWorker(w, &DoubleWorker{}, timeout) },
	Name:        "double",
	Queue:       river.QueueDefault,
	Description: "Doubles a number: {\"value\": 21} gives {\"result\": 42}.",
	ArgsSchema: json.RawMessage(`{"type":"object","additionalProperties":false,"required":["value"],` +
		`"properties":{"value":{"type":"number","description":"Any number whose double is finite."}}}`),
	ResultSchema: json.RawMessage(`{"type":"object","properties":{"result":{"type":"number"}}}`),
	Decode: func(raw json.RawMessage, fe *kinds.Errors) river.JobArgs {
		var wire struct {
			Value *float64 `json:"value"`
		}
		if !kinds.DecodeArgs(raw, &wire, fe) {
			return nil
		}
		switch {
		case wire.Value == nil:
			fe.Add("value", "is required")
		case math.IsInf(*wire.Value*2, 0):
			fe.Add("value", "is too large: its double is not a finite number")
		default:
			return DoubleArgs{Value: *wire.Value}
		}
		return nil
	},
}
