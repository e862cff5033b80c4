package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestIsConnectionLost(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("boom"), false},
		{&pgconn.PgError{Code: "57P01"}, true},  // terminated by an administrator
		{&pgconn.PgError{Code: "08006"}, true},  // connection failure
		{&pgconn.PgError{Code: "53300"}, true},  // too many connections
		{&pgconn.PgError{Code: "23505"}, false}, // unique violation: the statement's fault
		{&pgconn.PgError{Code: "22021"}, false}, // invalid byte sequence
		{fmt.Errorf("inserting: %w", io.ErrUnexpectedEOF), true},
		{fmt.Errorf("reading: %w", syscall.ECONNRESET), true},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, true},
		{pgconn.ErrConnClosed, true},
		{context.Canceled, false},
		{fmt.Errorf("query: %w", context.DeadlineExceeded), false},
	} {
		if got := IsConnectionLost(tc.err); got != tc.want {
			t.Errorf("IsConnectionLost(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestCommitNeverRetried checks that a connection lost during COMMIT is
// reported as unknown and fn is not run again, while one lost before it
// is retried once.
func TestCommitNeverRetried(t *testing.T) {
	t.Parallel()
	s := &Store{}
	runs := 0
	err := s.Retry(context.Background(), func() error {
		runs++
		return errCommit(io.ErrUnexpectedEOF)
	})
	if runs != 1 || !errors.Is(err, ErrCommitUnknown) || !errors.Is(err, ErrUnavailable) {
		t.Errorf("commit lost: ran %d times, err %v; want 1 run and ErrCommitUnknown, ErrUnavailable", runs, err)
	}
	if got := err.Error(); got != "database unavailable: connection lost during commit; the transaction may or may not have committed: unexpected EOF" {
		t.Errorf("error reads %q: want ErrUnavailable once", got)
	}
}

// TestWithTxRunsAgainAfterDeadlock makes two transactions lock two rows
// crosswise, as a waiting request's mark and River's completer can: the
// server undoes one of them (deadlock_detected), and WithTx runs it again,
// so both succeed.
func TestWithTxRunsAgainAfterDeadlock(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if _, err := s.pool.Exec(ctx, `
		CREATE TABLE crosswise (id int PRIMARY KEY, n int NOT NULL);
		INSERT INTO crosswise VALUES (1, 0), (2, 0)`); err != nil {
		t.Fatal(err)
	}
	// Each transaction's first run locks its first row, waits until the
	// other has locked its own, then asks for the other's.
	locked := [2]chan struct{}{make(chan struct{}), make(chan struct{})}
	var runs [2]atomic.Int32
	crosswise := func(me int) error {
		first, second := me+1, 2-me
		return s.WithTx(ctx, func(tx pgx.Tx) error {
			run := runs[me].Add(1)
			if _, err := tx.Exec(ctx, `UPDATE crosswise SET n = n + 1 WHERE id = $1`, first); err != nil {
				return err
			}
			if run == 1 {
				close(locked[me])
				<-locked[1-me]
			}
			_, err := tx.Exec(ctx, `UPDATE crosswise SET n = n + 1 WHERE id = $1`, second)
			return err
		})
	}
	errs := make(chan error, 2)
	for me := range 2 {
		go func() { errs <- crosswise(me) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("a transaction of the deadlock failed: %v", err)
		}
	}
	// At least one run was undone and run again. More than one can be:
	// a clean-clone CI once saw 4 runs (and each row changed twice, as
	// here), on a loaded machine; which second conflict undid the extra
	// run was not found. The rows' sum below is what must hold.
	if total := runs[0].Load() + runs[1].Load(); total < 3 {
		t.Errorf("the transactions ran %d times in all; want 3 or more (one undone by the deadlock and run again)", total)
	}
	var sum int
	if err := s.pool.QueryRow(ctx, `SELECT sum(n) FROM crosswise`).Scan(&sum); err != nil {
		t.Fatal(err)
	}
	if sum != 4 {
		t.Errorf("the rows were changed %d times; want 4 (each transaction once, each row twice)", sum)
	}
}
