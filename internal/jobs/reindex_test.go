package jobs

import (
	"context"
	"slices"
	"testing"

	"github.com/taskd/taskd/internal/pgtest"
)

// TestReindexerIndexesExist checks that every index River's reindexer is
// given exists on a database with taskd's migrations, so that it never
// warns of a missing one, and that the indexes migration 00016 drops are
// gone.
func TestReindexerIndexesExist(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t, 2)
	var existing []string
	err := pool.QueryRow(context.Background(),
		`SELECT array_agg(indexname::text) FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'river_job'`).Scan(&existing)
	if err != nil {
		t.Fatal(err)
	}
	names := reindexerIndexNames()
	for _, name := range names {
		if !slices.Contains(existing, name) {
			t.Errorf("River's reindexer is given %s, which does not exist (indexes: %v)", name, existing)
		}
	}
	for _, name := range droppedRiverIndexes {
		if slices.Contains(existing, name) || slices.Contains(names, name) {
			t.Errorf("%s: still there (indexes: %v) or still reindexed (%v)", name, existing, names)
		}
	}
}
