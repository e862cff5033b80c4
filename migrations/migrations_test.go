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
	url := pgtest.NewEmptyDB(t)

	db, err := sql.Open("pgx", url)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })

	provider, err := migrations.NewProvider(db, goose.WithSlog(slog.New(slog.NewTextHandler(t.Output(), nil))))
	require.NoError(t, err)

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
	require.NoError(t, err)
	var names []string
	for rows.Next() {
		var name string
		require.NoError(t, rows.Scan(&name))
		names = append(names, name)
	}
	require.NoError(t, rows.Err())
	slices.Sort(names)
	return names
}
