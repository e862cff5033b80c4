package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskd/taskd/internal/schedule"
)

// fakeClock is a clock the test sets.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) set(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = mustTime(s)
}

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func every(t *testing.T, d time.Duration) schedule.Spec {
	t.Helper()
	s, err := schedule.Every(d)
	require.NoError(t, err)
	return s
}

// withSchedules returns a Service of b's store and River client with
// schedules, closed when the test ends.
func (b *testBundle) withSchedules(t *testing.T, list ...Schedule) *Service {
	t.Helper()
	svc, err := New(Config{Store: b.store, Jobs: b.jobs, Schedules: list})
	require.NoError(t, err)
	t.Cleanup(svc.Close)
	return svc
}

// fake makes svc's scheduler run on clock and lead while leading is set.
func fake(svc *Service, clock *fakeClock, leading *atomic.Bool) {
	svc.sched.now = clock.Now
	svc.sched.isLeader = func(context.Context) (bool, error) { return leading.Load(), nil }
}

// scheduledTask is a task a schedule enqueued, as the database holds it.
type scheduledTask struct {
	id       int64
	schedule string
	tick     string
}

func (b *testBundle) scheduledTasks(t *testing.T) []scheduledTask {
	t.Helper()
	rows, err := b.pool.Query(context.Background(),
		`SELECT id, metadata ->> 'schedule', metadata ->> 'schedule_tick' FROM river_job WHERE metadata ? 'schedule' ORDER BY id`)
	require.NoError(t, err)
	defer rows.Close()
	var out []scheduledTask
	for rows.Next() {
		var st scheduledTask
		require.NoError(t, rows.Scan(&st.id, &st.schedule, &st.tick))
		out = append(out, st)
	}
	require.NoError(t, rows.Err())
	return out
}

func ticksOf(list []scheduledTask) []string {
	out := make([]string, len(list))
	for i, st := range list {
		out[i] = st.tick
	}
	return out
}

// TestScheduleTicks walks one hourly schedule through its life on a clock
// the test sets: first seen, ticks, a gap with ticks missed, a spell
// without leadership.
func TestScheduleTicks(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	svc := b.withSchedules(t, Schedule{Name: "hourly", Spec: every(t, time.Hour), Task: TaskParams{
		Kind: ptr("double"), Args: json.RawMessage(`{"value": 2}`), Priority: ptr(2), Tags: []string{"reports"},
	}})
	clock := &fakeClock{}
	var leading atomic.Bool
	leading.Store(true)
	fake(svc, clock, &leading)
	info := func() ScheduleInfo {
		t.Helper()
		list, err := svc.Schedules(ctx)
		require.NoError(t, err)
		require.Len(t, list, 1)
		return list[0]
	}

	// Before any leader saw it, it starts at its next tick.
	clock.set("2026-03-04T10:30:00Z")
	got := info()
	require.Equal(t, "hourly", got.Name)
	require.Equal(t, "double", got.Kind)
	require.Equal(t, "default", got.Queue)
	require.Equal(t, mustTime("2026-03-04T11:00:00Z"), got.NextRunAt)
	require.Zero(t, got.LastTaskID)

	// Seen for the first time: no immediate run.
	require.Equal(t, SchedulePollInterval, svc.sched.step(ctx))
	require.Empty(t, b.scheduledTasks(t))
	require.Equal(t, mustTime("2026-03-04T11:00:00Z"), info().NextRunAt)

	// The loop wakes at the next tick when it is nearer than the poll.
	clock.set("2026-03-04T10:59:59.75Z")
	require.Equal(t, 250*time.Millisecond, svc.sched.step(ctx))
	require.Empty(t, b.scheduledTasks(t))

	clock.set("2026-03-04T11:00:00Z")
	svc.sched.step(ctx)
	svc.sched.step(ctx) // once per tick
	list := b.scheduledTasks(t)
	require.Equal(t, []string{"2026-03-04T11:00:00Z"}, ticksOf(list))
	require.Equal(t, "hourly", list[0].schedule)
	task, err := b.store.Task(ctx, list[0].id)
	require.NoError(t, err)
	require.Equal(t, "hourly", task.Schedule)
	require.Equal(t, "double", task.Kind)
	require.Equal(t, 2, task.Priority)
	require.Equal(t, []string{"reports"}, task.Tags)
	require.JSONEq(t, `{"value": 2}`, string(task.Args))
	got = info()
	require.Equal(t, list[0].id, got.LastTaskID)
	require.NotNil(t, got.LastEnqueuedAt)
	require.Equal(t, mustTime("2026-03-04T12:00:00Z"), got.NextRunAt)

	// Three ticks missed (12:00, 13:00, 14:00): one task, for the latest.
	clock.set("2026-03-04T14:20:00Z")
	svc.sched.step(ctx)
	svc.sched.step(ctx)
	require.Equal(t, []string{"2026-03-04T11:00:00Z", "2026-03-04T14:00:00Z"}, ticksOf(b.scheduledTasks(t)))

	// Not leading: the tick waits, and shows as due.
	leading.Store(false)
	clock.set("2026-03-04T15:00:00.5Z")
	svc.sched.step(ctx)
	require.Len(t, b.scheduledTasks(t), 2)
	require.Equal(t, mustTime("2026-03-04T15:00:00Z"), info().NextRunAt)

	// Leading again: the waiting tick is enqueued once.
	leading.Store(true)
	svc.sched.step(ctx)
	svc.sched.step(ctx)
	list = b.scheduledTasks(t)
	require.Equal(t, []string{"2026-03-04T11:00:00Z", "2026-03-04T14:00:00Z", "2026-03-04T15:00:00Z"}, ticksOf(list))
	require.Equal(t, list[2].id, info().LastTaskID)
}

// TestScheduleOncePerTick runs two schedulers that both believe they lead
// (River's leadership is a lease, so that can happen for a moment) at the
// same instants: the database's guard lets each tick through once.
func TestScheduleOncePerTick(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	beat := Schedule{Name: "beat", Spec: every(t, time.Second), Task: TaskParams{Kind: ptr("double"), Args: json.RawMessage(`{"value": 1}`)}}
	clock := &fakeClock{}
	var leading atomic.Bool
	leading.Store(true)
	a, c := b.withSchedules(t, beat), b.withSchedules(t, beat)
	fake(a, clock, &leading)
	fake(c, clock, &leading)

	base := mustTime("2026-03-04T10:00:00Z")
	const ticks = 30
	var want []string
	for i := range ticks + 1 {
		now := base.Add(time.Duration(i) * time.Second)
		clock.set(now.Format(time.RFC3339Nano))
		if i > 0 { // the first is the schedule's first sight
			want = append(want, now.Format(time.RFC3339Nano))
		}
		var wg sync.WaitGroup
		for _, svc := range []*Service{a, c} {
			wg.Go(func() { svc.sched.step(ctx) })
		}
		wg.Wait()
	}
	require.Equal(t, want, ticksOf(b.scheduledTasks(t)))

	// A scheduler that forgot what it took (re-elected) takes nothing again.
	leading.Store(false)
	a.sched.step(ctx)
	leading.Store(true)
	a.sched.step(ctx)
	require.Len(t, b.scheduledTasks(t), ticks)
}

func TestScheduleValidation(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ok := func(name string) Schedule {
		return Schedule{Name: name, Spec: every(t, time.Minute), Task: TaskParams{Kind: ptr("double"), Args: json.RawMessage(`{"value": 1}`)}}
	}
	badArgs := ok("bad-args")
	badArgs.Task.Args = json.RawMessage(`{"value": "x"}`)
	noSpec := ok("no-spec")
	noSpec.Spec = schedule.Spec{}
	unknownKind := ok("unknown-kind")
	unknownKind.Task.Kind = ptr("nope")
	badQueue := ok("bad-queue")
	badQueue.Task.Queue = ptr("reports")
	delayed := ok("delayed")
	delayed.Task.Delay = ptr("1m")
	_, err := New(Config{Store: b.store, Jobs: b.jobs, Schedules: []Schedule{
		ok("fine"), badArgs, ok("fine"), noSpec, unknownKind, badQueue, delayed,
	}})
	var verr *ValidationError
	require.True(t, errors.As(err, &verr), "%v", err)
	var fields []string
	for _, fe := range verr.Errors {
		fields = append(fields, fe.Field)
	}
	require.Equal(t, []string{
		"schedules[1].args.value", "schedules[2].name", "schedules[3]", "schedules[4].kind", "schedules[5].queue", "schedules[6]",
	}, fields, "%v", err)

	// The queues a schedule may use are the cluster's, which need not be
	// this process's.
	_, err = New(Config{Store: b.store, Jobs: b.jobs, Schedules: []Schedule{badQueue}, Queues: []string{"default", "reports"}})
	require.NoError(t, err)
}

// TestSchedulesRunOnTheLeader runs the loop for real: River elects the one
// client leader, and an every-second schedule enqueues a task per tick.
func TestSchedulesRunOnTheLeader(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	svc := b.withSchedules(t, Schedule{Name: "beat", Spec: every(t, time.Second), Task: TaskParams{Kind: ptr("double"), Args: json.RawMessage(`{"value": 1}`)}})

	lead, err := b.jobs.IsLeader(ctx)
	require.NoError(t, err)
	require.False(t, lead, "not started, not elected")
	b.start(t)
	svc.StartSchedules()
	require.Eventually(t, func() bool {
		lead, err := b.jobs.IsLeader(ctx)
		return err == nil && lead
	}, 20*time.Second, 50*time.Millisecond, "River never elected its one client")

	var list []scheduledTask
	require.Eventually(t, func() bool {
		list = b.scheduledTasks(t)
		return len(list) >= 3
	}, 20*time.Second, 50*time.Millisecond, "the schedule enqueued %d tasks", len(list))
	for i := 1; i < len(list); i++ {
		require.Greater(t, list[i].tick, list[i-1].tick, "ticks in order, none twice")
	}
	svc.Close() // stops the loop; Close twice is harmless
	svc.Close()
}
