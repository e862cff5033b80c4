package http

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/taskd/taskd/client"
	"github.com/taskd/taskd/internal/store"
	"github.com/taskd/taskd/internal/tasks"
)

func toClaimedJSON(ts []store.ClaimedTask) client.ClaimList {
	out := client.ClaimList{Tasks: make([]client.ClaimedTask, len(ts))}
	for i, t := range ts {
		out.Tasks[i] = client.ClaimedTask{
			ID: t.ID, Kind: t.Kind, Args: t.Args, Attempt: t.Attempt, MaxAttempts: t.MaxAttempts,
			Queue: t.Queue, BatchID: t.BatchID, AfterBatch: t.AfterBatch, Schedule: t.Schedule, Lease: t.Lease, LeaseExpiresAt: t.ExpiresAt,
		}
	}
	return out
}

// handleClaim serves POST /v1/claims: the request is held until tasks
// arrive or its wait ends (at most tasks.ClaimWaitMax, well inside the
// request timeout).
func (s *server) handleClaim(w http.ResponseWriter, r *http.Request) {
	if _, ok := query(w, r); !ok {
		return
	}
	body, release, ok := s.readBody(w, r, s.MaxBodyBytes)
	if !ok {
		return
	}
	defer release()
	var p tasks.ClaimParams
	if !decodeBody(w, body, &p) {
		return
	}
	release() // the body is not needed while the claim waits
	// The route has no database deadline, its wait being in the body:
	// this is it, DatabaseTimeout past the wait, so that a claim on a
	// silent database is answered 503 rather than held until TCP gives up.
	// A deadline, not a timer: the claim statement, which a worker leaving
	// does not cancel (it may commit unseen), still ends with it.
	deadline := time.Now().Add(s.DatabaseTimeout + tasks.ClaimWait(&p))
	ctx, cancel := context.WithDeadlineCause(r.Context(), deadline, errDatabaseTimeout)
	defer cancel()
	r = r.WithContext(ctx)
	claimed, err := s.Tasks.Claim(r.Context(), &p)
	if err != nil && !time.Now().Before(deadline) {
		// The claim statement ends at ctx's deadline too (tasks.Claim),
		// and may see it first: wait the instant until ctx has, so that
		// the answer is the deadline's whichever did.
		<-ctx.Done()
	}
	if err != nil {
		if r.Context().Err() != nil && !databaseTimedOut(r) {
			return // the worker left; nobody to answer
		}
		s.writeError(w, r, err, "")
		return
	}
	// Given back only when the worker cannot have them: it left before
	// the answer, or the answer could not be written. Once the answer is
	// flushed, a worker that closes its connection at once may well have
	// read it, and giving its tasks back would run them twice.
	if r.Context().Err() != nil {
		s.Tasks.GiveBack(r.Context(), claimed)
		if databaseTimedOut(r) {
			s.writeError(w, r, context.Cause(r.Context()), "")
		}
		return
	}
	if err := writeJSONErr(w, http.StatusOK, toClaimedJSON(claimed)); err != nil {
		s.Tasks.GiveBack(r.Context(), claimed)
	}
}

func (s *server) handleTaskComplete(w http.ResponseWriter, r *http.Request) {
	var p tasks.CompleteParams
	s.leaseCall(w, r, &p, func(ctx context.Context, id int64) (any, error) {
		t, err := s.Tasks.Complete(ctx, id, &p)
		if err != nil {
			return nil, err
		}
		return s.singleTask(t), nil
	})
}

func (s *server) handleTaskFail(w http.ResponseWriter, r *http.Request) {
	var p tasks.FailParams
	s.leaseCall(w, r, &p, func(ctx context.Context, id int64) (any, error) {
		t, err := s.Tasks.Fail(ctx, id, &p)
		if err != nil {
			return nil, err
		}
		return s.singleTask(t), nil
	})
}

func (s *server) handleTaskHeartbeat(w http.ResponseWriter, r *http.Request) {
	var p tasks.HeartbeatParams
	s.leaseCall(w, r, &p, func(ctx context.Context, id int64) (any, error) {
		return s.Tasks.Heartbeat(ctx, id, &p)
	})
}

// leaseCall decodes the body of a call on a leased task into p, runs call
// with the task's id and answers 200 with what it returns.
func (s *server) leaseCall(w http.ResponseWriter, r *http.Request, p any, call func(context.Context, int64) (any, error)) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	body, release, ok := s.readBody(w, r, s.MaxBodyBytes)
	if !ok {
		return
	}
	defer release()
	if !decodeBody(w, body, p) {
		return
	}
	out, err := call(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err, "task "+strconv.FormatInt(id, 10))
		return
	}
	writeJSON(w, http.StatusOK, out)
}
