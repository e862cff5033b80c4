package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskd/taskd/internal/pgtest"
	"github.com/taskd/taskd/migrations"
)

// taskdBinary is built once by TestMain for the tests that need a real
// process to kill.
var taskdBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "taskd-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	taskdBinary = filepath.Join(dir, "taskd")
	build := exec.Command("go", "build", "-o", taskdBinary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building taskd:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func envFunc(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	base := map[string]string{"DATABASE_URL": "postgres://127.0.0.1:1/none"}
	dir := t.TempDir()
	badFile := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badFile, []byte("queues: {default: 5}\nkinds:\n  - {name: x1, run: http, url: \"ftp://nope\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	envFile := filepath.Join(dir, "env.yaml")
	if err := os.WriteFile(envFile, []byte("kinds:\n  - {name: x1, run: http, url: \"http://h/\", secret: \"${HOOK_SECRET}\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no command", nil, base, "no command"},
		{"unknown command", []string{"bogus"}, base, `unknown command "bogus"`},
		{"no database", []string{"serve"}, map[string]string{}, "DATABASE_URL"},
		{"bad cooldown env", []string{"serve"}, map[string]string{"DATABASE_URL": "x", "TASKD_FETCH_COOLDOWN": "fast"}, "TASKD_FETCH_COOLDOWN"},
		{"bad cooldown flag", []string{"serve", "--fetch-cooldown", "0s"}, base, "--fetch-cooldown"},
		{"poll below cooldown", []string{"serve", "--fetch-cooldown", "1s", "--fetch-poll-interval", "10ms"}, base, "TASKD_FETCH_POLL_INTERVAL"},
		{"bad queues", []string{"serve"}, map[string]string{"DATABASE_URL": "x", "TASKD_QUEUES": "default=lots"}, "TASKD_QUEUES"},
		{"bad queue name", []string{"serve", "--queues", "Default=5"}, base, "TASKD_QUEUES"},
		{"zero workers", []string{"serve", "--queues", "default=0"}, base, "TASKD_QUEUES"},
		{"bad grace", []string{"serve"}, map[string]string{"DATABASE_URL": "x", "TASKD_SHUTDOWN_GRACE": "-1s"}, "TASKD_SHUTDOWN_GRACE"},
		{"bad body limit", []string{"serve"}, map[string]string{"DATABASE_URL": "x", "TASKD_MAX_BODY_BYTES": "ten"}, "TASKD_MAX_BODY_BYTES"},
		{"in-flight below batch", []string{"serve", "--max-body-bytes-in-flight", "2048", "--max-batch-body-bytes", "4096"}, base, "TASKD_MAX_BODY_BYTES_IN_FLIGHT"},
		{"bad trusted origin", []string{"serve"}, map[string]string{"DATABASE_URL": "x", "TASKD_TRUSTED_ORIGINS": "https://ok.example,app.example/path"}, "TASKD_TRUSTED_ORIGINS"},
		{"bad conns", []string{"serve"}, map[string]string{"DATABASE_URL": "x", "TASKD_DB_MAX_CONNS": "0"}, "TASKD_DB_MAX_CONNS"},
		{"bad log level", []string{"serve"}, map[string]string{"DATABASE_URL": "x", "TASKD_LOG_LEVEL": "loud"}, "TASKD_LOG_LEVEL"},
		{"rescue too soon", []string{"serve", "--heartbeat-interval", "5s", "--rescue-after", "6s"}, base, "TASKD_RESCUE_AFTER"},
		{"bad bool", []string{"serve", "--migrate=maybe"}, base, "--migrate"},
		{"bad database url", []string{"serve"}, map[string]string{"DATABASE_URL": "postgres://%zz"}, "DATABASE_URL"},
		{"stray argument", []string{"serve", "now"}, base, `unexpected argument "now"`},
		{"migrate without action", []string{"migrate"}, base, "no action"},
		{"migrate unknown action", []string{"migrate", "sideways"}, map[string]string{"DATABASE_URL": pgtest.AdminURL()}, `unknown action "sideways"`},
		{"help", []string{"serve", "--help"}, base, "help requested"},
		{"missing config file", []string{"serve", "--config", filepath.Join(dir, "none.yaml")}, base, "none.yaml"},
		{"bad config file", []string{"serve"}, map[string]string{"DATABASE_URL": "x", "TASKD_CONFIG": badFile}, "bad.yaml:3: kinds[0].url"},
		{"unset variable", []string{"serve", "--config", envFile}, base, "HOOK_SECRET"},
		{"config check of a bad file", []string{"config", "check", badFile}, base, "bad.yaml:3: kinds[0].url"},
		{"config without check", []string{"config", badFile}, base, "config check FILE"},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		err := run(context.Background(), tt.args, envFunc(tt.env), &out, &out)
		var uerr *usageError
		if !errors.As(err, &uerr) {
			t.Errorf("%s: err = %v, want a usage error (exit 2)", tt.name, err)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %q, want it to name %q", tt.name, err, tt.want)
		}
	}
}

// TestConfigCheck prints the effective configuration of a valid file,
// secrets redacted; flags still win over the file.
func TestConfigCheck(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "taskd.yaml")
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	if err := os.WriteFile(file, []byte("queues: {default: 7, hooks: 3}\n"+
		"kinds:\n  - {name: resize, run: http, queue: hooks, url: \"https://img.example/resize\", secret: \"${S}\"}\n"+
		"  - {name: transcode, run: external, queue: media, timeout: 10m}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := envFunc(map[string]string{"S": secret})
	var out bytes.Buffer
	if err := run(context.Background(), []string{"config", "check", file}, env, &out, &out); err != nil {
		t.Fatalf("config check: %v\n%s", err, out.String())
	}
	for _, want := range []string{"is valid", "name: resize", "name: transcode", "<redacted>", "hooks: 3"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("config check output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), secret) {
		t.Errorf("config check printed the secret:\n%s", out.String())
	}

	cfg, err := parseServeConfig(roleServe, []string{"--config", file, "--database-url", "x"}, env, &out)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Queues["hooks"] != 3 || cfg.Queues["default"] != 7 {
		t.Errorf("queues from the file: %v", cfg.Queues)
	}
	if k, ok := cfg.Kinds.Lookup("transcode"); !ok || k.Run != "external" {
		t.Errorf("declared kind transcode: %+v %v", k, ok)
	}
	cfg, err = parseServeConfig(roleServe, []string{"--config", file, "--database-url", "x", "--queues", "default=2,hooks=1"}, env, &out)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Queues["hooks"] != 1 || cfg.Queues["default"] != 2 {
		t.Errorf("--queues must win over the file: %v", cfg.Queues)
	}
}

func TestServeRefusesPendingMigrations(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": pgtest.NewEmptyDB(t), "TASKD_ADDR": freeAddr(t)}
	var out bytes.Buffer
	err := run(context.Background(), []string{"serve"}, envFunc(env), &out, &out)
	if err == nil || !strings.Contains(err.Error(), "taskd migrate up") {
		t.Fatalf("err = %v, want a refusal naming `taskd migrate up`", err)
	}
}

func TestMigrateCommand(t *testing.T) {
	t.Parallel()
	env := envFunc(map[string]string{"DATABASE_URL": pgtest.NewEmptyDB(t)})
	ctx := context.Background()
	step := func(want string, args ...string) {
		t.Helper()
		var out bytes.Buffer
		if err := run(ctx, append([]string{"migrate"}, args...), env, &out, &out); err != nil {
			t.Fatalf("migrate %v: %v\n%s", args, err, out.String())
		}
		if !strings.Contains(out.String(), want) {
			t.Fatalf("migrate %v printed %q, want %q", args, out.String(), want)
		}
	}
	// The latest migration and the one before it, from the files, so that
	// adding a migration does not change the test.
	files, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil || len(files) < 2 {
		t.Fatalf("migration files: %v, %v", files, err)
	}
	slices.Sort(files)
	last, prev := files[len(files)-1], files[len(files)-2]
	version := func(name string) string {
		n, err := strconv.Atoi(name[:strings.IndexByte(name, '_')])
		if err != nil {
			t.Fatalf("migration %s: %v", name, err)
		}
		return strconv.Itoa(n) + "\n"
	}
	step("pending", "status")
	step("applied "+last, "up")
	step(version(last), "version")
	step("no pending migrations", "up")
	step("reverted "+last, "down")
	step(version(prev), "version")
	step("applied "+last, "up")
}

// TestServeInProcess runs the real program in-process: migrate, serve,
// work a task, shut down cleanly on cancellation.
func TestServeInProcess(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	env := envFunc(map[string]string{
		"DATABASE_URL": pgtest.NewEmptyDB(t), "TASKD_ADDR": addr, "TASKD_LOG_LEVEL": "warn", "TASKD_DB_MAX_CONNS": "5",
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "--migrate"}, env, &out, &out) }()

	base := "http://" + addr
	waitHealthy(t, base, done)
	resp, err := http.Post(base+"/v1/tasks", "", strings.NewReader(`{"kind":"double","args":{"value":21}}`))
	if err != nil {
		t.Fatal(err)
	}
	var task struct {
		ID int64 `json:"id"`
	}
	decode(t, resp, http.StatusCreated, &task)
	waitFor(t, 10*time.Second, func() bool {
		var got struct {
			State  string          `json:"state"`
			Result json.RawMessage `json:"result"`
		}
		r, err := http.Get(fmt.Sprintf("%s/v1/tasks/%d", base, task.ID))
		if err != nil {
			t.Fatal(err)
		}
		decode(t, r, http.StatusOK, &got)
		return got.State == "completed" && string(got.Result) == `{"result":42}`
	})
	for _, path := range []string{"/readyz", "/openapi.json", "/riverui/"} {
		r, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusOK {
			t.Errorf("GET %s = %d", path, r.StatusCode)
		}
	}
	// The River UI's API, mounted by serve, refuses cross-site writes.
	req, err := http.NewRequest("POST", base+"/riverui/api/jobs/delete", strings.NewReader(fmt.Sprintf(`{"ids":["%d"]}`, task.ID)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST /riverui/api/jobs/delete = %d, want 403", r.StatusCode)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v after cancellation; output:\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after cancellation")
	}
}

// process is a taskd subprocess.
type process struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	base string
	done chan error
}

func startProcess(t *testing.T, dbURL string, extraEnv ...string) *process {
	t.Helper()
	addr := freeAddr(t)
	cmd := exec.Command(taskdBinary, "serve")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "TASKD_ADDR="+addr, "TASKD_LOG_LEVEL=warn", "TASKD_DB_MAX_CONNS=10")
	cmd.Env = append(cmd.Env, extraEnv...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, out: out, base: "http://" + addr, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("taskd output:\n%s", out.String())
		}
	})
	waitHealthy(t, p.base, p.done)
	return p
}

func (p *process) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup
		return err
	case <-time.After(timeout):
		t.Fatalf("taskd did not exit within %s", timeout)
		return nil
	}
}

// submitSleeps submits n sleep tasks of ms each through POST /v1/batches.
func submitSleeps(t *testing.T, base string, n, ms int) []int64 {
	t.Helper()
	return submitSleepsOf(t, base, n, func(int) int { return ms })
}

// submitSleepsOf submits n sleep tasks through POST /v1/batches, the i-th
// of msOf(i) ms.
func submitSleepsOf(t *testing.T, base string, n int, msOf func(i int) int) []int64 {
	t.Helper()
	var ids []int64
	for len(ids) < n {
		size := min(100, n-len(ids))
		items := make([]string, size)
		for i := range items {
			items[i] = fmt.Sprintf(`{"kind":"sleep","args":{"ms":%d}}`, msOf(len(ids)+i))
		}
		resp, err := http.Post(base+"/v1/batches", "", strings.NewReader(`{"tasks":[`+strings.Join(items, ",")+`]}`))
		if err != nil {
			t.Fatal(err)
		}
		var b struct {
			TaskIDs []int64 `json:"task_ids"`
		}
		decode(t, resp, http.StatusCreated, &b)
		ids = append(ids, b.TaskIDs...)
	}
	return ids
}

func testPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func count(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// TestCrashRecovery kills taskd with SIGKILL while it runs a few hundred
// tasks of about a second, restarts it, and checks that every task completes, that
// the tasks lost in the crash were re-run within 30 s of the new process
// being up, and that every attempt has exactly one row: the attempts
// running at the kill are recorded once, as lost (cut off while working) or
// completed_unsaved (work done, completion not saved), and every task has
// one completed attempt.
func TestCrashRecovery(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDB(t)
	pool := testPool(t, dbURL)
	const n = 300

	first := startProcess(t, dbURL)
	// Lengths from 0.5 to 1.5 s, so that tasks finish all the time and the
	// kill finds some that finished their work (and wrote their attempt
	// rows) without River having saved their completion yet.
	ids := submitSleepsOf(t, first.base, n, func(i int) int { return 500 + i*337%1000 })
	waitFor(t, 20*time.Second, func() bool {
		return count(t, pool, `SELECT count(*) FROM river_job WHERE state = 'completed'`) >= 10 &&
			count(t, pool, `SELECT count(*) FROM river_job WHERE state = 'running'`) >= 50
	})
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	first.wait(t, 10*time.Second)
	// A commit the killed process had sent may still be finishing.
	waitFor(t, 10*time.Second, func() bool {
		return count(t, pool, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND backend_type = 'client backend'
				AND pid <> pg_backend_pid() AND state <> 'idle'`) == 0
	})
	lostAtKill := count(t, pool, `SELECT count(*) FROM river_job WHERE state = 'running'`)
	if lostAtKill == 0 {
		t.Fatal("no task was running at the kill")
	}

	second := startProcess(t, dbURL)
	upAt := time.Now()
	waitFor(t, 90*time.Second, func() bool {
		return count(t, pool, `SELECT count(*) FROM river_job WHERE state = 'completed'`) == n
	})
	if got := count(t, pool, `SELECT count(*) FROM river_job WHERE id = ANY($1) AND state = 'completed'`, ids); got != n {
		t.Fatalf("completed %d of %d submitted tasks", got, n)
	}
	lost := count(t, pool, `SELECT count(*) FROM task_attempts WHERE outcome = 'lost'`)
	unsaved := count(t, pool, `SELECT count(*) FROM task_attempts WHERE outcome = 'completed_unsaved'`)
	if lost+unsaved != lostAtKill {
		t.Errorf("lost + completed_unsaved attempts = %d + %d, want %d (the tasks running at the kill)", lost, unsaved, lostAtKill)
	}
	if dup := count(t, pool, `SELECT count(*) FROM (
		SELECT 1 FROM task_attempts GROUP BY task_id, attempt, started_at HAVING count(*) > 1) d`); dup != 0 {
		t.Errorf("%d attempts have more than one row", dup)
	}
	if bad := count(t, pool, `SELECT count(*) FROM river_job j
		WHERE (SELECT count(*) FROM task_attempts a WHERE a.task_id = j.id AND a.outcome = 'completed') <> 1`); bad != 0 {
		t.Errorf("%d completed tasks do not have exactly one completed attempt", bad)
	}
	// Each rescued task's next attempt started within 30 s of the restart.
	var latest time.Time
	err := pool.QueryRow(context.Background(), `
		SELECT max(a.started_at) FROM task_attempts a
		WHERE a.outcome NOT IN ('lost', 'completed_unsaved')
			AND a.task_id IN (SELECT task_id FROM task_attempts WHERE outcome IN ('lost', 'completed_unsaved'))`).Scan(&latest)
	if err != nil {
		t.Fatal(err)
	}
	if d := latest.Sub(upAt); d > 30*time.Second {
		t.Errorf("a lost task was re-run %s after the restart; want within 30s", d)
	}
	t.Logf("%d tasks running at the kill (%d lost, %d completed but not saved); all re-run, the last %s after the restart",
		lostAtKill, lost, unsaved, latest.Sub(upAt).Round(time.Millisecond))
	_ = second
}

// TestGracefulShutdown sends SIGTERM: running tasks finish within the grace
// period and the process exits 0; with a short grace they are cancelled and
// put back to available.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	t.Run("tasks finish within grace", func(t *testing.T) {
		t.Parallel()
		dbURL := pgtest.NewDB(t)
		pool := testPool(t, dbURL)
		p := startProcess(t, dbURL, "TASKD_SHUTDOWN_GRACE=20s")
		submitSleeps(t, p.base, 10, 1500)
		waitFor(t, 10*time.Second, func() bool {
			return count(t, pool, `SELECT count(*) FROM river_job WHERE state = 'running'`) == 10
		})
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := p.wait(t, 20*time.Second); err != nil {
			t.Fatalf("exit: %v", err)
		}
		if got := count(t, pool, `SELECT count(*) FROM river_job WHERE state = 'completed'`); got != 10 {
			t.Errorf("completed = %d, want 10", got)
		}
		if got := count(t, pool, `SELECT count(*) FROM task_attempts WHERE outcome = 'completed'`); got != 10 {
			t.Errorf("completed attempts = %d, want 10 (written before exit)", got)
		}
		if got := count(t, pool, `SELECT count(*) FROM taskd_processes`); got != 0 {
			t.Errorf("process rows = %d, want 0", got)
		}
	})
	t.Run("grace runs out", func(t *testing.T) {
		t.Parallel()
		dbURL := pgtest.NewDB(t)
		pool := testPool(t, dbURL)
		p := startProcess(t, dbURL, "TASKD_SHUTDOWN_GRACE=300ms")
		submitSleeps(t, p.base, 5, 60_000)
		waitFor(t, 10*time.Second, func() bool {
			return count(t, pool, `SELECT count(*) FROM river_job WHERE state = 'running'`) == 5
		})
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := p.wait(t, 20*time.Second); err != nil {
			t.Fatalf("exit: %v", err)
		}
		if got := count(t, pool, `SELECT count(*) FROM river_job WHERE state = 'available' AND coalesce(cardinality(errors), 0) = 0`); got != 5 {
			t.Errorf("available again = %d, want 5", got)
		}
		if got := count(t, pool, `SELECT count(*) FROM task_attempts WHERE outcome = 'interrupted'`); got != 5 {
			t.Errorf("interrupted attempts = %d, want 5", got)
		}
	})
}

func waitHealthy(t *testing.T, base string, done chan error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("taskd exited before becoming healthy: %v", err)
		default:
		}
		if r, err := http.Get(base + "/healthz"); err == nil {
			r.Body.Close()
			if r.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
	t.Fatal("taskd did not become healthy within 30s")
}

func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", timeout)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
}

func decode(t *testing.T, resp *http.Response, status int, v any) {
	t.Helper()
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("%s %s = %d, want %d: %s", resp.Request.Method, resp.Request.URL, resp.StatusCode, status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("decoding %s: %v", body, err)
	}
}

// syncBuffer is a bytes.Buffer safe for a process's concurrent writes.
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

// TestWorkerCommand runs "taskd worker" (no API) and has it work a task
// submitted by another process; its own listener answers health checks
// only.
func TestWorkerCommand(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDB(t)
	pool := testPool(t, dbURL)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	env := envFunc(map[string]string{"DATABASE_URL": dbURL, "TASKD_LOG_LEVEL": "warn", "TASKD_DB_MAX_CONNS": "5", "TASKD_ADDR": "127.0.0.1:0"})
	go func() { done <- run(ctx, []string{"worker"}, env, &out, &out) }()

	// Insert as another process would: River's own insert, no workers here.
	_, err := pool.Exec(ctx, `INSERT INTO river_job (args, kind, max_attempts, queue, state) VALUES ('{"value":5}', 'double', 25, 'default', 'available')`)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, func() bool {
		return count(t, pool, `SELECT count(*) FROM river_job WHERE state = 'completed' AND metadata->'output' = '{"result":10}'`) == 1
	})
	// Its listener serves health, not the API.
	_, addr, ok := strings.Cut(out.String(), "taskd listening on http://")
	if addr, _, _ = strings.Cut(addr, "\n"); !ok || addr == "" {
		t.Fatalf("worker printed no address:\n%s", out.String())
	}
	for path, want := range map[string]int{"/healthz": http.StatusOK, "/readyz": http.StatusOK, "/v1/kinds": http.StatusNotFound} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("worker GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("worker returned %v; output:\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("worker did not stop")
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"postgres://u:s3cret@db:5432/x", "postgres://u:xxxxx@db:5432/x"},
		{"postgres://u@db/x?sslmode=disable&password=s3cret", "postgres://u@db/x?sslmode=disable&password=xxxxx"},
		{"host=db user=u password=s3cret dbname=x", "host=db user=u password=xxxxx dbname=x"},
		{"host=db password = 's3 cr\\'et' dbname=x", "host=db password = xxxxx dbname=x"},
		{"password=s3cret host=db", "password=xxxxx host=db"},
		{"host=db user=u dbname=x", "host=db user=u dbname=x"},
	} {
		if got := redactURL(tc.in); got != tc.want || strings.Contains(got, "s3") {
			t.Errorf("redactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
