package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taskd/taskd/client"
	"github.com/taskd/taskd/internal/jobs"
)

// pullKind is scenario 9's kind: run: external, claimed by the harness.
const pullKind = "bench_pull"

// pullResult is one throughput run of scenario 9.
type pullResult struct {
	Rate    float64 // tasks a second, from the first claim to the last completion
	Elapsed time.Duration
	Claims  int // claims that returned tasks
	// APIPerTask is the time the workers spent in claims that returned
	// tasks and in completes, per task, in ms: with no work between them,
	// what the pull API costs a worker per task.
	APIPerTask               float64
	ClaimP50, ClaimP99       float64 // of claims that returned tasks, ms
	CompleteP50, CompleteP99 float64 // ms
}

func (r pullResult) String() string {
	return fmt.Sprintf("%.0f tasks/s (%s, %d claims); API %s ms/task; claim p50 %s ms, p99 %s ms; complete p50 %s ms, p99 %s ms",
		r.Rate, r.Elapsed.Round(time.Millisecond), r.Claims, num(r.APIPerTask), num(r.ClaimP50), num(r.ClaimP99), num(r.CompleteP50), num(r.CompleteP99))
}

// releaseResult is one run of scenario 9's release delay: from an
// insert's 201 to the 200 of the waiting claim that got its task, ms. A
// negative delay means the claim answered before the insert did.
type releaseResult struct {
	P50, P95, P99, Min, Max float64
	N                       int
}

func (r releaseResult) String() string {
	return fmt.Sprintf("release p50 %s ms, p95 %s ms, p99 %s ms [min %s, max %s] (%d tasks)",
		num(r.P50), num(r.P95), num(r.P99), num(r.Min), num(r.Max), r.N)
}

// writePullConfig writes scenario 9's configuration file: taskd's default
// queues and one external kind on a queue no process works.
func (b *bench) writePullConfig() (string, error) {
	data := fmt.Sprintf(`# scenario 9 (taskd-bench)
queues: {default: %d, cpu: %d}
kinds:
  - {name: %s, run: external, queue: pull, timeout: 60s}
`, jobs.QueueDefaultWorkers, runtime.NumCPU(), pullKind)
	path := filepath.Join(b.tmp, "pull.yaml")
	return path, os.WriteFile(path, []byte(data), 0o600)
}

// pullResultBody is what every claimed task is completed with.
var pullResultBody = json.RawMessage(`{"ok":true}`)

// pullRun pre-inserts PullN tasks, then times conc Go-client workers, each
// claiming up to maxTasks (wait 1s) and completing every task it got, one
// after another, until all are completed. With profile set, a CPU profile
// of taskd is written there, starting with the first claim.
func (b *bench) pullRun(ctx context.Context, env []string, conc, maxTasks int, profile string) (pullResult, error) {
	c := b.cfg
	env = slices.Clone(env)
	var pprofAddr string
	if profile != "" {
		var err error
		if pprofAddr, err = freeAddr(); err != nil {
			return pullResult{}, err
		}
		env = append(env, "TASKD_PPROF_ADDR="+pprofAddr)
	}
	var res pullResult
	err := b.withTaskd(ctx, env, func(p *taskdProcess, w *watcher) error {
		hc := newHTTPClient(max(conc*c.PullInFlight, c.Clients))
		full, last := batchBody(pullKind, c.BatchSize), batchBody(pullKind, c.PullN%c.BatchSize)
		err := submitAll(ctx, c.PullN, c.BatchSize, c.Clients, func(ctx context.Context, _, count int) error {
			body := full
			if count != c.BatchSize {
				body = last
			}
			return do(ctx, hc, http.MethodPost, p.base+"/v1/batches", body, http.StatusCreated)
		})
		if err != nil {
			return fmt.Errorf("inserting: %w", err)
		}
		cl, err := client.New(p.base, client.Config{HTTPClient: hc})
		if err != nil {
			return err
		}

		ctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		var (
			completed atomic.Int64
			wg        sync.WaitGroup
			claims    = make([][]float64, conc) // by worker, ms
			completes = make([][]float64, conc)
			lastDone  = make([]time.Time, conc) // of each worker's last completion
			busy      = make([]time.Duration, conc)
		)
		n := int64(c.PullN)
		start := time.Now()
		profDone := b.startProfile(ctx, pprofAddr, profile)
		for wi := range conc {
			wg.Go(func() {
				req := client.ClaimRequest{Kinds: []string{pullKind}, Max: &maxTasks, Wait: new("1s"), Worker: new("bench-" + strconv.Itoa(wi))}
				for completed.Load() < n && ctx.Err() == nil {
					t0 := time.Now()
					got, err := cl.Claim(ctx, req)
					if err != nil {
						cancel(fmt.Errorf("claim: %w", err))
						return
					}
					if len(got) == 0 {
						continue // all claimed by others, or all done
					}
					d := time.Since(t0)
					claims[wi], busy[wi] = append(claims[wi], ms(d)), busy[wi]+d
					// Up to -pull-inflight completes at once, as a worker
					// with that many slots finishes its tasks.
					var (
						mu    sync.Mutex
						batch sync.WaitGroup
						slots = make(chan struct{}, c.PullInFlight)
					)
					for _, t := range got {
						slots <- struct{}{}
						batch.Go(func() {
							defer func() { <-slots }()
							t0 := time.Now()
							if _, err := cl.Complete(ctx, t.ID, t.Lease, pullResultBody); err != nil {
								cancel(fmt.Errorf("complete of task %d: %w", t.ID, err))
								return
							}
							now := time.Now()
							d := now.Sub(t0)
							mu.Lock()
							if now.After(lastDone[wi]) {
								lastDone[wi] = now
							}
							completes[wi], busy[wi] = append(completes[wi], ms(d)), busy[wi]+d
							mu.Unlock()
							completed.Add(1)
						})
					}
					batch.Wait()
				}
			})
		}
		wg.Wait()
		if err := context.Cause(ctx); err != nil {
			return err
		}
		end := slices.MaxFunc(lastDone, time.Time.Compare)
		res.Elapsed = end.Sub(start)
		res.Rate = float64(n) / res.Elapsed.Seconds()
		cs, ds := slices.Concat(claims...), slices.Concat(completes...)
		slices.Sort(cs)
		slices.Sort(ds)
		var total time.Duration
		for _, d := range busy {
			total += d
		}
		res.Claims = len(cs)
		res.APIPerTask = ms(total) / float64(n)
		res.ClaimP50, res.ClaimP99 = percentile(cs, 50), percentile(cs, 99)
		res.CompleteP50, res.CompleteP99 = percentile(ds, 50), percentile(ds, 99)
		if len(ds) != c.PullN {
			return fmt.Errorf("%d tasks completed by the workers, want %d", len(ds), c.PullN)
		}
		if err := w.waitDone(ctx, c.PullN, runLimit); err != nil {
			return err
		}
		return <-profDone
	})
	return res, err
}

// releaseRun starts ReleaseClaimers claims waiting (wait 30s) on a taskd
// with no task ready, then inserts ReleaseN tasks one at a time through
// POST /v1/tasks, ReleaseInterval apart, each once the previous one was
// claimed, and measures from each insert's 201 to the 200 of the claim
// that returned its task. The claimer completes the task and waits again.
func (b *bench) releaseRun(ctx context.Context, env []string) (releaseResult, error) {
	c := b.cfg
	var res releaseResult
	err := b.withTaskd(ctx, env, func(p *taskdProcess, w *watcher) error {
		cl, err := client.New(p.base, client.Config{HTTPClient: newHTTPClient(c.ReleaseClaimers + 1)})
		if err != nil {
			return err
		}
		type claimed struct {
			id int64
			at time.Time
		}
		got := make(chan claimed, c.ReleaseClaimers)
		// Cancelling claimCtx ends the claims; completes run on ctx, so
		// that the last one is not cut short.
		claimCtx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		var wg sync.WaitGroup
		for wi := range c.ReleaseClaimers {
			wg.Go(func() {
				req := client.ClaimRequest{Kinds: []string{pullKind}, Wait: new("30s"), Worker: new("bench-" + strconv.Itoa(wi))}
				for {
					ts, err := cl.Claim(claimCtx, req)
					at := time.Now()
					if claimCtx.Err() != nil {
						return
					}
					if err != nil {
						cancel(fmt.Errorf("claim: %w", err))
						return
					}
					for _, t := range ts {
						got <- claimed{t.ID, at}
						if _, err := cl.Complete(ctx, t.ID, t.Lease, pullResultBody); err != nil {
							cancel(fmt.Errorf("complete of task %d: %w", t.ID, err))
							return
						}
					}
				}
			})
		}
		delays, err := func() ([]float64, error) {
			// Let every claim reach its wait.
			sleep(claimCtx, max(c.Settle, 200*time.Millisecond))
			var delays []float64
			kind := pullKind
			for i := range c.ReleaseN {
				sleep(claimCtx, c.ReleaseInterval)
				t, _, err := cl.Submit(claimCtx, client.TaskRequest{Kind: &kind, Args: json.RawMessage(`{"value":` + strconv.Itoa(i) + `}`)}, client.SubmitOptions{})
				if err != nil {
					return nil, fmt.Errorf("insert: %w", err)
				}
				inserted := time.Now()
				select {
				case g := <-got:
					if g.id != t.ID {
						return nil, fmt.Errorf("a claim returned task %d while %d was the only one inserted", g.id, t.ID)
					}
					delays = append(delays, ms(g.at.Sub(inserted)))
				case <-time.After(30 * time.Second):
					return nil, fmt.Errorf("task %d not claimed within 30s of its insert", t.ID)
				case <-claimCtx.Done():
					return nil, context.Cause(claimCtx)
				}
			}
			return delays, nil
		}()
		cancel(errors.New("done"))
		wg.Wait()
		if err != nil {
			return err
		}
		slices.Sort(delays)
		res = releaseResult{N: len(delays), P50: percentile(delays, 50), P95: percentile(delays, 95), P99: percentile(delays, 99),
			Min: delays[0], Max: delays[len(delays)-1]}
		return w.waitDone(ctx, c.ReleaseN, runLimit)
	})
	return res, err
}

// scenario9: pull. Throughput of Go-client workers claiming and completing
// pre-inserted tasks at each concurrency and max, then the release delay
// of waiting claims.
func (b *bench) scenario9(ctx context.Context) error {
	c := b.cfg
	cfgPath, err := b.writePullConfig()
	if err != nil {
		return err
	}
	env := []string{"TASKD_CONFIG=" + cfgPath}
	b.logf("scenario 9: pull: %d %s tasks (run: external) pre-inserted in batches of %d, then claimed (max %v, wait 1s) and completed by %v Go-client workers, %d rounds; then the release delay: %d claims waiting, %d tasks inserted one at a time %s apart",
		c.PullN, pullKind, c.BatchSize, c.PullMax, c.PullConcurrency, c.Pairs, c.ReleaseClaimers, c.ReleaseN, c.ReleaseInterval)
	type combo struct{ conc, max int }
	var combos []combo
	for _, conc := range c.PullConcurrency {
		for _, m := range c.PullMax {
			combos = append(combos, combo{conc, m})
		}
	}
	// metric, by combo: tasks/s, API ms/task, claim p50, claim p99,
	// complete p50, complete p99; one sample per round.
	res := make([][6][]float64, len(combos))
	for i := 1; i <= c.Pairs; i++ {
		for ci, cb := range combos {
			r, err := b.pullRun(ctx, env, cb.conc, cb.max, "")
			if err != nil {
				return fmt.Errorf("C=%d max=%d: %w", cb.conc, cb.max, err)
			}
			b.logf("  round %d C=%-2d max=%-3d %s", i, cb.conc, cb.max, r)
			for mi, v := range []float64{r.Rate, r.APIPerTask, r.ClaimP50, r.ClaimP99, r.CompleteP50, r.CompleteP99} {
				res[ci][mi] = append(res[ci][mi], v)
			}
		}
	}
	for ci, cb := range combos {
		name := fmt.Sprintf("9 pull C=%d max=%d", cb.conc, cb.max)
		target := ""
		if cb.max == 100 {
			target = "≥5000/s"
		}
		for mi, metric := range []string{"tasks/s", "API ms/task", "claim p50 ms", "claim p99 ms", "complete p50 ms", "complete p99 ms"} {
			t := ""
			if mi == 0 {
				t = target
			}
			b.compare(row{Scenario: name, Metric: metric, A: res[ci][mi], Baseline: "(taskd only)", Target: t})
		}
	}

	var rel [3][]float64
	for i := 1; i <= c.Pairs; i++ {
		r, err := b.releaseRun(ctx, env)
		if err != nil {
			return fmt.Errorf("release delay: %w", err)
		}
		b.logf("  round %d %s", i, r)
		rel[0], rel[1], rel[2] = append(rel[0], r.P50), append(rel[1], r.P95), append(rel[2], r.P99)
	}
	for pi, metric := range []string{"release p50 ms", "release p95 ms", "release p99 ms"} {
		target := ""
		if pi == 1 {
			target = "p95 ≤ 50 ms"
		}
		b.compare(row{Scenario: "9 claim release", Metric: metric, A: rel[pi], Baseline: "(taskd only)", Target: target})
	}

	if c.CPUProfile != "" {
		path := profilePath(c.CPUProfile, 9)
		conc, m := slices.Max(c.PullConcurrency), slices.Max(c.PullMax)
		b.logf("  profiling one more pull run (C=%d max=%d, not counted) into %s", conc, m, path)
		r, err := b.pullRun(ctx, env, conc, m, path)
		if err != nil {
			return fmt.Errorf("profiled pull run: %w", err)
		}
		if err := b.saveProfileBinary(path); err != nil {
			return err
		}
		b.logf("  profiled run: %s; go tool pprof -top -nodecount=25 %s.taskd %s", r, path, path)
	}
	return nil
}
