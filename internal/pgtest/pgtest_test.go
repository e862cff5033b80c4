package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

func TestNewDB(t *testing.T) {
	t.Parallel()

	ctx := t.Context()

	connect := func(t *testing.T, url string) *pgx.Conn {
		t.Helper()
		conn, err := pgx.Connect(ctx, url)
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close(context.Background()) })
		return conn
	}
	tableExists := func(t *testing.T, conn *pgx.Conn, table string) bool {
		t.Helper()
		var exists bool
		require.NoError(t, conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", table).Scan(&exists))
		return exists
	}

	t.Run("MigratedAndIsolated", func(t *testing.T) {
		t.Parallel()

		url1, url2 := NewDB(t), NewDB(t)
		require.NotEqual(t, url1, url2)

		conn1, conn2 := connect(t, url1), connect(t, url2)
		require.True(t, tableExists(t, conn1, "river_job"))
		require.True(t, tableExists(t, conn2, "river_job"))

		_, err := conn1.Exec(ctx, "CREATE TABLE only_in_first (id int)")
		require.NoError(t, err)
		_, err = conn1.Exec(ctx, "INSERT INTO river_job (kind, args) VALUES ('test', '{}')")
		require.NoError(t, err)

		require.False(t, tableExists(t, conn2, "only_in_first"))
		var jobs int
		require.NoError(t, conn2.QueryRow(ctx, "SELECT count(*) FROM river_job").Scan(&jobs))
		require.Zero(t, jobs)
	})

	t.Run("Empty", func(t *testing.T) {
		t.Parallel()

		conn := connect(t, NewEmptyDB(t))
		require.False(t, tableExists(t, conn, "river_job"))
		require.False(t, tableExists(t, conn, "goose_db_version"))
	})

	t.Run("DroppedAfterTest", func(t *testing.T) {
		t.Parallel()

		var name string
		t.Run("Inner", func(t *testing.T) {
			conn := connect(t, NewDB(t))
			require.NoError(t, conn.QueryRow(ctx, "SELECT current_database()").Scan(&name))
		})

		admin := connect(t, AdminURL())
		var exists bool
		require.NoError(t, admin.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", name).Scan(&exists))
		require.False(t, exists, "database %s still exists", name)
	})
}

func TestDatabaseURL(t *testing.T) {
	t.Setenv("TASKD_TEST_DATABASE_URL", "postgres://u:p@db:5433/admin?sslmode=disable")
	require.Equal(t, "postgres://u:p@db:5433/taskd_test_x?sslmode=disable", databaseURL("taskd_test_x"))

	t.Setenv("TASKD_TEST_DATABASE_URL", "host=db dbname=admin")
	require.Equal(t, "host=db dbname=admin dbname=taskd_test_x", databaseURL("taskd_test_x"))
}

func TestTemplateCreated(t *testing.T) {
	t.Parallel()

	require.Equal(t, time.Unix(1700000000, 0), templateCreated("taskd_tpl_0123456789abcdef_1700000000"))
	require.True(t, templateCreated("taskd_tpl_0123456789abcdef").IsZero())
}
