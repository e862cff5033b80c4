package store

import (
	"cmp"
	"context"
	_ "embed"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/rivershared/uniquestates"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskd/taskd/internal/store/dbsqlc"
)

// JobCompletions is a batch of completions of running jobs, as River's
// completer hands them to its pilot: job i completed at FinalizedAt[i],
// with MetadataUpdates[i] merged into its metadata if MetadataDoMerge[i]
// (its result, river.RecordOutput).
type JobCompletions struct {
	ID              []int64
	FinalizedAt     []time.Time
	MetadataDoMerge []bool
	MetadataUpdates [][]byte
}

// JobCompleteMany is River's JobSetStateIfRunningMany for a batch of
// completions only, with a statement that does less (queries/river_job.sql:
// River's serves every state, and looks every job up by id a second time
// for the rows it did not update); jobs.completionPilot uses it for the
// plain completions of River's completer's batches. Like River's,
// it returns the rows of every job of c that still exists, updated or not,
// read in the statement's snapshot, in id order, as River's own type: the
// caller hands them back to River. TestJobCompleteManyAgreesWithRiver runs
// both statements on twin rows.
func (s *Store) JobCompleteMany(ctx context.Context, db DBTX, c JobCompletions) ([]*rivertype.JobRow, error) {
	got, err := dbsqlc.New(db).JobCompleteMany(ctx, dbsqlc.JobCompleteManyParams{
		ID:              c.ID,
		FinalizedAt:     c.FinalizedAt,
		MetadataDoMerge: c.MetadataDoMerge,
		MetadataUpdates: c.MetadataUpdates,
	})
	if err != nil {
		return nil, fmt.Errorf("completing jobs: %w", err)
	}
	rows := make([]*rivertype.JobRow, len(got))
	for i := range got {
		rows[i], _ = riverJobRow((*dbsqlc.RiverJob)(&got[i]))
	}
	slices.SortFunc(rows, func(a, b *rivertype.JobRow) int { return cmp.Compare(a.ID, b.ID) })
	return rows, nil
}

// JobFetchParams are River's for its producer's fetch
// (riverdriver.JobGetAvailableParams): up to MaxToLock available jobs of
// Queue due by Now (nil: the database's now), of the kinds Kind (nil:
// any), for the client ClientID, whose last MaxAttemptedBy entries of
// attempted_by are kept.
type JobFetchParams struct {
	Queue          string
	Kind           []string
	Now            *time.Time
	MaxToLock      int
	MaxAttemptedBy int
	ClientID       string
}

//go:embed statements/job_fetch.sql
var jobFetchSQL string

// JobFetch is River's JobGetAvailable with a statement that finds the rows
// it locked by their ctid instead of by id (statements/job_fetch.sql);
// jobs.completionPilot uses it for River's producers. Like River's, it
// returns every job it moved to running, and the errors of those whose row
// could not be decoded whole (their attempt is failed by River), by id.
// TestJobFetchAgreesWithRiver runs both statements on twin queues.
func (s *Store) JobFetch(ctx context.Context, db DBTX, p JobFetchParams) ([]*rivertype.JobRow, map[int64]error, error) {
	rows, err := db.Query(ctx, jobFetchSQL, p.Queue, p.Kind, p.Now,
		int32(min(p.MaxToLock, math.MaxInt32)), int32(min(p.MaxAttemptedBy, math.MaxInt32)), p.ClientID) //nolint:gosec // bounded
	if err != nil {
		return nil, nil, fmt.Errorf("fetching jobs: %w", err)
	}
	defer rows.Close()
	var jobs []*rivertype.JobRow
	var decodeErrs map[int64]error
	for rows.Next() {
		var r dbsqlc.RiverJob
		if err := rows.Scan(&r.ID, &r.State, &r.Attempt, &r.MaxAttempts, &r.AttemptedAt,
			&r.CreatedAt, &r.FinalizedAt, &r.ScheduledAt, &r.Priority, &r.Args,
			&r.AttemptedBy, &r.Errors, &r.Kind, &r.Metadata, &r.Queue,
			&r.Tags, &r.UniqueKey, &r.UniqueStates); err != nil {
			return nil, nil, fmt.Errorf("fetching jobs: %w", err)
		}
		job, err := riverJobRow(&r)
		if err != nil {
			if decodeErrs == nil {
				decodeErrs = make(map[int64]error)
			}
			decodeErrs[job.ID] = err
		}
		jobs = append(jobs, job)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("fetching jobs: %w", err)
	}
	return jobs, decodeErrs, nil
}

// riverJobRow maps a river_job row to River's type as River's pgx driver
// does (riverpgxv5's jobRowFromInternalPartial): times in UTC, errors
// decoded; errors that cannot be decoded are left empty, and err says why.
func riverJobRow(r *dbsqlc.RiverJob) (_ *rivertype.JobRow, err error) {
	utc := func(t *time.Time) *time.Time {
		if t == nil {
			return nil
		}
		u := t.UTC()
		return &u
	}
	errs := make([]rivertype.AttemptError, len(r.Errors))
	for i, raw := range r.Errors {
		if uerr := riverdriver.UnmarshalAttemptError(raw, &errs[i]); uerr != nil {
			err = fmt.Errorf("error unmarshaling `errors`: %w", uerr)
			errs = nil
			break
		}
	}
	var uniqueStates byte
	if r.UniqueStates.Valid && len(r.UniqueStates.Bytes) > 0 {
		uniqueStates = r.UniqueStates.Bytes[0]
	}
	return &rivertype.JobRow{
		ID:           r.ID,
		Attempt:      max(int(r.Attempt), 0),
		AttemptedAt:  utc(r.AttemptedAt),
		AttemptedBy:  r.AttemptedBy,
		CreatedAt:    r.CreatedAt.UTC(),
		EncodedArgs:  r.Args,
		Errors:       errs,
		FinalizedAt:  utc(r.FinalizedAt),
		Kind:         r.Kind,
		MaxAttempts:  max(int(r.MaxAttempts), 0),
		Metadata:     r.Metadata,
		Priority:     max(int(r.Priority), 0),
		Queue:        r.Queue,
		ScheduledAt:  r.ScheduledAt.UTC(),
		State:        rivertype.JobState(r.State),
		Tags:         r.Tags,
		UniqueKey:    r.UniqueKey,
		UniqueStates: uniquestates.UniqueBitmaskToStates(uniqueStates),
	}, err
}

// JobInserts are jobs for JobInsertMany, a column each, as River's insert
// has them (its defaults applied: times, "{}" for empty args and
// metadata, tags joined by commas, which River's tags cannot hold).
type JobInserts struct {
	Args        [][]byte
	CreatedAt   []time.Time
	Kind        []string
	MaxAttempts []int16
	Metadata    [][]byte
	Priority    []int16
	Queue       []string
	ScheduledAt []time.Time
	State       []string
	Tags        []string
}

// JobInsertMany is River's JobInsertFastMany for jobs without a unique key
// or an id of their own, with a statement without River's ON CONFLICT
// clause (queries/river_job.sql); jobs.completionPilot uses it for River's
// inserts of such jobs, taskd's. It returns the rows in the order of j, as
// River's does. TestJobInsertManyAgreesWithRiver inserts twins with both.
func (s *Store) JobInsertMany(ctx context.Context, db DBTX, j JobInserts) ([]*rivertype.JobRow, error) {
	inserted, err := dbsqlc.New(db).JobInsertMany(ctx, dbsqlc.JobInsertManyParams(j))
	if err != nil {
		return nil, fmt.Errorf("inserting jobs: %w", err)
	}
	rows := make([]*rivertype.JobRow, len(inserted))
	for i := range inserted {
		if rows[i], err = riverJobRow(&inserted[i]); err != nil {
			return nil, fmt.Errorf("inserting jobs: %w", err)
		}
	}
	return rows, nil
}
