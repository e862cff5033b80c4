package store

import (
	"cmp"
	"context"
	"fmt"
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
// completions only, with a statement that does less (queries/completions.sql:
// River's serves every state, and looks every job up by id a second time
// for the rows it did not update); jobs.completionPilot uses it for the
// batches of River's completer, most of every task's completion
// (docs/PERFORMANCE.md, "Round 2, eleventh run"). Like River's, it returns
// the rows of every job of c that still exists, updated or not, in id order,
// as River's own type: the caller hands them back to River.
// TestJobCompleteManyAgreesWithRiver runs both statements on the same rows.
func (s *Store) JobCompleteMany(ctx context.Context, db DBTX, c JobCompletions) ([]*rivertype.JobRow, error) {
	q := dbsqlc.New(db)
	updated, err := q.JobCompleteMany(ctx, dbsqlc.JobCompleteManyParams{
		ID:              c.ID,
		FinalizedAt:     c.FinalizedAt,
		MetadataDoMerge: c.MetadataDoMerge,
		MetadataUpdates: c.MetadataUpdates,
	})
	if err != nil {
		return nil, fmt.Errorf("completing jobs: %w", err)
	}
	rows := make([]*rivertype.JobRow, 0, len(c.ID))
	for i := range updated {
		rows = append(rows, riverJobRow(&updated[i]))
	}
	if len(updated) < len(c.ID) {
		// Jobs that no longer run, and whose completion had no metadata:
		// River returns them unchanged.
		seen := make(map[int64]bool, len(updated))
		for _, r := range updated {
			seen[r.ID] = true
		}
		var rest []int64
		for _, id := range c.ID {
			if !seen[id] {
				rest = append(rest, id)
			}
		}
		others, err := q.JobGetByIDMany(ctx, rest)
		if err != nil {
			return nil, fmt.Errorf("reading jobs not completed: %w", err)
		}
		for i := range others {
			rows = append(rows, riverJobRow(&others[i]))
		}
	}
	slices.SortFunc(rows, func(a, b *rivertype.JobRow) int { return cmp.Compare(a.ID, b.ID) })
	return rows, nil
}

// riverJobRow maps a river_job row to River's type as River's pgx driver
// does (riverpgxv5's jobRowFromInternalPartial): times in UTC, errors
// decoded, an error that cannot be decoded leaving the errors empty.
func riverJobRow(r *dbsqlc.RiverJob) *rivertype.JobRow {
	utc := func(t *time.Time) *time.Time {
		if t == nil {
			return nil
		}
		u := t.UTC()
		return &u
	}
	var errs []rivertype.AttemptError
	if len(r.Errors) > 0 {
		errs = make([]rivertype.AttemptError, len(r.Errors))
		for i, raw := range r.Errors {
			if err := riverdriver.UnmarshalAttemptError(raw, &errs[i]); err != nil {
				errs = nil
				break
			}
		}
	} else {
		errs = []rivertype.AttemptError{}
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
	}
}
