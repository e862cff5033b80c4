package tasks

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/riverqueue/river"

	"github.com/taskd/taskd/internal/jobs"
	"github.com/taskd/taskd/internal/kinds/builtin"
	"github.com/taskd/taskd/internal/strictjson"
)

// decodeAndPrepare decodes body the way POST /v1/tasks does and validates
// it, so that a test sees what a client would.
func decodeAndPrepare(t *testing.T, b *testBundle, body string) (river.InsertManyParams, []FieldError) {
	t.Helper()
	var p TaskParams
	if err := strictjson.Unmarshal([]byte(body), &p); err != nil {
		return river.InsertManyParams{}, []FieldError{{Field: "body", Message: err.Error()}}
	}
	return b.tasks.prepare(&p, "", time.Now())
}

// JSON Schema calls 1.0 and 1e2 integers, and /v1/kinds and the OpenAPI
// document promise "type": "integer"; such numbers must be accepted
// wherever an integer is, and a number that is not integral must not be
// rounded into one.
func TestPrepareAcceptsIntegralNumbers(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ok := []struct {
		body     string
		args     river.JobArgs
		priority int
		attempts int
	}{
		{`{"kind":"sleep","args":{"ms":1.0}}`, builtin.SleepArgs{MS: 1}, 1, jobs.MaxAttemptsDefault},
		{`{"kind":"sleep","args":{"ms":36e5}}`, builtin.SleepArgs{MS: builtin.SleepMaxMS}, 1, jobs.MaxAttemptsDefault},
		{`{"kind":"fail","args":{"times":1e1}}`, builtin.FailArgs{Times: 10, Message: builtin.FailDefaultMessage}, 1, jobs.MaxAttemptsDefault},
		{`{"kind":"cpu","args":{"n":100.000}}`, builtin.CPUArgs{N: 100}, 1, jobs.MaxAttemptsDefault},
		{`{"kind":"double","args":{"value":2.5},"priority":2.0,"max_attempts":1E+1}`, builtin.DoubleArgs{Value: 2.5}, 2, 10},
	}
	for _, tt := range ok {
		params, errs := decodeAndPrepare(t, b, tt.body)
		if errs != nil {
			t.Errorf("%s: %+v", tt.body, errs)
			continue
		}
		if params.Args != tt.args || params.InsertOpts.Priority != tt.priority || params.InsertOpts.MaxAttempts != tt.attempts {
			t.Errorf("%s: args %#v, priority %d, max_attempts %d; want %#v, %d, %d", tt.body,
				params.Args, params.InsertOpts.Priority, params.InsertOpts.MaxAttempts, tt.args, tt.priority, tt.attempts)
		}
	}

	bad := []struct{ body, field string }{
		{`{"kind":"sleep","args":{"ms":1.5}}`, "args.ms"},
		{`{"kind":"sleep","args":{"ms":1e-1}}`, "args.ms"},
		{`{"kind":"sleep","args":{"ms":1.0000000000000000001}}`, "args.ms"},
		{`{"kind":"cpu","args":{"n":1e19}}`, "args.n"},
		{`{"kind":"fail","args":{"times":1e400}}`, "args.times"},
		{`{"kind":"double","args":{"value":1},"priority":1.5}`, "body"},
	}
	for _, tt := range bad {
		_, errs := decodeAndPrepare(t, b, tt.body)
		if len(errs) != 1 || errs[0].Field != tt.field {
			t.Errorf("%s: errors %+v, want one for %s", tt.body, errs, tt.field)
		}
	}
}

// The args of a task are stored as sent; decoding their integers must not
// rewrite the caller's bytes.
func TestPrepareLeavesArgsAsSent(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	body := `{"kind":"sleep","args":{"ms":2.0}}`
	var p TaskParams
	if err := strictjson.Unmarshal([]byte(body), &p); err != nil {
		t.Fatal(err)
	}
	params, errs := b.tasks.prepare(&p, "", time.Now())
	if errs != nil {
		t.Fatal(errs)
	}
	if string(p.Args) != `{"ms":2.0}` || params.Args != (builtin.SleepArgs{MS: 2}) {
		t.Errorf("args = %s, %#v", p.Args, params.Args)
	}
}

// A key given twice in args is a problem with that arg: encoding/json would
// take the last, another reader of the same body the first.
func TestPrepareRejectsDuplicateArgs(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	p := TaskParams{Kind: ptr("sleep"), Args: json.RawMessage(`{"ms":1,"\u006ds":3600001}`)}
	_, errs := b.tasks.prepare(&p, "tasks[2]", time.Now())
	if len(errs) != 1 || errs[0].Field != "tasks[2].args.ms" || !strings.Contains(errs[0].Message, "duplicate") {
		t.Errorf("errors = %+v", errs)
	}
}

// A message must not echo a client's megabyte-long kind, queue or field
// name back at it (nor into logs).
func TestPrepareClipsEchoedInput(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	long := strings.Repeat("é", 10_000)
	p := TaskParams{
		Kind:  &long,
		Queue: &long,
	}
	_, errs := b.tasks.prepare(&p, "", time.Now())
	p = TaskParams{Kind: ptr("sleep"), Args: json.RawMessage(`{"ms":1,"` + long + `":2}`)}
	_, more := b.tasks.prepare(&p, "", time.Now())
	errs = append(errs, more...)
	if len(errs) != 3 {
		t.Fatalf("errors = %d, want 3 (kind, queue, args.%s…)", len(errs), long[:10])
	}
	clipped := strings.Repeat("é", 200) + "…"
	for _, fe := range errs {
		for _, s := range []string{fe.Field, fe.Message} {
			if n := utf8.RuneCountInString(s); n > 400 {
				t.Errorf("%.20s: %d characters", fe.Field, n)
			}
		}
		if !strings.Contains(fe.Field+fe.Message, clipped) {
			t.Errorf("%.20s: %.40s does not quote the clipped value", fe.Field, fe.Message)
		}
	}
}
