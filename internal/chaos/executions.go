package chaos

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Execution is one row of chaos_executions: one run of a chaos_work task.
type Execution struct {
	TaskID  int64
	Attempt int
	PID     int
	Started time.Time
	// Ended is nil while the execution runs, or when its process died
	// under it.
	Ended   *time.Time
	Outcome string
}

// Executions returns the executions of process pid (all processes' with
// pid 0), in the order they started.
func Executions(ctx context.Context, pool *pgxpool.Pool, pid int) ([]Execution, error) {
	rows, err := pool.Query(ctx, `SELECT task_id, attempt, pid, started_at, ended_at, coalesce(outcome, '')
		FROM chaos_executions WHERE $1 = 0 OR pid = $1 ORDER BY started_at`, pid)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Execution
	for rows.Next() {
		var e Execution
		if err := rows.Scan(&e.TaskID, &e.Attempt, &e.PID, &e.Started, &e.Ended, &e.Outcome); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Overlap is the time two executions of one task ran at once.
type Overlap struct {
	TaskID int64
	// A started first.
	A, B     Execution
	Duration time.Duration
}

// Overlaps returns, for every pair of executions of one task whose
// [start, end] intervals intersect, how long they did, longest first: two
// processes running one task at once, or one process running it twice
// (the second after the first's outcome was lost). An execution without
// an end counts as running until now: a process that is still alive must
// have ended all of its, and the test says so apart.
func Overlaps(ctx context.Context, pool *pgxpool.Pool) ([]Overlap, error) {
	all, err := Executions(ctx, pool, 0)
	if err != nil {
		return nil, err
	}
	var now time.Time
	if err := pool.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&now); err != nil {
		return nil, err
	}
	byTask := map[int64][]Execution{}
	for _, e := range all {
		byTask[e.TaskID] = append(byTask[e.TaskID], e)
	}
	end := func(e Execution) time.Time {
		if e.Ended == nil {
			return now
		}
		return *e.Ended
	}
	var out []Overlap
	for id, es := range byTask {
		for i, a := range es {
			for _, b := range es[i+1:] {
				first, last := end(a), a.Started
				if end(b).Before(first) {
					first = end(b)
				}
				if b.Started.After(last) {
					last = b.Started
				}
				d := first.Sub(last)
				if d > 0 {
					out = append(out, Overlap{TaskID: id, A: a, B: b, Duration: d})
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b Overlap) int { return cmp.Compare(b.Duration, a.Duration) })
	return out, nil
}
