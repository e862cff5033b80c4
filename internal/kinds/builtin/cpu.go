package builtin

import (
	"context"
	"encoding/json"

	"github.com/riverqueue/river"

	"github.com/taskd/taskd/internal/kinds"
)

// CPUMaxN bounds "cpu"'s n so that one task takes seconds, not hours.
const CPUMaxN = 10_000_000

// QueueCPU is the queue for CPU-bound kinds, sized to the number of cores by
// default so that they never starve each other or the API of CPU.
const QueueCPU = "cpu"

// CPUArgs are the args of the "cpu" kind, a real CPU-bound computation.
type CPUArgs struct {
	N int `json:"n"`
}

// Kind implements river.JobArgs.
func (CPUArgs) Kind() string { return "cpu" }

// CPUResult is the result of a "cpu" task.
type CPUResult struct {
	Primes int `json:"primes"`
}

// CPUWorker works "cpu" tasks.
type CPUWorker struct {
	river.WorkerDefaults[CPUArgs]
}

// Work counts the primes below N by trial division, checking for
// cancellation now and then.
func (w *CPUWorker) Work(ctx context.Context, job *river.Job[CPUArgs]) error {
	primes, err := countPrimes(ctx, job.Args.N)
	if err != nil {
		return err
	}
	return kinds.RecordOutput(ctx, CPUResult{Primes: primes})
}

func countPrimes(ctx context.Context, n int) (int, error) {
	count := 0
	for k := 2; k < n; k++ {
		if k%65536 == 0 {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
		}
		if isPrime(k) {
			count++
		}
	}
	return count, nil
}

func isPrime(k int) bool {
	if k < 4 {
		return k >= 2
	}
	if k%2 == 0 {
		return false
	}
	for d := 3; d*d <= k; d += 2 {
		if k%d == 0 {
			return false
		}
	}
	return true
}

var cpuKind = kinds.Kind{
	Run:         kinds.RunGo,
	AddWorker:   func(w *river.Workers, timeout kinds.TimeoutFunc) { kinds.AddWorker(w, &CPUWorker{}, timeout) },
	Name:        "cpu",
	Queue:       QueueCPU,
	Description: "Counts the primes below n (1 to 10000000) by trial division; runs on the cpu queue.",
	ArgsSchema: json.RawMessage(`{"type":"object","additionalProperties":false,"required":["n"],` +
		`"properties":{"n":{"type":"integer","minimum":1,"maximum":10000000}}}`),
	ResultSchema: json.RawMessage(`{"type":"object","properties":{"primes":{"type":"integer"}}}`),
	Decode: func(raw json.RawMessage, fe *kinds.Errors) river.JobArgs {
		var wire struct {
			N *int `json:"n"`
		}
		if !kinds.DecodeArgs(raw, &wire, fe) {
			return nil
		}
		switch {
		case wire.N == nil:
			fe.Add("n", "is required")
		case *wire.N < 1 || *wire.N > CPUMaxN:
			fe.Add("n", "must be between 1 and %d", CPUMaxN)
		default:
			return CPUArgs{N: *wire.N}
		}
		return nil
	},
}
