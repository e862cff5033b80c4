package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/taskd/taskd/internal/store/dbsqlc"
)

// Batch callbacks ("then"): see internal/tasks (thenRunner) for who calls
// these and when, and BatchThenDecide in queries/batches.sql for the guard
// that makes the callback exactly once.

// BatchThenCandidates returns the batches among those of taskIDs whose
// callback is still to be decided and names one of kinds.
func (s *Store) BatchThenCandidates(ctx context.Context, taskIDs []int64, kinds []string) ([]int64, error) {
	var ids []int64
	err := s.Retry(ctx, func() (err error) {
		ids, err = s.q.BatchThenCandidates(ctx, dbsqlc.BatchThenCandidatesParams{TaskIds: taskIDs, Kinds: kinds})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("finding batches with callbacks: %w", err)
	}
	return ids, nil
}

// BatchThenCandidatesByID returns those of batchIDs whose callback is
// still to be decided and names one of kinds.
func (s *Store) BatchThenCandidatesByID(ctx context.Context, batchIDs []int64, kinds []string) ([]int64, error) {
	var ids []int64
	err := s.Retry(ctx, func() (err error) {
		ids, err = s.q.BatchThenCandidatesByID(ctx, dbsqlc.BatchThenCandidatesByIDParams{BatchIds: batchIDs, Kinds: kinds})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("finding batches with callbacks by ID: %w", err)
	}
	return ids, nil
}

// PendingThen is a batch whose callback is still to be decided.
type PendingThen struct {
	BatchID int64
	// Done is set when every task of the batch is final or gone.
	Done bool
}

// BatchThenPending returns up to max batches with IDs above afterID whose
// callback is still to be decided and names one of kinds, in ID order.
func (s *Store) BatchThenPending(ctx context.Context, afterID int64, kinds []string, max int) ([]PendingThen, error) {
	var rows []dbsqlc.BatchThenPendingRow
	err := s.Retry(ctx, func() (err error) {
		rows, err = s.q.BatchThenPending(ctx, dbsqlc.BatchThenPendingParams{AfterID: afterID, Kinds: kinds, Max: int32(max)})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing pending batch callbacks: %w", err)
	}
	out := make([]PendingThen, len(rows))
	for i, r := range rows {
		out[i] = PendingThen{BatchID: r.ID, Done: r.Done}
	}
	return out, nil
}

// BatchThenDecideTx marks batch id's callback decided and returns its
// request, if the callback was not decided yet and every task of the batch
// is final or gone; ok is false otherwise. The batch's row stays locked
// for the rest of tx, so that a concurrent decision waits for tx and then
// finds the callback decided.
func (s *Store) BatchThenDecideTx(ctx context.Context, tx pgx.Tx, id int64) (request json.RawMessage, ok bool, err error) {
	req, err := s.q.WithTx(tx).BatchThenDecide(ctx, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("deciding the callback of batch %d: %w", id, err)
	}
	return req, true, nil
}

// BatchThenSetTaskTx records the callback task of batch id.
func (s *Store) BatchThenSetTaskTx(ctx context.Context, tx pgx.Tx, id, taskID int64) error {
	if err := s.q.WithTx(tx).BatchThenSetTask(ctx, dbsqlc.BatchThenSetTaskParams{ID: id, TaskID: taskID}); err != nil {
		return fmt.Errorf("recording the callback task of batch %d: %w", id, err)
	}
	return nil
}

// BatchThenSetErrorTx records why batch id's callback was not inserted.
func (s *Store) BatchThenSetErrorTx(ctx context.Context, tx pgx.Tx, id int64, msg string) error {
	if err := s.q.WithTx(tx).BatchThenSetError(ctx, dbsqlc.BatchThenSetErrorParams{ID: id, Error: msg}); err != nil {
		return fmt.Errorf("recording the callback error of batch %d: %w", id, err)
	}
	return nil
}
