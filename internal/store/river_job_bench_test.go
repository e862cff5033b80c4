package store

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskd/taskd/internal/pgtest"
)

// BenchmarkRiverStatements times River's insert, fetch and completion
// statements against taskd's (JobInsertMany, JobFetch, JobCompleteMany)
// on one connection, 1,000 jobs a statement, each pair on a database of
// its own; it reports µs/job. The jobs are scenario 1's (double, a batch
// in their metadata, a result merged at completion). Only the statement
// is timed: the rows each one works on are made with the timer stopped.
//
//	go test -run XXX -bench BenchmarkRiverStatements -benchtime 100x -count 5 ./internal/store/
//
// (docs/PERFORMANCE.md, "Round 2, eleventh run").
func BenchmarkRiverStatements(b *testing.B) {
	const n = 1000
	ctx := context.Background()
	for _, op := range []string{"insert", "fetch", "complete"} {
		for _, who := range []string{"river", "taskd"} {
			b.Run(op+"/"+who, func(b *testing.B) {
				pool := pgtest.NewPool(b, 1)
				s := New(pool)
				exec := riverpgxv5.New(pool).GetExecutor()
				jobs := make([]*riverdriver.JobInsertFastParams, n)
				var in JobInserts
				now := time.Now().UTC()
				for i := range jobs {
					args := []byte(`{"value": ` + strconv.Itoa(i) + `}`)
					meta := []byte(`{"batch_id": 1}`)
					jobs[i] = &riverdriver.JobInsertFastParams{EncodedArgs: args, Kind: "double", MaxAttempts: 25, Priority: 1,
						Queue: "default", State: rivertype.JobStateAvailable, CreatedAt: &now, ScheduledAt: &now, Metadata: meta}
					in.Args, in.Metadata, in.Kind, in.Queue = append(in.Args, args), append(in.Metadata, meta), append(in.Kind, "double"), append(in.Queue, "default")
					in.CreatedAt, in.ScheduledAt = append(in.CreatedAt, now), append(in.ScheduledAt, now)
					in.MaxAttempts, in.Priority, in.State, in.Tags = append(in.MaxAttempts, 25), append(in.Priority, 1), append(in.State, "available"), append(in.Tags, "")
				}
				prepare := func(state string) []int64 {
					b.Helper()
					var ids []int64
					if err := pool.QueryRow(ctx, `WITH j AS (
							INSERT INTO river_job (state, attempt, attempted_at, attempted_by, args, kind, max_attempts, metadata, queue, priority, scheduled_at)
							SELECT $1::river_job_state, CASE WHEN $1 = 'running' THEN 1 ELSE 0 END, CASE WHEN $1 = 'running' THEN now() END,
								CASE WHEN $1 = 'running' THEN '{c}'::text[] END, jsonb_build_object('value', g), 'double', 25, '{"batch_id": 1}', 'default', 1, now() - interval '1 second'
							FROM generate_series(1, $2) g RETURNING id)
						SELECT array_agg(id ORDER BY id) FROM j`, state, n).Scan(&ids); err != nil {
						b.Fatal(err)
					}
					return ids
				}
				b.ResetTimer()
				for range b.N {
					switch op {
					case "insert":
						tx, err := pool.Begin(ctx)
						if err != nil {
							b.Fatal(err)
						}
						if who == "river" {
							_, err = riverpgxv5.New(pool).UnwrapExecutor(tx).JobInsertFastMany(ctx, &riverdriver.JobInsertFastManyParams{Jobs: jobs})
						} else {
							_, err = s.JobInsertMany(ctx, tx, in)
						}
						if err != nil {
							b.Fatal(err)
						}
						if err := tx.Commit(ctx); err != nil {
							b.Fatal(err)
						}
					case "fetch":
						b.StopTimer()
						prepare("available")
						b.StartTimer()
						var got int
						if who == "river" {
							res, err := exec.JobGetAvailable(ctx, &riverdriver.JobGetAvailableParams{ClientID: "c", Kind: []string{"double"}, MaxAttemptedBy: 100, MaxToLock: n, Queue: "default"})
							if err != nil {
								b.Fatal(err)
							}
							got = len(res.Jobs)
						} else {
							jobs, _, err := s.JobFetch(ctx, pool, JobFetchParams{ClientID: "c", Kind: []string{"double"}, MaxAttemptedBy: 100, MaxToLock: n, Queue: "default"})
							if err != nil {
								b.Fatal(err)
							}
							got = len(jobs)
						}
						if got != n {
							b.Fatalf("fetched %d jobs, want %d", got, n)
						}
					case "complete":
						b.StopTimer()
						ids := prepare("running")
						at := time.Now()
						river := &riverdriver.JobSetStateIfRunningManyParams{ID: ids}
						ours := JobCompletions{ID: ids}
						for range ids {
							river.Attempt, river.ErrData, river.ScheduledAt = append(river.Attempt, nil), append(river.ErrData, nil), append(river.ScheduledAt, nil)
							river.FinalizedAt, river.State = append(river.FinalizedAt, &at), append(river.State, rivertype.JobStateCompleted)
							river.MetadataDoMerge, river.MetadataUpdates = append(river.MetadataDoMerge, true), append(river.MetadataUpdates, []byte(`{"output": 6}`))
							ours.FinalizedAt, ours.MetadataDoMerge, ours.MetadataUpdates = append(ours.FinalizedAt, at), append(ours.MetadataDoMerge, true), append(ours.MetadataUpdates, []byte(`{"output": 6}`))
						}
						b.StartTimer()
						var err error
						if who == "river" {
							_, err = exec.JobSetStateIfRunningMany(ctx, river)
						} else {
							_, err = s.JobCompleteMany(ctx, pool, ours)
						}
						if err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/job")
			})
		}
	}
}
