package http_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/taskd/taskd/client"
	"github.com/taskd/taskd/internal/auth"
	"github.com/taskd/taskd/internal/config"
	taskdhttp "github.com/taskd/taskd/internal/http"
	"github.com/taskd/taskd/internal/kinds"
	"github.com/taskd/taskd/internal/kinds/builtin"
	"github.com/taskd/taskd/internal/schedule"
	"github.com/taskd/taskd/internal/tasks"
)

const typeQueueForbidden = "urn:taskd:problem:queue-forbidden"

// asTenant serves b's API to requests of a principal limited to queues, as
// the auth middleware will put it in their context.
func (b *testBundle) asTenant(t *testing.T, queues ...string) *testBundle {
	t.Helper()
	p := &auth.Principal{Name: "tenant", Scopes: []auth.Scope{auth.ScopeAdmin}, Queues: queues}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.handler.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
	})
	return &testBundle{pool: b.pool, jobs: b.jobs, handler: h, server: newServer(t, h)}
}

// TestTenantQueues checks every rule of tenants by queue for a token of
// the cpu queue, against tasks of cpu and default submitted without auth.
func TestTenantQueues(t *testing.T) {
	t.Parallel()
	f, err := config.Parse("taskd.yaml", []byte("kinds:\n  - name: pull\n    run: external\n"), t.TempDir(), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	reg, err := kinds.NewRegistry(append(builtin.Kinds(), f.Kinds...)...)
	if err != nil {
		t.Fatal(err)
	}
	admin := setupWith(t, setupOpts{Kinds: reg})
	tenant := admin.asTenant(t, builtin.QueueCPU)
	ctx := context.Background()

	mine := admin.createTask(t, `{"kind":"pull","args":{},"queue":"cpu"}`)
	other := admin.createTask(t, `{"kind":"pull","args":{},"queue":"default"}`)
	r := admin.post(t, "/v1/batches", `{"tasks":[{"kind":"pull","args":{},"queue":"cpu"},{"kind":"pull","args":{},"queue":"cpu"}]}`)
	wantStatus(t, r, http.StatusCreated)
	var mineBatch apiBatchCreated
	decode(t, r, &mineBatch)
	r = admin.post(t, "/v1/batches", `{"tasks":[{"kind":"pull","args":{},"queue":"cpu"},{"kind":"pull","args":{},"queue":"default"}]}`)
	wantStatus(t, r, http.StatusCreated)
	var mixed apiBatchCreated
	decode(t, r, &mixed)

	// Its own queue's task and batch, as without auth.
	wantStatus(t, tenant.get(t, "/v1/tasks/"+itoa(mine.ID)), http.StatusOK)
	wantStatus(t, tenant.get(t, "/v1/tasks/"+itoa(mine.ID)+"?wait=0s"), http.StatusOK)
	wantStatus(t, tenant.get(t, "/v1/batches/"+itoa(mineBatch.ID)), http.StatusOK)

	t.Run("lists", func(t *testing.T) {
		queuesOf := func(b *testBundle, path string) []string {
			t.Helper()
			r := b.get(t, path)
			wantStatus(t, r, http.StatusOK)
			var l apiList
			decode(t, r, &l)
			out := []string{}
			for _, task := range l.Tasks {
				out = append(out, task.Queue)
			}
			return out
		}
		if got := queuesOf(tenant, "/v1/tasks"); len(got) != 4 || slices.ContainsFunc(got, func(q string) bool { return q != "cpu" }) {
			t.Errorf("tenant's list: queues %v, want 4 tasks of cpu", got)
		}
		if got := queuesOf(tenant, "/v1/tasks?queue=default"); len(got) != 0 {
			t.Errorf("tenant's list of default: %v, want none", got)
		}
		if got := queuesOf(tenant, "/v1/tasks?queue=cpu&state=available"); len(got) != 4 {
			t.Errorf("tenant's list of cpu: %v, want 4", got)
		}
		if got := queuesOf(admin, "/v1/tasks"); len(got) != 6 {
			t.Errorf("list without auth: %v, want all 6", got)
		}
		// Pages of the filtered list carry on with the tenant's queues.
		r := tenant.get(t, "/v1/tasks?limit=3")
		var page apiList
		decode(t, r, &page)
		if len(page.Tasks) != 3 || page.NextCursor == nil {
			t.Fatalf("first page: %s", r)
		}
		if got := queuesOf(tenant, "/v1/tasks?limit=3&cursor="+*page.NextCursor); !slices.Equal(got, []string{"cpu"}) {
			t.Errorf("second page: %v, want the last cpu task", got)
		}
	})

	t.Run("queues", func(t *testing.T) {
		names := func(b *testBundle) []string {
			r := b.get(t, "/v1/queues")
			wantStatus(t, r, http.StatusOK)
			var l client.QueueList
			decode(t, r, &l)
			out := []string{}
			for _, q := range l.Queues {
				out = append(out, q.Name)
			}
			return out
		}
		if got := names(tenant); !slices.Equal(got, []string{"cpu"}) {
			t.Errorf("tenant's queues %v, want [cpu]", got)
		}
		if got := names(admin); !slices.Equal(got, []string{"cpu", "default"}) {
			t.Errorf("queues without auth %v, want [cpu default]", got)
		}
		wantStatus(t, tenant.post(t, "/v1/queues/default/pause", ""), http.StatusNotFound)
		wantStatus(t, tenant.post(t, "/v1/queues/nosuch/pause", ""), http.StatusNotFound)
	})

	t.Run("submissions", func(t *testing.T) {
		before := admin.count(t, "river_job")
		wantProblem(t, tenant.post(t, "/v1/tasks", `{"kind":"pull","args":{}}`), http.StatusForbidden, typeQueueForbidden, "queue")
		wantProblem(t, tenant.post(t, "/v1/tasks", `{"kind":"pull","args":{},"queue":"default"}`), http.StatusForbidden, typeQueueForbidden, "queue")
		// Validation comes first: a bad request is a 422 whoever sends it.
		wantProblem(t, tenant.post(t, "/v1/tasks", `{"kind":"nosuch","args":{},"queue":"default"}`), http.StatusUnprocessableEntity, typeValidation, "kind")
		wantProblem(t, tenant.post(t, "/v1/batches",
			`{"tasks":[{"kind":"pull","args":{},"queue":"cpu"},{"kind":"pull","args":{},"queue":"default"},{"kind":"pull","args":{}}],"then":{"kind":"pull","args":{}}}`),
			http.StatusForbidden, typeQueueForbidden, "tasks[1].queue", "tasks[2].queue", "then.queue")
		if n := admin.count(t, "river_job"); n != before {
			t.Errorf("refused submissions inserted %d tasks", n-before)
		}
		wantStatus(t, tenant.post(t, "/v1/tasks", `{"kind":"pull","args":{},"queue":"cpu"}`), http.StatusCreated)
		wantStatus(t, tenant.post(t, "/v1/batches", `{"tasks":[{"kind":"pull","args":{},"queue":"cpu"}],"then":{"kind":"pull","args":{},"queue":"cpu"}}`), http.StatusCreated)
	})

	t.Run("claims", func(t *testing.T) {
		wantProblem(t, tenant.post(t, "/v1/claims", `{"queues":["default"],"wait":"0s"}`), http.StatusForbidden, typeQueueForbidden, "queues")
		r := tenant.post(t, "/v1/claims", `{"queues":["default","cpu"],"max":100,"wait":"0s"}`)
		wantStatus(t, r, http.StatusOK)
		var claimed client.ClaimList
		decode(t, r, &claimed)
		r = tenant.post(t, "/v1/claims", `{"max":100,"wait":"0s"}`)
		wantStatus(t, r, http.StatusOK)
		var more client.ClaimList
		decode(t, r, &more)
		all := append(claimed.Tasks, more.Tasks...)
		if len(all) == 0 {
			t.Fatal("the tenant claimed nothing")
		}
		for _, c := range all {
			if c.Queue != "cpu" {
				t.Errorf("the tenant claimed task %d of queue %s", c.ID, c.Queue)
			}
		}
		if st := admin.getTask(t, other.ID).State; st != "available" {
			t.Errorf("the other queue's task is %s, want available", st)
		}
	})

	// Every route on another queue's task or batch answers exactly as for
	// one that does not exist: the same answer before and after the task
	// (the batch) is deleted.
	routes := []struct{ method, path, body string }{
		{"GET", "/v1/tasks/" + itoa(other.ID), ""},
		{"GET", "/v1/tasks/" + itoa(other.ID) + "?wait=10s", ""},
		{"POST", "/v1/tasks/" + itoa(other.ID) + "/cancel", ""},
		{"POST", "/v1/tasks/" + itoa(other.ID) + "/retry", ""},
		{"POST", "/v1/tasks/" + itoa(other.ID) + "/complete", `{"lease":"x"}`},
		{"POST", "/v1/tasks/" + itoa(other.ID) + "/fail", `{"lease":"x","error":"e"}`},
		{"POST", "/v1/tasks/" + itoa(other.ID) + "/heartbeat", `{"lease":"x"}`},
		{"GET", "/v1/batches/" + itoa(mixed.ID), ""},
		{"GET", "/v1/batches/" + itoa(mixed.ID) + "?wait=10s", ""},
		{"POST", "/v1/batches/" + itoa(mixed.ID) + "/cancel", ""},
	}
	hidden := make([]*response, len(routes))
	for i, rt := range routes {
		hidden[i] = tenant.do(t, rt.method, rt.path, rt.body)
		wantProblem(t, hidden[i], http.StatusNotFound, typeBlank)
	}
	// Nothing was changed: the other task is still waiting, uncancelled.
	if task := admin.getTask(t, other.ID); task.State != "available" || task.CancelRequested {
		t.Errorf("the other queue's task changed: %s", task)
	}
	if b := admin.waitBatchNow(t, mixed.ID); b.Counts["cancelled"] != 0 {
		t.Errorf("the mixed batch was cancelled: %+v", b)
	}
	// A batch whose tasks are all gone says nothing of whose it was: it is
	// missing for a tenant.
	if _, err := admin.pool.Exec(ctx, `DELETE FROM river_job WHERE id = ANY($1)`, mineBatch.TaskIDs); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, admin.get(t, "/v1/batches/"+itoa(mineBatch.ID)), http.StatusOK)
	wantProblem(t, tenant.get(t, "/v1/batches/"+itoa(mineBatch.ID)), http.StatusNotFound, typeBlank)
	if _, err := admin.pool.Exec(ctx, `DELETE FROM batches WHERE id = $1`, mixed.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.pool.Exec(ctx, `DELETE FROM river_job WHERE id = $1`, other.ID); err != nil {
		t.Fatal(err)
	}
	for i, rt := range routes {
		missing := tenant.do(t, rt.method, rt.path, rt.body)
		if missing.Status != hidden[i].Status || !bytes.Equal(missing.Body, hidden[i].Body) ||
			missing.Header.Get("Content-Type") != hidden[i].Header.Get("Content-Type") {
			t.Errorf("%s %s: another queue's answer\n%s\ndiffers from a missing one's\n%s", rt.method, rt.path, hidden[i], missing)
		}
	}
}

// waitBatchNow reads batch id without waiting.
func (b *testBundle) waitBatchNow(t *testing.T, id int64) apiBatch {
	t.Helper()
	r := b.get(t, "/v1/batches/"+itoa(id))
	wantStatus(t, r, http.StatusOK)
	var out apiBatch
	decode(t, r, &out)
	return out
}

// TestTenantSchedules checks that GET /v1/schedules lists a tenant only the
// schedules of its queues.
func TestTenantSchedules(t *testing.T) {
	t.Parallel()
	spec, err := schedule.Every(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kind, cpu := "double", builtin.QueueCPU
	admin := setupWith(t, setupOpts{ConfigFunc: func(cfg *taskdhttp.Config) {
		svc, err := tasks.New(tasks.Config{Store: cfg.Store, Jobs: cfg.Jobs, Schedules: []tasks.Schedule{
			{Name: "mine", Spec: spec, Task: tasks.TaskParams{Kind: &kind, Args: json.RawMessage(`{"value": 1}`), Queue: &cpu}},
			{Name: "other", Spec: spec, Task: tasks.TaskParams{Kind: &kind, Args: json.RawMessage(`{"value": 1}`)}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(svc.Close)
		cfg.Tasks = svc
	}})
	names := func(b *testBundle) []string {
		t.Helper()
		r := b.get(t, "/v1/schedules")
		wantStatus(t, r, http.StatusOK)
		var l client.ScheduleList
		decode(t, r, &l)
		out := []string{}
		for _, s := range l.Schedules {
			out = append(out, s.Name)
		}
		return out
	}
	if got := names(admin); !slices.Equal(got, []string{"mine", "other"}) {
		t.Errorf("schedules without auth: %v", got)
	}
	if got := names(admin.asTenant(t, cpu)); !slices.Equal(got, []string{"mine"}) {
		t.Errorf("the tenant's schedules: %v, want [mine]", got)
	}
	if got := names(admin.asTenant(t, "default")); !slices.Equal(got, []string{"other"}) {
		t.Errorf("the default tenant's schedules: %v, want [other]", got)
	}
}
