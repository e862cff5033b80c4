package http

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/taskd/taskd/client"
	"github.com/taskd/taskd/internal/jobs"
	"github.com/taskd/taskd/internal/kinds/builtin"
	"github.com/taskd/taskd/internal/store"
	"github.com/taskd/taskd/internal/tasks"
)

// These tests keep openapi.json honest: it must be a valid OpenAPI 3.1
// document, list exactly the routes the router serves, name only components
// that exist, describe the JSON the handlers actually write, and document the
// answers the handlers actually give. None of them needs a database.

// oaMethods are the operation keys of an OpenAPI path item.
var oaMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

func oaLoad(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		t.Fatalf("openapi.json is not valid JSON: %v", err)
	}
	return doc
}

// oaObject follows path from v and returns what it finds as a JSON object,
// failing the test when it is missing or not an object.
func oaObject(t *testing.T, v any, path ...string) map[string]any {
	t.Helper()
	for i, key := range path {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("openapi.json: %s is missing or not an object", strings.Join(path[:i], " > "))
		}
		v = m[key]
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("openapi.json: %s is missing or not an object", strings.Join(path, " > "))
	}
	return m
}

// oaStrings returns a JSON array of strings as a sorted slice.
func oaStrings(t *testing.T, v any, what string) []string {
	t.Helper()
	arr, ok := v.([]any)
	if !ok {
		t.Fatalf("openapi.json: %s is not an array", what)
	}
	out := make([]string, len(arr))
	for i, e := range arr {
		s, ok := e.(string)
		if !ok {
			t.Fatalf("openapi.json: %s[%d] is not a string", what, i)
		}
		out[i] = s
	}
	slices.Sort(out)
	return out
}

func oaSorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// oaResolve follows a local JSON pointer such as
// "#/components/schemas/Task" from the document root.
func oaResolve(doc map[string]any, ref string) (any, error) {
	rest, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, errors.New("not a local reference")
	}
	var cur any = doc
	for tok := range strings.SplitSeq(rest, "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[tok]
			if !ok {
				return nil, errors.New("no " + strconv.Quote(tok))
			}
			cur = v
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(c) {
				return nil, errors.New("no index " + strconv.Quote(tok))
			}
			cur = c[i]
		default:
			return nil, errors.New(strconv.Quote(tok) + " is inside a scalar")
		}
	}
	return cur, nil
}

// oaDeref resolves v when it is a {"$ref": ...} object.
func oaDeref(t *testing.T, doc map[string]any, v any) map[string]any {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("openapi.json: expected an object, got %T", v)
	}
	if ref, ok := m["$ref"].(string); ok {
		target, err := oaResolve(doc, ref)
		if err != nil {
			t.Fatalf("openapi.json: $ref %s: %v", ref, err)
		}
		return oaDeref(t, doc, target)
	}
	return m
}

func TestOpenAPIVersion(t *testing.T) {
	doc := oaLoad(t)
	if got := doc["openapi"]; got != "3.1.0" {
		t.Fatalf("openapi = %v, want 3.1.0", got)
	}
	info := oaObject(t, doc, "info")
	for _, key := range []string{"title", "version"} {
		if s, _ := info[key].(string); s == "" {
			t.Errorf("info.%s is missing", key)
		}
	}
}

// TestOpenAPIMatchesRouter checks that every route is documented and every
// documented operation is routed, so that the two cannot drift apart.
func TestOpenAPIMatchesRouter(t *testing.T) {
	doc := oaLoad(t)
	paths := oaObject(t, doc, "paths")

	documented := map[string]bool{}
	for path, item := range paths {
		for _, method := range oaMethods {
			if _, ok := oaObject(t, item)[method]; ok {
				documented[strings.ToUpper(method)+" "+path] = true
			}
		}
	}

	// Metrics set, so that its optional route is walked too.
	s := &server{Config: Config{Ready: func(context.Context) error { return nil }, Metrics: http.NotFoundHandler()}, logger: slog.New(slog.DiscardHandler)}
	routes, ok := s.routes().(chi.Routes)
	if !ok {
		t.Fatalf("routes() returned %T, not a chi.Routes", s.routes())
	}
	routed := map[string]bool{}
	err := chi.Walk(routes, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		routed[method+" "+route] = true
		return nil
	})
	if err != nil {
		t.Fatalf("chi.Walk: %v", err)
	}
	if len(routed) == 0 {
		t.Fatal("chi.Walk found no routes")
	}

	for _, r := range slices.Sorted(maps.Keys(routed)) {
		if !documented[r] {
			t.Errorf("route %s is not in openapi.json", r)
		}
	}
	for _, d := range slices.Sorted(maps.Keys(documented)) {
		if !routed[d] {
			t.Errorf("openapi.json documents %s, which the router does not serve", d)
		}
	}
}

// TestOpenAPIRefsResolve checks that every $ref names an existing
// component, and that every component is used.
func TestOpenAPIRefsResolve(t *testing.T) {
	doc := oaLoad(t)
	used := map[string]bool{}
	var walk func(v any, at string)
	walk = func(v any, at string) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"]; ok {
				s, _ := ref.(string)
				if !strings.HasPrefix(s, "#/components/") {
					t.Errorf("%s: $ref %v does not point into #/components", at, ref)
				} else if _, err := oaResolve(doc, s); err != nil {
					t.Errorf("%s: $ref %s does not resolve: %v", at, s, err)
				}
				used[s] = true
			}
			for _, k := range slices.Sorted(maps.Keys(v)) {
				walk(v[k], at+"/"+k)
			}
		case []any:
			for i, e := range v {
				walk(e, at+"/"+strconv.Itoa(i))
			}
		}
	}
	walk(doc, "#")
	// Security schemes are referenced by name in security requirements.
	if reqs, ok := doc["security"].([]any); ok {
		for _, req := range reqs {
			for name := range oaObject(t, req) {
				used["#/components/securitySchemes/"+name] = true
			}
		}
	}
	if len(used) == 0 {
		t.Fatal("openapi.json has no $ref at all")
	}
	components := oaObject(t, doc, "components")
	for _, section := range slices.Sorted(maps.Keys(components)) {
		for _, name := range slices.Sorted(maps.Keys(oaObject(t, components, section))) {
			if ref := "#/components/" + section + "/" + name; !used[ref] {
				t.Errorf("component %s is never referenced", ref)
			}
		}
	}
}

// TestOpenAPIOperations checks what every operation must have: a unique
// operationId, and problem+json for every error answer.
func TestOpenAPIOperations(t *testing.T) {
	doc := oaLoad(t)
	ids := map[string]string{}
	for path, item := range oaObject(t, doc, "paths") {
		for _, method := range oaMethods {
			op, ok := oaObject(t, item)[method]
			if !ok {
				continue
			}
			name := strings.ToUpper(method) + " " + path
			id, _ := oaObject(t, op)["operationId"].(string)
			if id == "" {
				t.Errorf("%s has no operationId", name)
			} else if other, dup := ids[id]; dup {
				t.Errorf("%s and %s share operationId %q", name, other, id)
			}
			ids[id] = name
			responses := oaObject(t, op, "responses")
			if _, ok := responses["default"]; !ok {
				t.Errorf("%s has no default (500) response", name)
			}
			for code, resp := range responses {
				content := oaObject(t, oaDeref(t, doc, resp), "content")
				isError := code == "default" || code >= "4"
				for mediaType := range content {
					if isError != (mediaType == "application/problem+json") {
						t.Errorf("%s %s: media type %s", name, code, mediaType)
					}
				}
				if isError && content["application/problem+json"] != nil {
					schema, _ := oaObject(t, content, "application/problem+json")["schema"].(map[string]any)
					if schema["$ref"] != "#/components/schemas/Problem" {
						t.Errorf("%s %s: problem schema is %v, want the Problem component", name, code, schema)
					}
				}
			}
		}
	}
}

// oaJSONKeys returns the sorted object keys of v encoded as JSON.
func oaJSONKeys(t *testing.T, v any) []string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return slices.Sorted(maps.Keys(m))
}

// TestOpenAPISchemasMatchJSON compares component schemas with the Go types
// the handlers encode and decode: the documented properties must be the JSON
// fields, and the required ones those that are never left out.
func TestOpenAPISchemasMatchJSON(t *testing.T) {
	doc := oaLoad(t)
	schemas := oaObject(t, doc, "components", "schemas")
	for _, tc := range []struct {
		schema string
		// zero holds the fields always present; full every field. A nil
		// full means zero has every field.
		zero, full any
		// request schemas document their own required fields.
		request bool
	}{
		{schema: "Task", zero: taskWithAttempts{}},
		{schema: "TaskSummary", zero: taskJSON{}}, // attempts is never set in lists
		{schema: "TaskList", zero: listJSON{}},
		{schema: "Attempt", zero: attemptJSON{}},
		{schema: "AttemptError", zero: errorJSON{}},
		{schema: "BatchCreated", zero: batchCreatedJSON{}},
		{schema: "Batch", zero: batchJSON{}},
		{schema: "BatchTask", zero: batchTaskJSON{}},
		{schema: "Kind", zero: kindJSON{}, full: kindJSON{Timeout: "1s"}},
		{schema: "Problem", zero: Problem{}, full: Problem{Detail: "d", Errors: []FieldError{{}}}},
		{schema: "FieldError", zero: FieldError{}},
		{schema: "TaskRequest", zero: tasks.TaskParams{}, request: true},
		{schema: "BatchRequest", zero: batchRequest{}, request: true},
		{schema: "ClaimRequest", zero: tasks.ClaimParams{}, full: tasks.ClaimParams{Kinds: []string{"k"}, Queues: []string{"q"},
			Max: new(1), Wait: new("1s"), Lease: new("1m"), Worker: new("w")}, request: true},
		{schema: "ClaimedTask", zero: client.ClaimedTask{}},
		{schema: "ClaimList", zero: client.ClaimList{}},
		{schema: "CompleteRequest", zero: tasks.CompleteParams{}, full: tasks.CompleteParams{Result: json.RawMessage("1")}, request: true},
		{schema: "FailRequest", zero: tasks.FailParams{}, full: tasks.FailParams{RetryAfter: new("1s"), Permanent: new(true), Interrupted: new(true)}, request: true},
		{schema: "HeartbeatRequest", zero: tasks.HeartbeatParams{}, full: tasks.HeartbeatParams{Extend: new("1s")}, request: true},
		{schema: "Heartbeat", zero: client.Heartbeat{}},
		{schema: "Queue", zero: client.Queue{}},
		{schema: "QueueList", zero: client.QueueList{}},
		{schema: "Schedule", zero: client.Schedule{}},
		{schema: "ScheduleSpec", zero: client.ScheduleSpec{}, full: client.ScheduleSpec{Cron: "* * * * *", Every: "1s"}},
		{schema: "ScheduleList", zero: client.ScheduleList{}},
		{schema: "Ready", zero: client.Ready{}},
	} {
		t.Run(tc.schema, func(t *testing.T) {
			s := oaObject(t, schemas, tc.schema)
			props := slices.Sorted(maps.Keys(oaObject(t, s, "properties")))
			full := tc.full
			if full == nil {
				full = tc.zero
			}
			if want := oaJSONKeys(t, full); !slices.Equal(props, want) {
				t.Errorf("properties = %v, want the JSON fields %v", props, want)
			}
			if tc.request {
				return
			}
			if got, want := oaStrings(t, s["required"], tc.schema+".required"), oaJSONKeys(t, tc.zero); !slices.Equal(got, want) {
				t.Errorf("required = %v, want the fields never left out %v", got, want)
			}
		})
	}
}

// TestOpenAPIMatchesLimits compares enums and limits with the code's.
func TestOpenAPIMatchesLimits(t *testing.T) {
	doc := oaLoad(t)
	schemas := oaObject(t, doc, "components", "schemas")

	if got, want := oaStrings(t, oaObject(t, schemas, "TaskState")["enum"], "TaskState.enum"), oaSorted(store.States); !slices.Equal(got, want) {
		t.Errorf("TaskState enum = %v, want %v", got, want)
	}
	outcomes := oaSorted(store.Outcomes)
	if got := oaStrings(t, oaObject(t, schemas, "AttemptOutcome")["enum"], "AttemptOutcome.enum"); !slices.Equal(got, outcomes) {
		t.Errorf("AttemptOutcome enum = %v, want %v", got, outcomes)
	}

	req := oaObject(t, schemas, "TaskRequest", "properties")
	if got, want := oaStrings(t, oaObject(t, req, "kind")["enum"], "TaskRequest.kind.enum"), builtin.Registry().Names(); !slices.Equal(got, want) {
		t.Errorf("TaskRequest.kind enum = %v, want %v", got, want)
	}
	list := oaObject(t, doc, "paths", "/v1/tasks", "get")
	var limit map[string]any
	for _, p := range list["parameters"].([]any) {
		if p := oaDeref(t, doc, p); p["name"] == "limit" {
			limit = oaObject(t, p, "schema")
		}
	}
	if limit == nil {
		t.Fatal("GET /v1/tasks has no limit parameter")
	}
	idemKey := oaObject(t, doc, "components", "parameters", "IdempotencyKey", "schema")
	for _, c := range []struct {
		what string
		got  any
		want int
	}{
		{"TaskRequest.priority.maximum", oaObject(t, req, "priority")["maximum"], 4},
		{"TaskRequest.max_attempts.maximum", oaObject(t, req, "max_attempts")["maximum"], tasks.MaxAttemptsMax},
		{"TaskRequest.max_attempts.default", oaObject(t, req, "max_attempts")["default"], jobs.MaxAttemptsDefault},
		{"TaskRequest.tags.maxItems", oaObject(t, req, "tags")["maxItems"], tasks.MaxTags},
		{"TaskRequest.tags.items.maxLength", oaObject(t, req, "tags", "items")["maxLength"], tasks.MaxTagLength},
		{"BatchRequest.tasks.maxItems", oaObject(t, schemas, "BatchRequest", "properties", "tasks")["maxItems"], tasks.BatchMax},
		{"IdempotencyKey.maxLength", idemKey["maxLength"], tasks.IdempotencyKeyMaxLength},
		{"limit.default", limit["default"], listLimitDefault},
		{"limit.maximum", limit["maximum"], listLimitMax},
	} {
		if c.got != float64(c.want) {
			t.Errorf("%s = %v, want %d", c.what, c.got, c.want)
		}
	}

	// Each kind's args schema, as GET /v1/kinds gives it, must agree with
	// the args alternative titled with the kind's name.
	byTitle := map[string]map[string]any{}
	for _, alt := range oaObject(t, req, "args")["oneOf"].([]any) {
		a := oaDeref(t, doc, alt)
		title, _ := a["title"].(string)
		byTitle[title] = a
	}
	if len(byTitle) != len(builtin.Kinds()) {
		t.Errorf("TaskRequest.args has %d alternatives, want one per kind (%d)", len(byTitle), len(builtin.Kinds()))
	}
	for _, k := range builtin.Kinds() {
		documented, ok := byTitle[k.Name]
		if !ok {
			t.Errorf("TaskRequest.args has no alternative titled %q", k.Name)
			continue
		}
		var actual map[string]any
		if err := json.Unmarshal(k.ArgsSchema, &actual); err != nil {
			t.Fatalf("kind %s: args schema: %v", k.Name, err)
		}
		oaCheckSubschema(t, "args of "+k.Name, actual, documented)
	}
}

// oaCheckSubschema reports the keywords of actual that documented lacks or
// gives differently; documented may add keywords such as descriptions.
func oaCheckSubschema(t *testing.T, at string, actual, documented map[string]any) {
	t.Helper()
	for key, av := range actual {
		dv, ok := documented[key]
		switch {
		case !ok:
			t.Errorf("%s: openapi.json lacks %q (%v)", at, key, av)
		case key == "properties":
			ap, dp := av.(map[string]any), dv.(map[string]any)
			if got, want := slices.Sorted(maps.Keys(dp)), slices.Sorted(maps.Keys(ap)); !slices.Equal(got, want) {
				t.Errorf("%s: properties = %v, want %v", at, got, want)
			}
			for name, sub := range ap {
				if dsub, ok := dp[name].(map[string]any); ok {
					oaCheckSubschema(t, at+"."+name, sub.(map[string]any), dsub)
				}
			}
		case key == "description":
		default:
			if a, d := oaJSON(t, av), oaJSON(t, dv); a != d {
				t.Errorf("%s: %s = %s, want %s", at, key, d, a)
			}
		}
	}
}

func oaJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestOpenAPIDocumentsAnswers makes requests that need no database and
// checks that each answer's status is documented for its operation with the
// right media type, and that every error is a problem.
func TestOpenAPIDocumentsAnswers(t *testing.T) {
	doc := oaLoad(t)
	notReady := errors.New("database unreachable")
	handler := mustServer(t, Config{Ready: func(context.Context) error { return nil }})
	unready := mustServer(t, Config{Ready: func(context.Context) error { return notReady }})
	problemTypes := map[string]bool{}
	for _, alt := range oaObject(t, doc, "components", "schemas", "Problem", "properties", "type")["anyOf"].([]any) {
		problemTypes[oaObject(t, alt)["const"].(string)] = true
	}

	valid := `{"kind":"double","args":{"value":21}}`
	for _, tc := range []struct {
		name    string
		handler http.Handler
		method  string
		target  string
		body    string
		header  map[string]string
		// op is the documented "METHOD /path" of the request, "" for
		// requests that match no operation.
		op     string
		status int
		field  string // the first FieldError's field, if any
	}{
		{name: "healthz", method: "GET", target: "/healthz", op: "GET /healthz", status: 200},
		{name: "ready", method: "GET", target: "/readyz", op: "GET /readyz", status: 200},
		{name: "not ready", handler: unready, method: "GET", target: "/readyz", op: "GET /readyz", status: 503},
		{name: "openapi", method: "GET", target: "/openapi.json", op: "GET /openapi.json", status: 200},
		{name: "kinds", method: "GET", target: "/v1/kinds", op: "GET /v1/kinds", status: 200},
		{name: "schedules with a parameter", method: "GET", target: "/v1/schedules?name=nightly", op: "GET /v1/schedules", status: 422, field: "name"},
		{name: "unknown path", method: "GET", target: "/v2/tasks", status: 404},
		{name: "method not allowed", method: "DELETE", target: "/v1/tasks/1", status: 405},
		{name: "bad task id", method: "GET", target: "/v1/tasks/abc", op: "GET /v1/tasks/{id}", status: 400, field: "id"},
		{name: "zero task id", method: "POST", target: "/v1/tasks/0/cancel", op: "POST /v1/tasks/{id}/cancel", status: 400, field: "id"},
		{name: "huge task id", method: "POST", target: "/v1/tasks/9223372036854775808/retry", op: "POST /v1/tasks/{id}/retry", status: 400, field: "id"},
		{name: "bad batch id", method: "GET", target: "/v1/batches/-1", op: "GET /v1/batches/{id}", status: 400, field: "id"},
		{name: "bad limit", method: "GET", target: "/v1/tasks?limit=501", op: "GET /v1/tasks", status: 422, field: "limit"},
		{name: "bad state", method: "GET", target: "/v1/tasks?state=running,done", op: "GET /v1/tasks", status: 422, field: "state"},
		{name: "bad cursor", method: "GET", target: "/v1/tasks?cursor=xyz", op: "GET /v1/tasks", status: 422, field: "cursor"},
		{name: "unknown query parameter", method: "GET", target: "/v1/tasks?sort=id", op: "GET /v1/tasks", status: 422, field: "sort"},
		{name: "malformed task", method: "POST", target: "/v1/tasks", body: `{"kind":`, op: "POST /v1/tasks", status: 400, field: "body"},
		{name: "empty body", method: "POST", target: "/v1/tasks", op: "POST /v1/tasks", status: 400, field: "body"},
		{name: "not an object", method: "POST", target: "/v1/tasks", body: `[1]`, op: "POST /v1/tasks", status: 422, field: "body"},
		{name: "unknown field", method: "POST", target: "/v1/tasks", body: `{"kind":"double","args":{"value":21},"prio":2}`, op: "POST /v1/tasks", status: 422, field: "prio"},
		{name: "wrong type", method: "POST", target: "/v1/tasks", body: `{"kind":"double","args":{"value":21},"priority":"high"}`, op: "POST /v1/tasks", status: 422, field: "priority"},
		{name: "NUL", method: "POST", target: "/v1/tasks", body: `{"kind":"double","args":{"value":21},"queue":"a\u0000"}`, op: "POST /v1/tasks", status: 422, field: "queue"},
		{name: "too large", method: "POST", target: "/v1/tasks", body: `{"kind":"` + strings.Repeat("x", MaxBodyBytesDefault) + `"}`, op: "POST /v1/tasks", status: 413},
		{name: "bad key", method: "POST", target: "/v1/tasks", body: valid, header: map[string]string{"Idempotency-Key": strings.Repeat("k", 256)}, op: "POST /v1/tasks", status: 400, field: "Idempotency-Key"},
		{name: "control char in key", method: "POST", target: "/v1/tasks", body: valid, header: map[string]string{"Idempotency-Key": "a\x7fb"}, op: "POST /v1/tasks", status: 400, field: "Idempotency-Key"},
		{name: "malformed batch", method: "POST", target: "/v1/batches", body: `{"tasks":[`, op: "POST /v1/batches", status: 400, field: "body"},
		{name: "batch without tasks", method: "POST", target: "/v1/batches", body: `{}`, op: "POST /v1/batches", status: 422, field: "tasks"},
		{name: "batch item not an object", method: "POST", target: "/v1/batches", body: `{"tasks":[` + valid + `,1]}`, op: "POST /v1/batches", status: 422, field: "tasks[1]"},
		{name: "batch item unknown field", method: "POST", target: "/v1/batches", body: `{"tasks":[` + valid + `,{"kind":"double","bogus":1}]}`, op: "POST /v1/batches", status: 422, field: "tasks[1].bogus"},
		{name: "batch bad key", method: "POST", target: "/v1/batches", body: `{"tasks":[` + valid + `]}`, header: map[string]string{"Idempotency-Key": "é"}, op: "POST /v1/batches", status: 400, field: "Idempotency-Key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.handler
			if h == nil {
				h = handler
			}
			req := httptest.NewRequest(tc.method, tc.target, strings.NewReader(tc.body))
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.status {
				t.Fatalf("status = %d, want %d; body: %s", rec.Code, tc.status, rec.Body)
			}
			ctype := rec.Header().Get("Content-Type")
			if tc.status >= 400 {
				if ctype != "application/problem+json" {
					t.Errorf("Content-Type = %q, want application/problem+json", ctype)
				}
				var p Problem
				if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
					t.Fatalf("answer is not a problem: %v; body: %s", err, rec.Body)
				}
				if p.Status != tc.status || p.Title == "" || !problemTypes[p.Type] {
					t.Errorf("problem %+v: wrong status, no title, or a type openapi.json does not list", p)
				}
				if tc.field != "" && (len(p.Errors) == 0 || p.Errors[0].Field != tc.field) {
					t.Errorf("problem errors = %+v, want field %q first", p.Errors, tc.field)
				}
			}
			if tc.op == "" {
				return
			}
			method, path, _ := strings.Cut(tc.op, " ")
			op := oaObject(t, doc, "paths", path, strings.ToLower(method))
			resp, ok := oaObject(t, op, "responses")[strconv.Itoa(tc.status)]
			if !ok {
				t.Fatalf("openapi.json does not document status %d for %s", tc.status, tc.op)
			}
			mediaType, _, _ := strings.Cut(ctype, ";")
			if _, ok := oaObject(t, oaDeref(t, doc, resp), "content")[mediaType]; !ok {
				t.Errorf("openapi.json does not document %s for %s %d", mediaType, tc.op, tc.status)
			}
		})
	}
}

func mustServer(t *testing.T, cfg Config) http.Handler {
	t.Helper()
	h, err := NewServer(cfg)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	return h
}

// TestOpenAPIServed checks that GET /openapi.json serves the embedded
// document unchanged.
func TestOpenAPIServed(t *testing.T) {
	rec := httptest.NewRecorder()
	mustServer(t, Config{Ready: func(context.Context) error { return nil }}).ServeHTTP(rec, httptest.NewRequest("GET", "/openapi.json", nil))
	if rec.Code != http.StatusOK || rec.Body.String() != string(openAPIDocument) {
		t.Fatalf("GET /openapi.json: status %d, %d bytes; want 200 and the %d bytes of openapi.json", rec.Code, rec.Body.Len(), len(openAPIDocument))
	}
}
