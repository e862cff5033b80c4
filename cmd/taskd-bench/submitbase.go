package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskd/taskd/internal/kinds/builtin"
)

// submitBaseline is scenario 2's second baseline: bare River's InsertTx
// behind the least HTTP a service needs, so that the comparison shows how
// much of the gap to in-process inserts is the HTTP hop itself. A net/http
// server in the harness's process reads the body of POST /v1/tasks,
// decodes it (a double task), inserts it as bare River's insertOne does,
// and answers 201 with the inserted row as JSON with the keys of taskd's
// answer. No validation beyond the kind, no middleware, no metrics.
func startSubmitBaseline(r *bareRiver) (*baselineServer, error) {
	return serveBaseline(submitBaselineHandler(r))
}

// submitBaselineHandler answers POST /v1/tasks as the baseline does, and
// /readyz.
func submitBaselineHandler(r *bareRiver) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("POST /v1/tasks", func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var sub struct {
			Kind string             `json:"kind"`
			Args builtin.DoubleArgs `json:"args"`
		}
		if err := json.Unmarshal(body, &sub); err != nil || sub.Kind != sub.Args.Kind() {
			http.Error(w, "want a double task", http.StatusUnprocessableEntity)
			return
		}
		var job *rivertype.JobRow
		err = pgx.BeginFunc(req.Context(), r.pool, func(tx pgx.Tx) error {
			res, err := r.client.InsertTx(req.Context(), tx, sub.Args, insertOpts())
			if err == nil {
				job = res.Job
			}
			return err
		})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		t := baselineTask{
			ID: job.ID, Kind: job.Kind, Queue: job.Queue, State: string(job.State), Args: job.EncodedArgs,
			Priority: int16(job.Priority), Attempt: int16(job.Attempt), MaxAttempts: int16(job.MaxAttempts), Tags: job.Tags,
			CreatedAt: job.CreatedAt, ScheduledAt: job.ScheduledAt, StartedAt: job.AttemptedAt, FinishedAt: job.FinalizedAt,
			Result: json.RawMessage("null"), Errors: []rawJSON{}, Backoff: baselineBackoff, Timeout: baselineTimeout,
			Attempts: json.RawMessage("[]"),
		}
		if t.Tags == nil {
			t.Tags = []string{}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Location", "/v1/tasks/"+strconv.FormatInt(job.ID, 10))
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(t)
	})
	return mux
}

// submitBaselineRole is the first argument that makes taskd-bench the
// submit baseline's own process (serveSubmitBaseline).
const submitBaselineRole = "__submit-baseline"

// serveSubmitBaseline is the submit baseline in a process of its own, for
// the reason the read baseline has one (startReadBaselineProcess): bare
// River with taskd's fetch settings working the jobs, behind the same
// handler, on TASKD_ADDR from DATABASE_URL until SIGTERM.
func serveSubmitBaseline(ctx context.Context, getenv func(string) string) (err error) {
	r, err := startBareRiver(ctx, getenv("DATABASE_URL"), taskdFetch)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, r.close(ctx)) }()
	return serveUntilDone(ctx, getenv("TASKD_ADDR"), submitBaselineHandler(r))
}
