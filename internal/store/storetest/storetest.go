// Package storetest has the helpers that tests of several packages use to
// watch tasks in the store: waiting for a state or for attempts, and
// reading attempts' outcomes.
package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/taskd/taskd/internal/store"
)

// WaitTask polls task id until cond holds, failing the test after timeout.
func WaitTask(t testing.TB, st *store.Store, id int64, timeout time.Duration, cond func(*store.Task) bool) *store.Task {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		task, err := st.Task(context.Background(), id)
		if err != nil {
			t.Fatalf("getting task %d: %v", id, err)
		}
		if cond(task) {
			return task
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %d: condition not met within %s; last state %s, attempts %+v, errors %+v",
				id, timeout, task.State, task.Attempts, task.Errors)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
}

// InState is a WaitTask condition: the task is in state.
func InState(state string) func(*store.Task) bool {
	return func(t *store.Task) bool { return t.State == state }
}

// FinishedAttempts waits for n recorded attempts of task id and returns
// them. An attempt's row is written before its task's state changes, but a
// test may also wait for attempts whose task state it does not look at.
func FinishedAttempts(t testing.TB, st *store.Store, id int64, n int) []store.Attempt {
	t.Helper()
	task := WaitTask(t, st, id, 10*time.Second, func(task *store.Task) bool {
		return len(finished(task.Attempts)) >= n
	})
	return finished(task.Attempts)
}

func finished(attempts []store.Attempt) []store.Attempt {
	var out []store.Attempt
	for _, a := range attempts {
		if a.Outcome != store.OutcomeRunning {
			out = append(out, a)
		}
	}
	return out
}

// Outcomes lists the attempts' outcomes.
func Outcomes(attempts []store.Attempt) []string {
	out := make([]string, len(attempts))
	for i, a := range attempts {
		out[i] = a.Outcome
	}
	return out
}

// Compact removes the whitespace PostgreSQL's jsonb output adds.
func Compact(raw []byte) string {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return string(raw)
	}
	return buf.String()
}
