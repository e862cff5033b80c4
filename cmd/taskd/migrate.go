package main

import (
	"context"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5/stdlib"

	"github.com/taskd/taskd/migrations"
)

const migrateUsage = `Usage: taskd migrate <up|down|status|version> [flags]

  up       apply all pending migrations
  down     revert the latest migration
  status   list every migration and whether it is applied
  version  print the current schema version

Flags:
`

func runMigrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f := newFlagSet("taskd migrate", getenv, stderr)
	f.fs.Usage = func() {
		fmt.Fprint(stderr, migrateUsage)
		f.fs.PrintDefaults()
	}
	dbURL := f.string("database-url", "DATABASE_URL", "", "PostgreSQL connection string (required)")
	// Accept flags on either side of the action: "migrate up --database-url=…".
	var action string
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		action, args = args[0], args[1:]
	}
	if err := f.parse(args); err != nil {
		return err
	}
	if action == "" && f.fs.NArg() > 0 {
		action = f.fs.Arg(0)
	}
	if action == "" {
		f.fs.Usage()
		return usagef("migrate: no action given")
	}
	if *dbURL == "" {
		return usagef("%s is required", f.setting("database-url"))
	}
	pool, err := openPool(ctx, *dbURL, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	provider, err := migrations.NewProvider(db)
	if err != nil {
		return err
	}

	switch action {
	case "up":
		results, err := provider.Up(ctx)
		for _, r := range results {
			fmt.Fprintf(stdout, "applied %s (%s)\n", r.Source.Path, r.Duration.Round(1e6))
		}
		if err != nil {
			return fmt.Errorf("migrate up: %w", err)
		}
		if len(results) == 0 {
			fmt.Fprintln(stdout, "no pending migrations")
		}
	case "down":
		r, err := provider.Down(ctx)
		if r != nil && r.Source != nil {
			fmt.Fprintf(stdout, "reverted %s (%s)\n", r.Source.Path, r.Duration.Round(1e6))
		}
		if err != nil {
			return fmt.Errorf("migrate down: %w", err)
		}
	case "status":
		statuses, err := provider.Status(ctx)
		if err != nil {
			return fmt.Errorf("migrate status: %w", err)
		}
		for _, s := range statuses {
			applied := "pending"
			if !s.AppliedAt.IsZero() {
				applied = "applied " + s.AppliedAt.UTC().Format("2006-01-02 15:04:05Z")
			}
			fmt.Fprintf(stdout, "%-8d %-32s %s\n", s.Source.Version, s.Source.Path, applied)
		}
	case "version":
		v, err := provider.GetDBVersion(ctx)
		if err != nil {
			return fmt.Errorf("migrate version: %w", err)
		}
		fmt.Fprintln(stdout, v)
	default:
		f.fs.Usage()
		return usagef("migrate: unknown action %q", action)
	}
	return nil
}
