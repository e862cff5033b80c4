package jobs

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskd/taskd/internal/backoff"
	"github.com/taskd/taskd/internal/kinds"
	"github.com/taskd/taskd/internal/kinds/builtin"
	"github.com/taskd/taskd/internal/push"
	"github.com/taskd/taskd/internal/store"
)

func TestRetryPolicyCountsErrorsNotAttempt(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := &RetryPolicy{Kinds: builtin.Registry(), Now: func() time.Time { return now }, Jitter: func() float64 { return 0.5 }}
	// River lowers Attempt on snooze and shutdown; two recorded errors mean
	// the third attempt just failed whatever Attempt says.
	job := &rivertype.JobRow{Kind: "fail", Attempt: 1, Errors: make([]rivertype.AttemptError, 2)}
	if got, want := p.NextRetry(job), now.Add(4*time.Second); !got.Equal(want) {
		t.Errorf("NextRetry = %s, want %s", got, want)
	}
}

// externalKind is a declared kind worked by external workers, with the
// given defaults.
func externalKind(name string, timeout time.Duration, b backoff.Policy) kinds.Kind {
	return kinds.Kind{
		Name: name, Queue: "default", Run: kinds.RunExternal, Declared: true, Timeout: timeout, Backoff: b,
		Decode: func(raw json.RawMessage, _ *kinds.Errors) river.JobArgs {
			return kinds.RawArgs{KindName: name, Raw: raw}
		},
	}
}

// The wait after a failure is the task's own backoff fields over its
// kind's, over the default.
func TestRetryPolicyTaskThenKindThenDefault(t *testing.T) {
	t.Parallel()
	slow := backoff.Policy{Initial: 10 * time.Second, Max: time.Minute, Multiplier: 3, Jitter: 0}
	reg, err := kinds.NewRegistry(append(builtin.Kinds(), externalKind("slow", 0, slow))...)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := &RetryPolicy{Kinds: reg, Now: func() time.Time { return now }, Jitter: func() float64 { return 0 }}
	for _, tc := range []struct {
		name     string
		kind     string
		metadata string
		errors   int
		want     time.Duration
	}{
		{"default, first failure", "fail", `{}`, 0, 900 * time.Millisecond}, // -10% jitter at r = 0
		{"default, third failure", "fail", `{"batch_id": 3}`, 2, 3600 * time.Millisecond},
		{"task's own, all fields", "fail", `{"backoff": {"initial": "1s", "multiplier": 1, "jitter": 0}}`, 4, time.Second},
		{"kind's", "slow", `{}`, 1, 30 * time.Second},
		{"kind's, capped", "slow", ``, 5, time.Minute},
		{"task's jitter over the kind's", "slow", `{"backoff": {"jitter": 0.5}}`, 0, 5 * time.Second},
		{"task's max over the kind's", "slow", `{"backoff": {"max": "15s"}}`, 3, 15 * time.Second},
		{"unknown kind: default", "gone", `{"backoff": {"multiplier": 1}}`, 3, 900 * time.Millisecond},
	} {
		job := &rivertype.JobRow{Kind: tc.kind, Attempt: tc.errors + 1, Errors: make([]rivertype.AttemptError, tc.errors), Metadata: []byte(tc.metadata)}
		if got := p.NextRetry(job).Sub(now); got != tc.want {
			t.Errorf("%s: NextRetry = now+%s, want now+%s", tc.name, got, tc.want)
		}
	}
}

func TestPolicyTimeouts(t *testing.T) {
	t.Parallel()
	hook := pushKind(t, "hook", "http://127.0.0.1:1/", true)
	hook.Timeout = 7 * time.Second // as the configuration file sets it
	bare := pushKind(t, "bare", "http://127.0.0.1:1/", true)
	reg, err := kinds.NewRegistry(append(builtin.Kinds(), hook, bare,
		externalKind("ext", 0, backoff.Policy{}), externalKind("ext2", 90*time.Second, backoff.Policy{}))...)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		kind, own  string
		jobTimeout time.Duration
		want       time.Duration
	}{
		{"double", "", 15 * time.Minute, 15 * time.Minute},       // the service's
		{"double", "", -1, -1},                                   // none at all
		{"double", "2s", -1, 2 * time.Second},                    // the task's
		{"sleep", "", 15 * time.Minute, time.Hour + time.Minute}, // the kind's
		{"sleep", "1s", 15 * time.Minute, time.Second},
		{"ext", "", 15 * time.Minute, LeaseDefault},
		{"ext2", "", 15 * time.Minute, 90 * time.Second},
		{"ext2", "10s", 15 * time.Minute, 10 * time.Second},
		{"hook", "", 15 * time.Minute, 7 * time.Second},
		{"hook", "2s", 15 * time.Minute, 2 * time.Second},
		{"bare", "", -1, push.TimeoutDefault},
		{"unknown", "", 15 * time.Minute, 15 * time.Minute},
	} {
		if got := PolicyFor(reg, tc.jobTimeout, tc.kind, OwnPolicy{Timeout: tc.own}).Timeout; got != tc.want {
			t.Errorf("%s (own %q, job timeout %s): timeout %s, want %s", tc.kind, tc.own, tc.jobTimeout, got, tc.want)
		}
	}
}

// River's backstop rescuer takes jobs running longer than
// RescueStuckJobsAfter (at least LeaseLifeMax plus an hour): no timeout a
// task may set can reach it.
func TestTimeoutBoundsUnderRescue(t *testing.T) {
	t.Parallel()
	for _, run := range []kinds.Run{kinds.RunGo, kinds.RunHTTP, kinds.RunExternal} {
		if _, hi, _ := kinds.TimeoutRange(run); hi > LeaseLifeMax {
			t.Errorf("run %s: a task's timeout may reach %s, past LeaseLifeMax %s", run, hi, LeaseLifeMax)
		}
	}
}

// A task's own timeout bounds its attempt (sleep's kind allows an hour):
// the attempt is recorded as a timeout and the task retried.
func TestTaskTimeoutRetries(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.start(t)
	id := b.submit(t, "sleep", map[string]any{"ms": 5000}, func(o *river.InsertOpts) {
		o.MaxAttempts = 2
		o.Metadata = []byte(`{"timeout": "1s", "backoff": {"initial": "100ms", "jitter": 0}}`)
	})
	// Without the task's timeout both attempts would complete.
	task := b.waitTask(t, id, 30*time.Second, inState(store.StateDiscarded))
	if got := outcomes(b.finishedAttempts(t, id, 2)); !slices.Equal(got, []string{store.OutcomeTimeout, store.OutcomeTimeout}) {
		t.Errorf("outcomes = %v, want two timeouts", got)
	}
	if len(task.Errors) != 2 || !strings.Contains(task.Errors[0].Message, "deadline exceeded") {
		t.Errorf("errors = %+v", task.Errors)
	}
}

// TestParseOwnPolicy covers the shortcut for metadata without the policy's
// keys beside the decode: both must read the same policy as a full decode
// would, and the shortcut must not decode (not parallel: AllocsPerRun).
func TestParseOwnPolicy(t *testing.T) {
	for _, tc := range []struct {
		metadata string
		want     OwnPolicy
	}{
		{"", OwnPolicy{}},
		{"{}", OwnPolicy{}},
		{"{ }", OwnPolicy{}},
		{`{"batch_id":3}`, OwnPolicy{}},
		{`{"timeout":"5s"}`, OwnPolicy{Timeout: "5s"}},
		{`{"batch_id":3,"timeout":"1m"}`, OwnPolicy{Timeout: "1m"}},
		{`not json`, OwnPolicy{}},
		{`{"batch_id":3,"output":{"note":"timeout"}}`, OwnPolicy{}},
		{`{"output":{"timeout":"5s"}}`, OwnPolicy{}},
		{`{"output":{"timeout":"5s"},"timeout":"6s"}`, OwnPolicy{Timeout: "6s"}},
	} {
		if got := ParseOwnPolicy([]byte(tc.metadata)); got != tc.want {
			t.Errorf("ParseOwnPolicy(%q) = %+v, want %+v", tc.metadata, got, tc.want)
		}
	}
	batch := []byte(`{"batch_id":3,"output":{"result":42}}`)
	if n := testing.AllocsPerRun(100, func() { ParseOwnPolicy(batch) }); n != 0 {
		t.Errorf("ParseOwnPolicy(%q) allocates %v times; want no decode", batch, n)
	}
	own := ParseOwnPolicy([]byte(`{"backoff":{"initial":"2s"}}`))
	if own.Backoff == nil || own.Backoff.Initial == nil || *own.Backoff.Initial != "2s" {
		t.Errorf("backoff not read: %+v", own)
	}
}

// TestPolicyForWithoutOwnAllocates: a task without a policy of its own,
// as most are, gets its kind's and the service's without an allocation
// (every attempt asks; not parallel: AllocsPerRun).
func TestPolicyForWithoutOwnAllocates(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { PolicyFor(nil, time.Minute, "double", OwnPolicy{}) }); n != 0 {
		t.Errorf("PolicyFor without a policy of the task's own allocates %v times; want 0", n)
	}
}
