package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// buildTaskd builds ./cmd/taskd into path. The package is named by import
// path so that the build works from any directory of the module (the smoke
// test runs in cmd/taskd-bench).
func buildTaskd(ctx context.Context, path string, stderr io.Writer) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", path, "github.com/taskd/taskd/cmd/taskd")
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building taskd: %w", err)
	}
	return nil
}

// taskdProcess is a running `taskd serve` (or another role).
type taskdProcess struct {
	cmd  *exec.Cmd
	base string // http://127.0.0.1:port
	logs *tailBuffer
	done chan struct{}
	err  error // set when done is closed
}

// startTaskd starts `taskd serve` on dbURL on a free loopback port, with
// taskd's defaults except for env (KEY=VALUE settings), and waits until
// /readyz answers.
func startTaskd(ctx context.Context, bin, dbURL string, env ...string) (*taskdProcess, error) {
	return startTaskdRole(ctx, bin, "serve", dbURL, env...)
}

// startTaskdRole is startTaskd for any role (serve, api, worker): each
// has /readyz on TASKD_ADDR, a worker without the rest of the API.
func startTaskdRole(ctx context.Context, bin, role, dbURL string, env ...string) (*taskdProcess, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	p := &taskdProcess{base: "http://" + addr, logs: &tailBuffer{max: 64 << 10}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, role)
	p.cmd.Env = append(baseEnv(), "DATABASE_URL="+dbURL, "TASKD_ADDR="+addr, "TASKD_SHUTDOWN_GRACE=10s")
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting taskd: %w", err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	if err := p.waitReady(ctx); err != nil {
		p.kill()
		return nil, err
	}
	return p, nil
}

// baseEnv is the harness's environment without taskd's settings, so that
// a developer's TASKD_* variables do not change what is measured.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "TASKD_") || strings.HasPrefix(kv, "DATABASE_URL=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func (p *taskdProcess) waitReady(ctx context.Context) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(p.base + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("taskd exited before it was ready (%v); its output:\n%s", p.err, p.logs)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("taskd not ready after 30s; its output:\n%s", p.logs)
		}
	}
}

func (p *taskdProcess) pid() int { return p.cmd.Process.Pid }

// memory returns taskd's current and peak resident set size in MiB.
func (p *taskdProcess) memory() (rss, peak float64, err error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(p.pid()) + "/status")
	if err != nil {
		return 0, 0, fmt.Errorf("reading taskd's memory: %w", err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 64)
		switch name {
		case "VmRSS":
			rss = kb / 1024
		case "VmHWM":
			peak = kb / 1024
		}
	}
	return rss, peak, nil
}

// stop sends SIGTERM and waits for a clean exit; after 20 s it kills.
func (p *taskdProcess) stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.kill()
		return fmt.Errorf("taskd did not stop within 20s after SIGTERM; its output:\n%s", p.logs)
	}
	if p.err != nil {
		return fmt.Errorf("taskd exited with %v; its output:\n%s", p.err, p.logs)
	}
	return nil
}

func (p *taskdProcess) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(b)
	if extra := t.buf.Len() - t.max; extra > 0 {
		t.buf.Next(extra)
	}
	return len(b), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}

// newHTTPClient returns a keep-alive client sized for conc concurrent
// requests to one host.
func newHTTPClient(conc int) *http.Client {
	return &http.Client{
		Timeout: time.Minute,
		Transport: &http.Transport{
			MaxIdleConns:        conc * 2,
			MaxIdleConnsPerHost: conc * 2,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

// do sends a request and reads the whole answer, failing unless the status
// is want.
func do(ctx context.Context, client *http.Client, method, url string, body []byte, want int) error {
	return doWith(ctx, client, method, url, body, nil, want)
}

// doWith is do with the request's headers set from header.
func doWith(ctx context.Context, client *http.Client, method, url string, body []byte, header http.Header, want int) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		return fmt.Errorf("%s %s: status %d, want %d: %s", method, url, resp.StatusCode, want, msg)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}
