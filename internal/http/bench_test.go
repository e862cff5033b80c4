package http_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	taskdhttp "github.com/taskd/taskd/internal/http"
	"github.com/taskd/taskd/internal/jobs"
	"github.com/taskd/taskd/internal/kinds/builtin"
	"github.com/taskd/taskd/internal/metrics"
)

// BenchmarkTaskCreate drives POST /v1/tasks through the whole handler
// stack (metrics, deadlines, cross-origin check, auth, the handler, River's
// insert) on a real database, one request after another, so that its
// allocations per request can be profiled and compared:
//
//	go test -run '^$' -bench BenchmarkTaskCreate -benchtime 2000x -benchmem \
//		-cpuprofile /tmp/create.cpu -memprofile /tmp/create.mem ./internal/http/
//
// Its ns/op is the database's round trips more than anything; allocs/op
// is the figure that says something on a busy machine.
func BenchmarkTaskCreate(b *testing.B) {
	for _, bc := range []struct {
		name string
		key  bool // with an Idempotency-Key, a fresh one per request
	}{{"plain", false}, {"idempotency-key", true}, {"river-inserttx", false}} {
		b.Run(bc.name, func(b *testing.B) {
			tb := benchSetup(b)
			body := []byte(`{"kind":"double","args":{"value":21}}`)
			b.ReportAllocs()
			b.ResetTimer()
			if bc.name == "river-inserttx" {
				// The floor: River's InsertTx in its own transaction with
				// taskd's options, as the harness's bare River submits.
				rc := tb.jobs.River()
				for range b.N {
					err := pgx.BeginFunc(context.Background(), tb.pool, func(tx pgx.Tx) error {
						_, err := rc.InsertTx(context.Background(), tx, builtin.DoubleArgs{Value: 21},
							&river.InsertOpts{Queue: river.QueueDefault, MaxAttempts: jobs.MaxAttemptsDefault, Priority: 1})
						return err
					})
					if err != nil {
						b.Fatal(err)
					}
				}
				return
			}
			for i := range b.N {
				req := httptest.NewRequest(http.MethodPost, "/v1/tasks", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				if bc.key {
					req.Header.Set("Idempotency-Key", "bench-"+strconv.Itoa(i))
				}
				rec := deadlineRecorder{httptest.NewRecorder()}
				tb.handler.ServeHTTP(rec, req)
				if rec.Code != http.StatusCreated {
					b.Fatalf("POST /v1/tasks: %d %s", rec.Code, rec.Body)
				}
			}
		})
	}
}

// benchSetup is setup with taskd's own metrics, as serve wires them.
func benchSetup(b *testing.B) *testBundle {
	return setupWith(b, setupOpts{MaxConns: 4, ConfigFunc: func(cfg *taskdhttp.Config) {
		m, err := metrics.New(metrics.Config{Store: cfg.Store})
		if err != nil {
			b.Fatal(err)
		}
		cfg.ObserveFunc = m.ObserveHTTP
	}})
}

// deadlineRecorder is a recorder that accepts deadlines, as the server's
// own ResponseWriter does: without them every http.ResponseController
// call of the handler fails with an error made on the spot, allocations a
// real request does not have.
type deadlineRecorder struct{ *httptest.ResponseRecorder }

func (deadlineRecorder) SetReadDeadline(time.Time) error  { return nil }
func (deadlineRecorder) SetWriteDeadline(time.Time) error { return nil }

// BenchmarkTaskGet is BenchmarkTaskCreate's counterpart for
// GET /v1/tasks/{id} of a finished task with one attempt row, the task
// scenario 5 of cmd/taskd-bench reads.
func BenchmarkTaskGet(b *testing.B) {
	tb := benchSetup(b)
	var id int64
	err := tb.pool.QueryRow(context.Background(), `
		INSERT INTO river_job (args, attempt, attempted_at, attempted_by, finalized_at, kind, max_attempts, metadata, queue, state)
		VALUES ('{"value":21}', 1, now(), ARRAY['bench'], now(), 'double', 25, '{"output":{"result":42}}', 'default', 'completed')
		RETURNING id`).Scan(&id)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := tb.pool.Exec(context.Background(), `INSERT INTO task_attempts (task_id, attempt, worker, started_at, finished_at, outcome, duration_ms)
		VALUES ($1, 1, 'bench', now(), now(), 'completed', 1)`, id); err != nil {
		b.Fatal(err)
	}
	path := "/v1/tasks/" + strconv.FormatInt(id, 10)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		rec := deadlineRecorder{httptest.NewRecorder()}
		tb.handler.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
		}
	}
}
