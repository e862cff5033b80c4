package main

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/taskd/taskd/internal/pgtest"
)

// TestScheduleConfigErrors: a schedule's task is checked as a submission
// would be, by `taskd config check` and at start, each problem at its
// line of the file.
func TestScheduleConfigErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, file, want string
	}{
		{"unknown kind", "schedules:\n  - {name: a1, every: 1m, kind: nope}\n",
			`taskd.yaml:2: schedules[0].kind: unknown kind "nope"; known kinds: cpu, double, fail, sleep`},
		{"bad args", "schedules:\n  - name: a1\n    every: 1m\n    kind: double\n    args:\n      value: x\n",
			"taskd.yaml:6: schedules[0].args.value: "},
		{"args of a declared kind", "kinds:\n  - {name: t1, run: external, args_schema: {type: object, required: [path]}}\nschedules:\n  - {name: a1, every: 1m, kind: t1}\n",
			"taskd.yaml:4: schedules[0].args.path: is required"},
		{"queue not in the file", "queues: {default: 5}\nschedules:\n  - {name: a1, every: 1m, kind: double, queue: reports}\n",
			`taskd.yaml:3: schedules[0].queue: unknown queue "reports"; configured queues: default`},
		{"kind's queue not in the defaults", "kinds:\n  - {name: h1, run: external, queue: media}\nschedules:\n  - {name: a1, cron: '@hourly', kind: sleep, args: {ms: 1}, queue: media}\n",
			`taskd.yaml:4: schedules[0].queue: unknown queue "media"; configured queues: cpu, default`},
		{"priority", "schedules:\n  - name: a1\n    every: 1m\n    kind: double\n    args: {value: 1}\n    priority: 9\n",
			"taskd.yaml:6: schedules[0].priority: must be between 1 and 4"},
		{"tag", "schedules:\n  - name: a1\n    every: 1m\n    kind: double\n    args: {value: 1}\n    tags:\n      - nightly\n      - ab\n",
			"taskd.yaml:8: schedules[0].tags[1]: must be at least 3 characters"},
		{"parse error first", "schedules:\n  - {name: a1, every: 1m, kind: nope, priority: x}\n",
			"taskd.yaml:2: schedules[0].priority: must be an integer"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			file := filepath.Join(t.TempDir(), "taskd.yaml")
			if err := os.WriteFile(file, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			env := envFunc(map[string]string{"DATABASE_URL": "postgres://127.0.0.1:1/none"})
			for _, args := range [][]string{{"config", "check", file}, {"serve", "--config", file}, {"worker", "--config", file}} {
				var out bytes.Buffer
				err := run(context.Background(), args, env, &out, &out)
				var uerr *usageError
				if !errors.As(err, &uerr) {
					t.Fatalf("%v: err = %v, want a usage error (exit 2)", args, err)
				}
				if msg := strings.ReplaceAll(err.Error(), filepath.Dir(file)+"/", ""); !strings.Contains(msg, tt.want) {
					t.Errorf("%v: err = %q, want it to hold %q", args, msg, tt.want)
				}
			}
		})
	}
}

// TestScheduleQueuesAreTheFiles: a process's --queues need not work a
// schedule's queue (the leader enqueues for the whole cluster): the
// cluster's queues are the file's, with the process's own added. The
// effective configuration shows the schedules.
func TestScheduleQueuesAreTheFiles(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "taskd.yaml")
	if err := os.WriteFile(file, []byte("queues: {default: 5, reports: 2}\nschedules:\n"+
		"  - {name: nightly-report, cron: '0 3 * * *', kind: double, args: {value: 1}, queue: reports}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := envFunc(nil)
	var out bytes.Buffer
	cfg, err := parseServeConfig(roleServe, []string{"--config", file, "--database-url", "x", "--queues", "cpu=1"}, env, &out)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Schedules) != 1 || cfg.Schedules[0].Name != "nightly-report" || strings.Join(cfg.ClusterQueues, ",") != "cpu,default,reports" {
		t.Errorf("schedules %+v on queues %v", cfg.Schedules, cfg.ClusterQueues)
	}
	if err := run(context.Background(), []string{"config", "check", file}, env, &out, &out); err != nil {
		t.Fatalf("config check: %v\n%s", err, out.String())
	}
	for _, want := range []string{"schedules:", "name: nightly-report", "cron: 0 3 * * *", "queue: reports"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("config check output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestWorkerRunsSchedules: a worker (no API) is a River client like any,
// and may be the leader, so it enqueues the schedules too.
func TestWorkerRunsSchedules(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDB(t)
	pool := testPool(t, dbURL)
	file := filepath.Join(t.TempDir(), "taskd.yaml")
	if err := os.WriteFile(file, []byte("schedules:\n  - {name: beat, every: 1s, kind: double, args: {value: 3}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	env := envFunc(map[string]string{"DATABASE_URL": dbURL, "TASKD_LOG_LEVEL": "warn", "TASKD_DB_MAX_CONNS": "5", "TASKD_CONFIG": file, "TASKD_ADDR": "127.0.0.1:0"})
	go func() { done <- run(ctx, []string{"worker"}, env, &out, &out) }()

	waitFor(t, 30*time.Second, func() bool {
		return count(t, pool, `SELECT count(*) FROM river_job WHERE metadata->>'schedule' = 'beat' AND state = 'completed' AND metadata->'output' = '{"result":6}'`) >= 2
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("worker returned %v; output:\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("worker did not stop")
	}
}

// TestExampleConfig keeps examples/taskd.yaml (and the configuration
// guide that shows it) valid.
func TestExampleConfig(t *testing.T) {
	t.Parallel()
	env := envFunc(map[string]string{"RESIZE_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})
	var out bytes.Buffer
	if err := run(context.Background(), []string{"config", "check", "../../examples/taskd.yaml"}, env, &out, &out); err != nil {
		t.Fatalf("config check examples/taskd.yaml: %v\n%s", err, out.String())
	}
	for _, want := range []string{"name: nightly-transcode", "every: 15m"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("config check output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestRoleQueues: the cluster's queues are the file's with the process's
// own --queues added, in every role; an api process works none of them,
// and a worker listens on its own default address.
func TestRoleQueues(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "taskd.yaml")
	if err := os.WriteFile(file, []byte("queues: {default: 5, reports: 2}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for _, tc := range []struct {
		role    role
		args    []string
		worked  map[string]int
		cluster string
		addr    string
	}{
		{roleAPI, nil, nil, "default,reports", "127.0.0.1:8080"},
		{roleAPI, []string{"--queues", "extra=1"}, nil, "default,extra,reports", "127.0.0.1:8080"},
		{roleWorker, []string{"--queues", "reports=3"}, map[string]int{"reports": 3}, "default,reports", "127.0.0.1:8081"},
		{roleServe, nil, map[string]int{"default": 5, "reports": 2}, "default,reports", "127.0.0.1:8080"},
	} {
		args := append([]string{"--config", file, "--database-url", "x"}, tc.args...)
		cfg, err := parseServeConfig(tc.role, args, envFunc(nil), &out)
		if err != nil {
			t.Fatalf("%s %v: %v", tc.role, tc.args, err)
		}
		if !maps.Equal(cfg.Queues, tc.worked) || strings.Join(cfg.ClusterQueues, ",") != tc.cluster || cfg.Addr != tc.addr {
			t.Errorf("%s %v: works %v, cluster %v, addr %s; want %v, %s, %s", tc.role, tc.args, cfg.Queues, cfg.ClusterQueues, cfg.Addr, tc.worked, tc.cluster, tc.addr)
		}
		if jc := cfg.jobsConfig(nil); jc.InsertOnly != (tc.role == roleAPI) {
			t.Errorf("%s: InsertOnly = %v", tc.role, jc.InsertOnly)
		}
	}
	// The api's --queues are checked as a worker's would be.
	if _, err := parseServeConfig(roleAPI, []string{"--database-url", "x", "--queues", "default=0"}, envFunc(nil), &out); err == nil || !strings.Contains(err.Error(), "workers must be between") {
		t.Errorf("api --queues default=0: %v, want the workers range", err)
	}
}
