package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

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
