package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx", for goose
	"github.com/pressly/goose/v3"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/taskd/taskd/migrations"
)

// databases makes the benchmark's databases on the admin URL's server: two
// templates migrated once (taskd's full schema, and River's own schema
// alone for bare River, so that taskd's tables and indexes count against
// taskd), and a fresh clone of one of them for every run. All of them are
// dropped by close.
type databases struct {
	admin         string
	conn          *pgx.Conn
	template      string
	riverTemplate string

	mu      sync.Mutex
	created []string
}

func openDatabases(ctx context.Context, admin string) (*databases, error) {
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return nil, fmt.Errorf("connecting to DATABASE_URL: %w", err)
	}
	d := &databases{admin: admin, conn: conn}
	d.template = "taskd_bench_tpl_" + randomHex()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+quote(d.template)); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("creating template database: %w", err)
	}
	d.created = append(d.created, d.template)
	if err := migrate(ctx, d.url(d.template)); err != nil {
		return nil, errors.Join(fmt.Errorf("migrating template database: %w", err), d.close(ctx))
	}
	d.riverTemplate = "taskd_bench_rtpl_" + randomHex()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+quote(d.riverTemplate)); err != nil {
		return nil, errors.Join(fmt.Errorf("creating River template database: %w", err), d.close(ctx))
	}
	d.created = append(d.created, d.riverTemplate)
	if err := migrateRiver(ctx, d.url(d.riverTemplate)); err != nil {
		return nil, errors.Join(fmt.Errorf("migrating River template database: %w", err), d.close(ctx))
	}
	return d, nil
}

// clone creates a database from template and returns its name and URL.
func (d *databases) clone(ctx context.Context, template string) (name, dbURL string, err error) {
	name = "taskd_bench_" + randomHex()
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.conn.Exec(ctx, "CREATE DATABASE "+quote(name)+" TEMPLATE "+quote(template)); err != nil {
		return "", "", fmt.Errorf("cloning template database: %w", err)
	}
	d.created = append(d.created, name)
	return name, d.url(name), nil
}

// drop drops a database made by clone, closing connections left open.
func (d *databases) drop(ctx context.Context, name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.conn.Exec(ctx, "DROP DATABASE IF EXISTS "+quote(name)+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("dropping database %s: %w", name, err)
	}
	for i, n := range d.created {
		if n == name {
			d.created = append(d.created[:i], d.created[i+1:]...)
			break
		}
	}
	return nil
}

// close drops every database left and closes the admin connection.
func (d *databases) close(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var errs []error
	for _, name := range append([]string(nil), d.created...) {
		errs = append(errs, d.drop(ctx, name))
	}
	errs = append(errs, d.conn.Close(ctx))
	return errors.Join(errs...)
}

// xacts returns the transactions committed and rolled back so far in the
// database at dbURL by all its backends (pg_stat_database), read on the
// admin connection so that reading does not count. PostgreSQL reports a
// backend's counts when it goes idle, but at most once a second, and an
// idle backend's last ones up to 10 s late (PGSTAT_IDLE_INTERVAL).
func (d *databases) xacts(ctx context.Context, dbURL string) (int64, error) {
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		return 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var n int64
	err = d.conn.QueryRow(ctx, "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1", cfg.Database).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("counting transactions of %s: %w", cfg.Database, err)
	}
	return n, nil
}

// walLSN returns the server's current WAL insert position in bytes. The
// WAL is the whole server's: a difference of two positions counts every
// database's writes, the benchmark's alone only on a server nothing else
// uses.
func (d *databases) walLSN(ctx context.Context) (int64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var lsn int64
	if err := d.conn.QueryRow(ctx, "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint").Scan(&lsn); err != nil {
		return 0, fmt.Errorf("reading the WAL position: %w", err)
	}
	return lsn, nil
}

func (d *databases) serverVersion(ctx context.Context) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var v string
	if err := d.conn.QueryRow(ctx, "SELECT version()").Scan(&v); err != nil {
		return "unknown (" + err.Error() + ")"
	}
	var settings string
	_ = d.conn.QueryRow(ctx, `SELECT string_agg(name || '=' || current_setting(name), ' ' ORDER BY name)
		FROM pg_settings WHERE name IN ('shared_buffers', 'max_connections', 'synchronous_commit', 'fsync', 'work_mem')`).Scan(&settings)
	return v + "; " + settings
}

// url returns the admin URL with its database replaced by name. The admin
// URL may be a URL or a keyword/value connection string.
func (d *databases) url(name string) string {
	if u, err := url.Parse(d.admin); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + name
		u.RawPath = ""
		return u.String()
	}
	// In a keyword/value string the last setting of a keyword wins.
	return d.admin + " dbname=" + name
}

// migrate applies every migration to the database at dbURL.
func migrate(ctx context.Context, dbURL string) (err error) {
	db, err := sql.Open("pgx", dbURL)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, db.Close()) }()
	provider, err := migrations.NewProvider(db, goose.WithSlog(slog.New(slog.DiscardHandler)))
	if err != nil {
		return err
	}
	_, err = provider.Up(ctx)
	return err
}

// migrateRiver applies River's own migrations, as River's migrator does
// them, to the database at dbURL.
func migrateRiver(ctx context.Context, dbURL string) error {
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	migrator, err := rivermigrate.New(riverpgxv5.New(pool), nil)
	if err != nil {
		return err
	}
	_, err = migrator.Migrate(ctx, rivermigrate.DirectionUp, nil)
	return err
}

// walByRelation returns the WAL written between the positions from and to
// (walLSN) for each relation of conn's database, by name, read with
// pg_walinspect: unlike the difference of two positions, it counts that
// database's records alone, so it means something on a server others
// write to as well. A record counts for the first relation it names
// (records that name none, such as commits, are not counted). The WAL must
// still be there: after a checkpoint has recycled it, this fails.
func walByRelation(ctx context.Context, conn *pgx.Conn, from, to int64) (map[string]int64, error) {
	if _, err := conn.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS pg_walinspect"); err != nil {
		return nil, fmt.Errorf("pg_walinspect: %w", err)
	}
	rows, err := conn.Query(ctx, `
		WITH r AS (
			SELECT record_length, regexp_match(block_ref, 'rel \d+/(\d+)/(\d+)') AS rel
			FROM pg_get_wal_records_info('0/0'::pg_lsn + $1::numeric, '0/0'::pg_lsn + $2::numeric)
			WHERE block_ref IS NOT NULL
		)
		SELECT coalesce(c.relname::text, 'relfilenode ' || r.rel[2]), sum(r.record_length)::bigint
		FROM r
		LEFT JOIN pg_class c ON pg_relation_filenode(c.oid) = r.rel[2]::oid
		WHERE r.rel[1]::oid = (SELECT oid FROM pg_database WHERE datname = current_database())
		GROUP BY 1`, from, to)
	if err != nil {
		return nil, fmt.Errorf("reading the WAL by relation: %w", err)
	}
	out := map[string]int64{}
	for rows.Next() {
		var name string
		var n int64
		if err := rows.Scan(&name, &n); err != nil {
			return nil, err
		}
		out[name] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the WAL by relation: %w", err)
	}
	return out, nil
}

// execAll runs stmts, one by one, on the database at dbURL.
func execAll(ctx context.Context, dbURL string, stmts []string) error {
	if len(stmts) == 0 {
		return nil
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

// newPool opens a pool of maxConns connections to dbURL.
func newPool(ctx context.Context, dbURL string, maxConns int32) (*pgxpool.Pool, error) {
	pcfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, err
	}
	pcfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", dbURL, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connecting to %s: %w", dbURL, err)
	}
	return pool, nil
}

func randomHex() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func quote(name string) string { return pgx.Identifier{name}.Sanitize() }
