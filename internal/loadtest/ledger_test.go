package loadtest

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"
)

// ledger is the test's oracle: every task taskd acknowledged (2xx), and
// whether it was seen in a final state.
//
// River's cleaner deletes finished tasks once their retention has passed,
// so "exists and is final at the end" cannot be checked at the end: the
// ledger looks at its pending tasks (acknowledged, not yet seen final)
// every ledgerPollInterval, far shorter than the retention, and a task is
// done only once a look has seen it final. A pending task that a look does
// not find at all was deleted without ever being seen final: it counts as
// lost. That is honest in one direction only: a look stalled for longer
// than the retention would take a cleaned task for a lost one (a false
// failure, never a false pass), which the retention of at least
// loadRetentionMin makes unlikely.
type ledger struct {
	mu      sync.Mutex
	acked   []int64            // every acknowledged ID, in acknowledgement order
	pending map[int64]struct{} // acknowledged, not yet seen final
	final   map[string]int     // tasks seen final, by state
	lost    []int64            // pending tasks gone from river_job
}

func newLedger() *ledger {
	return &ledger{pending: map[int64]struct{}{}, final: map[string]int{}}
}

// ack records tasks taskd acknowledged. It is called after the 2xx, whose
// insert has committed, so any later look finds them.
func (l *ledger) ack(ids ...int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.acked = append(l.acked, ids...)
	for _, id := range ids {
		l.pending[id] = struct{}{}
	}
}

// look reads the state of every pending task and settles those that are
// final or gone.
func (l *ledger) look(ctx context.Context, pool *pgxpool.Pool) error {
	l.mu.Lock()
	ids := make([]int64, 0, len(l.pending))
	for id := range l.pending {
		ids = append(ids, id)
	}
	l.mu.Unlock()
	if len(ids) == 0 {
		return nil
	}
	rows, err := pool.Query(ctx, `SELECT id, state FROM river_job WHERE id = ANY($1)`, ids)
	if err != nil {
		return fmt.Errorf("error reading pending tasks: %w", err)
	}
	states := make(map[int64]string, len(ids))
	for rows.Next() {
		var id int64
		var state string
		if err := rows.Scan(&id, &state); err != nil {
			rows.Close()
			return fmt.Errorf("error reading pending tasks: %w", err)
		}
		states[id] = state
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("error reading pending tasks: %w", err)
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		state, found := states[id]
		switch {
		case !found:
			l.lost = append(l.lost, id)
			delete(l.pending, id)
		case state == "completed" || state == "cancelled" || state == "discarded":
			l.final[state]++
			delete(l.pending, id)
		}
	}
	return nil
}

// ledgerCounts is a snapshot of a ledger.
type ledgerCounts struct {
	acked, pending, final, lost int
	byState                     map[string]int
}

func (l *ledger) counts() ledgerCounts {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := ledgerCounts{acked: len(l.acked), pending: len(l.pending), lost: len(l.lost), byState: map[string]int{}}
	for state, n := range l.final {
		c.final += n
		c.byState[state] = n
	}
	return c
}

// recent returns the i-th newest acknowledged ID (i modulo their number),
// false when none was acknowledged yet.
func (l *ledger) recent(i int) (int64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.acked) == 0 {
		return 0, false
	}
	return l.acked[len(l.acked)-1-i%len(l.acked)], true
}

// pendingSample returns up to n pending IDs, smallest first, for a failure
// message.
func (l *ledger) pendingSample(n int) []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	ids := make([]int64, 0, len(l.pending))
	for id := range l.pending {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids[:min(n, len(ids))]
}

func (l *ledger) lostSample(n int) []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lost[:min(n, len(l.lost))])
}
