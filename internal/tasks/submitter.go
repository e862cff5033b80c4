package tasks

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskd/taskd/internal/store"
)

const (
	// submitGroupMax bounds the tasks one grouped insert writes.
	submitGroupMax = 100
	// submitGroupTimeout bounds one group's transaction, as the HTTP
	// API's DatabaseTimeoutDefault bounds a request's: a request whose
	// own deadline passes first cancels its group sooner (submit).
	submitGroupTimeout = 10 * time.Second
	// submitWriters is how many groups are written at once. Two let one
	// group's commit wait for the disk while the next one is inserted.
	submitWriters = 2
)

// submitter inserts single submissions in groups: one transaction, one
// multi-row insert and one commit for whatever submissions are waiting,
// as the completer does for completions. Bare River's InsertTx costs a
// transaction a task; at thousands of single submissions a second on a
// few cores, PostgreSQL's work for those transactions (three statements
// each, and a commit that waits for the WAL to reach the disk) is the
// cost, not the rows. A writer takes the first waiting submission, adds
// whatever else is waiting by then without waiting for more, and writes
// them; those that arrive meanwhile form the next group. An idle service
// writes each submission at once, in a group of one.
//
// Every submission still gets its own answer only after its transaction
// committed, as before: grouping changes how many tasks share a commit,
// not what a 201 promises. A group that fails before its commit, on
// anything but the database being unreachable, is tried again one
// submission at a time, each by its own caller with its own context, so
// that one task (or one request's deadline) cannot fail the others. A
// commit that fails is never tried again: it may have committed.
type submitter struct {
	s  *Service
	ch chan *submitRequest
	// writers is how many groups are written at once (submitWriters).
	writers int
	// timeout bounds each group's transaction (submitGroupTimeout).
	timeout time.Duration

	startOnce sync.Once
	stopOnce  sync.Once
	stop      chan struct{} // closed by close
	done      chan struct{} // closed when every writer returned
}

// States of a submitRequest: waiting in the channel, taken into a group
// by a writer, or given up by its caller before a writer took it.
const (
	submitWaiting int32 = iota
	submitTaken
	submitAbandoned
)

type submitRequest struct {
	params river.InsertManyParams
	idem   *Idempotency // nil without an Idempotency-Key
	state  atomic.Int32
	// group is the group that took the request; set before it is taken.
	group *submitGroup
	done  chan struct{} // closed once job or err is set
	job   *rivertype.JobRow
	err   error
}

// submitGroup is one group's transaction, as its members see it.
type submitGroup struct {
	mu         sync.Mutex
	committing bool // its COMMIT is under way; members can no longer cancel it
	cancel     context.CancelCauseFunc
}

// cancelBy ends the group's context, unless its COMMIT is under way: a
// member's deadline must not cut the others' commit, whose outcome would
// then be unknown.
func (g *submitGroup) cancelBy(cause error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.committing {
		g.cancel(cause)
	}
}

// commit marks the COMMIT as under way, or returns why the group was
// cancelled before it.
func (g *submitGroup) commit(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	g.committing = true
	return nil
}

// errAlone tells a request to insert its task in a transaction of its
// own: its group failed before its commit.
var errAlone = errors.New("tasks: the group failed; insert alone")

func newSubmitter(s *Service, writers int) *submitter {
	return &submitter{s: s, writers: writers, timeout: submitGroupTimeout, ch: make(chan *submitRequest, submitGroupMax), stop: make(chan struct{}), done: make(chan struct{})}
}

// close stops the writers once what is waiting is written.
func (st *submitter) close() {
	st.stopOnce.Do(func() {
		close(st.stop)
		st.startOnce.Do(func() { close(st.done) }) // never started
		<-st.done
	})
}

// submit inserts one task in the next group and returns its row. When
// ctx ends before a writer took it, it is not inserted. When ctx ends by
// its deadline (a cause other than context.Canceled) once taken, its
// group is cancelled, as a transaction of its own would have been, unless
// its COMMIT is under way, and the others are tried again alone; when the
// client left (Canceled), the group goes on without it. Either way the
// group's outcome is waited for and returned, so that a 201 is never
// missed nor given wrongly.
//
// With idem set, the task's key is stored with it; a key already taken
// gives errKeyTaken, and nothing is inserted (see Submit).
func (st *submitter) submit(ctx context.Context, p river.InsertManyParams, idem *Idempotency) (*rivertype.JobRow, error) {
	// A request whose client has already left is not queued: the select
	// below picks at random among ready cases, and could hand it to a
	// writer all the same.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case <-st.stop:
		return st.insertAlone(ctx, p, idem)
	default:
	}
	st.startOnce.Do(st.start)
	req := &submitRequest{params: p, idem: idem, done: make(chan struct{})}
	select {
	case st.ch <- req:
	case <-st.stop:
		return st.insertAlone(ctx, p, idem)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case <-req.done:
	case <-st.done:
		// The writers returned, having written what they found; a
		// request sent as they did may not have been among it.
		if req.state.CompareAndSwap(submitWaiting, submitAbandoned) {
			return st.insertAlone(ctx, p, idem)
		}
		<-req.done
	case <-ctx.Done():
		if req.state.CompareAndSwap(submitWaiting, submitAbandoned) {
			return nil, ctx.Err()
		}
		if cause := context.Cause(ctx); cause != context.Canceled {
			req.group.cancelBy(cause)
		}
		<-req.done // at once when cancelled; within the group's timeout when committing
	}
	if errors.Is(req.err, errAlone) {
		return st.insertAlone(ctx, p, idem)
	}
	return req.job, req.err
}

func (st *submitter) start() {
	var wg sync.WaitGroup
	for range st.writers {
		wg.Go(st.run)
	}
	go func() {
		wg.Wait()
		close(st.done)
	}()
}

// run writes groups until close, and then what is left waiting.
func (st *submitter) run() {
	for {
		select {
		case <-st.stop:
			for st.write(nil) {
			}
			return
		default:
		}
		select {
		case r := <-st.ch:
			st.write(r)
		case <-st.stop:
		}
	}
}

// write takes first, if its caller still waits, and what else waits now,
// up to submitGroupMax, inserts them in one transaction and answers their
// callers. It reports whether it found any.
func (st *submitter) write(first *submitRequest) bool {
	ctx, cancel := context.WithTimeoutCause(context.Background(), st.timeout, errors.New("a group of submissions took too long"))
	defer cancel()
	gctx, gcancel := context.WithCancelCause(ctx)
	defer gcancel(nil)
	g := &submitGroup{cancel: gcancel}
	var group []*submitRequest
	add := func(r *submitRequest) {
		r.group = g // read by its caller only once taken
		if r.state.CompareAndSwap(submitWaiting, submitTaken) {
			group = append(group, r)
		}
	}
	if first != nil {
		add(first)
	}
drain:
	for len(group) < submitGroupMax {
		select {
		case r := <-st.ch:
			add(r)
		default:
			break drain
		}
	}
	if len(group) == 0 {
		return false
	}
	params := make([]river.InsertManyParams, len(group))
	keys := make([]*Idempotency, len(group))
	for i, r := range group {
		params[i], keys[i] = r.params, r.idem
	}
	rows, committing, err := st.s.insertMany(gctx, params, keys, func() error { return g.commit(gctx) })
	// A member's deadline may have cut a connection, which looks like an
	// unreachable database; the others still have their own time.
	byMember := gctx.Err() != nil && ctx.Err() == nil
	if err != nil && len(group) > 1 && !committing && (byMember || !errors.Is(err, store.ErrUnavailable)) {
		err = errAlone
	}
	if err != nil && committing && !errors.Is(err, store.ErrCommitUnknown) {
		// A COMMIT that failed (the group's own deadline, at the worst)
		// may have committed all the same.
		err = fmt.Errorf("%w: %w: %w", store.ErrUnavailable, store.ErrCommitUnknown, err)
	}
	for i, r := range group {
		switch {
		case err != nil:
			r.err = err
		case rows[i] == nil:
			r.err = errKeyTaken
		default:
			r.job = rows[i]
		}
		close(r.done)
	}
	return true
}

// insertAlone inserts one task in a transaction of its own: a
// submission once the submitter is closed, or one whose group failed
// before its commit (errAlone).
func (st *submitter) insertAlone(ctx context.Context, p river.InsertManyParams, idem *Idempotency) (*rivertype.JobRow, error) {
	rows, _, err := st.s.insertMany(ctx, []river.InsertManyParams{p}, []*Idempotency{idem}, nil)
	switch {
	case err != nil:
		return nil, err
	case rows[0] == nil:
		return nil, errKeyTaken
	}
	return rows[0], nil
}

// insertMany inserts tasks in one transaction, with the idempotency key
// of each that has one in keys, and returns their rows in order; a task
// whose key was taken already (or by an earlier one of them) is removed
// again in the same transaction, and its row is nil. beforeCommit, if
// set, runs last in the transaction; its error rolls it back. committing
// says whether an error came from the commit, after everything else
// succeeded: such a transaction may have committed.
func (s *Service) insertMany(ctx context.Context, params []river.InsertManyParams, keys []*Idempotency, beforeCommit func() error) (rows []*rivertype.JobRow, committing bool, err error) {
	err = s.store.WithTx(ctx, func(tx pgx.Tx) error {
		committing = false // a retried transaction starts over
		res, err := s.river.InsertManyTx(ctx, tx, params)
		if err != nil {
			return fmt.Errorf("inserting task: %w", err)
		}
		rows = make([]*rivertype.JobRow, len(res))
		for i, r := range res {
			rows[i] = r.Job
		}
		if err := s.storeKeys(ctx, tx, rows, keys); err != nil {
			return err
		}
		if err := s.notifyClaims(ctx, tx, params); err != nil {
			return err
		}
		if beforeCommit != nil {
			if err := beforeCommit(); err != nil {
				return err
			}
		}
		committing = true
		return nil
	})
	if committing && pgconn.SafeToRetry(err) {
		committing = false // the COMMIT was never sent (its context had ended)
	}
	return rows, committing, err
}

// storeKeys stores the keys of the tasks in rows that have one (keys[i]
// for rows[i]) and removes the tasks whose keys were taken, setting their
// rows to nil.
func (s *Service) storeKeys(ctx context.Context, tx pgx.Tx, rows []*rivertype.JobRow, keys []*Idempotency) error {
	var ks []store.IdempotencyKey
	var at []int
	for i, k := range keys {
		if k != nil {
			ks = append(ks, store.IdempotencyKey{Key: k.Key, RequestHash: k.Hash, TaskID: rows[i].ID})
			at = append(at, i)
		}
	}
	if len(ks) == 0 {
		return nil
	}
	stored, err := s.store.IdempotencyKeysInsertTx(ctx, tx, ks)
	if err != nil {
		return err
	}
	var taken []int64
	for j, ok := range stored {
		if !ok {
			taken = append(taken, ks[j].TaskID)
			rows[at[j]] = nil
		}
	}
	if len(taken) == 0 {
		return nil
	}
	return s.store.TasksDeleteUncommittedTx(ctx, tx, taken)
}
