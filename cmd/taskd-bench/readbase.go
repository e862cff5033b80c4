package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskd/taskd/client"
	"github.com/taskd/taskd/internal/backoff"
	"github.com/taskd/taskd/internal/jobs"
	"github.com/taskd/taskd/internal/store"
)

// readBaseline is scenario 5's baseline: the least a service can do to
// answer GET /v1/tasks/{id} on this stack. A net/http server in the
// harness's process, on a pgx pool of taskd's default size, runs the very
// statement taskd's store runs (store.RawTask: TaskGetByID, the task and
// its attempts in one query) and writes the row as JSON with the keys of
// taskd's answer. It does nothing else: no middleware, no decoding of the
// attempts and errors (written as PostgreSQL built them), no policy
// lookup (a fixed backoff and timeout), no metrics.
type readBaseline struct {
	*baselineServer
	pool *pgxpool.Pool
}

// baselineServer is a baseline's net/http server on a loopback port.
type baselineServer struct {
	srv  *http.Server
	base string // http://127.0.0.1:port
	done chan error
}

// serveBaseline serves h on a free loopback port until close.
func serveBaseline(h http.Handler) (*baselineServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	bs := &baselineServer{
		srv:  &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute},
		base: "http://" + ln.Addr().String(),
		done: make(chan error, 1),
	}
	go func() { bs.done <- bs.srv.Serve(ln) }()
	return bs, nil
}

func (bs *baselineServer) close(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := bs.srv.Shutdown(ctx)
	if serr := <-bs.done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// baselineTask is the baseline's answer: the keys of client.Task, most
// values straight from the row.
type baselineTask struct {
	ID              int64           `json:"id"`
	Kind            string          `json:"kind"`
	Queue           string          `json:"queue"`
	State           string          `json:"state"`
	Args            json.RawMessage `json:"args"`
	Priority        int16           `json:"priority"`
	Attempt         int16           `json:"attempt"`
	MaxAttempts     int16           `json:"max_attempts"`
	Tags            []string        `json:"tags"`
	CreatedAt       time.Time       `json:"created_at"`
	ScheduledAt     time.Time       `json:"scheduled_at"`
	StartedAt       *time.Time      `json:"started_at"`
	FinishedAt      *time.Time      `json:"finished_at"`
	Result          json.RawMessage `json:"result"`
	Errors          []rawJSON       `json:"errors"`
	CancelRequested bool            `json:"cancel_requested"`
	BatchID         *int64          `json:"batch_id"`
	AfterBatch      *int64          `json:"after_batch"`
	Schedule        *string         `json:"schedule"`
	NextRetryAt     *time.Time      `json:"next_retry_at"`
	Backoff         client.Backoff  `json:"backoff"`
	Timeout         *string         `json:"timeout"`
	Attempts        json.RawMessage `json:"attempts"`
}

// rawJSON is a jsonb value as pgx scans it.
type rawJSON []byte

func (r rawJSON) MarshalJSON() ([]byte, error) { return r, nil }

// The policy every baseline answer shows: taskd's defaults, which the
// filled tasks' kinds keep.
var (
	baselineBackoff = backoff.Default.Wire()
	baselineTimeout = new(backoff.FormatDuration(jobs.JobTimeoutDefault))
)

// startReadBaseline serves the baseline on a free loopback port, in the
// harness's process.
func startReadBaseline(ctx context.Context, dbURL string) (*readBaseline, error) {
	pool, err := newPool(ctx, dbURL, taskdPoolSize)
	if err != nil {
		return nil, err
	}
	bs, err := serveBaseline(readBaselineHandler(store.New(pool)))
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &readBaseline{baselineServer: bs, pool: pool}, nil
}

// readBaselineHandler answers GET /v1/tasks/{id} as the baseline does, and
// /readyz.
func readBaselineHandler(st *store.Store) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("GET /v1/tasks/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if err != nil || id < 1 {
			http.Error(w, "bad id", http.StatusBadRequest)
			return
		}
		row, err := st.RawTask(r.Context(), id)
		if errors.Is(err, store.ErrNotFound) {
			http.Error(w, "no such task", http.StatusNotFound)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		t := baselineTask{
			ID: row.ID, Kind: row.Kind, Queue: row.Queue, State: row.State, Args: row.Args,
			Priority: row.Priority, Attempt: row.Attempt, MaxAttempts: row.MaxAttempts, Tags: row.Tags,
			CreatedAt: row.CreatedAt, ScheduledAt: row.ScheduledAt, StartedAt: row.AttemptedAt, FinishedAt: row.FinalizedAt,
			Result: row.Output, Errors: make([]rawJSON, len(row.Errors)), CancelRequested: row.CancelRequested,
			Backoff: baselineBackoff, Timeout: baselineTimeout, Attempts: row.Attempts,
		}
		for i, e := range row.Errors {
			t.Errors[i] = e
		}
		if t.Tags == nil {
			t.Tags = []string{}
		}
		if len(t.Result) == 0 {
			t.Result = json.RawMessage("null")
		}
		if row.BatchID != 0 {
			t.BatchID = &row.BatchID
		}
		if row.AfterBatch != 0 {
			t.AfterBatch = &row.AfterBatch
		}
		if row.Schedule != "" {
			t.Schedule = &row.Schedule
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(t)
	})
	return mux
}

// readBaselineRole is the first argument that makes taskd-bench the read
// baseline's own process (serveReadBaseline) instead of the harness.
const readBaselineRole = "__read-baseline"

// startReadBaselineProcess starts the baseline as a process of its own,
// this binary run as readBaselineRole, the way the harness starts taskd:
// so that the baseline's server neither shares the load generator's Go
// runtime (its scheduler, its garbage collector, its network poller) nor
// is counted in the harness's CPU, as taskd's is not.
func startReadBaselineProcess(ctx context.Context, dbURL string, env ...string) (*taskdProcess, error) {
	return startBaselineProcess(ctx, readBaselineRole, dbURL, env...)
}

// startBaselineProcess starts this binary as a baseline's process (role,
// one of baselineRoles) on dbURL.
func startBaselineProcess(ctx context.Context, role, dbURL string, env ...string) (*taskdProcess, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return startTaskdRole(ctx, exe, role, dbURL, env...)
}

// baselineRoles are the baselines that run as a process of their own:
// taskd-bench (or its test binary) run with the role as first argument.
var baselineRoles = map[string]func(context.Context, func(string) string) error{
	readBaselineRole:   serveReadBaseline,
	submitBaselineRole: serveSubmitBaseline,
}

// serveReadBaseline is the baseline's process: it serves the baseline on
// TASKD_ADDR from DATABASE_URL until SIGTERM, and net/http/pprof on
// TASKD_PPROF_ADDR when set.
func serveReadBaseline(ctx context.Context, getenv func(string) string) error {
	pool, err := newPool(ctx, getenv("DATABASE_URL"), taskdPoolSize)
	if err != nil {
		return err
	}
	defer pool.Close()
	if addr := getenv("TASKD_PPROF_ADDR"); addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		// startProfile also saves the allocations, as it does taskd's.
		mux.Handle("/debug/pprof/allocs", pprof.Handler("allocs"))
		go func() { _ = http.Serve(ln, mux) }()
	}
	return serveUntilDone(ctx, getenv("TASKD_ADDR"), readBaselineHandler(store.New(pool)))
}

// serveUntilDone serves h on addr until ctx ends, then shuts down.
func serveUntilDone(ctx context.Context, addr string, h http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

func (rb *readBaseline) close(ctx context.Context) error {
	err := rb.baselineServer.close(ctx)
	rb.pool.Close()
	return err
}

// answerSize is the length of the body of GET url, to show that taskd and
// the baseline answer about as much.
func answerSize(ctx context.Context, client *http.Client, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: status %d: %s", url, resp.StatusCode, body)
	}
	return len(body), nil
}
