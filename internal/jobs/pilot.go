package jobs

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivershared/baseservice"
	"github.com/riverqueue/river/rivershared/riverpilot"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskd/taskd/internal/store"
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

func newDriver(s *store.Store, w *watchdog, held *heldSet, recorder *attemptRecorder, logger *slog.Logger) *driver {
	d := riverpgxv5.New(s.Pool())
	return &driver{Driver: d, pilot: &completionPilot{
		watchdog: w, held: held, recorder: recorder, logger: logger,
		statements: &statements{store: s, unwrap: d.UnwrapTx},
	}}
}

// PluginInit is called by river.NewClient; the pilot needs nothing of it.
func (d *driver) PluginInit(*baseservice.Archetype) {}

// PluginPilot returns the pilot river.NewClient uses instead of its
// standard one.
func (d *driver) PluginPilot() riverpilot.Pilot { return d.pilot }

// completionPilot is River's standard pilot, except that it does not let a
// completion of an attempt the watchdog cancelled overwrite another attempt
// of the task, and that it runs River's inserts, fetches and completions
// with taskd's own statements where they can, which do less (statements).
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
	// statements runs River's inserts, fetches and completions with
	// taskd's own statements where they can (statements); nil in tests
	// that want River's.
	statements *statements
	// logger tells of the completions set aside (saveable); nil in tests.
	logger *slog.Logger
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
	sortByID(rows)
	return rows, nil
}

// setState writes params with River's statement, guarded for the tasks of
// attempts the watchdog cancelled (writeState), and sets aside the
// completions PostgreSQL refuses (setAside).
func (p *completionPilot) setState(ctx context.Context, exec riverdriver.Executor, params *riverdriver.JobSetStateIfRunningManyParams) ([]*rivertype.JobRow, error) {
	rows, err := p.writeState(ctx, exec, params)
	if err == nil || !refusedForData(err) {
		return rows, err
	}
	fixed, ok := p.setAside(ctx, exec, params, err)
	if !ok {
		return nil, err
	}
	return p.writeState(ctx, exec, fixed)
}

// writeState writes params with River's statement, guarded for the tasks
// of attempts the watchdog cancelled.
func (p *completionPilot) writeState(ctx context.Context, exec riverdriver.Executor, params *riverdriver.JobSetStateIfRunningManyParams) ([]*rivertype.JobRow, error) {
	if p.watchdog == nil {
		return p.setStateMany(ctx, exec, params)
	}
	stale := p.watchdog.staleAmong(params.ID)
	var rows []*rivertype.JobRow
	var err error
	if stale == nil {
		rows, err = p.setStateMany(ctx, exec, params)
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

// setAside is for a batch PostgreSQL refused for a value one of its
// completions holds (refusedForData). River's completer retries a failed
// batch whole, with every later completion of the process added to it, so
// one completion PostgreSQL cannot store stopped every completion of the
// process until it restarted, and then all of them ran again (RELIABILITY.md,
// "Defects an outside probe found"). What taskd knows to be unstorable is
// refused before it gets here (strictjson.StorableNumber, FindNUL,
// FindBadText); this is for what it does not know of.
//
// In a transaction it always rolls back, setAside tries the batch in halves,
// down to the completions PostgreSQL refuses, and returns params with each
// of those replaced by what PostgreSQL takes of it (saveable). The caller
// then writes the whole batch again as before, in one statement (or the
// guarded transaction): nothing of it is saved unless all of it is, so
// River's retry of a batch that fails for another reason replays nothing
// already saved. refusal is the whole batch's, which is not tried again.
// ok is false when no single completion is refused (the batch is refused
// as a whole) or the probe itself failed.
func (p *completionPilot) setAside(ctx context.Context, exec riverdriver.Executor, params *riverdriver.JobSetStateIfRunningManyParams, refusal error) (_ *riverdriver.JobSetStateIfRunningManyParams, ok bool) {
	tx, err := exec.Begin(ctx)
	if err != nil {
		return nil, false
	}
	defer func() { _ = tx.Rollback(ctx) }()
	fixed := sliceIDs(params, 0, len(params.ID))
	found := false
	// walk sets aside the refused completions from i to j; refusal is
	// theirs when already known, nil when they are still to be tried.
	var walk func(i, j int, refusal error) error
	walk = func(i, j int, refusal error) error {
		if refusal == nil {
			var err error
			if refusal, err = p.refusedIn(ctx, tx, sliceIDs(fixed, i, j)); err != nil || refusal == nil {
				return err
			}
		}
		if j-i > 1 {
			mid := (i + j) / 2
			if err := walk(i, mid, nil); err != nil {
				return err
			}
			return walk(mid, j, nil)
		}
		found = true
		return p.saveable(ctx, tx, fixed, i, refusal)
	}
	if err := walk(0, len(params.ID), refusal); err != nil || !found {
		return nil, false
	}
	return fixed, true
}

// refusedIn tries River's statement for params in a savepoint of tx, which
// it rolls back, and returns PostgreSQL's refusal for data, if any; any
// other failure is err.
func (p *completionPilot) refusedIn(ctx context.Context, tx riverdriver.ExecutorTx, params *riverdriver.JobSetStateIfRunningManyParams) (refusal, err error) {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return nil, err
	}
	_, tried := p.setStateMany(ctx, sp, params)
	if err := sp.Rollback(ctx); err != nil {
		return nil, err
	}
	switch {
	case tried == nil:
		return nil, nil
	case refusedForData(tried):
		return tried, nil
	}
	return nil, tried
}

// unsavedKey is the metadata key under which a completion set aside says
// why its result and metadata were not saved.
const unsavedKey = "unsaved_outcome"

// saveable replaces completion i of params, which PostgreSQL refused with
// refusal, with what it takes of it: first the same completion with, in
// place of its metadata updates (its result among them), a note of the
// refusal under unsavedKey; if that is refused too (the error the attempt
// ended with cannot be stored either), also with its error replaced by one
// naming the refusal, which counts as one more error in the task's errors.
// The state River chose stays. It fails when PostgreSQL refuses even that.
func (p *completionPilot) saveable(ctx context.Context, tx riverdriver.ExecutorTx, params *riverdriver.JobSetStateIfRunningManyParams, i int, refusal error) error {
	id := params.ID[i]
	why := "PostgreSQL refused to save this attempt's outcome as it was (" + refusal.Error() + "); it was saved without its result and metadata"
	note, _ := json.Marshal(map[string]string{unsavedKey: why}) // strings: cannot fail
	one := sliceIDs(params, i, i+1)
	one.MetadataDoMerge[0], one.MetadataUpdates[0] = true, note
	again, err := p.refusedIn(ctx, tx, one)
	if err != nil {
		return err
	}
	if again != nil {
		rows, err := tx.JobGetByIDMany(ctx, &riverdriver.JobGetByIDManyParams{ID: []int64{id}, Schema: params.Schema})
		if err != nil {
			return fmt.Errorf("reading task %d: %w", id, err)
		}
		if len(rows) != 1 {
			return again // deleted meanwhile: River's statement leaves it alone once it is saved
		}
		e, _ := json.Marshal(rivertype.AttemptError{At: time.Now().UTC(), Attempt: rows[0].Attempt, Error: why}) // cannot fail
		one.ErrData[0] = e
		if again, err = p.refusedIn(ctx, tx, one); err != nil {
			return err
		}
		if again != nil {
			return again
		}
	}
	params.ErrData[i], params.MetadataDoMerge[i], params.MetadataUpdates[i] = one.ErrData[0], true, note
	if p.logger != nil {
		p.logger.Error("a completion PostgreSQL refused is saved without its result and metadata",
			slog.Int64("task_id", id), slog.String("state", string(params.State[i])), slog.String("error", refusal.Error()))
	}
	return nil
}

// setStateMany runs River's JobSetStateIfRunningMany for params on exec,
// with taskd's statement for the completions it can take
// (statements.complete) and River's for the others. River's completer
// batches every outcome, so a batch may hold a failure or a snooze beside
// its completions: the two statements then run in one transaction (a
// savepoint when exec is one already), so that the batch is saved whole or
// not at all, as with River's one statement.
func (p *completionPilot) setStateMany(ctx context.Context, exec riverdriver.Executor, params *riverdriver.JobSetStateIfRunningManyParams) ([]*rivertype.JobRow, error) {
	if p.statements == nil || params.Schema != "" {
		return p.StandardPilot.JobSetStateIfRunningMany(ctx, exec, params)
	}
	plain := 0
	for i := range params.ID {
		if plainCompletion(params, i) {
			plain++
		}
	}
	switch plain {
	case len(params.ID):
		return p.statements.complete(ctx, exec, params)
	case 0:
		return p.StandardPilot.JobSetStateIfRunningMany(ctx, exec, params)
	}
	tx, err := exec.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("beginning a mixed batch of completions: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	rows, err := p.statements.complete(ctx, tx, selectCompletions(params, func(i int) bool { return plainCompletion(params, i) }))
	if err != nil {
		return nil, err
	}
	others, err := p.StandardPilot.JobSetStateIfRunningMany(ctx, tx, selectCompletions(params, func(i int) bool { return !plainCompletion(params, i) }))
	if err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("committing a mixed batch of completions: %w", err)
	}
	rows = append(rows, others...)
	sortByID(rows)
	return rows, nil
}

// sortByID puts rows in the order River's JobSetStateIfRunningMany returns
// them: by id.
func sortByID(rows []*rivertype.JobRow) {
	slices.SortFunc(rows, func(a, b *rivertype.JobRow) int { return cmp.Compare(a.ID, b.ID) })
}

// plainCompletion reports whether completion i of params is one taskd's
// statement writes (store.JobCompleteMany): to completed, with no attempt,
// error or scheduled_at of its own, as riverdriver.JobSetStateCompleted
// makes them.
func plainCompletion(params *riverdriver.JobSetStateIfRunningManyParams, i int) bool {
	return params.State[i] == rivertype.JobStateCompleted && params.Attempt[i] == nil && params.ErrData[i] == nil &&
		params.ScheduledAt[i] == nil && params.FinalizedAt[i] != nil
}

// JobGetAvailable implements riverpilot.Pilot: River's producers fetch
// through it.
func (p *completionPilot) JobGetAvailable(ctx context.Context, exec riverdriver.Executor, state riverpilot.ProducerState, params *riverdriver.JobGetAvailableParams) (*riverdriver.JobGetAvailableResult, error) {
	if p.statements != nil && params.MaxToLock > 0 && params.Schema == "" {
		return p.statements.fetch(ctx, exec, params)
	}
	return p.StandardPilot.JobGetAvailable(ctx, exec, state, params)
}

// JobInsertMany implements riverpilot.Pilot: River's inserts (InsertTx,
// InsertManyTx) go through it.
func (p *completionPilot) JobInsertMany(ctx context.Context, execTx riverdriver.ExecutorTx, params *riverdriver.JobInsertFastManyParams) ([]*riverdriver.JobInsertFastResult, error) {
	if p.statements != nil {
		if res, ok, err := p.statements.insert(ctx, execTx, params); ok {
			return res, err
		}
	}
	return p.StandardPilot.JobInsertMany(ctx, execTx, params)
}

// statements runs the three of River's statements every task pays for in
// PostgreSQL as taskd's own, which change the same rows in the same way
// and do less: the insert of jobs without a unique key (store.JobInsertMany:
// without River's ON CONFLICT clause), the producer's fetch (store.JobFetch:
// the locked rows found again by ctid, not by id) and the plain
// completions of River's completer's batches (store.JobCompleteMany:
// without the cases of other states and River's second look-up of every
// job). Together they took about a sixth off taskd's PostgreSQL CPU a task
// in scenario 1 (docs/PERFORMANCE.md, "Round 2, eleventh run"). Everything
// else (unique jobs, other states, a schema of River's own) goes to
// River's statements.
type statements struct {
	// store runs the statements River sends to its pool's executor on the
	// store's pool, the one River's driver has; unwrap is River's driver's,
	// for its transactions (JobCompleteTx, and the pilot's own guarded and
	// probing transactions).
	store  *store.Store
	unwrap func(riverdriver.ExecutorTx) pgx.Tx
}

// fetchTimeout bounds a fetch, as River's StandardPilot does (its
// rivercommon.HotOperationTimeout, internal to River).
const fetchTimeout = 10 * time.Second

// db returns what runs a statement River sends to exec.
func (c *statements) db(exec riverdriver.Executor) store.DBTX {
	if tx, isTx := exec.(riverdriver.ExecutorTx); isTx {
		return c.unwrap(tx)
	}
	return c.store.Pool()
}

// fetch is River's JobGetAvailable with store.JobFetch.
func (c *statements) fetch(ctx context.Context, exec riverdriver.Executor, params *riverdriver.JobGetAvailableParams) (*riverdriver.JobGetAvailableResult, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	jobs, decodeErrs, err := c.store.JobFetch(ctx, c.db(exec), store.JobFetchParams{
		Queue: params.Queue, Kind: params.Kind, Now: params.Now,
		MaxToLock: params.MaxToLock, MaxAttemptedBy: params.MaxAttemptedBy, ClientID: params.ClientID,
	})
	if err != nil {
		return nil, riverError(err)
	}
	return &riverdriver.JobGetAvailableResult{Jobs: jobs, DecodeErrors: decodeErrs}, nil
}

// riverError is err as River's driver would return it: a closed pool is
// riverdriver.ErrClosedPool, which River's services stop on rather than
// retry.
func riverError(err error) error {
	if errors.Is(err, puddle.ErrClosedPool) {
		return riverdriver.ErrClosedPool
	}
	return err
}

// insert is River's JobInsertFastMany with store.JobInsertMany, for
// params whose jobs have neither a unique key nor an id of their own; ok
// is false otherwise. The jobs' fields get River's defaults
// (riverpgxv5's JobInsertFastMany).
func (c *statements) insert(ctx context.Context, execTx riverdriver.ExecutorTx, params *riverdriver.JobInsertFastManyParams) (_ []*riverdriver.JobInsertFastResult, ok bool, _ error) {
	if params.Schema != "" {
		return nil, false, nil
	}
	n := len(params.Jobs)
	j := store.JobInserts{
		Args: make([][]byte, n), CreatedAt: make([]time.Time, n), Kind: make([]string, n),
		MaxAttempts: make([]int16, n), Metadata: make([][]byte, n), Priority: make([]int16, n),
		Queue: make([]string, n), ScheduledAt: make([]time.Time, n), State: make([]string, n), Tags: make([]string, n),
	}
	now := time.Now().UTC()
	for i, job := range params.Jobs {
		if len(job.UniqueKey) > 0 || job.UniqueStates != 0 || job.ID != nil {
			return nil, false, nil
		}
		j.Args[i] = orEmptyObject(job.EncodedArgs)
		j.CreatedAt[i] = now
		if job.CreatedAt != nil {
			j.CreatedAt[i] = *job.CreatedAt
		}
		j.Kind[i] = job.Kind
		j.MaxAttempts[i] = int16(min(job.MaxAttempts, math.MaxInt16)) //nolint:gosec // bounded
		j.Metadata[i] = orEmptyObject(job.Metadata)
		j.Priority[i] = int16(min(job.Priority, math.MaxInt16)) //nolint:gosec // bounded
		j.Queue[i] = job.Queue
		j.ScheduledAt[i] = now
		if job.ScheduledAt != nil {
			j.ScheduledAt[i] = *job.ScheduledAt
		}
		j.State[i] = string(job.State)
		j.Tags[i] = strings.Join(job.Tags, ",")
	}
	rows, err := c.store.JobInsertMany(ctx, c.unwrap(execTx), j)
	if err != nil {
		return nil, true, riverError(err)
	}
	res := make([]*riverdriver.JobInsertFastResult, len(rows))
	for i, row := range rows {
		res[i] = &riverdriver.JobInsertFastResult{Job: row}
	}
	return res, true, nil
}

// orEmptyObject is b, or "{}" when b is empty, as River stores empty args
// and metadata.
func orEmptyObject(b []byte) []byte {
	if len(b) == 0 {
		return []byte("{}")
	}
	return b
}

// complete writes params, plain completions all (plainCompletion), with
// store.JobCompleteMany.
func (c *statements) complete(ctx context.Context, exec riverdriver.Executor, params *riverdriver.JobSetStateIfRunningManyParams) ([]*rivertype.JobRow, error) {
	comp := store.JobCompletions{ID: params.ID, FinalizedAt: make([]time.Time, len(params.ID)), MetadataDoMerge: params.MetadataDoMerge, MetadataUpdates: params.MetadataUpdates}
	for i, at := range params.FinalizedAt {
		comp.FinalizedAt[i] = *at
	}
	rows, err := c.store.JobCompleteMany(ctx, c.db(exec), comp)
	if err != nil {
		return nil, riverError(err)
	}
	return rows, nil
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

// sliceIDs returns the completions of params from i to j, a copy.
func sliceIDs(params *riverdriver.JobSetStateIfRunningManyParams, i, j int) *riverdriver.JobSetStateIfRunningManyParams {
	return selectCompletions(params, func(k int) bool { return i <= k && k < j })
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
		written, err := p.setStateMany(ctx, tx, kept)
		if err != nil {
			return nil, err
		}
		rows = append(rows, written...)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("committing guarded completion: %w", err)
	}
	sortByID(rows)
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
	return selectCompletions(params, func(i int) bool { return keep(params.ID[i]) })
}

// selectCompletions returns a copy of params with the completions whose
// index keep takes.
func selectCompletions(params *riverdriver.JobSetStateIfRunningManyParams, keep func(int) bool) *riverdriver.JobSetStateIfRunningManyParams {
	kept := &riverdriver.JobSetStateIfRunningManyParams{Now: params.Now, Schema: params.Schema}
	for i, id := range params.ID {
		if !keep(i) {
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
