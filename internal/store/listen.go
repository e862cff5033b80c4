package store

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/taskd/taskd/internal/store/dbsqlc"
)

// InsertListener is a connection of its own that LISTENs to River's insert
// notifications, which name the queue that got new work. River sends them
// on insert (at most one per queue per fetch cooldown), and taskd sends the
// same when a task becomes available again (a rescue, an expired lease, a
// failed claim).
type InsertListener struct {
	conn *pgx.Conn
}

// ListenInserts opens an InsertListener.
func (s *Store) ListenInserts(ctx context.Context) (*InsertListener, error) {
	conn, err := s.listen(ctx, "river_insert", "inserts")
	if err != nil {
		return nil, err
	}
	return &InsertListener{conn: conn}, nil
}

// listen opens a connection with the pool's settings, outside the pool so
// that it does not take one of its connections for good, and LISTENs on
// topic in the current schema: River's channels are schema-qualified, so
// that two schemas in one database do not wake each other, and taskd's
// follow suit. what names the notifications in errors.
func (s *Store) listen(ctx context.Context, topic, what string) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("connecting the listener for %s: %w", what, unavailable(err))
	}
	var schema string
	if err := conn.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("reading the schema: %w", unavailable(err))
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{schema + "." + topic}.Sanitize()); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("listening for %s: %w", what, unavailable(err))
	}
	return conn, nil
}

// Next waits for the next notification and returns its queue ("" when the
// payload names none).
func (l *InsertListener) Next(ctx context.Context) (string, error) {
	n, err := l.conn.WaitForNotification(ctx)
	if err != nil {
		return "", fmt.Errorf("waiting for inserts: %w", unavailable(err))
	}
	var payload struct {
		Queue string `json:"queue"`
	}
	_ = json.Unmarshal([]byte(n.Payload), &payload)
	return payload.Queue, nil
}

// Close closes the listener's connection.
func (l *InsertListener) Close(ctx context.Context) error {
	return l.conn.Close(ctx)
}

// IDListener LISTENs, on a connection of its own, to one of taskd's
// announcements of task IDs: of tasks that reached a final state
// (NotifyFinished; ListenFinished), or of running tasks that a request
// started to wait for (WaitMark; ListenWaited).
type IDListener struct {
	conn *pgx.Conn
}

// ListenFinished opens a IDListener.
func (s *Store) ListenFinished(ctx context.Context) (*IDListener, error) {
	conn, err := s.listen(ctx, "taskd_finished", "finished tasks")
	if err != nil {
		return nil, err
	}
	return &IDListener{conn: conn}, nil
}

// ListenWaited opens an IDListener of the running tasks that requests
// started to wait for (WaitMark), for the process running them.
func (s *Store) ListenWaited(ctx context.Context) (*IDListener, error) {
	conn, err := s.listen(ctx, "taskd_waited", "waited tasks")
	if err != nil {
		return nil, err
	}
	return &IDListener{conn: conn}, nil
}

// Next waits for the next announcement and returns its task IDs.
func (l *IDListener) Next(ctx context.Context) ([]int64, error) {
	n, err := l.conn.WaitForNotification(ctx)
	if err != nil {
		return nil, fmt.Errorf("waiting for announced tasks: %w", unavailable(err))
	}
	var ids []int64
	for part := range strings.SplitSeq(n.Payload, ",") {
		if id, err := strconv.ParseInt(part, 10, 64); err == nil {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// Close closes the listener's connection.
func (l *IDListener) Close(ctx context.Context) error {
	return l.conn.Close(ctx)
}

// notifyPayloadMax keeps announcements under PostgreSQL's 8,000-byte
// payload limit.
const notifyPayloadMax = 7900

// NotifyFinished announces ids as finished to every process's waiting
// requests, in as few notifications as fit. A lost announcement only delays
// waiters until their periodic recheck.
func (s *Store) NotifyFinished(ctx context.Context, ids []int64) error {
	return s.notifyFinished(ctx, s.q, ids)
}

// NotifyFinishedTx is NotifyFinished on commit of tx.
func (s *Store) NotifyFinishedTx(ctx context.Context, tx pgx.Tx, ids []int64) error {
	return s.notifyFinished(ctx, s.q.WithTx(tx), ids)
}

func (s *Store) notifyFinished(ctx context.Context, q *dbsqlc.Queries, ids []int64) error {
	var b strings.Builder
	flush := func() error {
		if b.Len() == 0 {
			return nil
		}
		err := q.TaskNotifyFinished(ctx, b.String())
		b.Reset()
		if err != nil {
			return fmt.Errorf("announcing finished tasks: %w", unavailable(err))
		}
		return nil
	}
	for _, id := range ids {
		s := strconv.FormatInt(id, 10)
		if b.Len()+len(s)+1 > notifyPayloadMax {
			if err := flush(); err != nil {
				return err
			}
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s)
	}
	return flush()
}

// FinishedAmong returns which of ids are final or gone.
func (s *Store) FinishedAmong(ctx context.Context, ids []int64) ([]int64, error) {
	var out []int64
	err := s.Retry(ctx, func() (err error) {
		out, err = s.q.TaskFinishedAmong(ctx, ids)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("checking for finished tasks: %w", err)
	}
	return out, nil
}

// WaitMark marks the unfinished tasks among ids as waited for (see
// FinishWaited) and returns which of ids are final or gone already.
func (s *Store) WaitMark(ctx context.Context, ids []int64) ([]int64, error) {
	var out []int64
	err := s.Retry(ctx, func() (err error) {
		out, err = s.q.TaskWaitMark(ctx, ids)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("marking waited tasks: %w", err)
	}
	return out, nil
}

// finishWaitedChunk bounds the tasks of one FinishWaited statement, whose
// announcement lists them in one NOTIFY payload.
const finishWaitedChunk = 300

// FinishWaited completes at once those of attempts' tasks (completed
// attempts, with their outputs) that a request waits for (WaitMark), and
// announces them; River's completer would write them up to 250 ms later.
// Only a task still running the fetch each attempt was (its StartedAt is
// River's attempted_at, as the attempt middleware records it) is written:
// an attempt written late, after another process rescued its task, leaves
// the re-run alone.
func (s *Store) FinishWaited(ctx context.Context, attempts []Attempt) error {
	for len(attempts) > 0 {
		n := min(len(attempts), finishWaitedChunk)
		p := dbsqlc.TaskFinishWaitedParams{}
		for _, a := range attempts[:n] {
			p.Ids = append(p.Ids, a.TaskID)
			p.Outputs = append(p.Outputs, string(a.Output))
			p.FinishedAt = append(p.FinishedAt, a.StartedAt.Add(a.Duration))
			p.AttemptedAt = append(p.AttemptedAt, a.StartedAt)
		}
		// Safe to run twice: a second run finds the tasks written.
		if err := s.Retry(ctx, func() error { return s.q.TaskFinishWaited(ctx, p) }); err != nil {
			return fmt.Errorf("completing waited tasks: %w", err)
		}
		attempts = attempts[n:]
	}
	return nil
}

// Pauses of Relisten before it connects again.
const (
	RelistenMin = 100 * time.Millisecond
	RelistenMax = 5 * time.Second
)

// Notifications is a listener (InsertListener, IDListener): Next returns
// each notification's payload, read as T.
type Notifications[T any] interface {
	Next(ctx context.Context) (T, error)
	Close(ctx context.Context) error
}

// Relisten keeps a listener open until ctx ends: it connects with open,
// pausing between failed tries from RelistenMin doubling to RelistenMax,
// calls connected (when not nil) each time it listens again, and hands
// every notification to handle. what names the listener in the log; while
// it is down, its users rely on their periodic recheck.
func Relisten[T any](ctx context.Context, logger *slog.Logger, what string, open func(context.Context) (Notifications[T], error), connected func(), handle func(T)) {
	pause := RelistenMin
	for ctx.Err() == nil {
		l, err := open(ctx)
		if err != nil {
			if ctx.Err() == nil {
				logger.Warn(what+" cannot connect; its waiters rely on the periodic recheck",
					slog.String("error", err.Error()), slog.Duration("retry_in", pause))
			}
			select {
			case <-ctx.Done():
			case <-time.After(pause):
			}
			pause = min(2*pause, RelistenMax)
			continue
		}
		pause = RelistenMin
		if connected != nil {
			connected()
		}
		for {
			payload, err := l.Next(ctx)
			if err != nil {
				if ctx.Err() == nil {
					logger.Warn(what+" lost its connection; reconnecting", slog.String("error", err.Error()))
					select {
					case <-ctx.Done():
					case <-time.After(RelistenMin):
					}
				}
				break
			}
			handle(payload)
		}
		_ = l.Close(context.WithoutCancel(ctx))
	}
}
