// Package pgtest gives each test its own PostgreSQL database.
//
// [NewDB] clones a template database that has been migrated once with every
// migration in migrations.FS, which takes milliseconds; [NewEmptyDB] creates
// an unmigrated one. Either database is dropped when the test ends.
//
// The template's name, taskd_tpl_<hash>_<unix time>, is derived from a hash
// of the migration files, so editing or adding a migration makes a new
// template. Templates are created under a PostgreSQL advisory lock, because
// `go test ./...` runs packages as parallel processes. Once migrated, a
// template is marked as a template and closed to connections, so it can
// always be cloned. When a new template is made, templates over an hour old
// are dropped. Test databases are named taskd_test_<random hex>.
//
// The server is given by [AdminURL]; its role must be allowed to create
// databases.
package pgtest

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx", for goose
	"github.com/pressly/goose/v3"

	"github.com/taskd/taskd/migrations"
)

// DefaultAdminURL is the server used when neither TASKD_TEST_DATABASE_URL nor
// DATABASE_URL is set.
const DefaultAdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

const (
	// testPrefix starts the name of every database made for a test.
	testPrefix = "taskd_test_"

	// templatePrefix starts the name of every template database.
	templatePrefix = "taskd_tpl_"

	// templateLockID is the advisory lock key held while a template is
	// created; an arbitrary constant, unlike goose's migration lock key.
	templateLockID int64 = 0x2f3b9a4c61d8e057

	// timeout bounds each database operation, migrating a template included.
	timeout = 2 * time.Minute

	// staleAfter is the age after which templates of other migrations are
	// dropped. It is long enough that tests of other migrations running at
	// the same time on the same server rarely lose theirs, and they make it
	// again if they do.
	staleAfter = time.Hour
)

// AdminURL returns the URL of the database pgtest connects to in order to
// create and drop databases: TASKD_TEST_DATABASE_URL if set, else
// DATABASE_URL, else [DefaultAdminURL]. Only its database name is replaced
// in the URLs of new databases. Test processes running at the same time
// should use the same admin database: the advisory lock that serializes
// template creation is taken there.
func AdminURL() string {
	for _, key := range []string{"TASKD_TEST_DATABASE_URL", "DATABASE_URL"} {
		if v := os.Getenv(key); v != "" {
			return v
		}
	}
	return DefaultAdminURL
}

// NewDB creates a database with every migration in migrations.FS applied and
// returns its URL. The database is dropped when the test and its subtests
// have finished.
func NewDB(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	hash, err := migrationsHash()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	name, err := newDatabase(ctx, t, hash)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return databaseURL(name)
}

// PoolMaxConnsDefault is the size of NewPool's pools: small, because many
// tests run at once against one server whose max_connections is 100.
const PoolMaxConnsDefault = 5

// NewPool creates a migrated database (NewDB) and returns a pool of at
// most maxConns connections to it (PoolMaxConnsDefault when 0), closed when
// the test ends, before the database is dropped.
func NewPool(t testing.TB, maxConns int32) *pgxpool.Pool {
	t.Helper()
	return Pool(t, NewDB(t), maxConns)
}

// Pool returns a pool of at most maxConns connections (PoolMaxConnsDefault
// when 0) to the database at dbURL, closed when the test ends: a second pool
// to a NewDB database, or one through a proxy in front of the server.
func Pool(t testing.TB, dbURL string, maxConns int32) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatalf("pgtest: parsing database URL: %v", err)
	}
	cfg.MaxConns = cmp.Or(maxConns, PoolMaxConnsDefault)
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("pgtest: opening pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// NewEmptyDB creates a database without any migration applied and returns
// its URL. The database is dropped when the test and its subtests have
// finished.
func NewEmptyDB(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	name, err := newDatabase(ctx, t, "")
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return databaseURL(name)
}

// newDatabase creates a uniquely named database, cloned from the template
// for hash unless hash is empty, and registers its removal with t.
func newDatabase(ctx context.Context, t testing.TB, hash string) (string, error) {
	name, err := uniqueName()
	if err != nil {
		return "", err
	}

	conn, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		return "", fmt.Errorf("error connecting to %s (set TASKD_TEST_DATABASE_URL): %w", redact(AdminURL()), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	if hash == "" {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+quote(name)); err != nil {
			return "", fmt.Errorf("error creating database: %w", err)
		}
	} else if err := cloneTemplate(ctx, conn, hash, name); err != nil {
		return "", err
	}

	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if err := dropDatabase(ctx, name); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return name, nil
}

// cloneTemplate creates database name from the template for hash, making the
// template first if needed.
func cloneTemplate(ctx context.Context, conn *pgx.Conn, hash, name string) error {
	// A process testing other migrations may drop the template as stale
	// between our finding and cloning it; then it is made again.
	for attempt := 0; ; attempt++ {
		template, err := ensureTemplate(ctx, conn, hash)
		if err != nil {
			return err
		}
		_, err = conn.Exec(ctx, "CREATE DATABASE "+quote(name)+" TEMPLATE "+quote(template))
		if isUndefinedDatabase(err) && attempt < 2 {
			continue
		}
		if err != nil {
			return fmt.Errorf("error cloning template %s: %w", template, err)
		}
		return nil
	}
}

// ensureTemplate returns the name of a migrated template database for hash,
// making one if there is none.
func ensureTemplate(ctx context.Context, conn *pgx.Conn, hash string) (_ string, err error) {
	if template, err := readyTemplate(ctx, conn, hash); err != nil || template != "" {
		return template, err
	}

	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", templateLockID); err != nil {
		return "", fmt.Errorf("error locking template creation: %w", err)
	}
	defer func() {
		if _, unlockErr := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", templateLockID); unlockErr != nil {
			err = errors.Join(err, fmt.Errorf("error unlocking template creation: %w", unlockErr))
		}
	}()

	// Another process may have made it while we waited for the lock.
	if template, err := readyTemplate(ctx, conn, hash); err != nil || template != "" {
		return template, err
	}
	if err := dropStaleTemplates(ctx, conn); err != nil {
		return "", err
	}

	template := fmt.Sprintf("%s%s_%d", templatePrefix, hash, time.Now().Unix())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+quote(template)); err != nil {
		return "", fmt.Errorf("error creating template: %w", err)
	}
	if err := migrate(ctx, databaseURL(template)); err != nil {
		return "", fmt.Errorf("error migrating template %s: %w", template, err)
	}
	// No connection may be open to a database being cloned: closing the
	// template to connections for good guarantees it. Being a template also
	// marks it as completely migrated.
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+quote(template)+" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"); err != nil {
		return "", fmt.Errorf("error marking template: %w", err)
	}
	return template, nil
}

// readyTemplate returns the name of the migrated template for hash, or "" if
// there is none.
func readyTemplate(ctx context.Context, conn *pgx.Conn, hash string) (string, error) {
	var template string
	err := conn.QueryRow(ctx, `
		SELECT datname FROM pg_database
		WHERE starts_with(datname, $1) AND datistemplate
		ORDER BY datname DESC
		LIMIT 1`,
		templatePrefix+hash+"_",
	).Scan(&template)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("error looking up template: %w", err)
	}
	return template, nil
}

// dropStaleTemplates drops the templates made more than staleAfter ago and
// those left unfinished by a failed migration. It must be called with the
// template lock held.
func dropStaleTemplates(ctx context.Context, conn *pgx.Conn) error {
	rows, err := conn.Query(ctx, `
		SELECT datname, datistemplate FROM pg_database
		WHERE starts_with(datname, $1)`,
		templatePrefix,
	)
	if err != nil {
		return fmt.Errorf("error listing templates: %w", err)
	}
	type database struct {
		Name     string
		Template bool
	}
	databases, err := pgx.CollectRows(rows, pgx.RowToStructByPos[database])
	if err != nil {
		return fmt.Errorf("error listing templates: %w", err)
	}

	for _, db := range databases {
		if db.Template && time.Since(templateCreated(db.Name)) < staleAfter {
			continue
		}
		if _, err := conn.Exec(ctx, "ALTER DATABASE "+quote(db.Name)+" IS_TEMPLATE false"); err != nil {
			return fmt.Errorf("error unmarking template %s: %w", db.Name, err)
		}
		if _, err := conn.Exec(ctx, "DROP DATABASE "+quote(db.Name)+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("error dropping template %s: %w", db.Name, err)
		}
	}
	return nil
}

// templateCreated returns the creation time recorded in a template's name,
// or the zero time if there is none.
func templateCreated(name string) time.Time {
	i := strings.LastIndexByte(name, '_')
	seconds, err := strconv.ParseInt(name[i+1:], 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.Unix(seconds, 0)
}

// migrate applies every migration to the database at databaseURL and closes
// all its connections.
func migrate(ctx context.Context, databaseURL string) (err error) {
	db, err := sql.Open("pgx", databaseURL)
	if err != nil {
		return fmt.Errorf("error opening database: %w", err)
	}
	defer func() {
		if closeErr := db.Close(); closeErr != nil {
			err = errors.Join(err, fmt.Errorf("error closing database: %w", closeErr))
		}
	}()

	provider, err := migrations.NewProvider(db, goose.WithSlog(slog.New(slog.DiscardHandler)))
	if err != nil {
		return err
	}
	if _, err := provider.Up(ctx); err != nil {
		return fmt.Errorf("error applying migrations: %w", err)
	}
	return nil
}

// dropDatabase drops a test database, closing any connection left open.
func dropDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		return fmt.Errorf("error connecting to drop database %s: %w", name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+quote(name)+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("error dropping database %s: %w", name, err)
	}
	return nil
}

// migrationsHash returns a short hash of the migration files' names and
// contents, which names their template.
func migrationsHash() (string, error) {
	hash := sha256.New()
	err := fs.WalkDir(migrations.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		content, err := fs.ReadFile(migrations.FS, path)
		if err != nil {
			return err
		}
		// Length-prefix both parts so that names and contents can't run
		// into each other.
		fmt.Fprintf(hash, "%d:%s%d:", len(path), path, len(content))
		hash.Write(content)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("error hashing migrations: %w", err)
	}
	return hex.EncodeToString(hash.Sum(nil))[:16], nil
}

// uniqueName returns a new test database name.
func uniqueName() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("error generating database name: %w", err)
	}
	return testPrefix + hex.EncodeToString(b), nil
}

// databaseURL returns AdminURL with its database replaced by name. AdminURL
// may be a URL or a keyword/value connection string.
func databaseURL(name string) string {
	admin := AdminURL()
	if u, err := url.Parse(admin); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + name
		u.RawPath = ""
		return u.String()
	}
	// In a keyword/value string the last setting of a keyword wins.
	return admin + " dbname=" + name
}

// quote quotes an identifier.
func quote(name string) string {
	return pgx.Identifier{name}.Sanitize()
}

// isUndefinedDatabase reports whether err says a database does not exist.
func isUndefinedDatabase(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "3D000"
}

// redact returns a connection string without its password.
func redact(connString string) string {
	if u, err := url.Parse(connString); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		return u.String()
	}
	if strings.Contains(connString, "password") {
		return "(connection string)"
	}
	return connString
}
