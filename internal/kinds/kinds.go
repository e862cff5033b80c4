// Package kinds is taskd's registry of task kinds: what each kind is
// called, which queue its tasks go to, how they are run (by a Go worker in
// the process, or, later, by an HTTP endpoint or an external worker), how
// its args are validated and what defaults it brings. Submission, GET
// /v1/kinds and the workers all read the one Registry, so a kind is
// registered once, in one place.
package kinds

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskd/taskd/internal/backoff"
	"github.com/taskd/taskd/internal/push"
	"github.com/taskd/taskd/internal/strictjson"
)

// Run says how a kind's tasks are worked.
type Run string

// Ways to run a kind.
const (
	// RunGo: a Go worker in every taskd process.
	RunGo Run = "go"
	// RunHTTP: taskd calls the kind's HTTP endpoint (push).
	RunHTTP Run = "http"
	// RunExternal: workers outside taskd claim the tasks (pull).
	RunExternal Run = "external"
)

// Kind describes one kind of task.
type Kind struct {
	// Name is what clients put in a task's "kind" and River's kind.
	Name string
	// Queue is where tasks of this kind go when the submission names none.
	Queue string
	// Run says how the tasks are worked.
	Run Run
	// Description says what the kind does, for GET /v1/kinds.
	Description string
	// ArgsSchema is a JSON Schema (2020-12) of the kind's args.
	ArgsSchema json.RawMessage
	// ResultSchema is a JSON Schema of the kind's result.
	ResultSchema json.RawMessage
	// MaxAttempts is the kind's default max_attempts; 0 means the
	// service's default.
	MaxAttempts int
	// Timeout bounds one attempt (for an external kind, the lease a claim
	// gets by default); 0 means the service's. A task's own timeout wins.
	Timeout time.Duration
	// Backoff is the kind's retry policy; the zero value means
	// backoff.Default. A task's own backoff fields win.
	Backoff backoff.Policy
	// Decode validates raw args strictly and returns River job args whose
	// Kind() is Name, adding every problem to errs (paths relative to
	// "args"). A missing or null args reaches it as-is.
	Decode func(raw json.RawMessage, errs *Errors) river.JobArgs
	// AddWorker registers the kind's worker with River (with the package's
	// AddWorker, so that timeout decides each attempt's timeout). Required
	// for RunGo.
	AddWorker func(workers *river.Workers, timeout TimeoutFunc)
	// Push is where a RunHTTP kind's tasks are sent. Required for RunHTTP.
	Push *push.Target
	// Declared says the kind comes from the configuration file rather than
	// from taskd's code.
	Declared bool
}

// RawArgs are the args of a kind that has no Go type of its own (a
// declared kind): the validated JSON as submitted, under the kind's name.
type RawArgs struct {
	KindName string
	Raw      json.RawMessage
}

// Kind implements river.JobArgs.
func (a RawArgs) Kind() string { return a.KindName }

// MarshalJSON stores the args as submitted.
func (a RawArgs) MarshalJSON() ([]byte, error) {
	if len(a.Raw) == 0 {
		return []byte("{}"), nil
	}
	return a.Raw, nil
}

// Registry holds the kinds a process knows, by name.
type Registry struct {
	byName map[string]Kind
	names  []string
}

// NewRegistry returns a registry of ks, refusing an unnamed, repeated or
// incomplete kind.
func NewRegistry(ks ...Kind) (*Registry, error) {
	r := &Registry{byName: make(map[string]Kind, len(ks))}
	for _, k := range ks {
		switch {
		case k.Name == "":
			return nil, errors.New("kinds: a kind has no name")
		case k.Queue == "":
			return nil, fmt.Errorf("kinds: kind %q has no queue", k.Name)
		case k.Decode == nil:
			return nil, fmt.Errorf("kinds: kind %q has no args decoder", k.Name)
		case k.Run != RunGo && k.Run != RunHTTP && k.Run != RunExternal:
			// Without a way to run, a kind's tasks would be accepted and
			// never worked.
			return nil, fmt.Errorf("kinds: kind %q: run must be go, http or external, not %q", k.Name, k.Run)
		case k.Run == RunGo && k.AddWorker == nil:
			return nil, fmt.Errorf("kinds: kind %q runs in Go but has no worker", k.Name)
		case k.Run == RunHTTP && (k.Push == nil || k.Push.URL == nil):
			return nil, fmt.Errorf("kinds: kind %q runs over HTTP but has no URL", k.Name)
		}
		if _, dup := r.byName[k.Name]; dup {
			return nil, fmt.Errorf("kinds: kind %q is registered twice", k.Name)
		}
		r.byName[k.Name] = k
		r.names = append(r.names, k.Name)
	}
	slices.Sort(r.names)
	return r, nil
}

// Lookup returns the kind called name.
func (r *Registry) Lookup(name string) (Kind, bool) {
	k, ok := r.byName[name]
	return k, ok
}

// All returns every kind, sorted by name.
func (r *Registry) All() []Kind {
	ks := make([]Kind, len(r.names))
	for i, name := range r.names {
		ks[i] = r.byName[name]
	}
	return ks
}

// Names returns the kinds' names, sorted.
func (r *Registry) Names() []string { return slices.Clone(r.names) }

// BackoffPolicy is k's retry policy: its own, else backoff.Default.
func (k Kind) BackoffPolicy() backoff.Policy {
	if k.Backoff == (backoff.Policy{}) {
		return backoff.Default
	}
	return k.Backoff
}

// AddWorkers registers the worker of every kind run in Go; timeout decides
// the timeout of each attempt (see AddWorker).
func (r *Registry) AddWorkers(workers *river.Workers, timeout TimeoutFunc) {
	for _, k := range r.All() {
		if k.Run == RunGo {
			k.AddWorker(workers, timeout)
		}
	}
}

// TimeoutFunc returns the timeout of an attempt at job, as River's
// Worker.Timeout does (-1: none); 0 leaves it to the worker.
type TimeoutFunc func(job *rivertype.JobRow) time.Duration

// AddWorker registers w with River, the timeout of each attempt decided by
// timeout (the task's own, else its kind's, else the service's) rather
// than by w, whose Timeout counts only when timeout answers 0.
func AddWorker[T river.JobArgs](workers *river.Workers, w river.Worker[T], timeout TimeoutFunc) {
	river.AddWorker[T](workers, &timedWorker[T]{Worker: w, timeout: timeout})
}

// timedWorker is a Worker whose Timeout is its TimeoutFunc's.
type timedWorker[T river.JobArgs] struct {
	river.Worker[T]
	timeout TimeoutFunc
}

func (w *timedWorker[T]) Timeout(job *river.Job[T]) time.Duration {
	if w.timeout != nil {
		if d := w.timeout(job.JobRow); d != 0 {
			return d
		}
	}
	return w.Worker.Timeout(job)
}

// Bounds of a task's or a kind's timeout, by how the kind runs.
const (
	// GoTimeoutMin and GoTimeoutMax bound one attempt of a kind run in
	// taskd. River's backstop rescuer, which takes jobs that have run
	// longer than the longest timeout, looks at jobs older than 13 h (see
	// internal/jobs).
	GoTimeoutMin, GoTimeoutMax = time.Second, 12 * time.Hour
	// HTTPTimeoutMin and HTTPTimeoutMax bound one request of an http
	// kind; they are push's limits.
	HTTPTimeoutMin, HTTPTimeoutMax = push.TimeoutMin, push.TimeoutMax
	// ExternalTimeoutMin and ExternalTimeoutMax bound the lease of an
	// external kind's attempt, which heartbeats extend.
	ExternalTimeoutMin, ExternalTimeoutMax = 5 * time.Second, time.Hour
)

// TimeoutRange returns the bounds of a timeout of a kind run so, and what
// the timeout is for, for messages.
func TimeoutRange(run Run) (lo, hi time.Duration, what string) {
	switch run {
	case RunHTTP:
		return HTTPTimeoutMin, HTTPTimeoutMax, "for an http kind (one request)"
	case RunExternal:
		return ExternalTimeoutMin, ExternalTimeoutMax, "for an external kind (one lease)"
	}
	return GoTimeoutMin, GoTimeoutMax, "for a kind run in taskd (one attempt)"
}

// LongestTimeout is the longest Timeout of any kind, or def when none is
// longer: how long an attempt can legitimately run.
func (r *Registry) LongestTimeout(def time.Duration) time.Duration {
	longest := def
	for _, k := range r.byName {
		longest = max(longest, k.Timeout)
	}
	return longest
}

// FieldError is one problem with one field of a submission. Field is a
// path into the request body such as "args.value" or "tasks[3].queue".
type FieldError struct {
	Field   string
	Message string
}

// Errors collects FieldErrors under a path prefix.
type Errors struct {
	Prefix string
	List   []FieldError
}

// Add records a problem with field (relative to the prefix).
func (e *Errors) Add(field, format string, args ...any) {
	e.List = append(e.List, FieldError{Field: JoinPath(e.Prefix, field), Message: fmt.Sprintf(format, args...)})
}

// JoinPath joins a field path prefix and a field: "tasks[2]" and "kind"
// give "tasks[2].kind", "tags" and "[1]" give "tags[1]".
func JoinPath(prefix, field string) string {
	switch {
	case prefix == "":
		return field
	case field == "":
		return prefix
	case strings.HasPrefix(field, "["):
		return prefix + field
	default:
		return prefix + "." + field
	}
}

// DecodeArgs decodes raw args strictly into dst, adding problems to errs.
// A missing or null args is decoded as an empty object so that required
// fields are reported by name.
func DecodeArgs(raw json.RawMessage, dst any, errs *Errors) bool {
	if len(raw) == 0 || string(raw) == "null" {
		raw = json.RawMessage("{}")
	}
	err := strictjson.Unmarshal(raw, dst)
	if err == nil {
		return true
	}
	var jerr *strictjson.Error
	if errors.As(err, &jerr) {
		if jerr.Field == "" {
			errs.Add("", "must be a JSON object")
		} else {
			errs.Add(jerr.Field, "%s", jerr.Message)
		}
		return false
	}
	errs.Add("", "%s", err.Error())
	return false
}

// UnmarshalJSON keeps the stored args as they are; River decodes a job's
// args with it before handing the job to the kind's worker.
func (a *RawArgs) UnmarshalJSON(b []byte) error {
	a.Raw = append(a.Raw[:0], b...)
	return nil
}

// queueNameRE is River's rule for queue names (river.Client's
// validateQueueName), which River itself checks only when a client starts.
var queueNameRE = regexp.MustCompile(`^(?:[a-z0-9])+(?:[_|\-]?[a-z0-9]+)*$`)

// QueueNameMaxLen is River's longest queue name.
const QueueNameMaxLen = 64

// QueueNameRule says QueueNameOK's rule, for error messages.
const QueueNameRule = "a queue name is up to 64 lowercase letters and digits, separated by single underscores or hyphens (River's rule)"

// QueueNameOK reports whether name is a valid River queue name.
func QueueNameOK(name string) bool {
	return len(name) <= QueueNameMaxLen && queueNameRE.MatchString(name)
}
