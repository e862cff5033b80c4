package http_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/taskd/taskd/client"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	taskdhttp "github.com/taskd/taskd/internal/http"
)

// taskKeys are the members of a single task's JSON object.
var taskKeys = []string{
	"after_batch", "args", "attempt", "attempts", "backoff", "batch_id", "cancel_requested", "created_at", "errors", "finished_at", "id", "kind",
	"max_attempts", "next_retry_at", "priority", "queue", "result", "schedule", "scheduled_at", "started_at", "state", "tags", "timeout",
}

func TestTaskCreate(t *testing.T) {
	t.Parallel()
	b := setupRunning(t)

	// The body is JSON whatever the Content-Type says.
	tests := []struct {
		name    string
		headers []string
	}{
		{name: "no content type"},
		{name: "text/plain", headers: []string{"Content-Type", "text/plain"}},
		{name: "form", headers: []string{"Content-Type", "application/x-www-form-urlencoded"}},
		{name: "json", headers: []string{"Content-Type", "application/json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			before := time.Now()
			r := b.post(t, "/v1/tasks", `{"kind":"double","args":{"value":21}}`, tt.headers...)
			wantStatus(t, r, http.StatusCreated)
			if ct := r.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("want Content-Type application/json, got %q", ct)
			}
			if v := r.Header.Get("X-Content-Type-Options"); v != "nosniff" {
				t.Errorf("want X-Content-Type-Options nosniff, got %q", v)
			}

			raw := rawFields(t, r)
			keys := make([]string, 0, len(raw))
			for k := range raw {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			if !slices.Equal(keys, taskKeys) {
				t.Errorf("want members %q, got %q", taskKeys, keys)
			}
			var id json.Number
			if err := json.Unmarshal(raw["id"], &id); err != nil {
				t.Errorf("id %s is not a number: %v", raw["id"], err)
			}
			for field, want := range map[string]string{
				"kind": `"double"`, "queue": `"default"`, "state": `"available"`, "args": `{"value":21}`,
				"priority": `1`, "attempt": `0`, "max_attempts": `25`, "tags": `[]`, "started_at": `null`,
				"finished_at": `null`, "result": `null`, "errors": `[]`, "attempts": `[]`, "cancel_requested": `false`,
				"batch_id": `null`, "after_batch": `null`, "schedule": `null`, "next_retry_at": `null`,
				// In effect though the task set neither: the defaults.
				"backoff": `{"initial":"1s","max":"1h","multiplier":2,"jitter":0.1}`, "timeout": `"15m"`,
			} {
				wantJSON(t, field, raw[field], want)
			}

			var task apiTask
			decode(t, r, &task)
			if task.ID < 1 {
				t.Errorf("want a positive id, got %d", task.ID)
			}
			if want := "/v1/tasks/" + itoa(task.ID); r.Header.Get("Location") != want {
				t.Errorf("want Location %q, got %q", want, r.Header.Get("Location"))
			}
			after := time.Now()
			if task.CreatedAt.Before(before.Add(-time.Second)) || task.CreatedAt.After(after.Add(time.Second)) {
				t.Errorf("created_at %s is not between %s and %s", task.CreatedAt, before, after)
			}
			if task.ScheduledAt.After(after.Add(time.Second)) {
				t.Errorf("scheduled_at %s is in the future", task.ScheduledAt)
			}

			done := b.waitState(t, task.ID, "completed", waitTimeout)
			wantJSON(t, "result", done.Result, `{"result":42}`)
			wantJSON(t, "args", done.Args, `{"value":21}`)
			if len(done.Errors) != 0 {
				t.Errorf("want no errors, got %+v", done.Errors)
			}
			if done.Attempt != 1 || done.StartedAt == nil || done.FinishedAt == nil {
				t.Errorf("want attempt 1 with started_at and finished_at, got %s", done)
			}
			if len(done.Attempts) != 1 {
				t.Fatalf("want one attempt, got %s", done)
			}
			a := done.Attempts[0]
			if a.Outcome != "completed" || a.Attempt != 1 || a.Worker == "" || a.DurationMS < 0 || a.FinishedAt == nil || a.Error != nil {
				t.Errorf("want attempt 1 completed by a worker, got %+v", a)
			}
			if a.Worker != b.jobs.ID() {
				t.Errorf("want worker %q, got %q", b.jobs.ID(), a.Worker)
			}
		})
	}
}

// TestTaskReplayShowsProgress: an idempotent replay answers with the task as
// it is now, not as it was inserted.
func TestTaskReplayShowsProgress(t *testing.T) {
	t.Parallel()
	b := setupRunning(t)
	const body = `{"kind":"double","args":{"value":21}}`
	key := []string{"Idempotency-Key", "replay-after-run"}
	r := b.post(t, "/v1/tasks", body, key...)
	wantStatus(t, r, http.StatusCreated)
	var created apiTask
	decode(t, r, &created)
	b.waitState(t, created.ID, "completed", waitTimeout)

	r = b.post(t, "/v1/tasks", body, key...)
	wantStatus(t, r, http.StatusOK)
	var replayed apiTask
	decode(t, r, &replayed)
	if replayed.ID != created.ID || replayed.State != "completed" || len(replayed.Attempts) != 1 {
		t.Errorf("want task %d completed with its attempt, got %s", created.ID, replayed)
	}
	wantJSON(t, "result", replayed.Result, `{"result":42}`)
}

// TestFieldNamesAreCaseSensitive: JSON member names are case-sensitive and
// unknown members are rejected, so a member that differs from a known one
// only in case is unknown. (encoding/json matches struct fields
// case-insensitively, and DisallowUnknownFields does not change that.)
func TestFieldNamesAreCaseSensitive(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tests := []struct {
		path, body string
		field      string
	}{
		{path: "/v1/tasks", body: `{"Kind":"double","args":{"value":1}}`, field: "Kind"},
		{path: "/v1/tasks", body: `{"kind":"double","ARGS":{"value":1}}`, field: "ARGS"},
		{path: "/v1/tasks", body: `{"kind":"double","args":{"Value":1}}`, field: "args.Value"},
		{path: "/v1/tasks", body: `{"kind":"double","args":{"value":1},"Priority":2}`, field: "Priority"},
		{path: "/v1/batches", body: `{"Tasks":[{"kind":"double","args":{"value":1}}]}`, field: "Tasks"},
		{path: "/v1/batches", body: `{"tasks":[{"KIND":"double","args":{"value":1}}]}`, field: "tasks[0].KIND"},
	}
	for _, tt := range tests {
		t.Run(tt.path+" "+tt.field, func(t *testing.T) {
			t.Parallel()
			wantProblem(t, b.post(t, tt.path, tt.body), http.StatusUnprocessableEntity, typeValidation, tt.field)
		})
	}
}

// TestTaskKinds runs every kind once; the tasks are submitted together so
// that their retries overlap.
func TestTaskKinds(t *testing.T) {
	t.Parallel()
	b := setupRunning(t)

	tests := []struct {
		name     string
		body     string
		queue    string
		args     string
		state    string
		result   string
		errors   []string // messages of the errors, attempt 1, 2, ...
		outcomes []string
	}{
		{
			name: "double", body: `{"kind":"double","args":{"value":-1.25}}`, queue: "default",
			args: `{"value":-1.25}`, state: "completed", result: `{"result":-2.5}`, outcomes: []string{"completed"},
		},
		{
			name: "sleep", body: `{"kind":"sleep","args":{"ms":10}}`, queue: "default",
			args: `{"ms":10}`, state: "completed", result: `{"slept_ms":10}`, outcomes: []string{"completed"},
		},
		{
			name: "fail once", body: `{"kind":"fail","args":{"times":1,"message":"boom"}}`, queue: "default",
			args: `{"times":1,"message":"boom"}`, state: "completed", result: `{"attempts":2}`,
			errors: []string{"boom"}, outcomes: []string{"failed", "completed"},
		},
		{
			name: "fail beyond max_attempts", body: `{"kind":"fail","args":{"times":5},"max_attempts":2}`, queue: "default",
			args: `{"times":5,"message":"failed on purpose"}`, state: "discarded", result: `null`,
			errors: []string{"failed on purpose", "failed on purpose"}, outcomes: []string{"failed", "failed"},
		},
		{
			name: "fail zero times", body: `{"kind":"fail","args":{"times":0}}`, queue: "default",
			args: `{"times":0,"message":"failed on purpose"}`, state: "completed", result: `{"attempts":1}`,
			outcomes: []string{"completed"},
		},
		{
			name: "cpu", body: `{"kind":"cpu","args":{"n":100}}`, queue: "cpu",
			args: `{"n":100}`, state: "completed", result: `{"primes":25}`, outcomes: []string{"completed"},
		},
	}
	ids := make([]int64, len(tests))
	for i, tt := range tests {
		task := b.createTask(t, tt.body)
		if task.Queue != tt.queue {
			t.Errorf("%s: want queue %q, got %q", tt.name, tt.queue, task.Queue)
		}
		ids[i] = task.ID
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			task := b.waitState(t, ids[i], tt.state, waitTimeout)
			if task.Queue != tt.queue {
				t.Errorf("want queue %q, got %q", tt.queue, task.Queue)
			}
			wantJSON(t, "args", task.Args, tt.args)
			wantJSON(t, "result", task.Result, tt.result)
			if len(task.Errors) != len(tt.errors) {
				t.Fatalf("want %d errors, got %s", len(tt.errors), task)
			}
			for j, e := range task.Errors {
				if e.Attempt != j+1 || e.Message != tt.errors[j] || e.At.IsZero() {
					t.Errorf("error %d: want attempt %d message %q, got %+v", j, j+1, tt.errors[j], e)
				}
			}
			if got := task.outcomes(); !slices.Equal(got, tt.outcomes) {
				t.Fatalf("want outcomes %q, got %q", tt.outcomes, got)
			}
			for j, a := range task.Attempts {
				if a.Attempt != j+1 || a.Worker == "" || a.DurationMS < 0 || a.FinishedAt == nil {
					t.Errorf("attempt %d: got %+v", j+1, a)
				}
				switch {
				case a.Outcome == "failed" && (a.Error == nil || *a.Error != tt.errors[j]):
					t.Errorf("attempt %d: want error %q, got %v", j+1, tt.errors[j], a.Error)
				case a.Outcome == "completed" && a.Error != nil:
					t.Errorf("attempt %d: completed with error %q", j+1, *a.Error)
				}
			}
			if task.Attempt != len(tt.outcomes) || task.FinishedAt == nil {
				t.Errorf("want attempt %d and finished_at, got %s", len(tt.outcomes), task)
			}
		})
	}
}

// TestTaskCreateOptions checks the optional fields of a submission. Workers
// do not run, so states stay as inserted.
func TestTaskCreateOptions(t *testing.T) {
	t.Parallel()
	b := setup(t)

	now := time.Now()
	future := now.Add(2 * time.Hour).UTC().Truncate(time.Second)
	past := now.Add(-time.Hour).UTC().Truncate(time.Second)
	tags32 := make([]string, 32)
	for i := range tags32 {
		tags32[i] = fmt.Sprintf("tag%02d", i)
	}
	tags32JSON, _ := json.Marshal(tags32)
	maxTag := strings.Repeat("t", 255)

	type check func(t *testing.T, task apiTask)
	state := func(want string) check {
		return func(t *testing.T, task apiTask) {
			if task.State != want {
				t.Errorf("want state %q, got %q", want, task.State)
			}
		}
	}
	scheduledNear := func(want time.Time, slack time.Duration) check {
		return func(t *testing.T, task apiTask) {
			if d := task.ScheduledAt.Sub(want); d < -slack || d > slack {
				t.Errorf("want scheduled_at %s (±%s), got %s", want, slack, task.ScheduledAt)
			}
		}
	}
	tests := []struct {
		name   string
		body   string
		checks []check
	}{
		{
			name: "defaults",
			body: `{"kind":"double","args":{"value":1}}`,
			checks: []check{state("available"), func(t *testing.T, task apiTask) {
				if task.Queue != "default" || task.Priority != 1 || task.MaxAttempts != 25 || len(task.Tags) != 0 {
					t.Errorf("want the defaults, got %s", task)
				}
			}},
		},
		{
			name: "null counts as absent",
			body: `{"kind":"double","args":{"value":1},"queue":null,"priority":null,"max_attempts":null,"scheduled_at":null,"delay":null,"tags":null}`,
			checks: []check{state("available"), func(t *testing.T, task apiTask) {
				if task.Queue != "default" || task.Priority != 1 || task.MaxAttempts != 25 || task.Tags == nil || len(task.Tags) != 0 {
					t.Errorf("want the defaults, got %s", task)
				}
			}},
		},
		{
			name: "queue",
			body: `{"kind":"double","args":{"value":1},"queue":"cpu"}`,
			checks: []check{func(t *testing.T, task apiTask) {
				if task.Queue != "cpu" {
					t.Errorf("want queue cpu, got %q", task.Queue)
				}
			}},
		},
		{
			name: "cpu kind on the default queue",
			body: `{"kind":"cpu","args":{"n":5},"queue":"default"}`,
			checks: []check{func(t *testing.T, task apiTask) {
				if task.Queue != "default" {
					t.Errorf("want queue default, got %q", task.Queue)
				}
			}},
		},
		{
			name: "max_attempts 1",
			body: `{"kind":"double","args":{"value":1},"max_attempts":1}`,
			checks: []check{func(t *testing.T, task apiTask) {
				if task.MaxAttempts != 1 {
					t.Errorf("want max_attempts 1, got %d", task.MaxAttempts)
				}
			}},
		},
		{
			name: "max_attempts 1000",
			body: `{"kind":"double","args":{"value":1},"max_attempts":1000}`,
			checks: []check{func(t *testing.T, task apiTask) {
				if task.MaxAttempts != 1000 {
					t.Errorf("want max_attempts 1000, got %d", task.MaxAttempts)
				}
			}},
		},
		{
			name: "tags",
			body: `{"kind":"double","args":{"value":1},"tags":["nightly","customer-42","a_b","` + maxTag + `"]}`,
			checks: []check{func(t *testing.T, task apiTask) {
				if want := []string{"nightly", "customer-42", "a_b", maxTag}; !slices.Equal(task.Tags, want) {
					t.Errorf("want tags %q, got %q", want, task.Tags)
				}
			}},
		},
		{
			name: "32 tags",
			body: `{"kind":"double","args":{"value":1},"tags":` + string(tags32JSON) + `}`,
			checks: []check{func(t *testing.T, task apiTask) {
				if !slices.Equal(task.Tags, tags32) {
					t.Errorf("want tags %q, got %q", tags32, task.Tags)
				}
			}},
		},
		{
			name:   "scheduled_at in the future",
			body:   `{"kind":"double","args":{"value":1},"scheduled_at":"` + future.Format(time.RFC3339) + `"}`,
			checks: []check{state("scheduled"), scheduledNear(future, 0)},
		},
		{
			name:   "scheduled_at with an offset and fraction",
			body:   `{"kind":"double","args":{"value":1},"scheduled_at":"` + future.In(time.FixedZone("", 2*3600)).Add(500*time.Millisecond).Format(time.RFC3339Nano) + `"}`,
			checks: []check{state("scheduled"), scheduledNear(future.Add(500*time.Millisecond), 0)},
		},
		{
			// docs/API.md: "On submission: scheduled when its delay or
			// scheduled_at lies in the future, otherwise available", and
			// openapi.json: "A time in the past runs the task at once".
			name: "scheduled_at in the past",
			body: `{"kind":"double","args":{"value":1},"scheduled_at":"` + past.Format(time.RFC3339) + `"}`,
			checks: []check{func(t *testing.T, task apiTask) {
				if task.State != "available" {
					t.Errorf("a task due in the past must be available at once, got state %q: "+
						"River makes every job inserted with an explicit ScheduledAt scheduled, "+
						"so it waits for River's scheduler (up to 5 s, leader only)", task.State)
				}
			}},
		},
		{
			name: "fail message of 4096 characters",
			body: `{"kind":"fail","args":{"times":1,"message":"` + strings.Repeat("é", 4096) + `"}}`,
			checks: []check{func(t *testing.T, task apiTask) {
				wantJSON(t, "args", task.Args, `{"times":1,"message":"`+strings.Repeat("é", 4096)+`"}`)
			}},
		},
		{
			name:   "delay",
			body:   `{"kind":"double","args":{"value":1},"delay":"1h"}`,
			checks: []check{state("scheduled"), scheduledNear(now.Add(time.Hour), 30*time.Second)},
		},
		{
			name:   "delay with null scheduled_at",
			body:   `{"kind":"double","args":{"value":1},"delay":"1h30m","scheduled_at":null}`,
			checks: []check{state("scheduled"), scheduledNear(now.Add(90*time.Minute), 30*time.Second)},
		},
		{
			name:   "delay 0s",
			body:   `{"kind":"double","args":{"value":1},"delay":"0s"}`,
			checks: []check{state("available"), scheduledNear(now, 30*time.Second)},
		},
		{
			name:   "delay 8760h",
			body:   `{"kind":"double","args":{"value":1},"delay":"8760h"}`,
			checks: []check{state("scheduled"), scheduledNear(now.Add(8760*time.Hour), 30*time.Second)},
		},
		{
			name: "fail message defaults",
			body: `{"kind":"fail","args":{"times":2}}`,
			checks: []check{func(t *testing.T, task apiTask) {
				wantJSON(t, "args", task.Args, `{"times":2,"message":"failed on purpose"}`)
			}},
		},
	}
	for p := 1; p <= 4; p++ {
		tests = append(tests, struct {
			name   string
			body   string
			checks []check
		}{
			name: fmt.Sprintf("priority %d", p),
			body: fmt.Sprintf(`{"kind":"double","args":{"value":1},"priority":%d}`, p),
			checks: []check{func(t *testing.T, task apiTask) {
				if task.Priority != p {
					t.Errorf("want priority %d, got %d", p, task.Priority)
				}
			}},
		})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			created := b.createTask(t, tt.body)
			got := b.getTask(t, created.ID)
			for _, c := range tt.checks {
				c(t, created)
			}
			if !t.Failed() { // GET shows what POST answered (checked below)
				for _, c := range tt.checks {
					c(t, got)
				}
			}
			// What POST answered is what GET shows.
			if !reflect.DeepEqual(normalize(created), normalize(got)) {
				t.Errorf("POST answered %s, GET shows %s", created, got)
			}
		})
	}
}

// normalize makes a task comparable across responses (time zones and
// JSON formatting of args aside).
func normalize(task apiTask) apiTask {
	task.CreatedAt = task.CreatedAt.UTC()
	task.ScheduledAt = task.ScheduledAt.UTC()
	var args any
	_ = json.Unmarshal(task.Args, &args)
	task.Args, _ = json.Marshal(args)
	return task
}

func TestTaskCreateInvalid(t *testing.T) {
	t.Parallel()
	b := setup(t)

	long := strings.Repeat("x", 4097)
	tags33, _ := json.Marshal(slices.Repeat([]string{"abc"}, 33))
	tooFar := time.Now().Add(366 * 24 * time.Hour).UTC().Format(time.RFC3339)

	tests := []struct {
		name   string
		body   string
		status int
		typ    string
		fields []string
		// message is a substring of the first field error's message.
		message string
	}{
		{name: "malformed JSON", body: `{"kind":`, status: 400, typ: typeSyntax, fields: []string{"body"}},
		{name: "malformed token", body: `{kind: "double"}`, status: 400, typ: typeSyntax, fields: []string{"body"}},
		{name: "trailing garbage", body: `{"kind":"double","args":{"value":1}} x`, status: 400, typ: typeSyntax, fields: []string{"body"}},
		{name: "two objects", body: `{"kind":"double","args":{"value":1}}{}`, status: 400, typ: typeSyntax, fields: []string{"body"}},
		{name: "empty body", body: ``, status: 400, typ: typeSyntax, fields: []string{"body"}},
		{name: "blank body", body: " \n\t", status: 400, typ: typeSyntax, fields: []string{"body"}},
		{name: "body an array", body: `[{"kind":"double","args":{"value":1}}]`, status: 422, typ: typeValidation, fields: []string{"body"}},
		{name: "body a string", body: `"double"`, status: 422, typ: typeValidation, fields: []string{"body"}},
		{name: "body a number", body: `42`, status: 422, typ: typeValidation, fields: []string{"body"}},
		{name: "missing kind", body: `{"args":{"value":1}}`, status: 422, typ: typeValidation, fields: []string{"kind"}, message: "cpu, double, fail, sleep"},
		{name: "empty kind", body: `{"kind":"","args":{"value":1}}`, status: 422, typ: typeValidation, fields: []string{"kind"}},
		{name: "kind not a string", body: `{"kind":7,"args":{"value":1}}`, status: 422, typ: typeValidation, fields: []string{"kind"}},
		{name: "unknown kind", body: `{"kind":"triple","args":{"value":1}}`, status: 422, typ: typeValidation, fields: []string{"kind"}, message: "cpu, double, fail, sleep"},
		{name: "unknown field", body: `{"kind":"double","args":{"value":1},"colour":"red"}`, status: 422, typ: typeValidation, fields: []string{"colour"}},
		{name: "value a string", body: `{"kind":"double","args":{"value":"21"}}`, status: 422, typ: typeValidation, fields: []string{"args.value"}},
		{name: "args missing", body: `{"kind":"double"}`, status: 422, typ: typeValidation, fields: []string{"args.value"}, message: "required"},
		{name: "args null", body: `{"kind":"double","args":null}`, status: 422, typ: typeValidation, fields: []string{"args.value"}, message: "required"},
		{name: "args empty", body: `{"kind":"double","args":{}}`, status: 422, typ: typeValidation, fields: []string{"args.value"}, message: "required"},
		{name: "value null", body: `{"kind":"double","args":{"value":null}}`, status: 422, typ: typeValidation, fields: []string{"args.value"}, message: "required"},
		{name: "args an array", body: `{"kind":"double","args":[21]}`, status: 422, typ: typeValidation, fields: []string{"args"}},
		{name: "args a number", body: `{"kind":"double","args":21}`, status: 422, typ: typeValidation, fields: []string{"args"}},
		{name: "unknown args field", body: `{"kind":"double","args":{"value":1,"factor":3}}`, status: 422, typ: typeValidation, fields: []string{"args.factor"}},
		{name: "double not finite", body: `{"kind":"double","args":{"value":1e308}}`, status: 422, typ: typeValidation, fields: []string{"args.value"}},
		{name: "double not finite negative", body: `{"kind":"double","args":{"value":-1e308}}`, status: 422, typ: typeValidation, fields: []string{"args.value"}},
		{name: "number too large", body: `{"kind":"double","args":{"value":1e400}}`, status: 422, typ: typeValidation, fields: []string{"args.value"}},
		{name: "sleep ms missing", body: `{"kind":"sleep","args":{}}`, status: 422, typ: typeValidation, fields: []string{"args.ms"}},
		{name: "sleep ms negative", body: `{"kind":"sleep","args":{"ms":-1}}`, status: 422, typ: typeValidation, fields: []string{"args.ms"}},
		{name: "sleep ms too long", body: `{"kind":"sleep","args":{"ms":3600001}}`, status: 422, typ: typeValidation, fields: []string{"args.ms"}},
		{name: "sleep ms fraction", body: `{"kind":"sleep","args":{"ms":1.5}}`, status: 422, typ: typeValidation, fields: []string{"args.ms"}},
		{name: "sleep ms huge", body: `{"kind":"sleep","args":{"ms":99999999999999999999}}`, status: 422, typ: typeValidation, fields: []string{"args.ms"}},
		{name: "cpu n 0", body: `{"kind":"cpu","args":{"n":0}}`, status: 422, typ: typeValidation, fields: []string{"args.n"}},
		{name: "cpu n too large", body: `{"kind":"cpu","args":{"n":10000001}}`, status: 422, typ: typeValidation, fields: []string{"args.n"}},
		{name: "fail times missing", body: `{"kind":"fail","args":{"message":"x"}}`, status: 422, typ: typeValidation, fields: []string{"args.times"}},
		{name: "fail times negative", body: `{"kind":"fail","args":{"times":-1}}`, status: 422, typ: typeValidation, fields: []string{"args.times"}},
		{name: "fail times too many", body: `{"kind":"fail","args":{"times":1001}}`, status: 422, typ: typeValidation, fields: []string{"args.times"}},
		{name: "fail message empty", body: `{"kind":"fail","args":{"times":1,"message":""}}`, status: 422, typ: typeValidation, fields: []string{"args.message"}},
		{name: "fail message too long", body: `{"kind":"fail","args":{"times":1,"message":"` + long + `"}}`, status: 422, typ: typeValidation, fields: []string{"args.message"}},
		{name: "fail times and message invalid", body: `{"kind":"fail","args":{"times":-1,"message":""}}`, status: 422, typ: typeValidation, fields: []string{"args.times", "args.message"}},
		{name: "NUL in args.message", body: `{"kind":"fail","args":{"times":1,"message":"a\u0000b"}}`, status: 422, typ: typeValidation, fields: []string{"args.message"}},
		{name: "NUL in kind", body: `{"kind":"dou\u0000ble","args":{"value":1}}`, status: 422, typ: typeValidation, fields: []string{"kind"}},
		{name: "NUL in a tag", body: `{"kind":"double","args":{"value":1},"tags":["ok_tag","ab\u0000c"]}`, status: 422, typ: typeValidation, fields: []string{"tags[1]"}},
		// PostgreSQL's numeric range is narrower than JSON's: these failed the insert with a 500.
		{name: "number too small for PostgreSQL", body: `{"kind":"double","args":{"value":1e-16384}}`, status: 422, typ: typeValidation, fields: []string{"args.value"}},
		{name: "number with too many decimals for PostgreSQL", body: `{"kind":"double","args":{"value":1.0e-16383}}`, status: 422, typ: typeValidation, fields: []string{"args.value"}},
		{name: "priority 0", body: `{"kind":"double","args":{"value":1},"priority":0}`, status: 422, typ: typeValidation, fields: []string{"priority"}},
		{name: "priority 5", body: `{"kind":"double","args":{"value":1},"priority":5}`, status: 422, typ: typeValidation, fields: []string{"priority"}},
		{name: "priority -1", body: `{"kind":"double","args":{"value":1},"priority":-1}`, status: 422, typ: typeValidation, fields: []string{"priority"}},
		{name: "priority 1.5", body: `{"kind":"double","args":{"value":1},"priority":1.5}`, status: 422, typ: typeValidation, fields: []string{"priority"}},
		{name: "priority a string", body: `{"kind":"double","args":{"value":1},"priority":"1"}`, status: 422, typ: typeValidation, fields: []string{"priority"}},
		{name: "max_attempts 0", body: `{"kind":"double","args":{"value":1},"max_attempts":0}`, status: 422, typ: typeValidation, fields: []string{"max_attempts"}},
		{name: "max_attempts 1001", body: `{"kind":"double","args":{"value":1},"max_attempts":1001}`, status: 422, typ: typeValidation, fields: []string{"max_attempts"}},
		{name: "max_attempts huge", body: `{"kind":"double","args":{"value":1},"max_attempts":1e30}`, status: 422, typ: typeValidation, fields: []string{"max_attempts"}},
		{name: "unknown queue", body: `{"kind":"double","args":{"value":1},"queue":"nope"}`, status: 422, typ: typeValidation, fields: []string{"queue"}, message: "cpu, default"},
		{name: "empty queue", body: `{"kind":"double","args":{"value":1},"queue":""}`, status: 422, typ: typeValidation, fields: []string{"queue"}},
		{name: "scheduled_at not a time", body: `{"kind":"double","args":{"value":1},"scheduled_at":"tomorrow"}`, status: 422, typ: typeValidation, fields: []string{"scheduled_at"}},
		{name: "scheduled_at without zone", body: `{"kind":"double","args":{"value":1},"scheduled_at":"2030-01-02T15:04:05"}`, status: 422, typ: typeValidation, fields: []string{"scheduled_at"}},
		{name: "scheduled_at a number", body: `{"kind":"double","args":{"value":1},"scheduled_at":1767225600}`, status: 422, typ: typeValidation, fields: []string{"scheduled_at"}},
		{name: "scheduled_at too far", body: `{"kind":"double","args":{"value":1},"scheduled_at":"` + tooFar + `"}`, status: 422, typ: typeValidation, fields: []string{"scheduled_at"}},
		{name: "delay not a duration", body: `{"kind":"double","args":{"value":1},"delay":"soon"}`, status: 422, typ: typeValidation, fields: []string{"delay"}},
		{name: "delay negative", body: `{"kind":"double","args":{"value":1},"delay":"-1s"}`, status: 422, typ: typeValidation, fields: []string{"delay"}},
		{name: "delay too long", body: `{"kind":"double","args":{"value":1},"delay":"8761h"}`, status: 422, typ: typeValidation, fields: []string{"delay"}},
		{name: "delay and scheduled_at", body: `{"kind":"double","args":{"value":1},"delay":"1h","scheduled_at":"2030-01-02T15:04:05Z"}`, status: 422, typ: typeValidation, fields: []string{"delay"}},
		{name: "tag too short", body: `{"kind":"double","args":{"value":1},"tags":["a"]}`, status: 422, typ: typeValidation, fields: []string{"tags[0]"}},
		{name: "tag with a comma", body: `{"kind":"double","args":{"value":1},"tags":["ok_tag","a,b"]}`, status: 422, typ: typeValidation, fields: []string{"tags[1]"}},
		{name: "tag with a space", body: `{"kind":"double","args":{"value":1},"tags":["ok_tag","ok2","a b"]}`, status: 422, typ: typeValidation, fields: []string{"tags[2]"}},
		{name: "tag with a leading hyphen", body: `{"kind":"double","args":{"value":1},"tags":["-abc"]}`, status: 422, typ: typeValidation, fields: []string{"tags[0]"}},
		{name: "tag with a trailing hyphen", body: `{"kind":"double","args":{"value":1},"tags":["abc-"]}`, status: 422, typ: typeValidation, fields: []string{"tags[0]"}},
		{name: "tag not ASCII", body: `{"kind":"double","args":{"value":1},"tags":["café"]}`, status: 422, typ: typeValidation, fields: []string{"tags[0]"}},
		{name: "tag too long", body: `{"kind":"double","args":{"value":1},"tags":["` + strings.Repeat("t", 256) + `"]}`, status: 422, typ: typeValidation, fields: []string{"tags[0]"}},
		{name: "two bad tags", body: `{"kind":"double","args":{"value":1},"tags":["a","ok_tag","b c"]}`, status: 422, typ: typeValidation, fields: []string{"tags[0]", "tags[2]"}},
		{name: "too many tags", body: `{"kind":"double","args":{"value":1},"tags":` + string(tags33) + `}`, status: 422, typ: typeValidation, fields: []string{"tags"}},
		{name: "tags not an array", body: `{"kind":"double","args":{"value":1},"tags":"nightly"}`, status: 422, typ: typeValidation, fields: []string{"tags"}},
		// Every problem is reported at once.
		{name: "priority and max_attempts", body: `{"kind":"double","args":{"value":1},"priority":9,"max_attempts":0}`, status: 422, typ: typeValidation, fields: []string{"priority", "max_attempts"}},
		{name: "missing kind and bad options", body: `{"priority":0,"queue":"nope","delay":"soon"}`, status: 422, typ: typeValidation, fields: []string{"kind", "queue", "priority", "delay"}},
		{
			name:   "every field",
			body:   `{"kind":"double","args":{"value":"x"},"queue":"nope","priority":9,"max_attempts":0,"scheduled_at":"tomorrow","tags":["a"]}`,
			status: 422, typ: typeValidation,
			fields: []string{"args.value", "queue", "priority", "max_attempts", "scheduled_at", "tags[0]"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := b.post(t, "/v1/tasks", tt.body)
			p := wantProblem(t, r, tt.status, tt.typ, tt.fields...)
			if tt.message != "" && (len(p.Errors) == 0 || !strings.Contains(p.Errors[0].Message, tt.message)) {
				t.Errorf("want the message to mention %q, got %s", tt.message, r)
			}
			if p.Detail == "" {
				t.Errorf("problem has no detail: %s", r)
			}
		})
	}
	t.Cleanup(func() {
		if n := b.count(t, "river_job"); n != 0 {
			t.Errorf("invalid submissions inserted %d tasks", n)
		}
	})
}

func TestBodyTooLarge(t *testing.T) {
	t.Parallel()
	const limit = 2048
	b := setupWith(t, setupOpts{ConfigFunc: func(c *taskdhttp.Config) {
		c.MaxBodyBytes = limit
		c.MaxBatchBodyBytes = limit
	}})

	// pad makes body exactly n bytes long with trailing whitespace.
	pad := func(body string, n int) string { return body + strings.Repeat(" ", n-len(body)) }
	task := `{"kind":"double","args":{"value":1}}`
	batch := `{"tasks":[` + task + `]}`
	big := `{"kind":"fail","args":{"times":1,"message":"` + strings.Repeat("x", 3000) + `"}}`

	t.Run("task at the limit", func(t *testing.T) {
		wantStatus(t, b.post(t, "/v1/tasks", pad(task, limit)), http.StatusCreated)
	})
	t.Run("task one byte over", func(t *testing.T) {
		wantProblem(t, b.post(t, "/v1/tasks", pad(task, limit+1)), http.StatusRequestEntityTooLarge, typeTooLarge)
	})
	t.Run("task far over", func(t *testing.T) {
		wantProblem(t, b.post(t, "/v1/tasks", big), http.StatusRequestEntityTooLarge, typeTooLarge)
	})
	t.Run("batch at the limit", func(t *testing.T) {
		wantStatus(t, b.post(t, "/v1/batches", pad(batch, limit)), http.StatusCreated)
	})
	t.Run("batch one byte over", func(t *testing.T) {
		wantProblem(t, b.post(t, "/v1/batches", pad(batch, limit+1)), http.StatusRequestEntityTooLarge, typeTooLarge)
	})
	t.Run("batch far over", func(t *testing.T) {
		items := slices.Repeat([]string{task}, 100)
		body := `{"tasks":[` + strings.Join(items, ",") + `]}`
		wantProblem(t, b.post(t, "/v1/batches", body), http.StatusRequestEntityTooLarge, typeTooLarge)
	})
	if n := b.count(t, "river_job"); n != 2 {
		t.Errorf("want the 2 tasks within the limit, got %d", n)
	}
}

func TestRouting(t *testing.T) {
	t.Parallel()
	b := setup(t)

	tests := []struct {
		method, path string
		status       int
		typ          string
		fields       []string
	}{
		{method: "DELETE", path: "/v1/tasks", status: 405, typ: typeBlank},
		{method: "PUT", path: "/v1/tasks/1", status: 405, typ: typeBlank},
		{method: "DELETE", path: "/v1/tasks/1", status: 405, typ: typeBlank},
		{method: "GET", path: "/v1/tasks/1/cancel", status: 405, typ: typeBlank},
		{method: "GET", path: "/v1/tasks/1/retry", status: 405, typ: typeBlank},
		{method: "GET", path: "/v1/batches", status: 405, typ: typeBlank},
		{method: "POST", path: "/v1/kinds", status: 405, typ: typeBlank},
		{method: "POST", path: "/healthz", status: 405, typ: typeBlank},
		{method: "GET", path: "/v1/tasks/abc", status: 400, typ: typeBlank, fields: []string{"id"}},
		{method: "GET", path: "/v1/tasks/0", status: 400, typ: typeBlank, fields: []string{"id"}},
		{method: "GET", path: "/v1/tasks/-1", status: 400, typ: typeBlank, fields: []string{"id"}},
		{method: "GET", path: "/v1/tasks/1.5", status: 400, typ: typeBlank, fields: []string{"id"}},
		{method: "GET", path: "/v1/tasks/99999999999999999999", status: 400, typ: typeBlank, fields: []string{"id"}},
		{method: "GET", path: "/v1/tasks/9223372036854775808", status: 400, typ: typeBlank, fields: []string{"id"}},
		{method: "GET", path: "/v1/tasks/9223372036854775807", status: 404, typ: typeBlank},
		{method: "GET", path: "/v1/tasks/424242", status: 404, typ: typeBlank},
		{method: "GET", path: "/v1/batches/424242", status: 404, typ: typeBlank},
		{method: "GET", path: "/v1/batches/abc", status: 400, typ: typeBlank, fields: []string{"id"}},
		{method: "GET", path: "/v1/batches/0", status: 400, typ: typeBlank, fields: []string{"id"}},
		{method: "POST", path: "/v1/tasks/abc/cancel", status: 400, typ: typeBlank, fields: []string{"id"}},
		{method: "POST", path: "/v1/tasks/0/retry", status: 400, typ: typeBlank, fields: []string{"id"}},
		{method: "POST", path: "/v1/tasks/424242/cancel", status: 404, typ: typeBlank},
		{method: "POST", path: "/v1/tasks/424242/retry", status: 404, typ: typeBlank},
		{method: "GET", path: "/", status: 404, typ: typeBlank},
		{method: "GET", path: "/v1/nope", status: 404, typ: typeBlank},
		{method: "GET", path: "/v2/tasks", status: 404, typ: typeBlank},
		{method: "GET", path: "/v1/tasks/1/nope", status: 404, typ: typeBlank},
		{method: "POST", path: "/v1/tasks/1/delete", status: 404, typ: typeBlank},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			t.Parallel()
			r := b.do(t, tt.method, tt.path, "")
			p := wantProblem(t, r, tt.status, tt.typ, tt.fields...)
			if p.Detail == "" {
				t.Errorf("problem has no detail: %s", r)
			}
		})
	}
}

// TestMethodNotAllowedAllow checks that a 405 names the allowed methods, as
// RFC 9110 (section 15.5.6) requires.
func TestMethodNotAllowedAllow(t *testing.T) {
	t.Parallel()
	b := setup(t)

	tests := []struct {
		method, path string
		allow        []string
	}{
		{method: "DELETE", path: "/v1/tasks", allow: []string{"GET", "POST"}},
		{method: "PUT", path: "/v1/tasks/1", allow: []string{"GET"}},
		{method: "GET", path: "/v1/tasks/1/cancel", allow: []string{"POST"}},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			t.Parallel()
			r := b.do(t, tt.method, tt.path, "")
			wantStatus(t, r, http.StatusMethodNotAllowed)
			var got []string
			for _, v := range r.Header.Values("Allow") {
				for m := range strings.SplitSeq(v, ",") {
					got = append(got, strings.TrimSpace(m))
				}
			}
			slices.Sort(got)
			// chi adds HEAD for GET routes; only the listed methods matter.
			got = slices.DeleteFunc(got, func(m string) bool { return m == "HEAD" })
			if !slices.Equal(got, tt.allow) {
				t.Errorf("want Allow %q on a 405, got %q", tt.allow, r.Header.Values("Allow"))
			}
		})
	}
}

func TestIdempotencyTask(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const body = `{"kind":"double","args":{"value":21},"tags":["nightly"]}`
	key := []string{"Idempotency-Key", "order-42"}

	first := b.post(t, "/v1/tasks", body, key...)
	wantStatus(t, first, http.StatusCreated)
	var created apiTask
	decode(t, first, &created)

	t.Run("replay with other formatting", func(t *testing.T) {
		for _, replay := range []string{
			body,
			"{\n  \"tags\": [\"nightly\"],\n  \"args\": { \"value\": 21 },\n  \"kind\": \"double\"\n}\n",
		} {
			r := b.post(t, "/v1/tasks", replay, key...)
			wantStatus(t, r, http.StatusOK)
			var task apiTask
			decode(t, r, &task)
			if task.ID != created.ID || task.Kind != "double" || task.State != "available" {
				t.Errorf("want task %d replayed, got %s", created.ID, task)
			}
			wantJSON(t, "args", task.Args, `{"value":21}`)
			if want := "/v1/tasks/" + itoa(created.ID); r.Header.Get("Location") != want {
				t.Errorf("want Location %q, got %q", want, r.Header.Get("Location"))
			}
			raw := rawFields(t, r)
			wantJSON(t, "attempts", raw["attempts"], `[]`)
			wantJSON(t, "errors", raw["errors"], `[]`)
		}
	})
	t.Run("different body", func(t *testing.T) {
		r := b.post(t, "/v1/tasks", `{"kind":"double","args":{"value":22},"tags":["nightly"]}`, key...)
		wantProblem(t, r, http.StatusConflict, typeIdempotency, "Idempotency-Key")
	})
	t.Run("same key on batches", func(t *testing.T) {
		r := b.post(t, "/v1/batches", `{"tasks":[`+body+`]}`, key...)
		wantProblem(t, r, http.StatusConflict, typeIdempotency, "Idempotency-Key")
	})
	t.Run("other key", func(t *testing.T) {
		r := b.post(t, "/v1/tasks", body, "Idempotency-Key", "order-43")
		wantStatus(t, r, http.StatusCreated)
		var task apiTask
		decode(t, r, &task)
		if task.ID == created.ID {
			t.Errorf("another key replayed task %d", created.ID)
		}
	})
	t.Run("invalid body does not take the key", func(t *testing.T) {
		k := []string{"Idempotency-Key", "order-44"}
		wantProblem(t, b.post(t, "/v1/tasks", `{"kind":"double","args":{"value":"x"}}`, k...), 422, typeValidation, "args.value")
		wantStatus(t, b.post(t, "/v1/tasks", body, k...), http.StatusCreated)
	})
	t.Run("longest key", func(t *testing.T) {
		wantStatus(t, b.post(t, "/v1/tasks", body, "Idempotency-Key", strings.Repeat("k", 255)), http.StatusCreated)
	})
	t.Run("bad keys", func(t *testing.T) {
		for _, k := range []string{strings.Repeat("k", 256), "caf\u00e9", "a\tb"} {
			r := b.post(t, "/v1/tasks", body, "Idempotency-Key", k)
			wantProblem(t, r, http.StatusBadRequest, typeBlank, "Idempotency-Key")
		}
	})
	// first, other key, invalid-then-valid, longest key.
	if n := b.count(t, "river_job"); n != 4 {
		t.Errorf("want 4 tasks, got %d", n)
	}
	if n := b.count(t, "idempotency_keys"); n != 4 {
		t.Errorf("want 4 idempotency keys, got %d", n)
	}
}

func TestIdempotencyBatch(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const body = `{"tasks":[{"kind":"double","args":{"value":1}},{"kind":"sleep","args":{"ms":5}},{"kind":"cpu","args":{"n":10}}]}`
	key := []string{"Idempotency-Key", "batch-1"}

	first := b.post(t, "/v1/batches", body, key...)
	wantStatus(t, first, http.StatusCreated)
	var created apiBatchCreated
	decode(t, first, &created)
	if len(created.TaskIDs) != 3 {
		t.Fatalf("want 3 task ids, got %s", first)
	}

	replay := "{ \"tasks\": [\n {\"args\":{\"value\":1},\"kind\":\"double\"},\n {\"args\":{\"ms\":5},\"kind\":\"sleep\"},\n {\"args\":{\"n\":10},\"kind\":\"cpu\"} ] }"
	r := b.post(t, "/v1/batches", replay, key...)
	wantStatus(t, r, http.StatusOK)
	var again apiBatchCreated
	decode(t, r, &again)
	if !reflect.DeepEqual(again, created) {
		t.Errorf("want batch %+v replayed, got %+v", created, again)
	}
	if want := "/v1/batches/" + itoa(created.ID); r.Header.Get("Location") != want {
		t.Errorf("want Location %q, got %q", want, r.Header.Get("Location"))
	}

	// Task order is part of the request.
	reordered := `{"tasks":[{"kind":"sleep","args":{"ms":5}},{"kind":"double","args":{"value":1}},{"kind":"cpu","args":{"n":10}}]}`
	wantProblem(t, b.post(t, "/v1/batches", reordered, key...), http.StatusConflict, typeIdempotency, "Idempotency-Key")
	wantProblem(t, b.post(t, "/v1/tasks", `{"kind":"double","args":{"value":1}}`, key...), http.StatusConflict, typeIdempotency, "Idempotency-Key")
	wantProblem(t, b.post(t, "/v1/batches", body, "Idempotency-Key", strings.Repeat("k", 256)), http.StatusBadRequest, typeBlank, "Idempotency-Key")

	if n := b.count(t, "river_job"); n != 3 {
		t.Errorf("want 3 tasks, got %d", n)
	}
	if n := b.count(t, "batches"); n != 1 {
		t.Errorf("want 1 batch, got %d", n)
	}
}

// TestIdempotencyConcurrent sends the same request with the same key 20
// times at once: one creates, the others replay it.
func TestIdempotencyConcurrent(t *testing.T) {
	t.Parallel()
	const n = 20
	tests := []struct {
		name  string
		path  string
		body  string
		tasks int
		// id returns the ID of what a response names.
		id func(t *testing.T, r *response) string
	}{
		{
			name: "task", path: "/v1/tasks", body: `{"kind":"double","args":{"value":21}}`, tasks: 1,
			id: func(t *testing.T, r *response) string {
				var task apiTask
				decode(t, r, &task)
				return itoa(task.ID)
			},
		},
		{
			name: "batch", path: "/v1/batches", tasks: 3,
			body: `{"tasks":[{"kind":"double","args":{"value":1}},{"kind":"double","args":{"value":2}},{"kind":"double","args":{"value":3}}]}`,
			id: func(t *testing.T, r *response) string {
				var batch apiBatchCreated
				decode(t, r, &batch)
				return fmt.Sprint(batch.ID, batch.TaskIDs)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			var (
				wg        sync.WaitGroup
				start     = make(chan struct{})
				responses = make([]*response, n)
				errs      = make([]error, n)
			)
			for i := range n {
				wg.Go(func() {
					<-start
					responses[i], errs[i] = b.tryDo(t, http.MethodPost, tt.path, tt.body, "Idempotency-Key", "concurrent")
				})
			}
			close(start)
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			statuses := map[int]int{}
			ids := map[string]int{}
			for _, r := range responses {
				statuses[r.Status]++
				if r.Status == http.StatusCreated || r.Status == http.StatusOK {
					ids[tt.id(t, r)]++
				} else {
					t.Errorf("unexpected answer %s", r)
				}
			}
			if statuses[http.StatusCreated] != 1 || statuses[http.StatusOK] != n-1 {
				t.Errorf("want one 201 and %d 200, got %v", n-1, statuses)
			}
			if len(ids) != 1 {
				t.Errorf("want every answer to name the same thing, got %v", ids)
			}
			if got := b.count(t, "river_job"); got != tt.tasks {
				t.Errorf("want %d rows in river_job, got %d", tt.tasks, got)
			}
			if got := b.count(t, "idempotency_keys"); got != 1 {
				t.Errorf("want 1 idempotency key, got %d", got)
			}
		})
	}
}

func TestBatchCreateAndGet(t *testing.T) {
	t.Parallel()
	b := setupRunning(t)

	t.Run("order", func(t *testing.T) {
		t.Parallel()
		const n = 50
		items := make([]string, n)
		for i := range items {
			// Mixed priorities, so that the order River runs them in
			// differs from the order they were submitted in.
			items[i] = fmt.Sprintf(`{"kind":"double","args":{"value":%d},"priority":%d}`, i, 4-i%4)
		}
		r := b.post(t, "/v1/batches", `{"tasks":[`+strings.Join(items, ",")+`]}`, "Content-Type", "text/plain")
		wantStatus(t, r, http.StatusCreated)
		raw := rawFields(t, r)
		if len(raw) != 2 || raw["id"] == nil || raw["task_ids"] == nil {
			t.Errorf(`want members "id" and "task_ids", got %s`, r)
		}
		var created apiBatchCreated
		decode(t, r, &created)
		if want := "/v1/batches/" + itoa(created.ID); r.Header.Get("Location") != want {
			t.Errorf("want Location %q, got %q", want, r.Header.Get("Location"))
		}
		if len(created.TaskIDs) != n {
			t.Fatalf("want %d task ids, got %d", n, len(created.TaskIDs))
		}
		seen := map[int64]bool{}
		for i, id := range created.TaskIDs {
			if seen[id] {
				t.Errorf("task id %d appears twice", id)
			}
			seen[id] = true
			task := b.getTask(t, id)
			wantJSON(t, fmt.Sprintf("args of task_ids[%d]", i), task.Args, fmt.Sprintf(`{"value":%d}`, i))
			if task.Priority != 4-i%4 {
				t.Errorf("task_ids[%d]: want priority %d, got %d", i, 4-i%4, task.Priority)
			}
		}

		batch := b.waitBatch(t, created.ID, waitTimeout)
		if batch.ID != created.ID || batch.Total != n || !reflect.DeepEqual(batch.Counts, map[string]int{"completed": n}) {
			t.Errorf("want %d completed tasks, got total %d counts %v", n, batch.Total, batch.Counts)
		}
		if len(batch.Tasks) != n {
			t.Fatalf("want %d tasks, got %d", n, len(batch.Tasks))
		}
		for i, task := range batch.Tasks {
			if task.ID != created.TaskIDs[i] || task.State != "completed" || len(task.Errors) != 0 {
				t.Errorf("tasks[%d]: want task %d completed, got %+v", i, created.TaskIDs[i], task)
			}
			wantJSON(t, fmt.Sprintf("tasks[%d].result", i), task.Result, fmt.Sprintf(`{"result":%d}`, 2*i))
		}
	})

	t.Run("mixed outcomes", func(t *testing.T) {
		t.Parallel()
		r := b.post(t, "/v1/batches", `{"tasks":[
			{"kind":"double","args":{"value":4}},
			{"kind":"fail","args":{"times":1,"message":"nope"},"max_attempts":1},
			{"kind":"sleep","args":{"ms":0}},
			{"kind":"cpu","args":{"n":10}}
		]}`)
		wantStatus(t, r, http.StatusCreated)
		var created apiBatchCreated
		decode(t, r, &created)
		batch := b.waitBatch(t, created.ID, waitTimeout)
		if batch.Total != 4 || !reflect.DeepEqual(batch.Counts, map[string]int{"completed": 3, "discarded": 1}) {
			t.Errorf("want 3 completed and 1 discarded, got total %d counts %v", batch.Total, batch.Counts)
		}
		if len(batch.Tasks) != 4 {
			t.Fatalf("want 4 tasks, got %+v", batch.Tasks)
		}
		for i, want := range []string{`{"result":8}`, `null`, `{"slept_ms":0}`, `{"primes":4}`} {
			wantJSON(t, fmt.Sprintf("tasks[%d].result", i), batch.Tasks[i].Result, want)
		}
		if errs := batch.Tasks[1].Errors; len(errs) != 1 || errs[0].Message != "nope" || errs[0].Attempt != 1 {
			t.Errorf("want the failed task's error, got %+v", errs)
		}
	})

	t.Run("not done", func(t *testing.T) {
		t.Parallel()
		r := b.post(t, "/v1/batches", `{"tasks":[{"kind":"double","args":{"value":1}},{"kind":"double","args":{"value":2},"delay":"1h"}]}`)
		wantStatus(t, r, http.StatusCreated)
		var created apiBatchCreated
		decode(t, r, &created)
		b.waitState(t, created.TaskIDs[0], "completed", waitTimeout)
		r = b.get(t, "/v1/batches/"+itoa(created.ID))
		wantStatus(t, r, http.StatusOK)
		var batch apiBatch
		decode(t, r, &batch)
		if batch.Done || batch.Total != 2 || !reflect.DeepEqual(batch.Counts, map[string]int{"completed": 1, "scheduled": 1}) {
			t.Errorf("want 1 completed and 1 scheduled, not done, got %s", r)
		}
		if len(batch.Tasks) == 2 {
			wantJSON(t, "result of the scheduled task", batch.Tasks[1].Result, `null`)
		}
	})
}

func TestBatchCreateInvalid(t *testing.T) {
	t.Parallel()
	// Large enough for 10,001 items.
	b := setupWith(t, setupOpts{ConfigFunc: func(c *taskdhttp.Config) { c.MaxBatchBodyBytes = 64 << 20 }})

	valid := `{"kind":"double","args":{"value":1}}`
	tasks := func(items ...string) string { return `{"tasks":[` + strings.Join(items, ",") + `]}` }
	tooMany := tasks(slices.Repeat([]string{valid}, 10_001)...)
	withThen := func(body, then string) string { return strings.TrimSuffix(body, "}") + `,"then":` + then + `}` }

	tests := []struct {
		name   string
		body   string
		status int
		typ    string
		fields []string
	}{
		{name: "invalid item", body: tasks(valid, valid, valid, `{"kind":"double","args":{"value":"x"}}`, valid), status: 422, typ: typeValidation, fields: []string{"tasks[3].args.value"}},
		{name: "two invalid items", body: tasks(valid, `{"kind":"double","args":{"value":1},"priority":0}`, valid, valid, `{"args":{"value":1}}`), status: 422, typ: typeValidation, fields: []string{"tasks[1].priority", "tasks[4].kind"}},
		{name: "item with several problems", body: tasks(`{"kind":"sleep","args":{"ms":-1},"queue":"nope","tags":["a"]}`), status: 422, typ: typeValidation, fields: []string{"tasks[0].args.ms", "tasks[0].queue", "tasks[0].tags[0]"}},
		{name: "item unknown field", body: tasks(valid, `{"kind":"double","args":{"value":1},"foo":1}`), status: 422, typ: typeValidation, fields: []string{"tasks[1].foo"}},
		{name: "item unknown args field", body: tasks(valid, `{"kind":"double","args":{"value":1,"foo":1}}`), status: 422, typ: typeValidation, fields: []string{"tasks[1].args.foo"}},
		{name: "item priority 1.5", body: tasks(`{"kind":"double","args":{"value":1},"priority":1.5}`), status: 422, typ: typeValidation, fields: []string{"tasks[0].priority"}},
		{name: "item a number", body: tasks(valid, valid, `42`), status: 422, typ: typeValidation, fields: []string{"tasks[2]"}},
		{name: "every undecodable item", body: tasks(valid, `{"kind":"double","args":{"value":1},"foo":1}`, `42`, valid, `{"kind":1}`), status: 422, typ: typeValidation, fields: []string{"tasks[1].foo", "tasks[2]", "tasks[4].kind"}},
		{name: "item an array", body: tasks(valid, valid, `[]`), status: 422, typ: typeValidation, fields: []string{"tasks[2]"}},
		{name: "item a string", body: tasks(valid, valid, `"double"`), status: 422, typ: typeValidation, fields: []string{"tasks[2]"}},
		{name: "NUL in an item", body: tasks(valid, `{"kind":"fail","args":{"times":1,"message":"a\u0000"}}`), status: 422, typ: typeValidation, fields: []string{"tasks[1].args.message"}},
		{name: "number outside PostgreSQL's range in an item", body: tasks(valid, `{"kind":"double","args":{"value":0e-99999}}`), status: 422, typ: typeValidation, fields: []string{"tasks[1].args.value"}},
		{name: "empty tasks", body: `{"tasks":[]}`, status: 422, typ: typeValidation, fields: []string{"tasks"}},
		{name: "missing tasks", body: `{}`, status: 422, typ: typeValidation, fields: []string{"tasks"}},
		{name: "null tasks", body: `{"tasks":null}`, status: 422, typ: typeValidation, fields: []string{"tasks"}},
		{name: "tasks an object", body: `{"tasks":{"kind":"double"}}`, status: 422, typ: typeValidation, fields: []string{"tasks"}},
		{name: "too many tasks", body: tooMany, status: 422, typ: typeValidation, fields: []string{"tasks"}},
		{name: "unknown field", body: `{"tasks":[` + valid + `],"name":"x"}`, status: 422, typ: typeValidation, fields: []string{"name"}},
		{name: "invalid then", body: withThen(tasks(valid), `{"kind":"double","args":{"value":"x"},"priority":9}`), status: 422, typ: typeValidation, fields: []string{"then.args.value", "then.priority"}},
		{name: "invalid item and then", body: withThen(tasks(valid, `{"args":{"value":1}}`), `{"kind":"nope"}`), status: 422, typ: typeValidation, fields: []string{"tasks[1].kind", "then.kind"}},
		{name: "then unknown field", body: withThen(tasks(valid), `{"kind":"double","args":{"value":1},"foo":1}`), status: 422, typ: typeValidation, fields: []string{"then.foo"}},
		{name: "then unknown queue and bad delay", body: withThen(tasks(valid), `{"kind":"double","args":{"value":1},"queue":"nope","delay":"soon"}`), status: 422, typ: typeValidation, fields: []string{"then.queue", "then.delay"}},
		{name: "then a string", body: withThen(tasks(valid), `"double"`), status: 422, typ: typeValidation, fields: []string{"then"}},
		{name: "then an array", body: withThen(tasks(valid), `[]`), status: 422, typ: typeValidation, fields: []string{"then"}},
		{name: "NUL in then", body: withThen(tasks(valid), `{"kind":"fail","args":{"times":1,"message":"a\u0000"}}`), status: 422, typ: typeValidation, fields: []string{"then.args.message"}},
		{name: "number outside PostgreSQL's range in then", body: withThen(tasks(valid), `{"kind":"double","args":{"value":1e-16384}}`), status: 422, typ: typeValidation, fields: []string{"then.args.value"}},
		{name: "empty tasks with then", body: withThen(`{"tasks":[]}`, `{"kind":"double","args":{"value":1}}`), status: 422, typ: typeValidation, fields: []string{"tasks"}},
		{name: "body an array", body: `[` + valid + `]`, status: 422, typ: typeValidation, fields: []string{"body"}},
		{name: "malformed JSON", body: `{"tasks":[`, status: 400, typ: typeSyntax, fields: []string{"body"}},
		{name: "empty body", body: ``, status: 400, typ: typeSyntax, fields: []string{"body"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wantProblem(t, b.post(t, "/v1/batches", tt.body), tt.status, tt.typ, tt.fields...)
		})
	}
	t.Cleanup(func() {
		if n := b.count(t, "river_job"); n != 0 {
			t.Errorf("invalid batches inserted %d tasks", n)
		}
		if n := b.count(t, "batches"); n != 0 {
			t.Errorf("invalid batches inserted %d batches", n)
		}
	})
}

func TestBatchMax(t *testing.T) {
	t.Parallel()
	b := setup(t)
	items := make([]string, 10_000)
	for i := range items {
		items[i] = fmt.Sprintf(`{"kind":"double","args":{"value":%d}}`, i)
	}
	r := b.post(t, "/v1/batches", `{"tasks":[`+strings.Join(items, ",")+`]}`)
	wantStatus(t, r, http.StatusCreated)
	var created apiBatchCreated
	decode(t, r, &created)
	if len(created.TaskIDs) != 10_000 {
		t.Fatalf("want 10000 task ids, got %d", len(created.TaskIDs))
	}
	// Spot-check the order at both ends.
	for _, i := range []int{0, 1, 4999, 9998, 9999} {
		task := b.getTask(t, created.TaskIDs[i])
		wantJSON(t, fmt.Sprintf("args of task_ids[%d]", i), task.Args, fmt.Sprintf(`{"value":%d}`, i))
	}
	if n := b.count(t, "river_job"); n != 10_000 {
		t.Errorf("want 10000 tasks, got %d", n)
	}
}

func TestTaskList(t *testing.T) {
	t.Parallel()
	b := setup(t)

	type row struct {
		id                 int64
		kind, queue, state string
	}
	var rows []row // in submission (id) order
	add := func(body string) apiTask {
		task := b.createTask(t, body)
		rows = append(rows, row{task.ID, task.Kind, task.Queue, task.State})
		return task
	}
	add(`{"kind":"double","args":{"value":1}}`)
	add(`{"kind":"cpu","args":{"n":10}}`)
	add(`{"kind":"sleep","args":{"ms":1},"delay":"1h"}`)
	add(`{"kind":"fail","args":{"times":0}}`)
	// Many tasks, so that the default limit shows.
	r := b.post(t, "/v1/batches", `{"tasks":[`+strings.Join(slices.Repeat([]string{`{"kind":"double","args":{"value":2}}`}, 55), ",")+`]}`)
	wantStatus(t, r, http.StatusCreated)
	var batch apiBatchCreated
	decode(t, r, &batch)
	for _, id := range batch.TaskIDs {
		rows = append(rows, row{id, "double", "default", "available"})
	}
	add(`{"kind":"double","args":{"value":5},"queue":"cpu"}`)
	cancelled := add(`{"kind":"double","args":{"value":6},"delay":"1h"}`)
	wantStatus(t, b.post(t, "/v1/tasks/"+itoa(cancelled.ID)+"/cancel", ""), http.StatusOK)
	rows[len(rows)-1].state = "cancelled"
	add(`{"kind":"sleep","args":{"ms":7}}`)

	// want returns the IDs of the rows that match, newest first.
	want := func(match func(row) bool) []int64 {
		var ids []int64
		for _, r := range slices.Backward(rows) {
			if match(r) {
				ids = append(ids, r.id)
			}
		}
		return ids
	}
	all := func(row) bool { return true }
	// list follows next_cursor from query until it is null.
	list := func(t *testing.T, query string) (ids []int64, pages int) {
		t.Helper()
		path := "/v1/tasks" + query
		for {
			r := b.get(t, path)
			wantStatus(t, r, http.StatusOK)
			var page apiList
			decode(t, r, &page)
			if page.Tasks == nil {
				t.Fatalf("tasks is not an array: %s", r)
			}
			pages++
			for _, task := range page.Tasks {
				ids = append(ids, task.ID)
			}
			if page.NextCursor == nil {
				return ids, pages
			}
			sep := "?"
			if query != "" {
				sep = "&"
			}
			path = "/v1/tasks" + query + sep + "cursor=" + *page.NextCursor
			if pages > 100 {
				t.Fatalf("more than 100 pages")
			}
		}
	}
	firstPage := func(t *testing.T, query string) apiList {
		t.Helper()
		r := b.get(t, "/v1/tasks"+query)
		wantStatus(t, r, http.StatusOK)
		var page apiList
		decode(t, r, &page)
		return page
	}

	t.Run("newest first with the default limit", func(t *testing.T) {
		t.Parallel()
		page := firstPage(t, "")
		if len(page.Tasks) != 50 || page.NextCursor == nil {
			t.Fatalf("want 50 tasks and a cursor, got %d tasks, cursor %v", len(page.Tasks), page.NextCursor)
		}
		ids := make([]int64, len(page.Tasks))
		for i, task := range page.Tasks {
			ids[i] = task.ID
		}
		if w := want(all)[:50]; !slices.Equal(ids, w) {
			t.Errorf("want ids %v, got %v", w, ids)
		}
	})
	t.Run("list items have no attempts", func(t *testing.T) {
		t.Parallel()
		r := b.get(t, "/v1/tasks?limit=3")
		var page struct {
			Tasks []map[string]json.RawMessage `json:"tasks"`
		}
		if err := json.Unmarshal(r.Body, &page); err != nil {
			t.Fatal(err)
		}
		for _, task := range page.Tasks {
			if _, ok := task["attempts"]; ok {
				t.Errorf("a listed task has attempts: %s", r)
			}
			for _, k := range []string{"id", "kind", "state", "args", "result", "errors", "tags"} {
				if _, ok := task[k]; !ok {
					t.Errorf("a listed task has no %q: %s", k, r)
				}
			}
		}
	})
	pagings := []struct {
		query string
		match func(row) bool
	}{
		{"", all},
		{"?limit=2", all},
		{"?limit=7", all},
		{"?limit=500", all},
		{"?limit=1&state=scheduled", func(r row) bool { return r.state == "scheduled" }},
		{"?limit=2&state=available", func(r row) bool { return r.state == "available" }},
		{"?limit=3&kind=double", func(r row) bool { return r.kind == "double" }},
		{"?state=scheduled", func(r row) bool { return r.state == "scheduled" }},
		{"?state=cancelled", func(r row) bool { return r.state == "cancelled" }},
		{"?state=completed", func(r row) bool { return false }},
		{"?state=scheduled,cancelled", func(r row) bool { return r.state == "scheduled" || r.state == "cancelled" }},
		{"?state=scheduled%2Ccancelled%2Cscheduled", func(r row) bool { return r.state == "scheduled" || r.state == "cancelled" }},
		{"?kind=cpu", func(r row) bool { return r.kind == "cpu" }},
		{"?kind=sleep", func(r row) bool { return r.kind == "sleep" }},
		{"?kind=nope", func(r row) bool { return false }},
		{"?queue=cpu", func(r row) bool { return r.queue == "cpu" }},
		{"?queue=default&limit=10", func(r row) bool { return r.queue == "default" }},
		{"?kind=double&queue=cpu", func(r row) bool { return r.kind == "double" && r.queue == "cpu" }},
		{"?state=available&kind=sleep", func(r row) bool { return r.state == "available" && r.kind == "sleep" }},
	}
	for _, tt := range pagings {
		t.Run("pages "+tt.query, func(t *testing.T) {
			t.Parallel()
			ids, pages := list(t, tt.query)
			w := want(tt.match)
			if !slices.Equal(ids, w) {
				t.Errorf("want ids %v, got %v", w, ids)
			}
			if pages < 1 {
				t.Errorf("no page")
			}
		})
	}
	t.Run("limit 2 pages", func(t *testing.T) {
		t.Parallel()
		_, pages := list(t, "?limit=2")
		// A full last page still carries a cursor; the page after it is empty.
		if w := len(rows)/2 + 1; pages != w {
			t.Errorf("want %d pages of 2 for %d tasks, got %d", w, len(rows), pages)
		}
	})

	cursor := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	invalid := []struct {
		query  string
		fields []string
	}{
		{"?limit=0", []string{"limit"}},
		{"?limit=501", []string{"limit"}},
		{"?limit=-1", []string{"limit"}},
		{"?limit=abc", []string{"limit"}},
		{"?limit=1.5", []string{"limit"}},
		{"?cursor=!!!", []string{"cursor"}},
		{"?cursor=" + cursor("id:0"), []string{"cursor"}},
		{"?cursor=" + cursor("id:abc"), []string{"cursor"}},
		{"?cursor=" + cursor("page:5"), []string{"cursor"}},
		{"?state=nope", []string{"state"}},
		{"?state=available,nope", []string{"state"}},
		{"?state=RUNNING", []string{"state"}},
		{"?foo=1", []string{"foo"}},
		{"?Limit=5", []string{"Limit"}},
		{"?state=nope&limit=0&cursor=x", []string{"state", "limit", "cursor"}},
	}
	for _, tt := range invalid {
		t.Run("invalid "+tt.query, func(t *testing.T) {
			t.Parallel()
			wantProblem(t, b.get(t, "/v1/tasks"+tt.query), http.StatusUnprocessableEntity, typeValidation, tt.fields...)
		})
	}
}

func TestTaskCancel(t *testing.T) {
	t.Parallel()
	b := setupRunning(t)

	t.Run("scheduled", func(t *testing.T) {
		t.Parallel()
		task := b.createTask(t, `{"kind":"double","args":{"value":1},"delay":"1h"}`)
		r := b.post(t, "/v1/tasks/"+itoa(task.ID)+"/cancel", "")
		wantStatus(t, r, http.StatusOK)
		var got apiTask
		decode(t, r, &got)
		if got.ID != task.ID || got.State != "cancelled" || got.FinishedAt == nil {
			t.Errorf("want the task cancelled and finished, got %s", got)
		}
		if g := b.getTask(t, task.ID); g.State != "cancelled" {
			t.Errorf("GET shows %s", g)
		}
		// Cancelling again is a conflict: the task is final.
		wantProblem(t, b.post(t, "/v1/tasks/"+itoa(task.ID)+"/cancel", ""), http.StatusConflict, typeState, "state")
	})

	t.Run("running", func(t *testing.T) {
		t.Parallel()
		task := b.createTask(t, `{"kind":"sleep","args":{"ms":60000}}`)
		running := b.waitState(t, task.ID, "running", waitTimeout)
		if len(running.Attempts) != 1 {
			t.Fatalf("want the attempt in progress, got %s", running)
		}
		if a := running.Attempts[0]; a.Outcome != "running" || a.Attempt != 1 || a.FinishedAt != nil || a.Worker != b.jobs.ID() || a.DurationMS < 0 {
			t.Errorf("want attempt 1 running, got %+v", a)
		}

		r := b.post(t, "/v1/tasks/"+itoa(task.ID)+"/cancel", "")
		wantStatus(t, r, http.StatusOK)
		var got apiTask
		decode(t, r, &got)
		if !got.CancelRequested || (got.State != "running" && got.State != "cancelled") {
			t.Errorf("want cancel_requested on a running or cancelled task, got %s", got)
		}

		done := b.waitState(t, task.ID, "cancelled", waitTimeout)
		if !done.CancelRequested || done.FinishedAt == nil || string(done.Result) != "null" {
			t.Errorf("want a finished cancelled task without result, got %s", done)
		}
		if got := done.outcomes(); !slices.Equal(got, []string{"cancelled"}) {
			t.Errorf("want outcomes [cancelled], got %q", got)
		}
		wantProblem(t, b.post(t, "/v1/tasks/"+itoa(task.ID)+"/cancel", ""), http.StatusConflict, typeState, "state")

		// A retry clears cancel_requested, so the task runs normally.
		r = b.post(t, "/v1/tasks/"+itoa(task.ID)+"/retry", "")
		wantStatus(t, r, http.StatusOK)
		decode(t, r, &got)
		if got.CancelRequested || (got.State != "available" && got.State != "running") || got.FinishedAt != nil {
			t.Errorf("want the task available again without cancel_requested, got %s", got)
		}
		wantStatus(t, b.post(t, "/v1/tasks/"+itoa(task.ID)+"/cancel", ""), http.StatusOK)
		b.waitState(t, task.ID, "cancelled", waitTimeout)
	})

	t.Run("completed", func(t *testing.T) {
		t.Parallel()
		task := b.createTask(t, `{"kind":"double","args":{"value":1}}`)
		b.waitState(t, task.ID, "completed", waitTimeout)
		wantProblem(t, b.post(t, "/v1/tasks/"+itoa(task.ID)+"/cancel", ""), http.StatusConflict, typeState, "state")
		if got := b.getTask(t, task.ID); got.State != "completed" {
			t.Errorf("want the task still completed, got %s", got)
		}
	})

	t.Run("unknown", func(t *testing.T) {
		t.Parallel()
		wantProblem(t, b.post(t, "/v1/tasks/424242/cancel", ""), http.StatusNotFound, typeBlank)
	})
}

// TestTaskRetry keeps the only worker of the cpu queue busy with a long
// sleep, so that retried tasks on that queue stay available until it is
// cancelled.
func TestTaskRetry(t *testing.T) {
	t.Parallel()
	b := setupRunning(t)
	retry := func(t *testing.T, id int64) *response {
		t.Helper()
		return b.post(t, "/v1/tasks/"+itoa(id)+"/retry", "")
	}

	double := b.createTask(t, `{"kind":"double","args":{"value":21},"queue":"cpu"}`)
	b.waitState(t, double.ID, "completed", waitTimeout)
	fail := b.createTask(t, `{"kind":"fail","args":{"times":5},"max_attempts":1,"queue":"cpu"}`)
	if got := b.waitState(t, fail.ID, "discarded", waitTimeout); len(got.Errors) != 1 {
		t.Fatalf("want one error, got %s", got)
	}
	blocker := b.createTask(t, `{"kind":"sleep","args":{"ms":60000},"queue":"cpu"}`)
	b.waitState(t, blocker.ID, "running", waitTimeout)
	scheduled := b.createTask(t, `{"kind":"double","args":{"value":1},"delay":"1h"}`)

	t.Run("completed", func(t *testing.T) {
		r := retry(t, double.ID)
		wantStatus(t, r, http.StatusOK)
		var got apiTask
		decode(t, r, &got)
		if got.State != "available" || got.FinishedAt != nil || len(got.Errors) != 0 {
			t.Errorf("want the task available, got %s", got)
		}
		wantJSON(t, "result", got.Result, `null`)
		if !got.ScheduledAt.After(double.ScheduledAt) {
			t.Errorf("want scheduled_at moved to now, got %s (was %s)", got.ScheduledAt, double.ScheduledAt)
		}
		// Now available: a retry is a conflict.
		wantProblem(t, retry(t, double.ID), http.StatusConflict, typeState, "state")
	})
	t.Run("discarded", func(t *testing.T) {
		r := retry(t, fail.ID)
		wantStatus(t, r, http.StatusOK)
		var got apiTask
		decode(t, r, &got)
		// It used up its attempts, so it gets one more.
		if got.State != "available" || got.MaxAttempts != 2 || got.FinishedAt != nil {
			t.Errorf("want the task available with max_attempts 2, got %s", got)
		}
	})
	t.Run("running", func(t *testing.T) {
		wantProblem(t, retry(t, blocker.ID), http.StatusConflict, typeState, "state")
	})
	t.Run("scheduled", func(t *testing.T) {
		wantProblem(t, retry(t, scheduled.ID), http.StatusConflict, typeState, "state")
	})
	t.Run("unknown", func(t *testing.T) {
		wantProblem(t, retry(t, 424242), http.StatusNotFound, typeBlank)
	})

	// Free the worker; the retried tasks run again.
	wantStatus(t, b.post(t, "/v1/tasks/"+itoa(blocker.ID)+"/cancel", ""), http.StatusOK)
	b.waitState(t, blocker.ID, "cancelled", waitTimeout)

	t.Run("completed runs again", func(t *testing.T) {
		got := b.waitTask(t, double.ID, "a second completed attempt", waitTimeout, func(task apiTask) bool {
			return task.State == "completed" && len(task.Attempts) == 2
		})
		wantJSON(t, "result", got.Result, `{"result":42}`)
		if o := got.outcomes(); !slices.Equal(o, []string{"completed", "completed"}) {
			t.Errorf("want outcomes [completed completed], got %q", o)
		}
		// The attempt count goes on.
		if got.Attempt != 2 {
			t.Errorf("want attempt 2, got %d", got.Attempt)
		}
		for i, a := range got.Attempts {
			if a.Attempt != i+1 {
				t.Errorf("attempts[%d]: want attempt number %d, got %d (%s)", i, i+1, a.Attempt, got)
			}
		}
	})
	t.Run("discarded runs again", func(t *testing.T) {
		got := b.waitTask(t, fail.ID, "a second failed attempt", waitTimeout, func(task apiTask) bool {
			return task.State == "discarded" && len(task.Attempts) == 2
		})
		if len(got.Errors) != 2 || got.Attempt != 2 || got.MaxAttempts != 2 {
			t.Errorf("want 2 errors after 2 attempts, got %s", got)
		}
		for i, a := range got.Attempts {
			if a.Attempt != i+1 || a.Outcome != "failed" {
				t.Errorf("attempts[%d]: want attempt %d failed, got %+v", i, i+1, a)
			}
		}
	})
}

func TestMeta(t *testing.T) {
	t.Parallel()
	b := setup(t)

	t.Run("kinds", func(t *testing.T) {
		r := b.get(t, "/v1/kinds")
		wantStatus(t, r, http.StatusOK)
		var out struct {
			Kinds []struct {
				Name         string         `json:"name"`
				Queue        string         `json:"queue"`
				Run          string         `json:"run"`
				Description  string         `json:"description"`
				ArgsSchema   map[string]any `json:"args_schema"`
				ResultSchema map[string]any `json:"result_schema"`
				MaxAttempts  int            `json:"max_attempts"`
				Timeout      string         `json:"timeout"`
				Limits       []client.Limit `json:"limits"`
				Backoff      map[string]any `json:"backoff"`
			} `json:"kinds"`
		}
		decode(t, r, &out)
		var names, queues []string
		for _, k := range out.Kinds {
			names = append(names, k.Name)
			queues = append(queues, k.Queue)
			if k.Run != "go" || k.Description == "" || k.ArgsSchema["type"] != "object" || k.ResultSchema["type"] != "object" {
				t.Errorf("kind %q: want a description and object schemas, got %+v", k.Name, k)
			}
			if want := map[string]any{"initial": "1s", "max": "1h", "multiplier": 2.0, "jitter": 0.1}; !reflect.DeepEqual(k.Backoff, want) {
				t.Errorf("kind %q: backoff %v, want the default %v", k.Name, k.Backoff, want)
			}
			if req, _ := k.ArgsSchema["required"].([]any); len(req) != 1 {
				t.Errorf("kind %q: want one required argument, got %v", k.Name, k.ArgsSchema["required"])
			}
		}
		if want := []string{"cpu", "double", "fail", "sleep"}; !slices.Equal(names, want) {
			t.Errorf("want kinds %q, got %q", want, names)
		}
		if want := []string{"cpu", "default", "default", "default"}; !slices.Equal(queues, want) {
			t.Errorf("want queues %q, got %q", want, queues)
		}
	})
	t.Run("healthz", func(t *testing.T) {
		r := b.get(t, "/healthz")
		wantStatus(t, r, http.StatusOK)
		wantJSON(t, "healthz", r.Body, `{"status":"ok"}`)
	})
	t.Run("readyz", func(t *testing.T) {
		r := b.get(t, "/readyz")
		wantStatus(t, r, http.StatusOK)
		// The client of setup is never started, so it never leads.
		wantJSON(t, "readyz", r.Body, `{"status":"ready","leader":false}`)
	})
	t.Run("openapi", func(t *testing.T) {
		r := b.get(t, "/openapi.json")
		wantStatus(t, r, http.StatusOK)
		var doc struct {
			OpenAPI string         `json:"openapi"`
			Paths   map[string]any `json:"paths"`
		}
		if err := json.Unmarshal(r.Body, &doc); err != nil {
			t.Fatalf("openapi.json is not JSON: %v", err)
		}
		if !strings.HasPrefix(doc.OpenAPI, "3.1") || len(doc.Paths) == 0 {
			t.Errorf("want an OpenAPI 3.1 document with paths, got version %q and %d paths", doc.OpenAPI, len(doc.Paths))
		}
	})
}

func TestReadyzNotReady(t *testing.T) {
	t.Parallel()

	t.Run("Ready fails", func(t *testing.T) {
		t.Parallel()
		b := setupWith(t, setupOpts{ConfigFunc: func(c *taskdhttp.Config) {
			c.Ready = func(context.Context) error { return errors.New("schema is out of date") }
		}})
		p := wantProblem(t, b.get(t, "/readyz"), http.StatusServiceUnavailable, typeBlank)
		if !strings.Contains(p.Detail, "schema is out of date") {
			t.Errorf("want the reason in the detail, got %q", p.Detail)
		}
		wantStatus(t, b.get(t, "/healthz"), http.StatusOK)
	})
	t.Run("database gone", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		wantStatus(t, b.get(t, "/readyz"), http.StatusOK)
		b.pool.Close()
		wantProblem(t, b.get(t, "/readyz"), http.StatusServiceUnavailable, typeBlank)
		wantStatus(t, b.get(t, "/healthz"), http.StatusOK)
	})
}
