package http

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"slices"

	"github.com/go-chi/chi/v5"

	"github.com/taskd/taskd/client"
	"github.com/taskd/taskd/internal/jobs"
	"github.com/taskd/taskd/internal/kinds"
	"github.com/taskd/taskd/internal/tasks"
)

// errUnknownQueue answers a tenant's token for a queue not its own, as for
// a queue that does not exist.
var errUnknownQueue = jobs.ErrUnknownQueue

// queues reads every queue's state: River's records and this process's
// workers (s.Jobs), the database's counts (s.Store). A tenant's token sees
// only its own queues.
func (s *server) queues(ctx context.Context) ([]client.Queue, error) {
	infos, err := s.Jobs.Queues(ctx)
	if err != nil {
		return nil, err
	}
	stats, err := s.Store.QueueStats(ctx)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	out := make([]client.Queue, 0, len(infos)+len(stats))
	add := func(name string, paused bool, workers int) {
		if !tasks.QueueVisible(ctx, name) {
			return
		}
		q := client.Queue{Name: name, Counts: map[string]int{}, Paused: paused, Workers: workers,
			Limits: limitsJSON(s.limits().ForQueue(name))}
		if st := stats[name]; st != nil {
			for state, n := range st.Counts {
				q.Counts[state] = int(n)
			}
			q.Running = q.Counts["running"]
			if st.OldestAvailable != nil {
				age := st.OldestAvailable.Seconds()
				q.OldestAvailableAgeSeconds = &age
			}
		}
		seen[name] = true
		out = append(out, q)
	}
	for _, info := range infos {
		add(info.Name, info.Paused, info.Workers)
	}
	// Queues with tasks that no process has worked lately (those of
	// external kinds, for one).
	for name := range stats {
		if !seen[name] {
			add(name, false, 0)
		}
	}
	return out, nil
}

func (s *server) handleQueueList(w http.ResponseWriter, r *http.Request) {
	if _, ok := query(w, r); !ok {
		return
	}
	qs, err := s.queues(r.Context())
	if err != nil {
		s.writeError(w, r, err, "")
		return
	}
	slices.SortFunc(qs, func(a, b client.Queue) int { return cmp.Compare(a.Name, b.Name) })
	writeJSON(w, http.StatusOK, client.QueueList{Queues: qs})
}

func (s *server) handleQueuePause(w http.ResponseWriter, r *http.Request) {
	s.changeQueue(w, r, s.Jobs.PauseQueue)
}

func (s *server) handleQueueResume(w http.ResponseWriter, r *http.Request) {
	s.changeQueue(w, r, s.Jobs.ResumeQueue)
}

// changeQueue pauses or resumes the queue in the path and answers with it.
func (s *server) changeQueue(w http.ResponseWriter, r *http.Request, change func(context.Context, string) error) {
	if _, ok := query(w, r); !ok {
		return
	}
	name := chi.URLParam(r, "name")
	// River reads "*" as every queue; no queue is called anything but a
	// queue name.
	if !kinds.QueueNameOK(name) {
		writeProblem(w, Problem{Status: http.StatusNotFound, Detail: "queue " + quoteClip(name) + " does not exist: " + kinds.QueueNameRule})
		return
	}
	// A tenant's token knows no other queue.
	err := errUnknownQueue
	if tasks.QueueVisible(r.Context(), name) {
		err = change(r.Context(), name)
	}
	if err != nil {
		if errors.Is(err, jobs.ErrUnknownQueue) {
			writeProblem(w, Problem{Status: http.StatusNotFound, Detail: "queue " + quoteClip(name) + " does not exist (no process works it or has worked it lately, and it holds no unfinished task)"})
			return
		}
		s.writeError(w, r, err, "")
		return
	}
	qs, err := s.queues(r.Context())
	if err != nil {
		s.writeError(w, r, err, "")
		return
	}
	for _, q := range qs {
		if q.Name == name {
			writeJSON(w, http.StatusOK, q)
			return
		}
	}
	writeProblem(w, Problem{Status: http.StatusNotFound, Detail: "queue " + quoteClip(name) + " does not exist"})
}
