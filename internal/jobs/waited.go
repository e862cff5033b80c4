package jobs

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/riverqueue/river/rivertype"

	"github.com/taskd/taskd/internal/store"
)

// waitedForget bounds how long a waited-for task is remembered: longer
// than the longest wait (60 s), so that an entry outlives its request.
const waitedForget = 2 * time.Minute

// waitedSet is what a process knows of the running tasks that requests
// wait for, so that its attempt recorder writes their final states at once
// (store.FinishWaited) and leaves every other task to River's completer.
// A task marked before River fetched it carries the mark in its metadata;
// one marked while it runs is announced (store.ListenWaited) to every
// process, and the one running it remembers it here.
type waitedSet struct {
	mu  sync.Mutex
	ids map[int64]time.Time
	// swept is when old entries were last removed.
	swept time.Time
}

func newWaitedSet() *waitedSet { return &waitedSet{ids: map[int64]time.Time{}} }

func (w *waitedSet) add(ids []int64) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, id := range ids {
		w.ids[id] = now
	}
	if now.Sub(w.swept) > waitedForget {
		for id, at := range w.ids {
			if now.Sub(at) > waitedForget {
				delete(w.ids, id)
			}
		}
		w.swept = now
	}
}

// take reports whether a request waits for job, forgetting it. A nil set
// knows only the mark in job's metadata.
func (w *waitedSet) take(job *rivertype.JobRow) bool {
	if w == nil {
		return markedWaited(job)
	}
	w.mu.Lock()
	_, ok := w.ids[job.ID]
	delete(w.ids, job.ID)
	w.mu.Unlock()
	return ok || markedWaited(job)
}

// markedWaited reports whether job was marked as waited for before River
// fetched it (store.WaitMark's "taskd_waited" key in its metadata).
func markedWaited(job *rivertype.JobRow) bool {
	return bytes.Contains(job.Metadata, []byte(`"taskd_waited"`))
}

// listen fills w from the announcements until ctx ends.
func (w *waitedSet) listen(ctx context.Context, st *store.Store, logger *slog.Logger) {
	store.Relisten(ctx, logger, "waited-task listener",
		func(ctx context.Context) (store.Notifications[[]int64], error) { return st.ListenWaited(ctx) },
		nil, w.add)
}
