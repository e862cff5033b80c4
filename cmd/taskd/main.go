// Command taskd is a PostgreSQL-backed, persistent task service: an HTTP API
// in front of River workers.
//
//	taskd serve     HTTP API and workers in one process
//	taskd api       HTTP API only: inserts, reads, claims; works no queue
//	taskd worker    workers only (scale out on more machines)
//	taskd migrate   apply or inspect database migrations
//	taskd token     create, list or revoke API tokens (on the database)
//
// and a client of a running taskd's HTTP API (docs/CLI.md):
//
//	taskd submit    submit a task, optionally waiting for it
//	taskd tasks     get, list, cancel or retry tasks
//	taskd batch     submit a batch from a JSON Lines file, with progress
//	taskd queues    list, pause or resume queues
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		var uerr *usageError
		if errors.As(err, &uerr) {
			if !errors.Is(err, errHelp) {
				fmt.Fprintln(os.Stderr, "taskd:", err)
			}
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "taskd:", err)
		os.Exit(1)
	}
}
