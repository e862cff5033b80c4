package http

import (
	"net/http"

	"github.com/taskd/taskd/client"
	"github.com/taskd/taskd/internal/schedule"
	"github.com/taskd/taskd/internal/tasks"
)

func toScheduleJSON(info tasks.ScheduleInfo) client.Schedule {
	out := client.Schedule{Name: info.Name, Kind: info.Kind, Queue: info.Queue, LastEnqueuedAt: info.LastEnqueuedAt}
	if d := info.Spec.Interval(); d > 0 {
		out.Spec.Every = schedule.FormatInterval(d)
	} else {
		out.Spec.Cron = info.Spec.Cron()
	}
	if info.LastTaskID != 0 {
		out.LastTaskID = &info.LastTaskID
	}
	if !info.NextRunAt.IsZero() {
		out.NextRunAt = &info.NextRunAt
	}
	return out
}

// handleScheduleList serves GET /v1/schedules: the schedules of this
// process's configuration file (every process of a cluster should have the
// same), with what the database remembers of each.
func (s *server) handleScheduleList(w http.ResponseWriter, r *http.Request) {
	if _, ok := query(w, r); !ok {
		return
	}
	infos, err := s.Tasks.Schedules(r.Context())
	if err != nil {
		s.writeError(w, r, err, "")
		return
	}
	out := client.ScheduleList{Schedules: make([]client.Schedule, len(infos))}
	for i, info := range infos {
		out.Schedules[i] = toScheduleJSON(info)
	}
	writeJSON(w, http.StatusOK, out)
}
