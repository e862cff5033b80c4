package http

import (
	"context"
	"net/http"

	"github.com/taskd/taskd/client"
	"github.com/taskd/taskd/internal/limits"
)

type kindJSON = client.Kind

func (s *server) handleKindList(w http.ResponseWriter, r *http.Request) {
	if _, ok := query(w, r); !ok {
		return
	}
	kinds := s.Kinds.All()
	out := client.KindList{Kinds: make([]kindJSON, len(kinds))}
	for i, k := range kinds {
		out.Kinds[i] = kindJSON{Name: k.Name, Queue: k.Queue, Run: string(k.Run), Description: k.Description,
			ArgsSchema: k.ArgsSchema, ResultSchema: k.ResultSchema, MaxAttempts: k.MaxAttempts,
			Limits:  limitsJSON(s.limits().ForKind(k.Name)),
			Backoff: k.BackoffPolicy().Wire()}
		if k.Timeout > 0 {
			out.Kinds[i].Timeout = k.Timeout.String()
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// limits returns the cluster-wide limits (none without Jobs).
func (s *server) limits() *limits.Set {
	if s.Jobs == nil {
		return nil
	}
	return s.Jobs.Limiter().Set()
}

func limitsJSON(list []limits.Limit) []client.Limit {
	out := make([]client.Limit, len(list))
	for i, l := range list {
		out[i] = client.Limit{Kind: l.Kind, Queue: l.Queue, Concurrency: l.Concurrency,
			ConcurrencyKey: l.Key, ConcurrencyPerKey: l.PerKey, Rate: l.RateString()}
	}
	return out
}

func (s *server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	healthz(w)
}

func (s *server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	readyz(w, r, s.Ready, s.Leader)
}

func healthz(w http.ResponseWriter) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz answers GET /readyz: 503 when ready fails, else 200 with whether
// this process leads. A failed leader lookup is a failed readiness check
// too: both ask the same database.
func readyz(w http.ResponseWriter, r *http.Request, ready func(context.Context) error, leader func(context.Context) (bool, error)) {
	if err := ready(r.Context()); err != nil {
		writeProblem(w, Problem{Status: http.StatusServiceUnavailable, Detail: "not ready: " + err.Error()})
		return
	}
	lead, err := leader(r.Context())
	if err != nil {
		writeProblem(w, Problem{Status: http.StatusServiceUnavailable, Detail: "not ready: reading the leader: " + err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, client.Ready{Status: "ready", Leader: lead})
}

func notLeader(context.Context) (bool, error) { return false, nil }

func (s *server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPIDocument)
}
