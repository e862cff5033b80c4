package chaos

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// ClientPID returns the process ID in a River client ID of taskd's
// (HOSTNAME_PID_RANDOM, internal/jobs), which task_attempts.worker and
// river_job.attempted_by hold: a test finds a process's attempts by it.
// It returns 0 for an ID of another form.
func ClientPID(id string) int {
	parts := strings.Split(id, "_")
	if len(parts) < 3 {
		return 0
	}
	pid, err := strconv.Atoi(parts[len(parts)-2])
	if err != nil {
		return 0
	}
	return pid
}

// Tick is one task a schedule enqueued.
type Tick struct {
	TaskID int64
	// At is the tick the task was enqueued for (its metadata's
	// schedule_tick), Created when it was inserted.
	At      time.Time
	Created time.Time
}

// ScheduleTicks returns the tasks schedule name enqueued, in the order of
// their ticks.
func ScheduleTicks(ctx context.Context, pool *pgxpool.Pool, name string) ([]Tick, error) {
	rows, err := pool.Query(ctx, `SELECT id, (metadata ->> 'schedule_tick')::timestamptz, created_at
		FROM river_job WHERE metadata ->> 'schedule' = $1 ORDER BY 2, 1`, name)
	if err != nil {
		return nil, fmt.Errorf("reading the ticks of schedule %s: %w", name, err)
	}
	defer rows.Close()
	var out []Tick
	for rows.Next() {
		var tk Tick
		if err := rows.Scan(&tk.TaskID, &tk.At, &tk.Created); err != nil {
			return nil, fmt.Errorf("reading the ticks of schedule %s: %w", name, err)
		}
		out = append(out, tk)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the ticks of schedule %s: %w", name, err)
	}
	return out, nil
}
