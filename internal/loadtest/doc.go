// Package loadtest holds taskd's soak test, TestChaosLoad: one real
// `taskd serve` under a steady submit rate of steady work for a while
// (TASKD_LOAD_DURATION, 45 s by default, 10 minutes in `make chaos`),
// sampled throughout, so that what grows without bound (memory,
// goroutines, connections, table bloat) shows, on a plot
// (docs/reliability-load.png) and in the test's verdict.
//
// The package has no code outside its tests: what it provides is the
// test, its samples (CSV) and its plot, written to TASKD_LOAD_OUT.
package loadtest
