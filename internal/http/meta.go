package http

import (
	"net/http"

	"github.com/taskd/taskd/client"
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
			Backoff: k.BackoffPolicy().Wire()}
		if k.Timeout > 0 {
			out.Kinds[i].Timeout = k.Timeout.String()
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	if err := s.Ready(r.Context()); err != nil {
		writeProblem(w, Problem{Status: http.StatusServiceUnavailable, Detail: "not ready: " + err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPIDocument)
}
