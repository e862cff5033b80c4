package jobs

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/riverqueue/river"

	"github.com/taskd/taskd/internal/kinds"
	"github.com/taskd/taskd/internal/push"
)

// pushTimeoutMargin is how much longer River lets a pushed attempt run
// than its request may take, so that the request's own timeout, with its
// clearer error, fires first.
const pushTimeoutMargin = 5 * time.Second

// pushWorker works the tasks of one kind that runs over HTTP: one POST per
// attempt through the kind's push.Client. River's kind for it is the
// configured name (river.AddWorkerArgs with a kinds.RawArgs of that name).
type pushWorker struct {
	river.WorkerDefaults[kinds.RawArgs]
	kind   kinds.Kind
	client *push.Client
	// timeout is the attempt timeout in effect for a job (Client's
	// attemptTimeout).
	timeout kinds.TimeoutFunc
	// retryAt holds, by job ID, the earliest next attempt an endpoint asked
	// for (Retry-After), until River's executor asks NextRetry.
	retryAt sync.Map
}

func newPushWorker(k kinds.Kind, maxConns int, userAgent string, timeout kinds.TimeoutFunc) (*pushWorker, error) {
	c, err := push.NewClient(push.Config{Target: *k.Push, MaxConns: maxConns, UserAgent: userAgent})
	if err != nil {
		return nil, err
	}
	return &pushWorker{kind: k, client: c, timeout: timeout}, nil
}

// Work delivers the task. A success records the endpoint's answer as the
// result; a failure returns its error for River's retry policy, except an
// answer that says retrying cannot help (a 4xx other than 408, 425 and
// 429), which discards the task at once.
func (w *pushWorker) Work(ctx context.Context, job *river.Job[kinds.RawArgs]) error {
	// A wish left by an attempt River did not retry (cancelled meanwhile).
	w.retryAt.Delete(job.ID)
	var meta struct {
		BatchID    *int64  `json:"batch_id"`
		AfterBatch *int64  `json:"after_batch"`
		Schedule   *string `json:"schedule"`
		Timeout    string  `json:"timeout"`
	}
	_ = json.Unmarshal(job.Metadata, &meta)
	args := job.Args.Raw
	if len(args) == 0 {
		args = json.RawMessage(job.EncodedArgs)
	}
	req := push.Request{
		TaskID: job.ID, Kind: job.Kind, Args: args, Attempt: attemptNumber(job.JobRow),
		MaxAttempts: job.MaxAttempts, Queue: job.Queue, BatchID: meta.BatchID,
		AfterBatch: meta.AfterBatch, Schedule: meta.Schedule,
	}
	if meta.Timeout != "" {
		// The task's own; the kind's is the target's.
		req.Timeout = w.timeout(job.JobRow)
	}
	out := w.client.Do(ctx, req)
	noteHTTPStatus(ctx, out.Status)
	if out.Err == nil {
		return kinds.RecordOutput(ctx, out.Result)
	}
	if out.Permanent {
		// River discards a failed job whose attempt reached max_attempts,
		// comparing the row it holds in memory: lowering that copy's
		// max_attempts to this attempt discards the task through River's
		// own completion (the stored max_attempts is left as submitted).
		// TestPushOutcomes asserts that River still behaves so.
		job.MaxAttempts = job.Attempt
		return out.Err
	}
	// River asks NextRetry only when the task will be retried; on its last
	// attempt nothing would take the entry out again.
	if out.RetryAfter > 0 && job.Attempt < job.MaxAttempts {
		w.retryAt.Store(job.ID, time.Now().Add(out.RetryAfter))
	}
	return out.Err
}

// NextRetry honours an endpoint's Retry-After; otherwise River falls back
// to taskd's RetryPolicy (a zero time).
func (w *pushWorker) NextRetry(job *river.Job[kinds.RawArgs]) time.Time {
	if at, ok := w.retryAt.LoadAndDelete(job.ID); ok {
		return at.(time.Time)
	}
	return time.Time{}
}

// Timeout is the request's timeout (the task's, else the kind's) plus a
// margin.
func (w *pushWorker) Timeout(job *river.Job[kinds.RawArgs]) time.Duration {
	return w.timeout(job.JobRow) + pushTimeoutMargin
}
