// Command taskd-bench measures taskd beside bare River in one run.
//
// It reads DATABASE_URL as an admin connection to a local PostgreSQL
// server, creates (and drops) its own databases there, builds and starts
// `taskd serve` as a subprocess on a loopback port, and runs the scenarios
// of docs/PERFORMANCE.md. Where taskd has a bare-River counterpart, the two
// run alternately (A B A B …) and each is reported as median [min–max],
// with the ratio of the medians; a final table sums everything up.
//
//	go run ./cmd/taskd-bench                 # the full default run (make bench)
//	go run ./cmd/taskd-bench -smoke          # tiny everything, seconds
//	go run ./cmd/taskd-bench -scenarios 1,7 -n 50000 -pairs 2
//
// Run "taskd-bench -help" for every flag.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) > 1 && baselineRoles[os.Args[1]] != nil {
		if err := baselineRoles[os.Args[1]](ctx, os.Getenv); err != nil {
			fmt.Fprintln(os.Stderr, "taskd-bench", os.Args[1]+":", err)
			os.Exit(1)
		}
		return
	}
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "taskd-bench:", err)
		os.Exit(1)
	}
}
