package main

import (
	"bytes"
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/taskd/taskd/internal/jobs"
	"github.com/taskd/taskd/internal/pgtest"
)

// TestMain lets the test binary be a baseline's own process, as the
// harness's binary is (startBaselineProcess runs os.Executable).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && baselineRoles[os.Args[1]] != nil {
		main()
		return
	}
	os.Exit(m.Run())
}

// TestSmoke runs the whole harness in-process with tiny sizes against the
// test server. It proves that every scenario runs and reaches the final
// table; it never looks at the numbers.
func TestSmoke(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	env := map[string]string{"DATABASE_URL": pgtest.AdminURL()}
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"-smoke"}, func(k string) string { return env[k] }, &out, &errOut); err != nil {
		t.Fatalf("run: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errOut.String())
	}
	_, table, ok := strings.Cut(out.String(), "FINAL TABLE")
	if !ok {
		t.Fatalf("no final table in:\n%s", out.String())
	}
	for _, scenario := range []string{"1 e2e batched", "1b defaults", "1i GIN indexes", "2 submit C=4", "3 pickup", "4 waiters", "5 reads", "6 memory", "7 record attempts",
		"8 push http", "9 pull C=4 max=1", "9 pull C=4 max=100", "9 pull C=16 max=1", "9 pull C=16 max=100", "9 claim release",
		"10 limit cost", "11 limit wait P=1", "11 limit wait P=3", "12 cpu W=" + strconv.Itoa(jobs.CPUWorkersDefault()) + " (default)",
		"13 scale idle W=0", "13 scale W=1", "13 scale W=2"} {
		if !strings.Contains(table, "\n"+scenario) {
			t.Errorf("final table has no row for %q:\n%s", scenario, table)
		}
	}
	var waiterRows []string
	for line := range strings.SplitSeq(table, "\n") {
		if strings.HasPrefix(line, "4 waiters ") {
			waiterRows = append(waiterRows, line)
		}
	}
	for _, metric := range []string{"release p50 ms", "release p95 ms", "release p99 ms", "other process release p95 ms",
		"announced→answer p95 ms", "xact/s 50 waiters", "xact per started wait"} {
		if !slices.ContainsFunc(waiterRows, func(line string) bool { return strings.Contains(line, "  "+metric+"  ") }) {
			t.Errorf("final table has no scenario 4 row %q:\n%s", metric, table)
		}
	}
	for _, want := range [][2]string{{"1 e2e batched", "tasks/s"}, {"1 e2e batched", "WAL bytes/task"},
		{"1b defaults", "tasks/s untuned"}, {"1b defaults", "tasks/s tuned"},
		{"1i GIN indexes", "tasks/s taskd"}, {"1i GIN indexes", "tasks/s River w/o GIN"}, {"1i GIN indexes", "WAL bytes/task taskd"},
		{"5 reads 5k", "GET /v1/tasks/{id} rps"}, {"5 reads 5k", "GET /v1/tasks/{id} p99 ms"},
		{"5 reads 5k", "GET server CPU µs/request"}, {"2 submit C=4", "tasks/s, own-process handler"},
		{"10 limit cost", "tasks/s"}, {"11 limit wait P=1", "slot→start p95 ms"}, {"11 limit wait P=3", "to other process p95 ms"},
		{"12 cpu W=" + strconv.Itoa(jobs.CPUWorkersDefault()) + " (default)", "GET p99 ms"},
		{"13 scale W=2", "tasks/s"}, {"13 scale W=2", "CPU % postgres"}, {"13 scale W=2", "idle xact/s per worker"}, {"13 scale W=2", "LISTEN backends per worker"}} {
		if !slices.ContainsFunc(strings.Split(table, "\n"), func(line string) bool {
			return strings.HasPrefix(line, want[0]+" ") && strings.Contains(line, "  "+want[1]+"  ")
		}) {
			t.Errorf("final table has no %s row %q:\n%s", want[0], want[1], table)
		}
	}
	t.Logf("output:\n%s", out.String())
}

func TestParseConfig(t *testing.T) {
	t.Parallel()
	env := func(k string) string {
		if k == "DATABASE_URL" {
			return "postgres://127.0.0.1/x"
		}
		return ""
	}
	var stderr bytes.Buffer
	cfg, err := parseConfig([]string{"-smoke", "-n", "500", "-scenarios", "1,1b,1"}, env, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.N != 500 || cfg.Pairs != 1 || len(cfg.Scenarios) != 2 {
		t.Errorf("cfg = %+v: want -n to win over -smoke and 2 scenarios", cfg)
	}
	for _, args := range [][]string{{"-scenarios", "14"}, {"-scenarios", "1c"}, {"-scenarios", ","}, {"-tuned-conns", "0"}, {"-tuned-poll", "0s"}, {"-scale-workers", "0"}, {"-scale-conns", "0"}, {"-scale-workers", "6"}, {"-batch", "0"}, {"-concurrency", "x"}, {"-pull-max", "1,101"}, {"-pull-inflight", "0"}, {"-release-n", "0"}, {"-waiters", "0"}, {"-xact-window", "50s"},
		{"-limit-wait-n", "1"}, {"-limit-sleep", "1500us"}, {"-limit-processes", "9"}, {"-cpu-n", "0"}, {"-cpu-workers", "0"}, {"-cpu-read-rate", "0"}, {"stray"}} {
		if _, err := parseConfig(args, env, &stderr); err == nil {
			t.Errorf("parseConfig(%q): no error", args)
		}
	}
	if _, err := parseConfig(nil, func(string) string { return "" }, &stderr); err == nil {
		t.Error("no error without DATABASE_URL")
	}
}
