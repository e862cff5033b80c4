package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/taskd/taskd/internal/pgtest"
)

// TestChaosConnKillGoroutines is the in-process half of the fault suite's
// R2 (internal/chaos's TestChaosConnKill runs real processes, whose
// goroutines it can only count): the real program, run in-process, has
// every connection it holds to its database terminated a few times under
// submits, recovers each time, shuts down, and must leave no goroutine of
// its own behind (goleak). A goroutine left per cut connection (a listener
// that never returned, a pool nobody closes) fails it.
//
// It is not parallel: goleak looks at every goroutine of the test binary,
// and those the tests before it left are ignored (IgnoreCurrent).
func TestChaosConnKillGoroutines(t *testing.T) {
	db := pgtest.NewDB(t)
	ignore := goleak.IgnoreCurrent()
	addr := freeAddr(t)
	env := envFunc(map[string]string{
		"DATABASE_URL": db, "TASKD_ADDR": addr, "TASKD_LOG_LEVEL": "error", "TASKD_DB_MAX_CONNS": "5",
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve"}, env, &out, &out) }()
	base := "http://" + addr
	waitHealthy(t, base, done)

	hc := &http.Client{Timeout: 10 * time.Second}
	submit := func() (int, error) {
		r, err := hc.Post(base+"/v1/tasks", "application/json", strings.NewReader(`{"kind":"sleep","args":{"ms":20}}`))
		if err != nil {
			return 0, err
		}
		r.Body.Close()
		return r.StatusCode, nil
	}
	// Submits in the background, so that connections are in use when they
	// are cut.
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		byStatus = map[int]int{}
	)
	loadCtx, stopLoad := context.WithCancel(ctx)
	wg.Go(func() {
		for loadCtx.Err() == nil {
			status, err := submit()
			mu.Lock()
			if err == nil {
				byStatus[status]++
			} else {
				byStatus[0]++
			}
			mu.Unlock()
			time.Sleep(10 * time.Millisecond) // the load's pace
		}
	})

	const rounds = 4
	for round := range rounds {
		time.Sleep(time.Second) // the fault's pace
		n := terminateTaskd(t, db)
		if n == 0 {
			t.Fatalf("round %d: no taskd connection to terminate: the test tests nothing", round)
		}
		// Recovered: a submit answers 201 again.
		deadline := time.Now().Add(10 * time.Second)
		for {
			if status, err := submit(); err == nil && status == http.StatusCreated {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: no 201 within 10 s of terminating %d connections", round, n)
			}
			time.Sleep(20 * time.Millisecond) // polling interval
		}
	}
	stopLoad()
	wg.Wait()
	for status := range byStatus {
		if status != http.StatusCreated && status != http.StatusServiceUnavailable {
			t.Errorf("submits answered %v; want 201 or 503 only", byStatus)
			break
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v after cancellation; output:\n%s", err, out.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("run did not return within a minute of cancellation")
	}
	hc.CloseIdleConnections()
	http.DefaultClient.CloseIdleConnections()
	t.Logf("%d rounds; submits %v", rounds, byStatus)
	goleak.VerifyNone(t, ignore)
}

// terminateTaskd ends every connection of application_name "taskd" to the
// database of url and returns how many it ended.
func terminateTaskd(t *testing.T, url string) int {
	t.Helper()
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["application_name"] = "taskd-chaos-oracle"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	defer conn.Close(ctx)
	var n int
	err = conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = 'taskd'`).Scan(&n)
	if err != nil {
		t.Fatal(fmt.Errorf("terminating taskd's connections: %w", err))
	}
	return n
}
