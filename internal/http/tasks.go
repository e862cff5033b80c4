package http

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"

	"github.com/taskd/taskd/client"
	"github.com/taskd/taskd/internal/backoff"
	"github.com/taskd/taskd/internal/jobs"
	"github.com/taskd/taskd/internal/store"
	"github.com/taskd/taskd/internal/strictjson"
	"github.com/taskd/taskd/internal/tasks"
)

// List limits of GET /v1/tasks.
const (
	listLimitDefault = 50
	listLimitMax     = 500
	// nameMaxChars is the longest kind or queue name River's table
	// allows (its kind_length and queue_length constraints).
	nameMaxChars = 127
)

// The wire types are the public client's, under the names the handlers
// use.
type (
	taskJSON    = client.TaskSummary
	errorJSON   = client.TaskError
	attemptJSON = client.Attempt
	listJSON    = client.TaskList
)

func toErrorsJSON(errs []store.TaskError) []errorJSON {
	out := make([]errorJSON, len(errs))
	for i, e := range errs {
		out[i] = errorJSON{Attempt: e.Attempt, At: e.At, Message: e.Message}
	}
	return out
}

// toTaskJSON is a task as lists show it, without attempts.
func (s *server) toTaskJSON(t *store.Task) taskJSON {
	var batchID, afterBatch *int64
	if t.BatchID != 0 {
		batchID = &t.BatchID
	}
	if t.AfterBatch != 0 {
		afterBatch = &t.AfterBatch
	}
	var schedule *string
	if t.Schedule != "" {
		schedule = &t.Schedule
	}
	// A retry is scheduled for a retryable task, and for an available one
	// with errors and a future scheduled_at (River makes a retry due within
	// its scheduler interval available at once).
	var nextRetry *time.Time
	// A task put off after it ran (snoozed) waits for a retry too.
	ranBefore := len(t.Errors) > 0 || t.StartedAt != nil
	if t.State == store.StateRetryable ||
		((t.State == store.StateAvailable || t.State == store.StateScheduled) && ranBefore && t.ScheduledAt.After(time.Now())) {
		nextRetry = &t.ScheduledAt
	}
	backoffJSON, timeout := s.policyJSON(t)
	return taskJSON{
		BatchID:     batchID,
		AfterBatch:  afterBatch,
		Schedule:    schedule,
		NextRetryAt: nextRetry,
		Backoff:     backoffJSON,
		Timeout:     timeout,
		ID:          t.ID, Kind: t.Kind, Queue: t.Queue, State: t.State, Args: t.Args,
		Priority: t.Priority, Attempt: t.Attempt, MaxAttempts: t.MaxAttempts, Tags: t.Tags,
		CreatedAt: t.CreatedAt, ScheduledAt: t.ScheduledAt, StartedAt: t.StartedAt, FinishedAt: t.FinishedAt,
		Result: t.Result, Errors: toErrorsJSON(t.Errors), CancelRequested: t.CancelRequested,
	}
}

// taskWithAttempts is the single-task form: attempts always present.
type taskWithAttempts = client.Task

// policyJSON is the retry policy and attempt timeout in effect for t: its
// own, else its kind's, else the service's.
func (s *server) policyJSON(t *store.Task) (client.Backoff, *string) {
	own := jobs.ParseOwnPolicy(t.Policy)
	if own == (jobs.OwnPolicy{}) {
		if p, ok := s.kindPolicies[t.Kind]; ok {
			return p.backoff, p.timeout
		}
	}
	return s.policyWire(t.Kind, own)
}

// wirePolicy is a policy as the API shows it.
type wirePolicy struct {
	backoff client.Backoff
	timeout *string
}

// kindPoliciesOf is the policy of every kind s knows, for its tasks that
// set none of their own: most tasks, so that a task read or listed does
// not format the same durations again each time. The answers share its
// pointers; they are only encoded.
func (s *server) kindPoliciesOf() map[string]wirePolicy {
	reg := s.Kinds
	if s.Jobs != nil {
		reg = s.Jobs.Kinds()
	}
	m := map[string]wirePolicy{}
	for _, k := range reg.All() {
		b, timeout := s.policyWire(k.Name, jobs.OwnPolicy{})
		m[k.Name] = wirePolicy{backoff: b, timeout: timeout}
	}
	return m
}

// policyWire is policyJSON without the kinds' precomputed policies.
func (s *server) policyWire(kind string, own jobs.OwnPolicy) (client.Backoff, *string) {
	var p jobs.Policy
	if s.Jobs != nil {
		p = s.Jobs.Policy(kind, own)
	} else {
		// A server without River (tests of the API alone): the kinds it
		// lists and the service's defaults.
		p = jobs.PolicyFor(s.Kinds, jobs.JobTimeoutDefault, kind, own)
	}
	var timeout *string
	if p.Timeout > 0 {
		timeout = new(backoff.FormatDuration(p.Timeout))
	}
	return p.Backoff.Wire(), timeout
}

func (s *server) singleTask(t *store.Task) taskWithAttempts {
	out := taskWithAttempts{TaskSummary: s.toTaskJSON(t), Attempts: make([]attemptJSON, len(t.Attempts))}
	for i, a := range t.Attempts {
		aj := attemptJSON{
			Attempt: a.Attempt, StartedAt: a.StartedAt, FinishedAt: a.FinishedAt, Outcome: a.Outcome,
			DurationMS: float64(a.Duration.Microseconds()) / 1000, Worker: a.Worker,
		}
		if a.Error != "" {
			aj.Error = &a.Error
		}
		if a.HTTPStatus != 0 {
			aj.HTTPStatus = &a.HTTPStatus
		}
		out.Attempts[i] = aj
	}
	return out
}

// decodeBody decodes body strictly into v (the Content-Type is ignored on
// purpose: curl -d sends a form type). It answers the problem itself when
// it returns false.
func decodeBody(w http.ResponseWriter, body []byte, v any) bool {
	err := strictjson.Unmarshal(body, v)
	if err == nil {
		return checkText(w, body)
	}
	var jerr *strictjson.Error
	if errors.As(err, &jerr) {
		if jerr.Syntax {
			writeProblem(w, Problem{Type: typeSyntax, Status: http.StatusBadRequest, Detail: "request body is not valid JSON: " + jerr.Message,
				Errors: []FieldError{{Field: "body", Message: jerr.Message}}})
			return false
		}
		field := jerr.Field
		msg := jerr.Message
		if field == "" {
			field, msg = "body", "must be a JSON object"
		}
		fieldProblem(w, http.StatusUnprocessableEntity, field, msg)
		return false
	}
	fieldProblem(w, http.StatusBadRequest, "body", err.Error())
	return false
}

// backoffProblem decodes the backoff of task p, decoded from raw, once
// more, strictly: strictjson matches the keys of the top-level object only,
// so an unknown key inside backoff ("factor") would go unnoticed.
func backoffProblem(raw []byte, p *tasks.TaskParams) *FieldError {
	if p.Backoff == nil {
		return nil
	}
	var member struct {
		// Only an exact "backoff" key is there: strictjson refused others.
		Backoff json.RawMessage `json:"backoff"`
	}
	if err := json.Unmarshal(raw, &member); err != nil {
		return &FieldError{Field: "backoff", Message: err.Error()} // decoded once already: not reached
	}
	var b client.Backoff
	err := strictjson.Unmarshal(member.Backoff, &b)
	var jerr *strictjson.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &jerr) && jerr.Field != "":
		return &FieldError{Field: "backoff." + jerr.Field, Message: jerr.Message}
	}
	return &FieldError{Field: "backoff", Message: "must be a JSON object"}
}

// checkText refuses, with 422, a JSON body holding text that PostgreSQL
// cannot store or that encoding/json would silently replace (so that two
// different bodies would mean the same): NUL characters, invalid UTF-8,
// unpaired surrogate escapes. It answers the problem itself when it returns
// false.
func checkText(w http.ResponseWriter, body []byte) bool {
	if path, found := strictjson.FindNUL(body); found {
		fieldProblem(w, http.StatusUnprocessableEntity, path, "must not contain the NUL character (\\u0000)")
		return false
	}
	if off, found := strictjson.FindBadText(body); found {
		fieldProblem(w, http.StatusUnprocessableEntity, "body",
			"invalid text at byte "+strconv.Itoa(off)+": strings must be valid UTF-8, and \\u escapes of surrogates must come in pairs")
		return false
	}
	return true
}

// idempotency reads the Idempotency-Key header. It answers the problem
// itself when it returns false.
func idempotency(w http.ResponseWriter, r *http.Request, body []byte) (*tasks.Idempotency, bool) {
	values := r.Header.Values("Idempotency-Key")
	switch len(values) {
	case 0:
		return nil, true
	case 1:
	default:
		// Which one would count is anyone's guess.
		fieldProblem(w, http.StatusBadRequest, "Idempotency-Key", "must be given at most once")
		return nil, false
	}
	key := values[0]
	if key == "" || len(key) > tasks.IdempotencyKeyMaxLength || strings.ContainsFunc(key, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
		fieldProblem(w, http.StatusBadRequest, "Idempotency-Key",
			"must be 1 to "+strconv.Itoa(tasks.IdempotencyKeyMaxLength)+" printable ASCII characters")
		return nil, false
	}
	hash, err := tasks.RequestHash(body)
	if err != nil { // the body decoded already, so this cannot happen
		fieldProblem(w, http.StatusBadRequest, "body", err.Error())
		return nil, false
	}
	return &tasks.Idempotency{Key: key, Hash: hash}, true
}

func (s *server) handleTaskCreate(w http.ResponseWriter, r *http.Request) {
	params, ok := query(w, r, "wait")
	if !ok {
		return
	}
	wait, ok := waitParam(w, params)
	if !ok {
		return
	}
	body, release, ok := s.readBody(w, r, s.MaxBodyBytes)
	if !ok {
		return
	}
	defer release()
	var p tasks.TaskParams
	if !decodeBody(w, body, &p) {
		return
	}
	if fe := backoffProblem(body, &p); fe != nil {
		fieldProblem(w, http.StatusUnprocessableEntity, fe.Field, fe.Message)
		return
	}
	idem, ok := idempotency(w, r, body)
	if !ok {
		return
	}
	for try := 0; ; try++ {
		sub, err := s.Tasks.Submit(r.Context(), &p, idem)
		if err != nil {
			s.writeError(w, r, err, "")
			return
		}
		w.Header().Set("Location", "/v1/tasks/"+strconv.FormatInt(sub.TaskID, 10))
		if sub.Created && wait == 0 {
			writeJSON(w, http.StatusCreated, s.singleTask(sub.Task))
			return
		}
		if sub.Created {
			release() // the body is not needed while the request waits
			if !s.waitFor(w, r, []int64{sub.TaskID}, wait) {
				return
			}
			t, err := s.Store.Task(r.Context(), sub.TaskID)
			if err != nil {
				s.writeError(w, r, err, "task "+strconv.FormatInt(sub.TaskID, 10))
				return
			}
			writeJSON(w, http.StatusCreated, s.singleTask(t))
			return
		}
		if !s.waitFor(w, r, []int64{sub.TaskID}, wait) {
			return
		}
		t, err := s.Store.Task(r.Context(), sub.TaskID)
		if errors.Is(err, store.ErrNotFound) && try == 0 {
			// The key's task was deleted after the key was read, taking the
			// key with it: the request is new again.
			continue
		}
		if err != nil {
			s.writeError(w, r, err, "")
			return
		}
		writeJSON(w, http.StatusOK, s.singleTask(t))
		return
	}
}

// pathID parses the {id} path parameter, answering 400 when it is not a
// positive 64-bit integer. It also refuses any query parameter: no route
// with an id takes one.
func pathID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	id, _, ok := pathIDQuery(w, r)
	return id, ok
}

// pathIDQuery is pathID for a route that takes the query parameters
// known, which it returns.
func pathIDQuery(w http.ResponseWriter, r *http.Request, known ...string) (int64, map[string]string, bool) {
	params, ok := query(w, r, known...)
	if !ok {
		return 0, nil, false
	}
	// Routing decoded the path already (routingPath), once: "%2531" is
	// the id "%31", not 1.
	raw := chi.URLParam(r, "id")
	id, err := strconv.ParseInt(raw, 10, 64)
	// Only the canonical form: no sign, no leading zeros.
	if err != nil || id < 1 || strconv.FormatInt(id, 10) != raw {
		fieldProblem(w, http.StatusBadRequest, "id", "must be a positive integer below 2^63")
		return 0, nil, false
	}
	return id, params, true
}

// waitParam parses ?wait= (0s to tasks.WaitMax), answering 422 itself
// when it returns false.
func waitParam(w http.ResponseWriter, params map[string]string) (time.Duration, bool) {
	raw, ok := params["wait"]
	if !ok {
		return 0, true
	}
	d, err := time.ParseDuration(raw)
	if err != nil || d < 0 || d > tasks.WaitMax {
		fieldProblem(w, http.StatusUnprocessableEntity, "wait", "must be a duration between 0s and "+tasks.WaitMax.String()+", such as 30s")
		return 0, false
	}
	return d, true
}

// waitFor holds the request until the tasks of ids are final or d has
// passed. It returns false when the client left meanwhile: there is no one
// to answer.
func (s *server) waitFor(w http.ResponseWriter, r *http.Request, ids []int64, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	if err := s.Tasks.WaitFinished(r.Context(), ids, d); err != nil {
		if r.Context().Err() != nil && !databaseTimedOut(r) {
			return false
		}
		s.writeError(w, r, err, "")
		return false
	}
	return true
}

func (s *server) handleTaskGet(w http.ResponseWriter, r *http.Request) {
	id, params, ok := pathIDQuery(w, r, "wait")
	if !ok {
		return
	}
	wait, ok := waitParam(w, params)
	if !ok {
		return
	}
	if wait > 0 {
		// A tenant does not wait on another queue's task: a missing one
		// answers at once, and so must it.
		if err := s.Tasks.CheckTask(r.Context(), id); err != nil {
			s.writeError(w, r, err, "task "+strconv.FormatInt(id, 10))
			return
		}
	}
	if !s.waitFor(w, r, []int64{id}, wait) {
		return
	}
	t, err := s.Store.Task(r.Context(), id)
	if err == nil && !tasks.TaskVisible(r.Context(), t) {
		err = store.ErrNotFound
	}
	if err != nil {
		s.writeError(w, r, err, "task "+strconv.FormatInt(id, 10))
		return
	}
	writeJSON(w, http.StatusOK, s.singleTask(t))
}

func (s *server) handleTaskCancel(w http.ResponseWriter, r *http.Request) {
	s.changeTask(w, r, s.Tasks.Cancel)
}

func (s *server) handleTaskRetry(w http.ResponseWriter, r *http.Request) {
	s.changeTask(w, r, s.Tasks.Retry)
}

// changeTask runs change (Cancel or Retry) on the task in the path and
// answers with the task as it is afterwards.
func (s *server) changeTask(w http.ResponseWriter, r *http.Request, change func(context.Context, int64) error) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	if err := change(r.Context(), id); err != nil {
		s.writeError(w, r, err, "task "+strconv.FormatInt(id, 10))
		return
	}
	t, err := s.Store.Task(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err, "task "+strconv.FormatInt(id, 10))
		return
	}
	writeJSON(w, http.StatusOK, s.singleTask(t))
}

func (s *server) handleTaskList(w http.ResponseWriter, r *http.Request) {
	q, ok := query(w, r, "state", "kind", "queue", "limit", "cursor")
	if !ok {
		return
	}
	var (
		p    store.ListParams
		errs []FieldError
	)
	if v, ok := q["state"]; ok {
		for st := range strings.SplitSeq(v, ",") {
			if !slices.Contains(store.States, st) {
				errs = append(errs, FieldError{Field: "state", Message: "unknown state " + quoteClip(st) + "; known: " + strings.Join(store.States, ", ") +
					" (several separated by commas, without spaces)"})
				continue
			}
			if !slices.Contains(p.States, st) {
				p.States = append(p.States, st)
			}
		}
	}
	// Kinds and queues that no process knows (any more) may still have
	// tasks, so only their form is checked: what PostgreSQL can compare.
	p.Kind, p.Queue = q["kind"], q["queue"]
	for name, v := range map[string]string{"kind": p.Kind, "queue": p.Queue} {
		if utf8.RuneCountInString(v) > nameMaxChars {
			errs = append(errs, FieldError{Field: name, Message: "must be at most " + strconv.Itoa(nameMaxChars) + " characters (no task has a longer one)"})
		}
	}
	slices.SortFunc(errs, func(a, b FieldError) int { return strings.Compare(a.Field, b.Field) })
	p.Limit = listLimitDefault
	if v, ok := q["limit"]; ok {
		n, err := strconv.Atoi(v)
		// Only the canonical form: "05" or "+5" is refused like "5x".
		if err != nil || n < 1 || n > listLimitMax || strconv.Itoa(n) != v {
			errs = append(errs, FieldError{Field: "limit", Message: "must be an integer between 1 and " + strconv.Itoa(listLimitMax) + ", written without sign or leading zeros"})
		}
		p.Limit = n
	}
	if v, ok := q["cursor"]; ok {
		id, ok := decodeCursor(v)
		if !ok {
			errs = append(errs, FieldError{Field: "cursor", Message: "is not a cursor returned by this endpoint"})
		}
		p.BeforeID = id
	}
	if errs != nil {
		writeProblem(w, Problem{Type: typeValidation, Status: http.StatusUnprocessableEntity, Detail: "invalid query parameters", Errors: errs})
		return
	}
	var list []*store.Task
	if tasks.RestrictList(r.Context(), &p) {
		var err error
		if list, err = s.Store.TaskList(r.Context(), p); err != nil {
			s.writeError(w, r, err, "")
			return
		}
	}
	tasks := list
	out := listJSON{Tasks: make([]taskJSON, len(tasks))}
	for i, t := range tasks {
		out.Tasks[i] = s.toTaskJSON(t)
	}
	if len(tasks) == p.Limit {
		c := encodeCursor(tasks[len(tasks)-1].ID)
		out.NextCursor = &c
	}
	writeJSON(w, http.StatusOK, out)
}

// Cursors are opaque to clients; today they carry the last task ID seen.
func encodeCursor(id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("id:" + strconv.FormatInt(id, 10)))
}

func decodeCursor(c string) (int64, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, false
	}
	rest, ok := strings.CutPrefix(string(raw), "id:")
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseInt(rest, 10, 64)
	// Only cursors this endpoint could have made.
	if err != nil || id < 1 || encodeCursor(id) != c {
		return 0, false
	}
	return id, true
}
