package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/taskd/taskd/client"
	"github.com/taskd/taskd/internal/pgtest"
)

// startServe runs `taskd serve` in-process on its own database and
// returns its URL; it is stopped when the test ends.
func startServe(t *testing.T) string {
	t.Helper()
	addr := freeAddr(t)
	env := envFunc(map[string]string{
		"DATABASE_URL": pgtest.NewEmptyDB(t), "TASKD_ADDR": addr, "TASKD_LOG_LEVEL": "warn", "TASKD_DB_MAX_CONNS": "6",
	})
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "--migrate"}, env, &out, &out) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v\n%s", err, out.String())
			}
		case <-time.After(60 * time.Second):
			t.Error("serve did not stop within 60s")
		}
	})
	base := "http://" + addr
	waitHealthy(t, base, done)
	return base
}

// cliResult is one client command's outcome.
type cliResult struct {
	stdout, stderr string
	err            error
	code           int // the exit status main would give
}

// taskdCLI runs a client command in-process against base, with stdin as
// standard input.
func taskdCLI(t *testing.T, base, stdin string, args ...string) cliResult {
	t.Helper()
	env := envFunc(map[string]string{"TASKD_URL": base})
	var stdout, stderr bytes.Buffer
	var err error
	if args[0] == "batch" {
		err = runBatch(context.Background(), args[1:], env, strings.NewReader(stdin), &stdout, &stderr)
	} else {
		err = run(context.Background(), args, env, &stdout, &stderr)
	}
	r := cliResult{stdout: stdout.String(), stderr: stderr.String(), err: err}
	var uerr *usageError
	switch {
	case errors.As(err, &uerr):
		r.code = 2
	case err != nil:
		r.code = 1
	}
	return r
}

// ok runs a command that must succeed and returns its output.
func ok(t *testing.T, base string, args ...string) string {
	t.Helper()
	r := taskdCLI(t, base, "", args...)
	if r.code != 0 {
		t.Fatalf("taskd %s: exit %d: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.err, r.stdout, r.stderr)
	}
	return r.stdout
}

// fails runs a command that must exit with code and returns its error
// message (what main prints).
func fails(t *testing.T, base string, code int, args ...string) string {
	t.Helper()
	r := taskdCLI(t, base, "", args...)
	if r.code != code {
		t.Fatalf("taskd %s: exit %d (%v), want %d\nstdout:\n%s", strings.Join(args, " "), r.code, r.err, code, r.stdout)
	}
	return r.err.Error()
}

func unmarshal[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("--json printed no JSON: %v\n%s", err, s)
	}
	return v
}

// row finds the table row (a line of stdout) that starts with first and
// returns its columns.
func row(t *testing.T, out, first string) []string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == first {
			return f
		}
	}
	t.Fatalf("no row %q in:\n%s", first, out)
	return nil
}

func contains(t *testing.T, what, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, out)
		}
	}
}

// TestCLITasks runs submit, tasks get|list|cancel|retry and queues
// against a real server, as tables and as JSON.
func TestCLITasks(t *testing.T) {
	t.Parallel()
	base := startServe(t)

	out := ok(t, base, "submit", "--kind", "double", "--args", `{"value":21}`, "--wait")
	if got := row(t, out, "STATE"); got[1] != "completed" {
		t.Errorf("submit --wait: STATE row %v\n%s", got, out)
	}
	contains(t, "submit --wait", out, `{"result":42}`, "OUTCOME")
	id := row(t, out, "ID")[1]

	task := unmarshal[client.Task](t, ok(t, base, "submit", "--json", "--kind", "double", "--args", `{"value":2}`, "--wait"))
	if task.State != "completed" || string(task.Result) != `{"result":4}` || len(task.Attempts) != 1 {
		t.Errorf("submit --json --wait: %+v", task)
	}

	// Flags after the ID, as well as before.
	out = ok(t, base, "tasks", "get", id)
	if got := row(t, out, "1"); got[1] != "completed" {
		t.Errorf("tasks get: attempt row %v\n%s", got, out)
	}
	if got := unmarshal[client.Task](t, ok(t, base, "tasks", "get", id, "--json")); fmt.Sprint(got.ID) != id || got.Kind != "double" {
		t.Errorf("tasks get --json: %+v", got)
	}

	out = ok(t, base, "tasks", "list", "--kind", "double", "--limit", "1")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[0], "ID") {
		t.Errorf("tasks list --limit 1: want a header and one row:\n%s", out)
	}
	if got := row(t, out, fmt.Sprint(task.ID)); got[1] != "double" || got[3] != "completed" {
		t.Errorf("tasks list: newest row %v", got)
	}
	if r := taskdCLI(t, base, "", "tasks", "list", "--kind", "double", "--limit", "1"); !strings.Contains(r.stderr, "--cursor") {
		t.Errorf("tasks list of a full page does not say how to get the next: %q", r.stderr)
	}
	list := unmarshal[client.TaskList](t, ok(t, base, "tasks", "list", "--json", "--state", "completed", "--queue", "default"))
	if len(list.Tasks) != 2 {
		t.Errorf("tasks list --json --state completed: %d tasks, want 2", len(list.Tasks))
	}

	// A paused queue keeps a task available: cancel it, retry it, resume
	// the queue and it runs.
	out = ok(t, base, "queues", "pause", "default")
	if got := row(t, out, "default"); got[1] != "yes" {
		t.Errorf("queues pause: row %v", got)
	}
	sleeper := unmarshal[client.Task](t, ok(t, base, "submit", "--json", "--kind", "sleep", "--args", `{"ms":10}`))
	out = ok(t, base, "queues")
	if got := row(t, out, "default"); got[1] != "yes" || got[3] != "1" {
		t.Errorf("queues: default row %v, want paused with 1 available\n%s", got, out)
	}
	row(t, out, "cpu")
	qs := unmarshal[client.QueueList](t, ok(t, base, "queues", "--json"))
	if len(qs.Queues) < 2 || qs.Queues[0].Name != "cpu" || qs.Queues[1].Name != "default" || !qs.Queues[1].Paused {
		t.Errorf("queues --json: %+v", qs)
	}
	sid := fmt.Sprint(sleeper.ID)
	if got := row(t, ok(t, base, "tasks", "cancel", sid), "STATE"); got[1] != "cancelled" {
		t.Errorf("tasks cancel: STATE %v", got)
	}
	if got := unmarshal[client.Task](t, ok(t, base, "tasks", "retry", sid, "--json")); got.State != "available" {
		t.Errorf("tasks retry: state %s, want available", got.State)
	}
	if got := unmarshal[client.Queue](t, ok(t, base, "queues", "resume", "default", "--json")); got.Paused {
		t.Errorf("queues resume: %+v", got)
	}
	waitFor(t, 20*time.Second, func() bool {
		return unmarshal[client.Task](t, ok(t, base, "tasks", "get", sid, "--json")).State == "completed"
	})

	// Request errors: the problem's detail and fields, exit 1.
	msg := fails(t, base, 1, "submit", "--kind", "double", "--args", `{}`)
	contains(t, "422 of submit", msg, "(422 Unprocessable Entity)", "\n  args.value: ")
	contains(t, "404 of tasks get", fails(t, base, 1, "tasks", "get", "424242"), "404")
	contains(t, "422 of tasks list", fails(t, base, 1, "tasks", "list", "--state", "sleepy"), "\n  state: unknown state")
	contains(t, "404 of queues pause", fails(t, base, 1, "queues", "pause", "nosuchqueue"), "does not exist")
	nobody := "http://" + freeAddr(t)
	contains(t, "unreachable taskd", fails(t, nobody, 1, "queues"), "no answer from taskd at "+nobody+" (--url, TASKD_URL): ", "connection refused")

	// With --wait, a task that does not complete is an exit 1, after the
	// task.
	r := taskdCLI(t, base, "", "submit", "--kind", "fail", "--args", `{"times":1,"message":"boom","permanent":true}`, "--wait")
	if r.code != 1 || !strings.HasSuffix(r.err.Error(), " is discarded") || row(t, r.stdout, "STATE")[1] != "discarded" {
		t.Errorf("submit --wait of a failing task: exit %d, %v\n%s", r.code, r.err, r.stdout)
	}

	// Bad usage: exit 2, before any request.
	for _, args := range [][]string{
		{"submit"},
		{"submit", "--kind", "double", "--args", "{value"},
		{"submit", "--kind", "double", "extra"},
		{"submit", "--kind", "double", "--wiat"},
		{"submit", "--kind", "double", "--url", "localhost:8080"},
		{"tasks"},
		{"tasks", "get"},
		{"tasks", "get", "x1"},
		{"tasks", "frob", "1"},
		{"tasks", "list", "--limit", "-1"},
		{"tasks", "list", "--limit", "0"},
		{"queues", "pause"},
		{"queues", "drain", "default"},
		{"batch"},
		{"batch", "submit"},
		{"batch", "submit", filepath.Join(t.TempDir(), "none.jsonl")},
		{"batch", "get", "x"},
		{"tasks", "--help"},
	} {
		fails(t, base, 2, args...)
	}
}

// TestCLIBatch submits batches from a file and from standard input and
// waits for them without a terminal: plain progress lines.
func TestCLIBatch(t *testing.T) {
	t.Parallel()
	base := startServe(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "tasks.jsonl")
	if err := os.WriteFile(file, []byte(`{"kind":"double","args":{"value":1}}`+"\n\n"+
		`{"kind":"sleep","args":{"ms":300}}`+"\n"+
		`{"kind":"fail","args":{"times":1,"message":"boom","permanent":true}}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	r := taskdCLI(t, base, "", "batch", "submit", file, "--wait")
	if r.code != 1 || !strings.Contains(r.err.Error(), "1 of 3 tasks did not complete") {
		t.Fatalf("batch with a failing task: exit %d, %v, want 1\n%s%s", r.code, r.err, r.stdout, r.stderr)
	}
	m := regexp.MustCompile(`(?m)^batch (\d+): 3/3 done, 1 failed, 0 cancelled, [0-9.-]+ tasks/s, ETA 0s$`).FindStringSubmatch(r.stderr)
	if m == nil {
		t.Fatalf("no final progress line:\n%s", r.stderr)
	}
	if strings.Contains(r.stderr, "\r") {
		t.Errorf("progress off a terminal redraws:\n%q", r.stderr)
	}
	if got := row(t, r.stdout, m[1]); got[1] != "done" || got[2] != "3" || got[3] != "2" || got[4] != "1" {
		t.Errorf("batch summary row %v\n%s", got, r.stdout)
	}
	contains(t, "batch summary", r.stdout, "discarded", "boom")

	// Standard input, JSON out.
	r = taskdCLI(t, base, `{"kind":"double","args":{"value":5}}`+"\n"+`{"kind":"double","args":{"value":6}}`, "batch", "submit", "-", "--wait", "--json")
	if r.code != 0 {
		t.Fatalf("batch from stdin: exit %d: %v\n%s", r.code, r.err, r.stderr)
	}
	b := unmarshal[client.Batch](t, r.stdout)
	if !b.Done || b.Total != 2 || b.Counts["completed"] != 2 || string(b.Tasks[1].Result) != `{"result":12}` {
		t.Errorf("batch --json: %+v", b)
	}
	contains(t, "stdin progress", r.stderr, "2/2 done, 0 failed")

	created := unmarshal[client.BatchCreated](t, ok(t, base, "batch", "submit", file, "--json"))
	if len(created.TaskIDs) != 3 {
		t.Errorf("batch submit --json: %+v", created)
	}
	contains(t, "batch submit", ok(t, base, "batch", "submit", file), "submitted: 3 task(s), IDs ")
	out := ok(t, base, "batch", "get", fmt.Sprint(b.ID))
	if got := row(t, out, fmt.Sprint(b.ID)); got[1] != "done" || got[3] != "2" {
		t.Errorf("batch get: %v\n%s", got, out)
	}

	// An invalid item is named by its line; nothing is inserted.
	bad := filepath.Join(dir, "bad.jsonl")
	if err := os.WriteFile(bad, []byte(`{"kind":"double","args":{"value":1}}`+"\n\n"+`{"kind":"double","args":{"value":"x"}}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	contains(t, "invalid item", fails(t, base, 1, "batch", "submit", bad), "bad.jsonl:3: tasks[1].args.value: ")
	if err := os.WriteFile(bad, []byte(`{"kind":"double"}`+"\n"+`{"kind":"double","arg":{}}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	contains(t, "unknown field", fails(t, base, 2, "batch", "submit", bad), "bad.jsonl:2: ", `"arg"`)
	contains(t, "empty input", fails(t, base, 2, "batch", "submit", "-"), "standard input holds no task")
}

// runBinary starts the built taskd with args and TASKD_URL; with a
// pseudo-terminal its stdout and stderr are the terminal.
func startBinary(t *testing.T, base string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(taskdBinary, args...)
	cmd.Env = append(os.Environ(), "TASKD_URL="+base)
	return cmd
}

// TestCLIBatchProgressBar waits for a batch on a pseudo-terminal: a live
// bar with done/total, failed, rate and ETA, redrawn in place.
func TestCLIBatchProgressBar(t *testing.T) {
	t.Parallel()
	base := startServe(t)
	var lines []string
	for i := range 6 {
		lines = append(lines, fmt.Sprintf(`{"kind":"sleep","args":{"ms":%d}}`, 500*(i+1)))
	}
	file := filepath.Join(t.TempDir(), "tasks.jsonl")
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := startBinary(t, base, "batch", "submit", file, "--wait")
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 160})
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	var out bytes.Buffer
	copied := make(chan struct{})
	go func() {
		_, _ = io.Copy(&out, tty) // ends with EIO once the program exits
		close(copied)
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			<-copied
			t.Fatalf("batch submit --wait on a terminal: %v\n%s", err, out.String())
		}
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("batch submit --wait did not end within 60s")
	}
	<-copied
	got := out.String()
	contains(t, "terminal output", got, "batch 1, 0 failed", "6/6", "100%", "|██", "\r")
	if !regexp.MustCompile(`\d+ tasks/(s|min|hr)`).MatchString(got) {
		t.Errorf("no rate in:\n%q", got)
	}
	if !regexp.MustCompile(`\[[0-9hms.]+:[0-9hms.]+\]`).MatchString(got) {
		t.Errorf("no [elapsed:ETA] in:\n%q", got)
	}
	// A frame before the last: the bar was live, not drawn once at the
	// end.
	if !regexp.MustCompile(`\| \([1-5]/6, `).MatchString(got) {
		t.Errorf("no intermediate frame in:\n%q", got)
	}
}

// TestCLIInterrupt: Ctrl-C stops the waiting of submit and of batch
// submit, says so, and leaves the task running.
func TestCLIInterrupt(t *testing.T) {
	t.Parallel()
	base := startServe(t)
	c, err := client.New(base, client.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tt := range []struct {
		name  string
		args  []string
		stdin string
		want  string
	}{
		{"submit", []string{"submit", "--kind", "sleep", "--args", `{"ms":60000}`, "--queue", "default", "--wait"}, "",
			"interrupted: stopped waiting for task "},
		{"batch", []string{"batch", "submit", "-", "--wait"}, `{"kind":"sleep","args":{"ms":60000}}`,
			"interrupted: stopped waiting for batch "},
	} {
		cmd := startBinary(t, base, tt.args...)
		cmd.Stdin = strings.NewReader(tt.stdin)
		var stdout, stderr syncBuffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		// Waiting: its task runs.
		var task client.TaskSummary
		waitFor(t, 20*time.Second, func() bool {
			l, err := c.List(ctx, client.ListParams{Kind: "sleep", States: []string{"running"}})
			if err != nil {
				t.Fatal(err)
			}
			if len(l.Tasks) == 1 {
				task = l.Tasks[0]
			}
			return len(l.Tasks) == 1
		})
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		select {
		case err = <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("%s --wait did not stop on SIGINT", tt.name)
		}
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Errorf("%s: exit after SIGINT: %v, want status 1", tt.name, err)
		}
		contains(t, tt.name+" interrupted", stderr.String(), tt.want, "goes on on the server", "see taskd ")
		if got, err := c.Get(ctx, task.ID); err != nil || got.State != "running" || got.CancelRequested {
			t.Errorf("%s: the task after the interrupted wait: %+v, %v; want it running", tt.name, got, err)
		}
		// Done with it; the next case waits for a task of its own, and the
		// server stops at once.
		if _, err := c.Cancel(ctx, task.ID); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 20*time.Second, func() bool {
			got, err := c.Get(ctx, task.ID)
			return err == nil && isFinal(got.State)
		})
	}
}

// TestCLIToken sends TASKD_TOKEN as a bearer token.
func TestCLIToken(t *testing.T) {
	t.Parallel()
	auth := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth <- r.Header.Get("Authorization")
		_, _ = w.Write([]byte(`{"queues":[]}`))
	}))
	t.Cleanup(srv.Close)
	env := envFunc(map[string]string{"TASKD_URL": srv.URL, "TASKD_TOKEN": "s3cret"})
	var out bytes.Buffer
	if err := run(context.Background(), []string{"queues"}, env, &out, &out); err != nil {
		t.Fatal(err)
	}
	if got := <-auth; got != "Bearer s3cret" {
		t.Errorf("Authorization = %q, want the bearer token", got)
	}
	if !strings.HasPrefix(out.String(), "QUEUE ") {
		t.Errorf("queues of none: %q, want the header", out.String())
	}
}

// TestCLIWaitOutage: a wait rides out taskd going away and coming back on
// the same address, as in a restart.
func TestCLIWaitOutage(t *testing.T) {
	t.Parallel()
	addr, db := freeAddr(t), pgtest.NewEmptyDB(t)
	base := "http://" + addr
	serve := func() (*exec.Cmd, chan error) {
		cmd := exec.Command(taskdBinary, "serve", "--migrate")
		cmd.Env = append(os.Environ(), "DATABASE_URL="+db, "TASKD_ADDR="+addr, "TASKD_LOG_LEVEL=warn", "TASKD_DB_MAX_CONNS=5")
		var out syncBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-done
		})
		waitHealthy(t, base, done)
		return cmd, done
	}
	server, serverDone := serve()
	c, err := client.New(base, client.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Paused, the queue keeps the task waiting across the restart.
	if _, err := c.PauseQueue(ctx, "default"); err != nil {
		t.Fatal(err)
	}

	cli := startBinary(t, base, "batch", "submit", "-", "--wait")
	cli.Stdin = strings.NewReader(`{"kind":"sleep","args":{"ms":10}}`)
	var stdout, stderr syncBuffer
	cli.Stdout, cli.Stderr = &stdout, &stderr
	if err := cli.Start(); err != nil {
		t.Fatal(err)
	}
	cliDone := make(chan error, 1)
	go func() { cliDone <- cli.Wait() }()
	t.Cleanup(func() { _ = cli.Process.Kill() })
	waitFor(t, 20*time.Second, func() bool { return strings.Contains(stderr.String(), "0/1 done") })

	_ = server.Process.Kill()
	<-serverDone
	serverDone <- nil // for the cleanup
	waitFor(t, 20*time.Second, func() bool { return strings.Contains(stderr.String(), "trying again") })
	serve()
	if _, err := c.ResumeQueue(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-cliDone:
		if err != nil {
			t.Fatalf("batch submit --wait across a restart: %v\n%s%s", err, stdout.String(), stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("batch submit --wait did not end after the restart:\n%s", stderr.String())
	}
	contains(t, "progress across a restart", stderr.String(), "no answer from taskd at "+base+" (--url, TASKD_URL): ", "; trying again for up to 1m0s\n", "1/1 done, 0 failed")
}
