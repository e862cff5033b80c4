package http_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/taskd/taskd/client"
	taskdhttp "github.com/taskd/taskd/internal/http"
	"github.com/taskd/taskd/internal/schedule"
	"github.com/taskd/taskd/internal/tasks"
)

// TestScheduleList runs an every-second schedule on the one (so leading)
// River client, and reads GET /v1/schedules and the tasks it enqueued.
func TestScheduleList(t *testing.T) {
	t.Parallel()
	beatSpec, err := schedule.Every(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	nightlySpec, err := schedule.ParseCron("0 3 * * *")
	if err != nil {
		t.Fatal(err)
	}
	kind := "double"
	b := setupWith(t, setupOpts{Start: true, ConfigFunc: func(cfg *taskdhttp.Config) {
		svc, err := tasks.New(tasks.Config{Store: cfg.Store, Jobs: cfg.Jobs, Schedules: []tasks.Schedule{
			{Name: "beat", Spec: beatSpec, Task: tasks.TaskParams{Kind: &kind, Args: json.RawMessage(`{"value": 4}`)}},
			{Name: "nightly", Spec: nightlySpec, Task: tasks.TaskParams{Kind: &kind, Args: json.RawMessage(`{"value": 1}`)}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(svc.Close)
		svc.StartSchedules()
		cfg.Tasks = svc
	}})

	var list client.ScheduleList
	deadline := time.Now().Add(waitTimeout)
	for {
		r := b.get(t, "/v1/schedules")
		wantStatus(t, r, http.StatusOK)
		decode(t, r, &list)
		if len(list.Schedules) == 2 && list.Schedules[0].LastTaskID != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the every-second schedule enqueued nothing within %s: %s", waitTimeout, r)
		}
		time.Sleep(50 * time.Millisecond)
	}
	beat, nightly := list.Schedules[0], list.Schedules[1]
	if beat.Name != "beat" || beat.Spec != (client.ScheduleSpec{Every: "1s"}) || beat.Kind != "double" || beat.Queue != "default" {
		t.Errorf("beat = %+v", beat)
	}
	// Ticks of an interval are its multiples since the epoch.
	if beat.LastEnqueuedAt == nil || beat.NextRunAt == nil || beat.NextRunAt.Nanosecond() != 0 {
		t.Errorf("beat: last enqueued %v, next run %v: want both, the next on a whole second", beat.LastEnqueuedAt, beat.NextRunAt)
	}
	if nightly.Name != "nightly" || nightly.Spec != (client.ScheduleSpec{Cron: "0 3 * * *"}) || nightly.LastTaskID != nil || nightly.LastEnqueuedAt != nil {
		t.Errorf("nightly = %+v: want no task yet (a new schedule starts at its next tick)", nightly)
	}
	if want := nightlySpec.Next(time.Now()); nightly.NextRunAt == nil || !nightly.NextRunAt.Equal(want) {
		t.Errorf("nightly next run = %v, want %v", nightly.NextRunAt, want)
	}

	task := b.getTask(t, *beat.LastTaskID)
	if task.Schedule == nil || *task.Schedule != "beat" || task.Kind != "double" {
		t.Errorf("the schedule's task = %s: want schedule \"beat\"", task)
	}
	wantJSON(t, "args", task.Args, `{"value": 4}`)

	// A task submitted by hand has none.
	if own := b.createTask(t, `{"kind":"double","args":{"value":1}}`); own.Schedule != nil {
		t.Errorf("a submitted task has schedule %q", *own.Schedule)
	}
}
