package chaos_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
)

// finalJob is what the executor tests audit of a task's River row: its
// state, River's attempt count and the execution its result names.
type finalJob struct {
	id         int64
	state, out string
	attempt    int
}

// finalJobs reads the River rows of tasks ids.
func finalJobs(t *testing.T, pool *pgxpool.Pool, ids []int64) []finalJob {
	t.Helper()
	q, err := pool.Query(context.Background(), `SELECT id, state::text, attempt,
			coalesce(metadata -> 'output' ->> 'execution', '')
		FROM river_job WHERE id = ANY($1)`, ids)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	var jobs []finalJob
	for q.Next() {
		var j finalJob
		if err := q.Scan(&j.id, &j.state, &j.attempt, &j.out); err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j)
	}
	if q.Err() != nil {
		t.Fatal(q.Err())
	}
	return jobs
}
