// Package fastapi_test runs the FastAPI example end to end: taskd with the
// example's taskd.yaml, the pull worker (worker.py) and the app (app.py)
// under uvicorn, each a real process on a free loopback port. It calls
// every endpoint of the app, then shows the two weaknesses the article
// lists for in-process background work fixed: a worker killed mid-task
// loses nothing (its lease runs out and a restarted worker completes the
// task), and neither does taskd itself (every result is still readable
// after a restart).
//
// The Python side needs Debian's python3-fastapi, python3-uvicorn and
// python3-httpx; the test installs them with `run.sh --install-only` and is
// skipped, saying why, when that fails.
package fastapi_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskd/taskd/internal/pgtest"
	"github.com/taskd/taskd/internal/taskdtest"
)

const (
	// python is the interpreter that sees Debian's packages.
	python = "/usr/bin/python3"

	// installTimeout bounds run.sh --install-only: an apt-get update and
	// install on a slow mirror.
	installTimeout = 5 * time.Minute

	// waitTimeout bounds every wait for something to happen: a task to
	// finish, a process to be ready. Nothing here should take more than a
	// few seconds; the bound only keeps a broken run from hanging.
	waitTimeout = 60 * time.Second

	// pollInterval is the pause between two looks at what is awaited.
	pollInterval = 50 * time.Millisecond

	// stopTimeout is how long a Python process gets to exit after SIGTERM
	// before it is killed.
	stopTimeout = 10 * time.Second
)

func TestMain(m *testing.M) { taskdtest.Main(m) }

func TestExample(t *testing.T) {
	t.Parallel()
	installPackages(t)

	secret := newSecret(t)
	appPort := freePort(t)
	config, err := os.ReadFile("taskd.yaml")
	require.NoError(t, err)
	td := taskdtest.Start(t, taskdtest.Options{
		DatabaseURL: pgtest.NewDB(t),
		Config:      string(config),
		Env:         []string{"EXAMPLE_APP_PORT=" + appPort, "EXAMPLE_WEBHOOK_SECRET=" + secret},
	})

	env := pythonEnv(t, td.URL, secret)
	worker := startPython(t, "worker", env, "worker.py")
	startPython(t, "app", env, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", appPort)
	app := &api{t: t, base: "http://127.0.0.1:" + appPort}
	app.waitReady()

	// The TaskManager's retries take seconds of backoff (about 1 s, then
	// 2 s): start them first, check them last.
	retried := app.taskID(app.post("/start-task", `{"times": 2, "message": "flaky upstream"}`))
	exhausted := app.taskID(app.post("/start-task", `{"times": 5, "max_retries": 1}`))

	// Results to read again after taskd's restart: path → answer.
	results := map[string]string{}

	t.Run("asyncio.gather: /process-multiple", func(t *testing.T) {
		a := app.post("/process-multiple", `[{"value": 1}, {"value": 2}, {"value": 3}]`)
		require.Equal(t, http.StatusOK, a.status, a.body)
		require.JSONEq(t, `[{"result": 2}, {"result": 4}, {"result": 6}]`, a.body)
		results["/batch-results/"+a.batchID()] = a.body
	})

	t.Run("BackgroundTasks: /submit-task and /get-result", func(t *testing.T) {
		path := "/get-result/" + app.taskID(app.post("/submit-task", `{"value": 21}`))
		a := app.pollUntil(path, func(a answer) bool { return !strings.Contains(a.body, "processing") })
		require.JSONEq(t, `{"result": 42}`, a.body)
		results[path] = a.body
	})

	t.Run("Celery: /submit-heavy-task and /check-task", func(t *testing.T) {
		path := "/check-task/" + app.taskID(app.post("/submit-heavy-task", `{"value": 21, "seconds": 0.2}`))
		a := app.pollUntil(path, func(a answer) bool { return !strings.Contains(a.body, "processing") })
		require.JSONEq(t, `{"status": "completed", "result": {"result": 42}}`, a.body)
		results[path] = a.body
	})

	t.Run("Semaphore(5): /process-with-limit, pushed to /hooks/limited", func(t *testing.T) {
		var items []string
		for i := range 8 {
			items = append(items, fmt.Sprintf(`{"value": %d, "ms": 300}`, i))
		}
		a := app.post("/process-with-limit", "["+strings.Join(items, ",")+"]")
		require.Equal(t, http.StatusOK, a.status, a.body)
		var got []struct {
			Processed     int `json:"processed"`
			RunningAtOnce int `json:"running_at_once"`
		}
		require.NoError(t, json.Unmarshal([]byte(a.body), &got))
		require.Len(t, got, len(items))
		peak := 0
		for i, r := range got {
			require.Equal(t, i, r.Processed, "results are in submission order")
			// The queue's 5 workers are the only bound: the hook runs
			// each request as soon as it arrives.
			require.LessOrEqual(t, r.RunningAtOnce, 5, a.body)
			require.GreaterOrEqual(t, r.RunningAtOnce, 1, a.body)
			peak = max(peak, r.RunningAtOnce)
		}
		t.Logf("at most %d limited_work tasks ran at once", peak)
		results["/batch-results/"+a.batchID()] = a.body
	})

	t.Run("bad signature: /hooks/limited refuses", func(t *testing.T) {
		a := app.post("/hooks/limited", `{"id": 1, "kind": "limited_work", "args": {"value": 1, "ms": 0}}`)
		require.Equal(t, http.StatusUnauthorized, a.status, a.body)
	})

	t.Run("ProcessPoolExecutor: /process-cpu-bound", func(t *testing.T) {
		a := app.post("/process-cpu-bound", `[{"n": 10}, {"n": 100000}]`)
		require.Equal(t, http.StatusOK, a.status, a.body)
		require.JSONEq(t, `[{"primes": 4}, {"primes": 9592}]`, a.body)
		results["/batch-results/"+a.batchID()] = a.body
	})

	t.Run("invalid args: taskd's 422 passed on", func(t *testing.T) {
		a := app.post("/process-multiple", `[{"value": 1}, {"value": "two"}]`)
		require.Equal(t, http.StatusUnprocessableEntity, a.status, a.body)
		require.Contains(t, a.body, "tasks[1].args.value")
		a = app.get("/get-result/999999")
		require.Equal(t, http.StatusNotFound, a.status, a.body)
	})

	t.Run("TaskManager: /start-task and /task-status", func(t *testing.T) {
		type status struct {
			Status   string          `json:"status"`
			Result   json.RawMessage `json:"result"`
			Error    *string         `json:"error"`
			Attempts []struct {
				Outcome string `json:"outcome"`
			} `json:"attempts"`
		}
		read := func(path string) status {
			a := app.pollUntil(path, func(a answer) bool { return !strings.Contains(a.body, `"processing"`) })
			var s status
			require.NoError(t, json.Unmarshal([]byte(a.body), &s), a.body)
			results[path] = a.body
			return s
		}
		outcomes := func(s status) (list []string) {
			for _, a := range s.Attempts {
				list = append(list, a.Outcome)
			}
			return list
		}

		s := read("/task-status/" + retried)
		require.Equal(t, "completed", s.Status)
		require.JSONEq(t, `{"attempts": 3}`, string(s.Result))
		require.Nil(t, s.Error)
		require.Equal(t, []string{"failed", "failed", "completed"}, outcomes(s))

		s = read("/task-status/" + exhausted)
		require.Equal(t, "failed", s.Status)
		require.NotNil(t, s.Error)
		require.Equal(t, "failed on purpose", *s.Error)
		require.Equal(t, []string{"failed", "failed"}, outcomes(s))
	})

	t.Run("a worker killed mid-task: the task completes on a restarted worker", func(t *testing.T) {
		id := app.taskID(app.post("/submit-heavy-task", `{"value": 7, "seconds": 3}`))
		worker.waitOutput("task " + id + ": started")
		worker.kill()
		restarted := startPython(t, "restarted worker", env, "worker.py")

		path := "/check-task/" + id
		a := app.pollUntil(path, func(a answer) bool { return !strings.Contains(a.body, "processing") })
		require.JSONEq(t, `{"status": "completed", "result": {"result": 14}}`, a.body)
		results[path] = a.body
		restarted.waitOutput("task " + id + ": done")

		// The attempts, from taskd: the killed worker's lease ran out.
		var task struct {
			Attempts []struct {
				Outcome string  `json:"outcome"`
				Error   *string `json:"error"`
				Worker  string  `json:"worker"`
			} `json:"attempts"`
		}
		require.NoError(t, json.Unmarshal([]byte(getBody(t, td.URL+"/v1/tasks/"+id)), &task))
		require.Len(t, task.Attempts, 2)
		first, second := task.Attempts[0], task.Attempts[1]
		require.Equal(t, "timeout", first.Outcome)
		require.NotNil(t, first.Error)
		require.Equal(t, "lease expired", *first.Error)
		require.Equal(t, "completed", second.Outcome)
		require.NotEqual(t, first.Worker, second.Worker, "the second attempt ran on the restarted worker")
	})

	t.Run("taskd restarted: every result is still readable", func(t *testing.T) {
		require.NotEmpty(t, results)
		td.Kill()
		td.Restart()
		for path, want := range results {
			a := app.get(path)
			require.Equal(t, http.StatusOK, a.status, "%s: %s", path, a.body)
			require.JSONEq(t, want, a.body, path)
		}
	})
}

// installPackages installs the example's Debian packages with the script
// a person runs, and skips the test when it cannot.
func installPackages(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), installTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "bash", "run.sh", "--install-only").CombinedOutput()
	if err != nil {
		t.Skipf("skipping: the example's Debian packages (python3-fastapi, python3-uvicorn, python3-httpx) could not be installed: run.sh --install-only: %v\n%s", err, out)
	}
}

// newSecret returns a new Standard Webhooks secret, whsec_<base64>.
func newSecret(t *testing.T) string {
	t.Helper()
	key := make([]byte, 32)
	_, err := rand.Read(key)
	require.NoError(t, err)
	return "whsec_" + base64.StdEncoding.EncodeToString(key)
}

// freePort returns a loopback port that was free a moment ago. taskd's
// configuration names the app's URL, so the app's port must be known
// before taskd starts, and uvicorn cannot say which port 0 gave it.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	require.NoError(t, l.Close())
	return port
}

// pythonEnv is the environment of the worker and the app: this process's,
// without a developer's TASKD_ settings, with the repository's Python
// client on the path and no bytecode written into the work tree.
func pythonEnv(t *testing.T, taskdURL, secret string) []string {
	t.Helper()
	client, err := filepath.Abs(filepath.Join("..", "..", "clients", "python"))
	require.NoError(t, err)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TASKD_") && !strings.HasPrefix(kv, "PYTHONPATH=") && !strings.HasPrefix(kv, "EXAMPLE_") {
			env = append(env, kv)
		}
	}
	return append(env,
		"TASKD_URL="+taskdURL,
		"EXAMPLE_WEBHOOK_SECRET="+secret,
		"PYTHONPATH="+client,
		"PYTHONDONTWRITEBYTECODE=1",
		"PYTHONUNBUFFERED=1",
	)
}

// pyProcess is a Python process of the example and its output.
type pyProcess struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{} // closed once the process has exited
}

// startPython runs /usr/bin/python3 with args in this directory. The
// process is stopped (SIGTERM, then SIGKILL) when the test ends, and its
// output logged if the test failed.
func startPython(t *testing.T, name string, env []string, args ...string) *pyProcess {
	t.Helper()
	p := &pyProcess{t: t, name: name, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(python, args...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	require.NoError(t, p.cmd.Start(), "starting the %s", name)
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", p.name, p.out.String())
		}
	})
	return p
}

func (p *pyProcess) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the process to exit (the worker lets its tasks finish) and
// kills it if it has not within stopTimeout.
func (p *pyProcess) stop() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *pyProcess) kill() {
	p.t.Helper()
	require.NoError(p.t, p.cmd.Process.Kill())
	<-p.done
}

// waitOutput waits until the process has written text.
func (p *pyProcess) waitOutput(text string) {
	p.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !strings.Contains(p.out.String(), text) {
		if p.exited() {
			p.t.Fatalf("the %s exited before writing %q:\n%s", p.name, text, p.out.String())
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("the %s did not write %q within %s:\n%s", p.name, text, waitTimeout, p.out.String())
		}
		time.Sleep(pollInterval)
	}
}

// api calls the FastAPI app.
type api struct {
	t    *testing.T
	base string
}

// answer is one response of the app.
type answer struct {
	status int
	header http.Header
	body   string
}

var httpClient = &http.Client{Timeout: waitTimeout}

func (a *api) do(method, path, body string) answer {
	a.t.Helper()
	req, err := http.NewRequest(method, a.base+path, strings.NewReader(body))
	require.NoError(a.t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := httpClient.Do(req)
	require.NoError(a.t, err, "%s %s", method, path)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(a.t, err)
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (a *api) get(path string) answer { return a.do(http.MethodGet, path, "") }

func (a *api) post(path, body string) answer { return a.do(http.MethodPost, path, body) }

// taskID returns the task_id of a submission's answer.
func (a *api) taskID(ans answer) string {
	a.t.Helper()
	require.Equal(a.t, http.StatusOK, ans.status, ans.body)
	var v struct {
		TaskID *int64 `json:"task_id"`
	}
	require.NoError(a.t, json.Unmarshal([]byte(ans.body), &v), ans.body)
	require.NotNil(a.t, v.TaskID, ans.body)
	return strconv.FormatInt(*v.TaskID, 10)
}

// batchID returns the batch a gathering endpoint submitted.
func (ans answer) batchID() string { return ans.header.Get("Taskd-Batch-Id") }

// pollUntil GETs path until a 200 answer satisfies done, and returns it.
func (a *api) pollUntil(path string, done func(answer) bool) answer {
	a.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		ans := a.get(path)
		require.Equal(a.t, http.StatusOK, ans.status, "%s: %s", path, ans.body)
		if done(ans) {
			return ans
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("%s still answered %s after %s", path, ans.body, waitTimeout)
		}
		time.Sleep(pollInterval)
	}
}

// waitReady waits until uvicorn serves the app.
func (a *api) waitReady() {
	a.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get(a.base + "/openapi.json")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("the app did not answer GET /openapi.json within %s (last error: %v)", waitTimeout, err)
		}
		time.Sleep(pollInterval)
	}
}

// getBody GETs url (taskd's API) and returns the body of its 200 answer.
func getBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := httpClient.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	return string(b)
}

// syncBuffer is a bytes.Buffer safe for the two goroutines that copy a
// process's stdout and stderr, and for reading meanwhile.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
