package jobs

import (
	"encoding/json"
	"errors"
	"slices"

	"github.com/riverqueue/river"

	"github.com/taskd/taskd/internal/strictjson"
)

// Kind describes one kind of task that taskd can run.
type Kind struct {
	// Name is what clients put in a task's "kind".
	Name string
	// Queue is where tasks of this kind go when the submission names none.
	Queue string
	// Description says what the kind does, for GET /v1/kinds.
	Description string
	// Schema is a JSON Schema (2020-12) of the kind's args.
	Schema json.RawMessage
	// Result is a JSON Schema of the kind's result.
	Result json.RawMessage

	// decode validates raw args strictly and returns River job args, adding
	// problems to fe (paths relative to "args").
	decode func(raw json.RawMessage, fe *fieldErrors) river.JobArgs
}

// Kinds returns the built-in kinds, sorted by name.
func Kinds() []Kind {
	return []Kind{cpuKind, doubleKind, failKind, sleepKind}
}

// KindNames returns the names of the built-in kinds, sorted.
func KindNames() []string {
	names := make([]string, 0, 4)
	for _, k := range Kinds() {
		names = append(names, k.Name)
	}
	slices.Sort(names)
	return names
}

func kindByName(name string) (Kind, bool) {
	for _, k := range Kinds() {
		if k.Name == name {
			return k, true
		}
	}
	return Kind{}, false
}

// addWorkers registers a worker for every built-in kind.
func addWorkers(workers *river.Workers) {
	river.AddWorker(workers, &CPUWorker{})
	river.AddWorker(workers, &DoubleWorker{})
	river.AddWorker(workers, &FailWorker{})
	river.AddWorker(workers, &SleepWorker{})
}

// decodeArgs decodes raw args strictly into dst. A missing or null args is
// decoded as an empty object so that required fields are reported by name.
func decodeArgs(raw json.RawMessage, dst any, fe *fieldErrors) bool {
	if len(raw) == 0 || string(raw) == "null" {
		raw = json.RawMessage("{}")
	}
	err := strictjson.Unmarshal(raw, dst)
	if err == nil {
		return true
	}
	var jerr *strictjson.Error
	if errors.As(err, &jerr) {
		fe.add(jerr.Field, "%s", jerr.Message)
		if jerr.Field == "" {
			fe.errs[len(fe.errs)-1].Message = "must be a JSON object"
		}
		return false
	}
	fe.add("", "%s", err.Error())
	return false
}
