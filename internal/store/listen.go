package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// InsertListener is a connection of its own that LISTENs to River's insert
// notifications, which name the queue that got new work. River sends them
// on insert (at most one per queue per fetch cooldown), and taskd sends the
// same when a task becomes available again (a rescue, an expired lease, a
// failed claim).
type InsertListener struct {
	conn *pgx.Conn
}

// ListenInserts opens an InsertListener with the pool's connection
// settings, outside the pool so that it does not take one of its
// connections for good.
func (s *Store) ListenInserts(ctx context.Context) (*InsertListener, error) {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("connecting the insert listener: %w", unavailable(err))
	}
	// River's channels are schema-qualified, so that two schemas in one
	// database do not wake each other.
	var schema string
	if err := conn.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("reading the schema: %w", unavailable(err))
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{schema + ".river_insert"}.Sanitize()); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("listening for inserts: %w", unavailable(err))
	}
	return &InsertListener{conn: conn}, nil
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
