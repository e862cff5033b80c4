package taskdtest_test

// The roles of taskd (serve, api, worker) on one database, as real
// processes: an api process accepts tasks for the cluster's queues and
// works none, a worker works them and answers health checks on its own
// address, and when River's leader is killed another worker takes over.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/taskd/taskd/client"
	"github.com/taskd/taskd/internal/pgtest"
	"github.com/taskd/taskd/internal/taskdtest"
)

func TestMain(m *testing.M) { taskdtest.Main(m) }

// rolesConfig is the cluster's configuration file: the queues every
// process accepts submissions for, whichever it works.
const rolesConfig = "queues: {default: 2, special: 2}\n"

// rolesEnv keeps the processes small: several share one PostgreSQL.
var rolesEnv = []string{"TASKD_DB_MAX_CONNS=5", "TASKD_UI=false", "TASKD_LOG_LEVEL=warn"}

// readyz is one GET /readyz of base: its status and, on 200, its answer.
func readyz(t *testing.T, base string) (int, client.Ready) {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get(base + "/readyz")
	if err != nil {
		return 0, client.Ready{}
	}
	defer resp.Body.Close()
	var r client.Ready
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			t.Fatalf("GET %s/readyz: %v", base, err)
		}
	}
	return resp.StatusCode, r
}

// waitLeader polls the processes' /readyz until one says it leads, and
// returns it.
func waitLeader(t *testing.T, procs []*taskdtest.Process, timeout time.Duration) *taskdtest.Process {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, p := range procs {
			if status, r := readyz(t, p.URL); status == http.StatusOK && r.Leader {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no process says it leads after %s", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

func TestRolesAPIAndWorker(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts two taskd processes")
	}
	ctx := context.Background()
	dbURL := pgtest.NewDB(t)
	// The worker works only "special"; the api process works nothing, and
	// accepts both of the file's queues.
	worker := taskdtest.Start(t, taskdtest.Options{DatabaseURL: dbURL, Role: "worker", Config: rolesConfig,
		Args: []string{"--queues", "special=2"}, Env: rolesEnv})
	// The River UI stays on: it must work on an insert-only client too.
	api := taskdtest.Start(t, taskdtest.Options{DatabaseURL: dbURL, Role: "api", Config: rolesConfig,
		Env: []string{"TASKD_DB_MAX_CONNS=5", "TASKD_LOG_LEVEL=warn"}})

	c, err := client.New(api.URL, client.Config{HTTPClient: &http.Client{Timeout: 30 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	kind, queue := "double", "special"
	task, _, err := c.Submit(ctx, client.TaskRequest{Kind: &kind, Queue: &queue, Args: json.RawMessage(`{"value": 21}`)}, client.SubmitOptions{})
	if err != nil {
		t.Fatalf("submitting to the api process: %v", err)
	}
	// ?wait= on the api process: it hears of the finish from the worker.
	deadline := time.Now().Add(30 * time.Second)
	for task.State != "completed" {
		if time.Now().After(deadline) {
			t.Fatalf("task %d is %s after 30s, want completed", task.ID, task.State)
		}
		if task, err = c.Wait(ctx, task.ID, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if got := strings.ReplaceAll(string(task.Result), " ", ""); got != `42` && got != `{"result":42}` {
		t.Errorf("task result %s, want 42", task.Result)
	}
	if len(task.Attempts) != 1 || !strings.Contains(task.Attempts[0].Worker, "_"+strconv.Itoa(worker.PID())+"_") {
		t.Errorf("attempts %+v, want one by the worker (pid %d)", task.Attempts, worker.PID())
	}

	// A queue nobody configured is refused, with the field named.
	nowhere := "nowhere"
	_, _, err = c.Submit(ctx, client.TaskRequest{Kind: &kind, Queue: &nowhere, Args: json.RawMessage(`{"value": 1}`)}, client.SubmitOptions{})
	var cerr *client.Error
	if !errors.As(err, &cerr) || cerr.Status != http.StatusUnprocessableEntity || len(cerr.Errors) != 1 || cerr.Errors[0].Field != "queue" {
		t.Fatalf("submitting to an unconfigured queue: %v (%+v), want a 422 on field queue", err, cerr)
	}

	// The worker's own listener: health, readiness with leadership (it is
	// the only process that stands for election), and no API.
	if status, body := get(t, worker.URL+"/healthz"); status != http.StatusOK || !strings.Contains(body, `"ok"`) {
		t.Errorf("worker GET /healthz: %d %s", status, body)
	}
	if leader := waitLeader(t, []*taskdtest.Process{worker, api}, 30*time.Second); leader != worker {
		t.Errorf("the api process says it leads")
	}
	if status, r := readyz(t, api.URL); status != http.StatusOK || r.Leader {
		t.Errorf("api GET /readyz: %d %+v, want 200 and not leader", status, r)
	}
	if status, body := get(t, api.URL+"/riverui/api/queues"); status != http.StatusOK || !strings.Contains(body, `"special"`) {
		t.Errorf("api GET /riverui/api/queues: %d %s, want 200 listing special", status, body)
	}
	if status, _ := get(t, worker.URL+"/v1/tasks/1"); status != http.StatusNotFound {
		t.Errorf("worker GET /v1/tasks/1: %d, want 404 (a worker serves no API)", status)
	}
}

// TestRolesLeaderFailover kills River's leader among two workers (SIGKILL:
// it cannot resign) and measures how long until the other says it leads.
func TestRolesLeaderFailover(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts two taskd processes")
	}
	dbURL := pgtest.NewDB(t)
	opts := taskdtest.Options{DatabaseURL: dbURL, Role: "worker", Env: rolesEnv}
	procs := []*taskdtest.Process{taskdtest.Start(t, opts), taskdtest.Start(t, opts)}

	first := waitLeader(t, procs, 30*time.Second)
	other := procs[0]
	if other == first {
		other = procs[1]
	}
	if status, r := readyz(t, other.URL); status != http.StatusOK || r.Leader {
		t.Fatalf("both workers say they lead (%d %+v)", status, r)
	}
	first.Kill()
	killed := time.Now()
	if second := waitLeader(t, []*taskdtest.Process{other}, 60*time.Second); second != other {
		t.Fatal("unreachable: only the survivor was asked")
	}
	t.Logf("leader killed (SIGKILL); the other worker led %s later", time.Since(killed).Round(100*time.Millisecond))
}
