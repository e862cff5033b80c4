package http_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/taskd/taskd/client"
	"github.com/taskd/taskd/internal/config"
	"github.com/taskd/taskd/internal/kinds"
	"github.com/taskd/taskd/internal/kinds/builtin"
)

// A task's backoff and timeout are checked at submission, every problem
// under its field's path, and nothing is inserted.
func TestTaskPolicyValidation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, tc := range []struct {
		name, body string
		fields     []string
	}{
		{"every field out of bounds",
			`{"kind":"double","args":{"value":1},"backoff":{"initial":"10ms","max":"200h","multiplier":0.5,"jitter":2},"timeout":"500ms"}`,
			[]string{"backoff.initial", "backoff.max", "backoff.multiplier", "backoff.jitter", "timeout"}},
		{"not durations", `{"kind":"double","args":{"value":1},"backoff":{"initial":"soon","max":"1"},"timeout":"30"}`,
			[]string{"backoff.initial", "backoff.max", "timeout"}},
		{"initial past the default max", `{"kind":"double","args":{"value":1},"backoff":{"initial":"2h"}}`, []string{"backoff.initial"}},
		{"max below the default initial", `{"kind":"double","args":{"value":1},"backoff":{"max":"500ms"}}`, []string{"backoff.max"}},
		{"initial past max", `{"kind":"double","args":{"value":1},"backoff":{"initial":"1m","max":"30s"}}`, []string{"backoff.initial"}},
		{"timeout too long for a kind run in taskd", `{"kind":"sleep","args":{"ms":1},"timeout":"13h"}`, []string{"timeout"}},
		{"with other problems", `{"kind":"double","args":{},"priority":9,"timeout":"0s"}`, []string{"args.value", "priority", "timeout"}},
		// Decoding problems come one at a time, under their path.
		{"unknown backoff field", `{"kind":"double","args":{"value":1},"backoff":{"factor":2}}`, []string{"backoff.factor"}},
		{"wrong type", `{"kind":"double","args":{"value":1},"backoff":{"multiplier":"2"}}`, []string{"backoff.multiplier"}},
		{"backoff not an object", `{"kind":"double","args":{"value":1},"backoff":"1s"}`, []string{"backoff"}},
		{"timeout not a string", `{"kind":"double","args":{"value":1},"timeout":30}`, []string{"timeout"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantProblem(t, b.post(t, "/v1/tasks", tc.body), http.StatusUnprocessableEntity, typeValidation, tc.fields...)
		})
	}
	t.Run("batch", func(t *testing.T) {
		r := b.post(t, "/v1/batches", `{"tasks":[
			{"kind":"double","args":{"value":1},"backoff":{"initial":"2s"},"timeout":"10s"},
			{"kind":"double","args":{"value":2},"backoff":{"multiplier":11}},
			{"kind":"double","args":{"value":3}},
			{"kind":"sleep","args":{"ms":1},"timeout":"1ms"}]}`)
		wantProblem(t, r, http.StatusUnprocessableEntity, typeValidation, "tasks[1].backoff.multiplier", "tasks[3].timeout")
	})
	t.Run("batch decoding", func(t *testing.T) {
		r := b.post(t, "/v1/batches", `{"tasks":[{"kind":"double","args":{"value":1}},{"kind":"double","args":{"value":1},"backoff":{"initial":"1s","factor":3}}]}`)
		wantProblem(t, r, http.StatusUnprocessableEntity, typeValidation, "tasks[1].backoff.factor")
	})
	if n := b.count(t, "river_job"); n != 0 {
		t.Errorf("%d tasks inserted, want none", n)
	}
}

var defaultBackoff = client.Backoff{Initial: new("1s"), Max: new("1h"), Multiplier: new(2.0), Jitter: new(0.1)}

func wantPolicy(t *testing.T, what string, task client.TaskSummary, wantBackoff client.Backoff, wantTimeout string) {
	t.Helper()
	got, _ := json.Marshal(task.Backoff)
	want, _ := json.Marshal(wantBackoff)
	if string(got) != string(want) {
		t.Errorf("%s: backoff %s, want %s", what, got, want)
	}
	if task.Timeout == nil || *task.Timeout != wantTimeout {
		t.Errorf("%s: timeout %v, want %q", what, task.Timeout, wantTimeout)
	}
}

// Every answer with a task shows the policy in effect: its own fields, the
// rest its kind's or the default.
func TestTaskShowsPolicyInEffect(t *testing.T) {
	t.Parallel()
	b := setup(t)
	own := client.Backoff{Initial: new("2s"), Max: new("1h"), Multiplier: new(2.0), Jitter: new(0.0)}

	created := b.createTask(t, `{"kind":"double","args":{"value":1},"backoff":{"initial":"2000ms","jitter":0},"timeout":"30s"}`)
	wantPolicy(t, "201", created.TaskSummary, own, "30s")
	wantPolicy(t, "GET", b.getTask(t, created.ID).TaskSummary, own, "30s")

	plain := b.createTask(t, `{"kind":"double","args":{"value":1}}`)
	wantPolicy(t, "default", plain.TaskSummary, defaultBackoff, "15m")
	sleep := b.createTask(t, `{"kind":"sleep","args":{"ms":1},"backoff":{}}`)
	wantPolicy(t, "sleep, the kind's timeout", sleep.TaskSummary, defaultBackoff, "1h1m")

	r := b.post(t, "/v1/batches", `{"tasks":[{"kind":"double","args":{"value":1},"timeout":"5m"},{"kind":"double","args":{"value":2}}]}`)
	wantStatus(t, r, http.StatusCreated)
	var batch apiBatchCreated
	decode(t, r, &batch)
	wantPolicy(t, "batch task with its own", b.getTask(t, batch.TaskIDs[0]).TaskSummary, defaultBackoff, "5m")
	wantPolicy(t, "batch task without", b.getTask(t, batch.TaskIDs[1]).TaskSummary, defaultBackoff, "15m")
	if got := b.getTask(t, batch.TaskIDs[0]).BatchID; got == nil || *got != batch.ID {
		t.Errorf("batch task's batch_id %v, want %d: its own policy must not replace its batch", got, batch.ID)
	}

	r = b.get(t, "/v1/tasks?limit=10")
	wantStatus(t, r, http.StatusOK)
	var list apiList
	decode(t, r, &list)
	for _, task := range list.Tasks {
		if task.ID == created.ID {
			wantPolicy(t, "list", task, own, "30s")
		}
	}
}

// A task's own backoff decides when it is retried: initial 1s, multiplier
// 1, no jitter waits one second after every failure, where the default
// would wait 4 s and more after the third.
func TestTaskBackoffSchedulesRetry(t *testing.T) {
	t.Parallel()
	b := setupRunning(t)
	task := b.createTask(t, `{"kind":"fail","args":{"times":5},"max_attempts":6,"backoff":{"initial":"1s","multiplier":1,"jitter":0}}`)
	wantPolicy(t, "201", task.TaskSummary, client.Backoff{Initial: new("1s"), Max: new("1h"), Multiplier: new(1.0), Jitter: new(0.0)}, "15m")

	// Each wait lasts a second, and three of them follow the third failure
	// or later: polling sees one.
	waiting := b.waitTask(t, task.ID, "a retry scheduled after the third failure", waitTimeout, func(a apiTask) bool {
		return len(a.Errors) >= 3 && a.NextRetryAt != nil && len(a.Attempts) == len(a.Errors) && a.Attempts[len(a.Attempts)-1].FinishedAt != nil
	})
	failedAt := *waiting.Attempts[len(waiting.Attempts)-1].FinishedAt
	wait := waiting.NextRetryAt.Sub(failedAt)
	// River computes the retry after the attempt's row is written: the wait
	// starts a little after finished_at; the default policy would be ≥ 3.6 s.
	if wait < time.Second-time.Millisecond || wait >= 2*time.Second {
		t.Errorf("next_retry_at %s is %s after the failed attempt finished (%s), want about 1s", waiting.NextRetryAt, wait, failedAt)
	}

	done := b.waitState(t, task.ID, "completed", waitTimeout)
	if got := done.outcomes(); !slices.Equal(got, []string{"failed", "failed", "failed", "failed", "failed", "completed"}) {
		t.Errorf("outcomes %v", got)
	}
	if done.NextRetryAt != nil {
		t.Errorf("completed task shows next_retry_at %s", done.NextRetryAt)
	}
}

// An attempt that runs past the task's own timeout is cut off, recorded
// with outcome timeout, and retried.
func TestTaskTimeoutRetried(t *testing.T) {
	t.Parallel()
	b := setupRunning(t)
	task := b.createTask(t, `{"kind":"sleep","args":{"ms":5000},"timeout":"1s","max_attempts":2,"backoff":{"initial":"100ms"}}`)
	wantPolicy(t, "201", task.TaskSummary, client.Backoff{Initial: new("100ms"), Max: new("1h"), Multiplier: new(2.0), Jitter: new(0.1)}, "1s")
	// Without the timeout, the first attempt would complete.
	done := b.waitState(t, task.ID, "discarded", waitTimeout)
	if got := done.outcomes(); !slices.Equal(got, []string{"timeout", "timeout"}) {
		t.Errorf("outcomes %v, want two timeouts (%s)", got, done)
	}
	if len(done.Errors) != 2 {
		t.Errorf("errors %+v, want one per attempt", done.Errors)
	}
}

// A declared kind's backoff and timeout from the configuration file are
// the default of its tasks: the lease a claim gets and the wait after a
// failure; a task's own fields win.
func TestKindPolicyFromConfig(t *testing.T) {
	t.Parallel()
	f, err := config.Parse("taskd.yaml", []byte(`kinds:
  - name: pull
    run: external
    timeout: 20s
    backoff: {initial: 30s, multiplier: 1, jitter: 0}
`), t.TempDir(), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	reg, err := kinds.NewRegistry(append(builtin.Kinds(), f.Kinds...)...)
	if err != nil {
		t.Fatal(err)
	}
	b := setupWith(t, setupOpts{Kinds: reg})

	kindBackoff := client.Backoff{Initial: new("30s"), Max: new("1h"), Multiplier: new(1.0), Jitter: new(0.0)}
	ownBackoff := client.Backoff{Initial: new("1m"), Max: new("1h"), Multiplier: new(1.0), Jitter: new(0.0)}
	plain := b.createTask(t, `{"kind":"pull","args":{}}`)
	wantPolicy(t, "the kind's", plain.TaskSummary, kindBackoff, "20s")
	own := b.createTask(t, `{"kind":"pull","args":{},"backoff":{"initial":"1m"},"timeout":"10s"}`)
	wantPolicy(t, "the task's", own.TaskSummary, ownBackoff, "10s")
	// An external kind's timeout is a lease: 5s to 1h.
	wantProblem(t, b.post(t, "/v1/tasks", `{"kind":"pull","args":{},"timeout":"2s"}`), http.StatusUnprocessableEntity, typeValidation, "timeout")

	r := b.post(t, "/v1/claims", `{"kinds":["pull"],"max":2,"wait":"0s"}`)
	wantStatus(t, r, http.StatusOK)
	var claimed client.ClaimList
	decode(t, r, &claimed)
	if len(claimed.Tasks) != 2 {
		t.Fatalf("claimed %d tasks, want 2: %s", len(claimed.Tasks), r)
	}
	leases := map[int64]client.ClaimedTask{}
	for _, c := range claimed.Tasks {
		leases[c.ID] = c
	}
	// One statement claimed both: their leases differ by 20s - 10s.
	if d := leases[plain.ID].LeaseExpiresAt.Sub(leases[own.ID].LeaseExpiresAt); d != 10*time.Second {
		t.Errorf("leases end %s apart, want the kind's 20s against the task's 10s", d)
	}

	for id, wantWait := range map[int64]time.Duration{plain.ID: 30 * time.Second, own.ID: time.Minute} {
		r := b.post(t, "/v1/tasks/"+strconv.FormatInt(id, 10)+"/fail", `{"lease":"`+leases[id].Lease+`","error":"boom"}`)
		wantStatus(t, r, http.StatusOK)
		var task apiTask
		decode(t, r, &task)
		if task.State != "retryable" || task.NextRetryAt == nil || len(task.Attempts) != 1 || task.Attempts[0].FinishedAt == nil {
			t.Fatalf("task %d after /fail: %s, want retryable with next_retry_at", id, task)
		}
		// The failure's row and the new scheduled_at share the statement's
		// clock, and there is no jitter: the wait is exact.
		if got := task.NextRetryAt.Sub(*task.Attempts[0].FinishedAt); got != wantWait {
			t.Errorf("task %d: retry %s after the failure, want %s", id, got, wantWait)
		}
	}
}
