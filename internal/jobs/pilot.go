package jobs

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivershared/baseservice"
	"github.com/riverqueue/river/rivershared/riverpilot"
	"github.com/riverqueue/river/rivertype"
)

// driver is River's pgx driver with taskd's pilot (completionPilot). River
// takes a driver's own pilot when the driver offers one (its PluginPilot,
// an interface River calls internal); everything else is riverpgxv5's, so
// transactions (InsertTx, UnwrapExecutor) and the River UI, which asks the
// client for its driver, work as with the plain driver. Migrations
// (internal/rivergoose) use the plain driver: they run no pilot.
type driver struct {
	*riverpgxv5.Driver
	pilot *completionPilot
}

var (
	_ riverdriver.Driver[pgx.Tx] = (*driver)(nil)
	_ riverpilot.Pilot           = (*completionPilot)(nil)
)

func newDriver(pool *pgxpool.Pool, w *watchdog, held *heldSet, recorder *attemptRecorder) *driver {
	return &driver{Driver: riverpgxv5.New(pool), pilot: &completionPilot{watchdog: w, held: held, recorder: recorder}}
}

// PluginInit is called by river.NewClient; the pilot needs nothing of it.
func (d *driver) PluginInit(*baseservice.Archetype) {}

// PluginPilot returns the pilot river.NewClient uses instead of its
// standard one.
func (d *driver) PluginPilot() riverpilot.Pilot { return d.pilot }

// completionPilot is River's standard pilot, except that it does not let a
// completion of an attempt the watchdog cancelled overwrite another attempt
// of the task.
//
// River writes an attempt's outcome with JobSetStateIfRunningMany, which
// checks only that the job is running, not which attempt runs it. A process
// cut off from the database cancels its attempts (the watchdog) and another
// process rescues and re-runs their tasks; the cut-off process's completer
// meanwhile retries the cancelled attempts' completions, and when the
// network comes back the first one would land on the re-run's row: the
// re-run's task would become retryable and run a third time beside the
// second. So, for the tasks of attempts the watchdog cancelled (and only
// those: every other batch goes to River's statement as it is), the pilot
// locks their rows and writes a completion only while the row is still
// running the very fetch the cancelled attempt was (River's attempt and
// attempted_at); the others are dropped, and their current rows returned
// as River returns the rows it did not update.
type completionPilot struct {
	riverpilot.StandardPilot
	// watchdog knows the cancelled attempts; nil for an insert-only
	// client, which completes nothing.
	watchdog *watchdog
	// held is told of every batch saved: River's completer is done with
	// those tasks' returned fetches (nil for an insert-only client).
	held *heldSet
	// recorder's rows of a batch's attempts are written before the batch
	// (attemptRecorder); nil when attempts are not recorded.
	recorder *attemptRecorder
}

// JobSetStateIfRunningMany implements riverpilot.Pilot. River's completers
// and JobCompleteTx call it.
//
// The attempts' rows come first: the rescue relies on a finished attempt's
// row being there before its task's new state, and the worker no longer
// waits for it (attemptRecorder). The tasks of a batch whose rows are not
// written yet are saved once they are; the others at once, in a statement
// of their own, so that they do not wait for rows that are not theirs: a
// task the cluster-wide limits refused is put back (snoozed) here, and
// until it is, a freed slot cannot be handed to it and may go to a newer
// task. River's completer retries a batch that failed; a retry of tasks
// saved already changes nothing, as they no longer run.
func (p *completionPilot) JobSetStateIfRunningMany(ctx context.Context, exec riverdriver.Executor, params *riverdriver.JobSetStateIfRunningManyParams) ([]*rivertype.JobRow, error) {
	if p.recorder == nil {
		return p.setState(ctx, exec, params)
	}
	unwritten := p.recorder.unwritten(params.ID)
	if len(unwritten) == 0 {
		return p.setState(ctx, exec, params)
	}
	var rows []*rivertype.JobRow
	if ready := withoutIDs(params, unwritten); len(ready.ID) > 0 {
		var err error
		if rows, err = p.setState(ctx, exec, ready); err != nil {
			return nil, err
		}
	}
	later := onlyIDs(params, unwritten)
	if err := p.recorder.awaitWritten(ctx, later.ID); err != nil {
		return nil, fmt.Errorf("waiting for the attempts' rows: %w", err)
	}
	more, err := p.setState(ctx, exec, later)
	if err != nil {
		return nil, err
	}
	rows = append(rows, more...)
	// In River's order.
	slices.SortFunc(rows, func(a, b *rivertype.JobRow) int { return cmp.Compare(a.ID, b.ID) })
	return rows, nil
}

// setState writes params with River's statement, guarded for the tasks of
// attempts the watchdog cancelled.
func (p *completionPilot) setState(ctx context.Context, exec riverdriver.Executor, params *riverdriver.JobSetStateIfRunningManyParams) ([]*rivertype.JobRow, error) {
	if p.watchdog == nil {
		return p.setStateIsolating(ctx, exec, params)
	}
	stale := p.watchdog.staleAmong(params.ID)
	var rows []*rivertype.JobRow
	var err error
	if stale == nil {
		rows, err = p.setStateIsolating(ctx, exec, params)
	} else {
		rows, err = p.setStateGuarded(ctx, exec, params, stale)
	}
	if err != nil {
		return nil, err
	}
	// Written or dropped: River asks no more for these attempts (a failed
	// call leaves them, and River's retry comes back here).
	if p.held != nil {
		p.held.settle(params.ID)
	}
	if stale != nil {
		p.watchdog.forget(stale)
	}
	return rows, nil
}

// setStateIsolating is River's statement for params, except that a batch
// PostgreSQL refuses for what a completion holds (refusedForData) is
// written again in halves, down to the completions it refuses, which are
// then saved without what they would have merged into their task's
// metadata (the output among it) and with an error saying why
// (unsavable). River's completer retries a failed batch whole, with every
// later completion added to it, so one completion PostgreSQL cannot store
// would stop every completion of the process until it restarts, and all
// of them would run again (RELIABILITY.md, "Defects an outside probe
// found"). What taskd knows to be unstorable is refused before it gets
// here (strictjson.StorableNumber, FindNUL, FindBadText); this is for
// what it does not know of.
func (p *completionPilot) setStateIsolating(ctx context.Context, exec riverdriver.Executor, params *riverdriver.JobSetStateIfRunningManyParams) ([]*rivertype.JobRow, error) {
	rows, err := p.StandardPilot.JobSetStateIfRunningMany(ctx, exec, params)
	if err == nil || !refusedForData(err) {
		return rows, err
	}
	if len(params.ID) == 1 {
		return p.StandardPilot.JobSetStateIfRunningMany(ctx, exec, unsavable(params, err))
	}
	half := len(params.ID) / 2
	first, err := p.setStateIsolating(ctx, exec, sliceIDs(params, 0, half))
	if err != nil {
		return nil, err
	}
	rest, err := p.setStateIsolating(ctx, exec, sliceIDs(params, half, len(params.ID)))
	if err != nil {
		return nil, err
	}
	return append(first, rest...), nil
}

// refusedForData reports whether PostgreSQL refused a statement for a
// value it holds: a data exception (SQLSTATE class 22, such as 22003, a
// number out of numeric's range, or 22P05, a NUL character) or a program
// limit (class 54, such as a jsonb value too large). Any other failure
// (a lost connection, a deadline) is River's to retry.
func refusedForData(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "22") || strings.HasPrefix(pgErr.Code, "54"))
}

// unsavable is the single completion params without its metadata updates
// and with an error, in River's form, naming why its outcome could not be
// saved; its state stays the one River chose.
func unsavable(params *riverdriver.JobSetStateIfRunningManyParams, err error) *riverdriver.JobSetStateIfRunningManyParams {
	one := sliceIDs(params, 0, 1)
	attempt := 0
	if one.Attempt[0] != nil {
		attempt = *one.Attempt[0]
	}
	e, _ := json.Marshal(rivertype.AttemptError{ // a struct of strings, a time and an int: cannot fail
		At:      time.Now().UTC(),
		Attempt: attempt,
		Error:   "taskd: PostgreSQL refused to save this attempt's outcome as it was (" + err.Error() + "); it was saved without its result and metadata",
	})
	one.ErrData[0] = e
	one.MetadataDoMerge[0] = false
	one.MetadataUpdates[0] = nil
	return one
}

// sliceIDs returns the completions of params from i to j.
func sliceIDs(params *riverdriver.JobSetStateIfRunningManyParams, i, j int) *riverdriver.JobSetStateIfRunningManyParams {
	return &riverdriver.JobSetStateIfRunningManyParams{
		ID:              slices.Clone(params.ID[i:j]),
		Attempt:         slices.Clone(params.Attempt[i:j]),
		ErrData:         slices.Clone(params.ErrData[i:j]),
		FinalizedAt:     slices.Clone(params.FinalizedAt[i:j]),
		MetadataDoMerge: slices.Clone(params.MetadataDoMerge[i:j]),
		MetadataUpdates: slices.Clone(params.MetadataUpdates[i:j]),
		Now:             params.Now,
		ScheduledAt:     slices.Clone(params.ScheduledAt[i:j]),
		Schema:          params.Schema,
		State:           slices.Clone(params.State[i:j]),
	}
}

// setStateGuarded writes params in one transaction, without those of
// stale attempts that no longer own their task.
//
// A dropped completion is dropped whole, metadata included, although
// River's statement merges a completion's metadata even into a row that
// is no longer running: the stale attempt's output (RecordOutput, in the
// metadata) must not replace the re-run's.
func (p *completionPilot) setStateGuarded(ctx context.Context, exec riverdriver.Executor, params *riverdriver.JobSetStateIfRunningManyParams, stale map[int64]staleView) ([]*rivertype.JobRow, error) {
	tx, err := exec.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("beginning guarded completion: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()

	ids := make([]int64, 0, len(stale))
	for id := range stale {
		ids = append(ids, id)
	}
	table := "river_job"
	if params.Schema != "" {
		table = pgx.Identifier{params.Schema, "river_job"}.Sanitize()
	}
	// The lock keeps a rescue (ProcessRescueLost locks what it rescues)
	// from moving a row between the check and River's write.
	if err := tx.Exec(ctx, "SELECT 1 FROM "+table+" WHERE id = ANY($1) FOR UPDATE", ids); err != nil {
		return nil, fmt.Errorf("locking tasks of cancelled attempts: %w", err)
	}
	current, err := tx.JobGetByIDMany(ctx, &riverdriver.JobGetByIDManyParams{ID: ids, Schema: params.Schema})
	if err != nil {
		return nil, fmt.Errorf("reading tasks of cancelled attempts: %w", err)
	}
	// A task deleted meanwhile has no row, and is dropped too: River's
	// statement returns none for it either.
	drop := make(map[int64]bool, len(stale))
	for _, id := range ids {
		drop[id] = true
	}
	var dropped []*rivertype.JobRow
	for _, row := range current {
		if stale[row.ID].owns(row) {
			delete(drop, row.ID)
		} else {
			dropped = append(dropped, row)
		}
	}

	rows := dropped
	if kept := withoutIDs(params, drop); len(kept.ID) > 0 {
		written, err := p.StandardPilot.JobSetStateIfRunningMany(ctx, tx, kept)
		if err != nil {
			return nil, err
		}
		rows = append(rows, written...)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("committing guarded completion: %w", err)
	}
	// In River's order.
	slices.SortFunc(rows, func(a, b *rivertype.JobRow) int { return cmp.Compare(a.ID, b.ID) })
	return rows, nil
}

// owns reports whether row is still the fetch of its task that s was:
// running, with the same attempt and attempted_at. A rescue makes it
// available (a fetch then counts a new attempt and sets a new
// attempted_at), and a snooze gives back its attempt but not attempted_at.
func (s staleView) owns(row *rivertype.JobRow) bool {
	if s.rerun != nil {
		// This process runs the task again, and River writes that
		// attempt's completion only after it returns: this one is the
		// stale attempt's.
		return false
	}
	return row.State == rivertype.JobStateRunning && s.sameFetch(row.Attempt, row.AttemptedAt)
}

// withoutIDs returns params without the completions of the tasks in drop.
func withoutIDs(params *riverdriver.JobSetStateIfRunningManyParams, drop map[int64]bool) *riverdriver.JobSetStateIfRunningManyParams {
	return filterIDs(params, func(id int64) bool { return !drop[id] })
}

// onlyIDs returns params with only the completions of the tasks in keep.
func onlyIDs(params *riverdriver.JobSetStateIfRunningManyParams, keep map[int64]bool) *riverdriver.JobSetStateIfRunningManyParams {
	return filterIDs(params, func(id int64) bool { return keep[id] })
}

// filterIDs returns params with the completions of the tasks keep takes.
func filterIDs(params *riverdriver.JobSetStateIfRunningManyParams, keep func(int64) bool) *riverdriver.JobSetStateIfRunningManyParams {
	kept := &riverdriver.JobSetStateIfRunningManyParams{Now: params.Now, Schema: params.Schema}
	for i, id := range params.ID {
		if !keep(id) {
			continue
		}
		kept.ID = append(kept.ID, id)
		kept.Attempt = append(kept.Attempt, params.Attempt[i])
		kept.ErrData = append(kept.ErrData, params.ErrData[i])
		kept.FinalizedAt = append(kept.FinalizedAt, params.FinalizedAt[i])
		kept.MetadataDoMerge = append(kept.MetadataDoMerge, params.MetadataDoMerge[i])
		kept.MetadataUpdates = append(kept.MetadataUpdates, params.MetadataUpdates[i])
		kept.ScheduledAt = append(kept.ScheduledAt, params.ScheduledAt[i])
		kept.State = append(kept.State, params.State[i])
	}
	return kept
}
