package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/riverqueue/river"

	"github.com/taskd/taskd/internal/kinds"
)

// TestInsertOnly: the client of `taskd api` inserts as any other, works no
// queue, never leads, and keeps only its heartbeat.
func TestInsertOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	var cerr *ConfigError
	if err := (Config{InsertOnly: true, Queues: map[string]int{"default": 1}}).Validate(); !errors.As(err, &cerr) || cerr.Field != "Queues" {
		t.Fatalf("Validate with InsertOnly and Queues: %v, want a ConfigError on Queues", err)
	}

	b := setup(t, func(c *Config) { c.Queues, c.InsertOnly = nil, true })
	if names := b.client.QueueNames(); len(names) != 0 {
		t.Errorf("QueueNames = %v, want none", names)
	}
	// River refuses to start a client without queues: Start must not ask.
	b.start(t)

	res, err := b.client.River().Insert(ctx, kinds.RawArgs{KindName: "double", Raw: json.RawMessage(`{"value":1}`)}, &river.InsertOpts{Queue: "default"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Job.State != "available" || res.Job.MaxAttempts != MaxAttemptsDefault {
		t.Errorf("inserted %s with max_attempts %d, want available with the default %d", res.Job.State, res.Job.MaxAttempts, MaxAttemptsDefault)
	}
	if lead, err := b.client.IsLeader(ctx); err != nil || lead {
		t.Errorf("IsLeader = %v, %v; an insert-only client never leads", lead, err)
	}

	// Registered, and its heartbeat moves on.
	var first time.Time
	if err := b.pool.QueryRow(ctx, `SELECT heartbeat_at FROM taskd_processes WHERE client_id = $1`, b.client.ID()).Scan(&first); err != nil {
		t.Fatalf("the process row: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var at time.Time
		if err := b.pool.QueryRow(ctx, `SELECT heartbeat_at FROM taskd_processes WHERE client_id = $1`, b.client.ID()).Scan(&at); err != nil {
			t.Fatal(err)
		}
		if at.After(first) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no heartbeat within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Nothing fetched the task: no worker exists in this process.
	var state string
	if err := b.pool.QueryRow(ctx, `SELECT state FROM river_job WHERE id = $1`, res.Job.ID).Scan(&state); err != nil || state != "available" {
		t.Errorf("task state %q (%v), want still available", state, err)
	}
}
