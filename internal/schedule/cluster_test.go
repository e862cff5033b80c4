package schedule_test

// The schedules' promise is about a cluster, so it is tested on one: three
// real `taskd serve` processes on one database, with an every-second
// schedule, while River's leader is killed (leadership moves after its term
// runs out), stopped (it resigns, and another takes over at once) and
// restarted, and while the whole cluster is down.

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskd/taskd/client"
	"github.com/taskd/taskd/internal/pgtest"
	"github.com/taskd/taskd/internal/taskdtest"
)

func TestMain(m *testing.M) { taskdtest.Main(m) }

// clusterConfig enqueues a task of an external kind every second (beat)
// and every hour (hourly); nothing works them, so every task enqueued stays
// to be counted.
const clusterConfig = `kinds:
  - {name: tick, run: external}
schedules:
  - {name: beat, every: 1s, kind: tick, args: {from: schedule}}
  - {name: hourly, every: 1h, kind: tick}
`

// beat is one task of the schedule.
type beat struct {
	id   int64
	tick time.Time
}

// beats returns the tasks of schedule name (default: beat).
func beats(t *testing.T, pool *pgxpool.Pool, name ...string) []beat {
	t.Helper()
	rows, err := pool.Query(context.Background(),
		`SELECT id, (metadata ->> 'schedule_tick')::timestamptz FROM river_job WHERE metadata ->> 'schedule' = $1 ORDER BY id`,
		append(name, "beat")[0])
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []beat
	for rows.Next() {
		var b beat
		if err := rows.Scan(&b.id, &b.tick); err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitBeats waits until n tasks were enqueued after the task after (0:
// any), and returns them all.
func waitBeats(t *testing.T, pool *pgxpool.Pool, after int64, n int, timeout time.Duration) []beat {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		all := beats(t, pool)
		newer := 0
		for _, b := range all {
			if b.id > after {
				newer++
			}
		}
		if newer >= n {
			return all
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d tasks enqueued after task %d within %s, want %d", newer, after, timeout, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// leader returns the process River elected, waiting for an election.
func leader(t *testing.T, pool *pgxpool.Pool, procs []*taskdtest.Process, timeout time.Duration) (*taskdtest.Process, string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var id string
		err := pool.QueryRow(context.Background(), `SELECT leader_id FROM river_leader WHERE expires_at > now()`).Scan(&id)
		if err == nil {
			// River's client ID is HOSTNAME_PID_RANDOM (jobs.Config.ID).
			parts := strings.Split(id, "_")
			if len(parts) >= 3 {
				pid, _ := strconv.Atoi(parts[len(parts)-2])
				for _, p := range procs {
					if p.PID() == pid {
						return p, id
					}
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no process of the cluster is River's leader after %s (last: %q, %v)", timeout, id, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkOncePerTick fails the test if two tasks share a tick, or ticks do
// not rise with the tasks' IDs (each tick is enqueued once, in order), or a
// tick is not a whole second.
func checkOncePerTick(t *testing.T, all []beat) {
	t.Helper()
	checkTicks(t, all, time.Second)
}

func checkTicks(t *testing.T, all []beat, every time.Duration) {
	t.Helper()
	seen := map[time.Time]int64{}
	for i, b := range all {
		if other, dup := seen[b.tick]; dup {
			t.Errorf("tick %s enqueued twice: tasks %d and %d", b.tick, other, b.id)
		}
		seen[b.tick] = b.id
		if b.tick.UnixNano()%int64(every) != 0 {
			t.Errorf("task %d: tick %s is not a multiple of the interval", b.id, b.tick)
		}
		if i > 0 && !b.tick.After(all[i-1].tick) {
			t.Errorf("task %d has tick %s, not after task %d's %s", b.id, b.tick, all[i-1].id, all[i-1].tick)
		}
	}
}

// largestGap is the longest time between two consecutive ticks after task
// after.
func largestGap(all []beat, after int64) time.Duration {
	var gap time.Duration
	for i := 1; i < len(all); i++ {
		if all[i-1].id >= after {
			gap = max(gap, all[i].tick.Sub(all[i-1].tick))
		}
	}
	return gap
}

func TestScheduleClusterExactlyOnce(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts three taskd processes")
	}
	ctx := context.Background()
	dbURL := pgtest.NewDB(t)
	pcfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	pcfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)

	opts := taskdtest.Options{DatabaseURL: dbURL, Config: clusterConfig,
		Env: []string{"TASKD_DB_MAX_CONNS=5", "TASKD_UI=false", "TASKD_LOG_LEVEL=warn"}}
	procs := []*taskdtest.Process{taskdtest.Start(t, opts), taskdtest.Start(t, opts), taskdtest.Start(t, opts)}

	all := waitBeats(t, pool, 0, 3, 30*time.Second)
	first, firstID := leader(t, pool, procs, 30*time.Second)
	lastBefore := all[len(all)-1].id

	// The hourly schedule has had its row since the leader first saw it
	// (at its latest tick, not run). Move that back an hour: a tick missed
	// while nobody ran, which the next leader (this one has taken the tick
	// already, as far as it knows) enqueues once. Every leader after it
	// tries the same tick again when elected, and must be refused.
	tag, err := pool.Exec(ctx, `UPDATE taskd_schedules SET last_tick = last_tick - interval '1 hour' WHERE name = 'hourly'`)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("moving the hourly schedule's tick back: %v, %v", tag, err)
	}

	// SIGKILL: the leader cannot resign, and its term runs out first (River
	// gives a term 15 s). Meanwhile no process leads, and the ticks of that
	// gap are not enqueued one by one: the next leader enqueues the latest.
	first.Kill()
	all = waitBeats(t, pool, lastBefore, 3, 60*time.Second)
	second, secondID := leader(t, pool, procs, 30*time.Second)
	if secondID == firstID || second == first {
		t.Fatalf("the schedule went on under the killed leader %s", firstID)
	}
	gap := largestGap(all, lastBefore)
	t.Logf("leader %s killed; %s took over; the longest gap between ticks: %s", firstID, secondID, gap)
	if gap < 2*time.Second {
		t.Errorf("the longest gap between ticks after the kill is %s: the ticks missed while no process led were enqueued one by one", gap)
	}
	checkOncePerTick(t, all)
	if hourly := beats(t, pool, "hourly"); len(hourly) == 0 {
		t.Errorf("the new leader did not enqueue the hourly tick missed")
	}

	// The killed process comes back as a follower. Then the leader is
	// stopped: it resigns, and another is elected within moments, most
	// likely within the second whose tick the old one took, and retries
	// the hourly tick too; the database refuses both.
	first.Restart()
	if err := second.Stop(); err != nil {
		t.Fatalf("stopping the leader: %v", err)
	}
	lastBefore = all[len(all)-1].id
	all = waitBeats(t, pool, lastBefore, 3, 30*time.Second)
	third, thirdID := leader(t, pool, procs, 30*time.Second)
	if third == second {
		t.Fatalf("the stopped leader %s still leads", secondID)
	}
	t.Logf("leader %s stopped; %s took over", secondID, thirdID)
	second.Restart()
	lastBefore = all[len(all)-1].id
	all = waitBeats(t, pool, lastBefore, 2, 30*time.Second)
	checkOncePerTick(t, all)
	hourly := beats(t, pool, "hourly")
	checkTicks(t, hourly, time.Hour)
	if len(hourly) == 0 || len(hourly) > 2 { // two only when the test ran across the hour
		t.Errorf("hourly tasks: %+v, want its missed tick once", hourly)
	}

	// Every process lists the schedule, and the state it shares.
	for _, p := range procs {
		c, err := client.New(p.URL, client.Config{HTTPClient: &http.Client{Timeout: 10 * time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		list, err := c.Schedules(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 2 || list[0].Name != "beat" || list[0].Spec.Every != "1s" || list[0].Kind != "tick" ||
			list[0].LastTaskID == nil || *list[0].LastTaskID < lastBefore || list[0].NextRunAt == nil {
			t.Errorf("%s: GET /v1/schedules = %+v", p.URL, list)
		}
		if h := list[1]; h.Name != "hourly" || h.Spec.Every != "1h" || h.LastTaskID == nil || *h.LastTaskID != hourly[len(hourly)-1].id ||
			h.NextRunAt == nil || !h.NextRunAt.Equal(hourly[len(hourly)-1].tick.Add(time.Hour)) {
			t.Errorf("%s: hourly = %+v, want task %d and the next hour", p.URL, h, hourly[len(hourly)-1].id)
		}
	}

	// A worker claiming the tasks learns their schedule.
	c, err := client.New(procs[1].URL, client.Config{HTTPClient: &http.Client{Timeout: 10 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	claimed, err := c.Claim(ctx, client.ClaimRequest{Kinds: []string{"tick"}, Wait: new("0s")})
	if err != nil || len(claimed) != 1 || claimed[0].Schedule == nil || *claimed[0].Schedule != "beat" {
		t.Fatalf("claim: %+v, %v; want a task of schedule beat", claimed, err)
	}

	// The whole cluster down for a few ticks: at start, the latest tick is
	// enqueued once, not every tick missed.
	for _, p := range procs {
		if err := p.Stop(); err != nil {
			t.Fatalf("stopping %s: %v", p.URL, err)
		}
	}
	all = beats(t, pool)
	lastBefore = all[len(all)-1].id
	for down := time.Now(); time.Since(down) < 3*time.Second; {
		time.Sleep(100 * time.Millisecond) // wall time for ticks to be missed, not a wait for a state
	}
	procs[2].Restart()
	all = waitBeats(t, pool, lastBefore, 2, 30*time.Second)
	checkOncePerTick(t, all)
	gap = largestGap(all, lastBefore)
	t.Logf("%d tasks of beat, one per tick; across the cluster's restart its ticks were %s apart", len(all), gap)
	if gap < 3*time.Second {
		t.Errorf("the longest gap between ticks across the restart is %s: the ticks missed while the cluster was down were enqueued one by one", gap)
	}
}
