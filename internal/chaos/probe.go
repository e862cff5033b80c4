package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/taskd/taskd/client"
)

// Probe asks one process's API, as a client would during a fault, whether
// it works again: it submits a chaos_work task and reads it back, over and
// over, until both answer 2xx. What it was answered until then (statuses,
// problem+json or not, how long a failure took) is what the fault tests
// judge the API's behaviour during the fault by.
type Probe struct {
	// Client is the process's API. Required.
	Client *client.Client
	// Ledger receives the tasks the probe got acknowledged: they must not
	// be lost either. Required.
	Ledger *Ledger
	// Every is the pause between two tries. Defaults to 20 ms.
	Every time.Duration
	// Timeout bounds one request; a request that runs into it counts as a
	// hang. Defaults to 5 s.
	Timeout time.Duration
}

// ProbeResult is what one Probe.Run saw.
type ProbeResult struct {
	// OK says the API answered a submit and a read of it with 2xx before
	// the deadline, Recovered how long after the start it did.
	OK        bool
	Recovered time.Duration
	// Tries is the number of submit-and-read tries.
	Tries int
	// ByStatus counts the error answers by HTTP status.
	ByStatus map[int]int
	// Transport counts requests that got no HTTP answer, Hangs those of
	// them that ran into Timeout.
	Transport, Hangs int
	// NonProblem counts error answers that were not problem+json,
	// NoRetryAfter the 503s without Retry-After.
	NonProblem, NoRetryAfter int
	// FailLatencies are how long each failed request took.
	FailLatencies []time.Duration
	// Failures holds a few error messages, for the log.
	Failures []string
}

// Run probes until the API works again or deadline (from start) passes;
// start is when the fault began, which Recovered counts from.
func (p *Probe) Run(ctx context.Context, start time.Time, deadline time.Duration) ProbeResult {
	return p.run(ctx, start, deadline, nil)
}

// Watch probes, whatever the answers, until stop is closed (a try in
// flight then finishes: a request that hangs is not cut short) and returns
// what it was answered (OK says some try succeeded, Recovered is zero):
// what the API answers while a fault lasts, such as a database server's
// restart, which it may not answer 2xx before.
func (p *Probe) Watch(ctx context.Context, stop <-chan struct{}) ProbeResult {
	return p.run(ctx, time.Now(), 0, stop)
}

// run tries until a try succeeds or deadline passes, or with stop until
// stop is closed.
func (p *Probe) run(ctx context.Context, start time.Time, deadline time.Duration, stop <-chan struct{}) ProbeResult {
	every := p.Every
	if every == 0 {
		every = 20 * time.Millisecond
	}
	timeout := p.Timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	res := ProbeResult{ByStatus: map[int]int{}}
	kind := "chaos_work"
	// do runs one request and records how it failed; true when it did
	// not.
	do := func(fn func(ctx context.Context) error) bool {
		rctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		t0 := time.Now()
		err := fn(rctx)
		if err == nil {
			return true
		}
		if ctx.Err() != nil { // the test's end, not the API's answer
			return false
		}
		res.FailLatencies = append(res.FailLatencies, time.Since(t0))
		if len(res.Failures) < 5 {
			res.Failures = append(res.Failures, err.Error())
		}
		var cerr *client.Error
		switch {
		case errors.As(err, &cerr):
			res.ByStatus[cerr.Status]++
			if !IsProblem(cerr) {
				res.NonProblem++
			}
			if cerr.Status == 503 && cerr.RetryAfter == "" {
				res.NoRetryAfter++
			}
		default:
			res.Transport++
			if rctx.Err() != nil && ctx.Err() == nil {
				res.Hangs++
			}
		}
		return false
	}
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	for ctx.Err() == nil && !(stop != nil && stopped()) {
		res.Tries++
		var task *client.Task
		ok := do(func(ctx context.Context) (err error) {
			task, _, err = p.Client.Submit(ctx, client.TaskRequest{Kind: &kind, Args: json.RawMessage(`{"ms":0}`)}, client.SubmitOptions{})
			return err
		})
		if ok {
			p.Ledger.Add(task.ID)
			ok = do(func(ctx context.Context) error {
				_, err := p.Client.Get(ctx, task.ID)
				return err
			})
		}
		switch {
		case ok && stop != nil:
			res.OK = true
		case ok:
			res.OK, res.Recovered = true, time.Since(start)
			return res
		case stop == nil && time.Since(start) > deadline:
			return res
		}
		select {
		case <-ctx.Done():
		case <-stop:
		case <-time.After(every):
		}
	}
	return res
}

// Add adds o's counts to r's (OK and Recovered are left as they are).
func (r *ProbeResult) Add(o ProbeResult) {
	if r.ByStatus == nil {
		r.ByStatus = map[int]int{}
	}
	r.Tries += o.Tries
	for k, v := range o.ByStatus {
		r.ByStatus[k] += v
	}
	r.Transport += o.Transport
	r.Hangs += o.Hangs
	r.NonProblem += o.NonProblem
	r.NoRetryAfter += o.NoRetryAfter
	r.FailLatencies = append(r.FailLatencies, o.FailLatencies...)
	for _, f := range o.Failures {
		if len(r.Failures) < 5 {
			r.Failures = append(r.Failures, f)
		}
	}
}

// Goroutines reads go_goroutines from the /metrics of the taskd at base:
// a subprocess cannot run goleak, but its goroutine count, before a fault
// and once things settle after it, tells a leak that grows with the faults.
func Goroutines(ctx context.Context, base string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s/metrics: %s", base, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("go_goroutines %q: %w", v, err)
			}
			return int(f), nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("GET %s/metrics: no go_goroutines", base)
}
