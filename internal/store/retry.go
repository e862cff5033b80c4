package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrUnavailable is returned (wrapped) when the database could not be
// reached or the connection was lost, and a retry on a fresh connection did
// not help or was not safe. The HTTP API answers it with 503 and
// Retry-After.
var ErrUnavailable = errors.New("database unavailable")

// ErrCommitUnknown is returned (wrapped, together with ErrUnavailable) when
// the connection was lost while a transaction was committing: it may or may
// not have committed, and only the caller can find out (an Idempotency-Key
// makes a repeated request safe).
var ErrCommitUnknown = errors.New("connection lost during commit; the transaction may or may not have committed")

// IsConnectionLost reports whether err means that the connection to
// PostgreSQL failed or was closed under the statement (a server restart,
// pg_terminate_backend, a network fault), as opposed to the statement
// itself failing. The statement did not commit anything on its own: a
// transaction left open on a lost connection is rolled back by the server.
func IsConnectionLost(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case len(pgErr.Code) == 5 && pgErr.Code[:2] == "08": // connection_exception
			return true
		case pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03": // admin, crash shutdown, cannot connect now
			return true
		case pgErr.Code == "53300": // too_many_connections
			return true
		}
		return false
	}
	// A deadline or cancellation of the caller's context is the caller's,
	// not the database's.
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) ||
		errors.Is(err, pgconn.ErrConnClosed) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) ||
		errors.As(err, &netErr)
}

// IsConflict reports whether err is PostgreSQL undoing a statement to
// resolve a conflict with another transaction: a deadlock, or a
// serialization failure. The statement, and its transaction, took no
// effect, and the same work run again normally succeeds. Deadlocks here
// come from statements that change many river_job rows at once, in no
// fixed order, beside River's completer doing the same (a waiting
// request's mark, a limits round, the completer).
func IsConflict(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

// conflictRetries is how many times more Retry runs work undone by a
// conflict (IsConflict). PostgreSQL undoes one transaction of a deadlock,
// and the other goes on, so a second run rarely meets the same one.
const conflictRetries = 3

// unavailable marks a lost-connection error as ErrUnavailable and returns
// any other error, or one already marked, as it is.
func unavailable(err error) error {
	if IsConnectionLost(err) && !errors.Is(err, ErrUnavailable) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// Retry runs fn, which must be safe to run twice (a read, or a transaction
// that did not reach COMMIT), and runs it once more when it failed because
// its connection was lost. Before the second run the pool is reset (idle
// connections are closed at once, those in use when they are released):
// when one connection was cut, its siblings usually were too (a server
// restart, an operator terminating every backend), and the pool would
// otherwise hand out another dead one. Errors of lost connections are
// returned as ErrUnavailable. Statements that go through the pool without
// the store (River's own queue listing, pause and resume) use it too.
//
// Work undone by a conflict (a deadlock, a serialization failure) is run
// again too, up to conflictRetries times: it took no effect either.
func (s *Store) Retry(ctx context.Context, fn func() error) error {
	err := fn()
	for try := 0; try < conflictRetries && IsConflict(err) && ctx.Err() == nil; try++ {
		err = fn()
	}
	if !IsConnectionLost(err) || errors.Is(err, ErrCommitUnknown) || ctx.Err() != nil {
		return unavailable(err)
	}
	s.pool.Reset()
	return unavailable(fn())
}

// errCommit wraps a COMMIT failure. A lost connection there leaves the
// outcome unknown, so it is never retried.
func errCommit(err error) error {
	if IsConnectionLost(err) {
		return fmt.Errorf("%w: %w: %w", ErrUnavailable, ErrCommitUnknown, err)
	}
	return fmt.Errorf("committing: %w", err)
}

// WithTx runs fn in a transaction, committing when fn returns nil and
// rolling back otherwise. When the connection is lost before COMMIT (while
// beginning, or inside fn), nothing was committed, so the whole transaction
// runs once more on a fresh connection; fn must therefore have no effect
// outside the transaction. A connection lost during COMMIT is not retried:
// the error wraps ErrCommitUnknown and ErrUnavailable.
func (s *Store) WithTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return s.Retry(ctx, func() error {
		tx, err := s.pool.Begin(ctx)
		if err != nil {
			return fmt.Errorf("beginning transaction: %w", err)
		}
		if err := fn(tx); err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			return err
		}
		if err := tx.Commit(ctx); err != nil {
			return errCommit(err)
		}
		return nil
	})
}
