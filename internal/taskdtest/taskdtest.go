// Package taskdtest runs taskd as a real process for tests that need one:
// clients in other languages, examples, fault injection.
//
// [Build] compiles cmd/taskd once per test process; [Start] runs
// `taskd serve` (or `taskd api`, `taskd worker`: [Options].Role) on a database of the caller's (usually pgtest.NewDB), waits
// until it is ready and stops it when the test ends. A [Process] can be
// stopped gracefully (SIGTERM), killed (SIGKILL) and restarted on the same
// address, so that clients keep their URL across a crash.
//
// A package that uses it calls [Main] from its TestMain, which removes the
// binary once the tests have run:
//
//	func TestMain(m *testing.M) { taskdtest.Main(m) }
package taskdtest

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// ReadyTimeoutDefault bounds how long Start and Restart wait for the
	// process to print its address and answer GET /readyz with 200.
	ReadyTimeoutDefault = 30 * time.Second

	// StopTimeoutDefault bounds how long Stop waits for the process to exit
	// after SIGTERM: taskd's default shutdown grace (30 s) plus the time it
	// gives HTTP to drain (10 s), with some to spare.
	StopTimeoutDefault = 50 * time.Second

	// listeningPrefix starts the line every role prints on stdout once it
	// listens (a worker on its health listener), followed by its URL,
	// http:// or, with --tls-cert, https://.
	listeningPrefix = "taskd listening on "

	// readyPollInterval is the pause between two GET /readyz.
	readyPollInterval = 20 * time.Millisecond
)

// builds holds the binaries built so far, one per set of build tags.
var builds struct {
	mu   sync.Mutex
	dirs []string
	bins map[string]*binary
}

type binary struct {
	once sync.Once
	path string
	err  error
}

// Build compiles github.com/taskd/taskd/cmd/taskd the first time it is
// called in a test process and returns the binary's path; later calls return
// the same binary. It fails t if the build fails.
func Build(t testing.TB) string {
	t.Helper()
	return BuildTags(t)
}

// BuildTags is Build with Go build tags: BuildTags(t, "chaos") compiles
// the test-only kinds of internal/kinds/builtin (chaos.go) in, which the
// shipped binary never has. Each set of tags is built once per test
// process.
func BuildTags(t testing.TB, tags ...string) string {
	t.Helper()
	key := strings.Join(tags, ",")
	builds.mu.Lock()
	if builds.bins == nil {
		builds.bins = map[string]*binary{}
	}
	b := builds.bins[key]
	if b == nil {
		b = &binary{}
		builds.bins[key] = b
	}
	builds.mu.Unlock()
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "taskdtest-bin-")
		if err != nil {
			b.err = fmt.Errorf("error creating a directory for the binary: %w", err)
			return
		}
		builds.mu.Lock()
		builds.dirs = append(builds.dirs, dir)
		builds.mu.Unlock()
		b.path = filepath.Join(dir, "taskd")
		args := []string{"build", "-o", b.path}
		if key != "" {
			args = append(args, "-tags", key)
		}
		cmd := exec.Command("go", append(args, "github.com/taskd/taskd/cmd/taskd")...)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("error building taskd (tags %q): %w\n%s", key, err, out)
		}
	})
	if b.err != nil {
		t.Fatalf("taskdtest: %v", b.err)
	}
	return b.path
}

// Main runs m's tests, removes the binaries Build made, and exits with the
// tests' status. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	builds.mu.Lock()
	for _, dir := range builds.dirs {
		os.RemoveAll(dir)
	}
	builds.mu.Unlock()
	os.Exit(code)
}

// Options configure a taskd process.
type Options struct {
	// DatabaseURL is the database taskd serves, migrated (pgtest.NewDB).
	// Required.
	DatabaseURL string

	// Config, if not empty, is the content of a configuration file (YAML),
	// written to a temporary file and passed as --config.
	Config string

	// BuildTags are Go build tags of the binary (BuildTags): "chaos"
	// adds the fault suite's kinds. None by default: the shipped binary.
	BuildTags []string

	// Role is the command: "serve" (the default), "api" or "worker". A
	// worker's URL serves /healthz, /readyz and /metrics only.
	Role string

	// Args are more arguments of the command, after those Start sets
	// (--addr, and --config with Config). Later flags win.
	Args []string

	// Env are more environment variables, KEY=VALUE, after the defaults:
	// DATABASE_URL, TASKD_LOG_LEVEL=info and TASKD_DB_MAX_CONNS=10 (many
	// test processes share one PostgreSQL). The test process's TASKD_*
	// variables and DATABASE_URL are not passed on, so that a developer's
	// settings do not change the test.
	Env []string

	// Addr is the address to listen on. Defaults to 127.0.0.1:0, a free
	// port, which Restart keeps.
	Addr string

	// ReadyTimeout bounds the wait for readiness. Defaults to
	// ReadyTimeoutDefault.
	ReadyTimeout time.Duration

	// TLSClientConfig is what the readiness check trusts when Args make
	// taskd serve HTTPS (--tls-cert, --tls-key): usually RootCAs with the
	// test's own certificate. Nil for plain HTTP.
	TLSClientConfig *tls.Config
}

// Process is a running (or stopped) taskd process of one role.
type Process struct {
	// URL is taskd's base URL, http://ADDR (https://ADDR with TLS), the
	// same after a restart.
	URL string
	// Addr is the address taskd listens on, host:port.
	Addr string

	t      testing.TB
	opts   Options
	args   []string
	env    []string
	output *syncBuffer
	cmd    *exec.Cmd
	done   chan struct{} // closed when cmd has exited
	err    error         // cmd.Wait's result, once done is closed
}

// Start starts taskd in opts.Role with opts and returns once it answers GET
// /readyz with 200, failing t if it exits or does not get ready in time.
// The process is killed when the test ends if it still runs, and its output
// (of every run, restarts included) is logged if the test failed.
func Start(t testing.TB, opts Options) *Process {
	t.Helper()
	if opts.DatabaseURL == "" {
		t.Fatal("taskdtest: Options.DatabaseURL is required")
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = ReadyTimeoutDefault
	}
	binary := BuildTags(t, opts.BuildTags...)

	var args []string
	if opts.Config != "" {
		path := filepath.Join(t.TempDir(), "taskd.yaml")
		if err := os.WriteFile(path, []byte(opts.Config), 0o600); err != nil {
			t.Fatalf("taskdtest: writing the config file: %v", err)
		}
		args = append(args, "--config", path)
	}
	args = append(args, opts.Args...)

	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TASKD_") && !strings.HasPrefix(kv, "DATABASE_URL=") {
			env = append(env, kv)
		}
	}
	env = append(env, "DATABASE_URL="+opts.DatabaseURL, "TASKD_LOG_LEVEL=info", "TASKD_DB_MAX_CONNS=10")
	env = append(env, opts.Env...)

	p := &Process{t: t, opts: opts, output: &syncBuffer{}, env: env}
	role := opts.Role
	if role == "" {
		role = "serve"
	}
	p.args = append([]string{binary, role}, args...)
	t.Cleanup(func() {
		if p.cmd != nil && !p.exited() {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("taskd output:\n%s", p.output.String())
		}
	})
	p.start(opts.Addr)
	return p
}

// start runs the binary on addr and waits until it is ready.
func (p *Process) start(addr string) {
	p.t.Helper()
	listening := &lineWatcher{prefix: listeningPrefix, found: make(chan string, 1)}
	cmd := exec.Command(p.args[0], append(p.args[1:], "--addr", addr)...)
	cmd.Env = p.env
	cmd.Stdout = &teeWriter{p.output, listening}
	cmd.Stderr = p.output
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("taskdtest: starting taskd: %v", err)
	}
	p.cmd, p.done, p.err = cmd, make(chan struct{}), nil
	go func(done chan struct{}) {
		p.err = cmd.Wait()
		close(done)
	}(p.done)

	deadline := time.After(p.opts.ReadyTimeout)
	select {
	case got := <-listening.found:
		p.URL = got
		p.Addr = strings.TrimPrefix(strings.TrimPrefix(got, "http://"), "https://")
	case <-p.done:
		p.t.Fatalf("taskdtest: taskd exited before listening: %v", p.err)
	case <-deadline:
		p.t.Fatalf("taskdtest: taskd did not print its address within %s", p.opts.ReadyTimeout)
	}

	client := &http.Client{Timeout: 2 * time.Second}
	if p.opts.TLSClientConfig != nil {
		// A clone: an HTTP/2 transport of the caller's adds "h2" to the
		// NextProtos of the config it was given, and this HTTP/1
		// transport must not offer it.
		client.Transport = &http.Transport{TLSClientConfig: p.opts.TLSClientConfig.Clone()}
	}
	defer client.CloseIdleConnections()
	for {
		if resp, err := client.Get(p.URL + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-p.done:
			p.t.Fatalf("taskdtest: taskd exited before it was ready: %v", p.err)
		case <-deadline:
			p.t.Fatalf("taskdtest: taskd was not ready within %s", p.opts.ReadyTimeout)
		case <-time.After(readyPollInterval):
		}
	}
}

// Stop sends SIGTERM and waits up to StopTimeoutDefault for the process to
// exit, failing t if it does not. It returns the exit error (nil for exit
// status 0).
func (p *Process) Stop() error {
	p.t.Helper()
	return p.signalAndWait(syscall.SIGTERM, StopTimeoutDefault)
}

// Kill sends SIGKILL and waits for the process to exit.
func (p *Process) Kill() {
	p.t.Helper()
	_ = p.signalAndWait(syscall.SIGKILL, 10*time.Second)
}

// Signal sends sig to the process (SIGSTOP, SIGCONT, ...) and returns at
// once.
func (p *Process) Signal(sig os.Signal) error {
	return p.cmd.Process.Signal(sig)
}

// Wait waits up to timeout for the process to exit, failing t if it does
// not, and returns the exit error.
func (p *Process) Wait(timeout time.Duration) error {
	p.t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		p.t.Fatalf("taskdtest: taskd did not exit within %s", timeout)
		return nil
	}
}

// Exited reports whether the current run has exited (a process that
// kills itself, as the fault suite's poison task makes it, is noticed by
// polling this), without failing t; Wait then returns its exit error at
// once.
func (p *Process) Exited() bool {
	return p.exited()
}

// Restart starts the process again, after Stop or Kill, with the same
// options on the same address, and waits until it is ready.
func (p *Process) Restart() {
	p.t.Helper()
	if !p.exited() {
		p.t.Fatal("taskdtest: Restart of a process that is still running; Stop or Kill it first")
	}
	p.output.WriteString("--- taskdtest: restart ---\n")
	p.start(p.Addr)
}

// PID returns the process ID of the current run (it changes on Restart),
// which taskd's River client ID contains (HOSTNAME_PID_RANDOM): a test
// finds the process that River elected leader by it.
func (p *Process) PID() int {
	return p.cmd.Process.Pid
}

// Output returns what the process (and its restarts) wrote to stdout and
// stderr so far.
func (p *Process) Output() string {
	return p.output.String()
}

func (p *Process) signalAndWait(sig syscall.Signal, timeout time.Duration) error {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.t.Fatalf("taskdtest: sending %s: %v", sig, err)
	}
	return p.Wait(timeout)
}

func (p *Process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// lineWatcher finds the first line starting with prefix in what is
// written to it and sends the rest of that line on found.
type lineWatcher struct {
	prefix string
	found  chan string
	buf    bytes.Buffer
	done   bool
}

func (w *lineWatcher) Write(b []byte) (int, error) {
	if w.done {
		return len(b), nil
	}
	w.buf.Write(b)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil { // no whole line yet: keep it for the next write
			w.buf.Reset()
			w.buf.WriteString(line)
			return len(b), nil
		}
		if rest, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), w.prefix); ok {
			w.done = true
			w.found <- rest
			return len(b), nil
		}
	}
}

// teeWriter writes to both writers; exec copies stdout from one goroutine,
// so the lineWatcher needs no lock.
type teeWriter struct {
	out   *syncBuffer
	watch *lineWatcher
}

func (w *teeWriter) Write(b []byte) (int, error) {
	w.out.Write(b)
	return w.watch.Write(b)
}

// syncBuffer is a bytes.Buffer safe for concurrent writes (the process's
// stdout and stderr are copied by two goroutines) and reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) WriteString(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.WriteString(s)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
