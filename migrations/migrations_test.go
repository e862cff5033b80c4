package migrations_test

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/pressly/goose/v3"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/stretchr/testify/require"

	"github.com/taskd/taskd/internal/pgtest"
	"github.com/taskd/taskd/internal/rivergoose"
	"github.com/taskd/taskd/migrations"
)

// names returns the names of the migration files.
func names(t *testing.T) []string {
	t.Helper()
	names, err := fs.Glob(migrations.FS, "*.sql")
	require.NoError(t, err)
	require.NotEmpty(t, names)
	return names
}

func TestRiverFilesUpToDate(t *testing.T) {
	t.Parallel()

	const hint = "River's migrations are out of date; run `go run ./cmd/rivergoose` and commit the result"

	existing := names(t)
	files, err := rivergoose.Files(existing)
	require.NoError(t, err)

	generated := make(map[string]bool, len(files))
	for _, file := range files {
		generated[file.Name] = true
		content, err := fs.ReadFile(migrations.FS, file.Name)
		require.NoError(t, err, "%s is missing: %s", file.Name, hint)
		require.Equal(t, string(file.Content), string(content), "%s differs: %s", file.Name, hint)
	}
	for _, name := range existing {
		if rivergoose.IsRiverFile(name) {
			require.True(t, generated[name], "%s is not a migration of the River version in go.mod: %s", name, hint)
		}
	}
}

func TestEveryMigrationHasDown(t *testing.T) {
	t.Parallel()

	for _, name := range names(t) {
		content, err := fs.ReadFile(migrations.FS, name)
		require.NoError(t, err)

		var inDown, hasDown, hasSQL bool
		scanner := bufio.NewScanner(bytes.NewReader(content))
		for scanner.Scan() {
			line := strings.TrimSpace(scanner.Text())
			switch {
			case strings.EqualFold(line, "-- +goose Down"):
				inDown, hasDown = true, true
			case inDown && line != "" && !strings.HasPrefix(line, "--"):
				hasSQL = true
			}
		}
		require.NoError(t, scanner.Err())
		require.True(t, hasDown, "%s has no -- +goose Down section", name)
		require.True(t, hasSQL, "%s has an empty -- +goose Down section", name)
	}
}

func TestUpDownUp(t *testing.T) {
	t.Parallel()

	ctx := t.Context()
	url, db, provider := emptyDB(t)

	pool, err := pgxpool.New(ctx, url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	migrator, err := rivermigrate.New(riverpgxv5.New(pool), nil)
	require.NoError(t, err)

	riverVersions := func(t *testing.T) []int {
		t.Helper()
		existing, err := migrator.ExistingVersions(ctx)
		require.NoError(t, err)
		versions := make([]int, 0, len(existing))
		for _, migration := range existing {
			versions = append(versions, migration.Version)
		}
		return versions
	}
	allRiverVersions := make([]int, 0, len(migrator.AllVersions()))
	for _, migration := range migrator.AllVersions() {
		allRiverVersions = append(allRiverVersions, migration.Version)
	}

	pending, err := migrations.Pending(ctx, db)
	require.NoError(t, err)
	require.True(t, pending)

	// River's own bookkeeping must follow goose's, also before version 5
	// adds river_migration.line.
	_, err = provider.UpTo(ctx, 4)
	require.NoError(t, err)
	require.Equal(t, []int{1, 2, 3, 4}, riverVersions(t))

	up := func(t *testing.T) {
		t.Helper()
		_, err := provider.Up(ctx)
		require.NoError(t, err)

		pending, err := migrations.Pending(ctx, db)
		require.NoError(t, err)
		require.False(t, pending)

		res, err := migrator.Validate(ctx, nil)
		require.NoError(t, err)
		require.True(t, res.OK, "River reports: %v", res.Messages)
		require.Equal(t, allRiverVersions, riverVersions(t))
	}
	up(t)

	_, err = provider.DownTo(ctx, 0)
	require.NoError(t, err)
	version, err := provider.GetDBVersion(ctx)
	require.NoError(t, err)
	require.Zero(t, version)
	require.Equal(t, []string{"goose_db_version"}, schemaObjects(ctx, t, db))

	up(t)
}

// emptyDB returns a new empty database's URL, a connection to it and a
// goose provider of taskd's migrations on it, logging to t.
func emptyDB(t *testing.T) (string, *sql.DB, *goose.Provider) {
	t.Helper()
	url := pgtest.NewEmptyDB(t)
	db, err := sql.Open("pgx", url)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	provider, err := migrations.NewProvider(db, goose.WithSlog(slog.New(slog.NewTextHandler(t.Output(), nil))))
	require.NoError(t, err)
	return url, db, provider
}

// schemaObjects returns the names of the tables, sequences, views, enum types
// and functions in
// the current schema, leaving out those that belong to goose_db_version.
func schemaObjects(ctx context.Context, t *testing.T, db *sql.DB) []string {
	t.Helper()
	rows, err := db.QueryContext(ctx, `
		SELECT c.relname FROM pg_class c
		WHERE c.relnamespace = current_schema()::regnamespace
			AND c.relkind IN ('r', 'S', 'v', 'm', 'p', 'f')
			AND NOT (c.relkind = 'S' AND c.relname LIKE 'goose_db_version%')
		UNION ALL
		SELECT t.typname FROM pg_type t
		WHERE t.typnamespace = current_schema()::regnamespace
			AND t.typtype = 'e'
		UNION ALL
		SELECT p.proname FROM pg_proc p
		WHERE p.pronamespace = current_schema()::regnamespace`)
	names := collectStrings(t, rows, err)
	slices.Sort(names)
	return names
}

// collectStrings returns the one text column of rows, the result of a
// query that returned err.
func collectStrings(t *testing.T, rows *sql.Rows, err error) []string {
	t.Helper()
	require.NoError(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		out = append(out, s)
	}
	require.NoError(t, rows.Err())
	return out
}

// Migration 00017 with rows in task_attempts: Up keeps them under the new
// key; an attempt of a task that is gone (which only the new schema can
// hold) is deleted by the Down, whose foreign key then validates; Up again
// after the Down, and Up again after a repeat of its steps, are harmless.
func TestAttemptsByTaskWithRows(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	_, db, provider := emptyDB(t)

	_, err := provider.UpTo(ctx, 16)
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, `
		INSERT INTO river_job (args, kind, max_attempts, queue, state, finalized_at)
		SELECT '{}', 'double', 25, 'default', 'completed', now() FROM generate_series(1, 100);
		INSERT INTO task_attempts (task_id, attempt, worker, started_at, finished_at, outcome, duration_ms)
		SELECT id, n, 'w', now(), now(), 'completed', 1 FROM river_job, generate_series(1, 2) AS n`)
	require.NoError(t, err)

	count := func(query string) int {
		t.Helper()
		var n int
		require.NoError(t, db.QueryRowContext(ctx, query).Scan(&n))
		return n
	}
	constraints := func() []string {
		t.Helper()
		rows, err := db.QueryContext(ctx, `SELECT conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint
			WHERE conrelid = 'task_attempts'::regclass AND contype IN ('p', 'f') ORDER BY conname`)
		return collectStrings(t, rows, err)
	}

	_, err = provider.UpTo(ctx, 17)
	require.NoError(t, err)
	require.Equal(t, 200, count(`SELECT count(*) FROM task_attempts`))
	require.Equal(t, []string{"task_attempts_pkey PRIMARY KEY (task_id, id)"}, constraints())
	// The steps again, as after a failure at the last one: harmless.
	up, err := fs.ReadFile(migrations.FS, "00017_attempts_by_task.sql")
	require.NoError(t, err)
	upSQL, _, _ := strings.Cut(string(up), "-- +goose Down")
	for stmt := range strings.SplitSeq(upSQL, "\n\n") {
		sqlText := stripComments(stmt)
		if strings.TrimSpace(sqlText) == "" {
			continue
		}
		_, err := db.ExecContext(ctx, sqlText)
		require.NoError(t, err, "repeating %s", stmt)
	}
	require.Equal(t, []string{"task_attempts_pkey PRIMARY KEY (task_id, id)"}, constraints())
	require.Equal(t, 1, count(`SELECT count(*) FROM pg_indexes WHERE tablename = 'task_attempts'`))

	// An attempt of a task that no longer exists, then the Down.
	_, err = db.ExecContext(ctx, `INSERT INTO task_attempts (task_id, attempt, worker, started_at, finished_at, outcome, duration_ms)
		VALUES (1 << 40, 1, 'w', now(), now(), 'completed', 1)`)
	require.NoError(t, err)
	_, err = provider.DownTo(ctx, 16)
	require.NoError(t, err)
	require.Equal(t, 200, count(`SELECT count(*) FROM task_attempts`))
	require.Equal(t, []string{
		"task_attempts_pkey PRIMARY KEY (id)",
		"task_attempts_task_id_fkey FOREIGN KEY (task_id) REFERENCES river_job(id) ON DELETE CASCADE",
	}, constraints())
	require.Equal(t, 0, count(`SELECT count(*) FROM pg_constraint WHERE conname = 'task_attempts_task_id_fkey' AND NOT convalidated`))

	_, err = provider.UpTo(ctx, 17)
	require.NoError(t, err)
	require.Equal(t, 200, count(`SELECT count(*) FROM task_attempts`))
}

// stripComments drops the SQL line comments of a migration's statement
// (goose's annotations among them).
func stripComments(stmt string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(stmt, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "--") {
			continue
		}
		b.WriteString(line)
		b.WriteString("\n")
	}
	return b.String()
}
