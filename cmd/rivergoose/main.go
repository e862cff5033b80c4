// Command rivergoose writes River's migrations, from the River version pinned
// in go.mod, as goose migration files into taskd's migrations directory.
//
// Run it from the repository root after upgrading River:
//
//	go run ./cmd/rivergoose
//
// Existing River files keep their names; River versions new to the directory
// are appended after the highest goose version present (see package
// internal/rivergoose).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"

	"github.com/taskd/taskd/internal/rivergoose"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	if err := run(ctx, os.Args, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "rivergoose:", err)
		stop()
		os.Exit(1)
	}
}

// run parses args (args[0] is the program name) and writes the migration
// files, reporting each file on stdout.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet(args[0], flag.ContinueOnError)
	flags.SetOutput(stderr)
	dir := flags.String("dir", "migrations", "migrations `directory` to write into")
	if err := flags.Parse(args[1:]); err != nil {
		return err
	}
	if flags.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", flags.Args())
	}

	existing, err := existingNames(*dir)
	if err != nil {
		return err
	}
	files, err := rivergoose.Files(existing)
	if err != nil {
		return fmt.Errorf("error generating migrations: %w", err)
	}

	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return fmt.Errorf("error creating directory: %w", err)
	}
	generated := make(map[string]bool, len(files))
	for _, file := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		generated[file.Name] = true
		path := filepath.Join(*dir, file.Name)
		old, err := os.ReadFile(path)
		switch {
		case err == nil && bytes.Equal(old, file.Content):
			fmt.Fprintf(stdout, "unchanged %s\n", path)
			continue
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("error reading %s: %w", path, err)
		}
		if err := os.WriteFile(path, file.Content, 0o644); err != nil {
			return fmt.Errorf("error writing migration: %w", err)
		}
		fmt.Fprintf(stdout, "wrote %s\n", path)
	}

	// A River file that River no longer has (after a downgrade) may already
	// be applied somewhere, so it is reported rather than deleted.
	for _, name := range existing {
		if rivergoose.IsRiverFile(name) && !generated[name] {
			fmt.Fprintf(stderr, "warning: %s is not a River migration of this River version; remove it by hand if it was never applied\n", filepath.Join(*dir, name))
		}
	}
	return nil
}

// existingNames returns the names of the SQL files in dir, or none if dir
// does not exist.
func existingNames(dir string) ([]string, error) {
	names, err := fs.Glob(os.DirFS(dir), "*.sql")
	if err != nil {
		return nil, fmt.Errorf("error listing %s: %w", dir, err)
	}
	return names, nil
}
