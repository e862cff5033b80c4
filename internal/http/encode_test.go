package http

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/taskd/taskd/client"
)

// randomValue fills v with random values for every field, through
// reflection, so that a field added to the wire types is filled too and
// an appender that leaves it out writes something other than json.Marshal.
func randomValue(r *rand.Rand, v reflect.Value) {
	switch v.Type() {
	case reflect.TypeFor[time.Time]():
		zones := []*time.Location{time.UTC, time.Local, time.FixedZone("", 5*3600+1800), time.FixedZone("x", -8*3600), time.FixedZone("", 23*3600+59*60)}
		t := time.Unix(r.Int64N(4e9)-1e9, r.Int64N(1e9)*int64(r.IntN(2))).In(zones[r.IntN(len(zones))])
		v.Set(reflect.ValueOf(t))
		return
	case reflect.TypeFor[json.RawMessage]():
		raws := []string{`{"value": 21}`, ` [1, 2 ,3 ] `, `"<b>&amp;</b>"`, "\"\u2028\u2029\"", `null`, `42`, `{"a":{"b":[true,false,null]}}`, `"\u00e9\\n"`, `{}`}
		if r.IntN(6) == 0 {
			v.Set(reflect.Zero(v.Type())) // nil: null
			return
		}
		v.Set(reflect.ValueOf(json.RawMessage(raws[r.IntN(len(raws))])))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(randomString(r))
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Int16:
		v.SetInt(r.Int64N(1<<40) - 1<<39)
	case reflect.Float64:
		floats := []float64{0, math.Copysign(0, -1), 1e-7, 1e21, 9.99e20, 123.456, 1.5, -2.5e-8, 1e-6, 3}
		if r.IntN(2) == 0 {
			v.SetFloat(floats[r.IntN(len(floats))])
		} else {
			v.SetFloat(r.NormFloat64() * math.Pow(10, float64(r.IntN(40)-20)))
		}
	case reflect.Bool:
		v.SetBool(r.IntN(2) == 0)
	case reflect.Pointer:
		if r.IntN(3) == 0 {
			v.Set(reflect.Zero(v.Type()))
			return
		}
		p := reflect.New(v.Type().Elem())
		randomValue(r, p.Elem())
		v.Set(p)
	case reflect.Slice:
		switch r.IntN(5) {
		case 0:
			v.Set(reflect.Zero(v.Type()))
			return
		case 1:
			v.Set(reflect.MakeSlice(v.Type(), 0, 0))
			return
		}
		s := reflect.MakeSlice(v.Type(), 1+r.IntN(3), 4)
		for i := range s.Len() {
			randomValue(r, s.Index(i))
		}
		v.Set(s)
	case reflect.Struct:
		for i := range v.NumField() {
			randomValue(r, v.Field(i))
		}
	default:
		panic("randomValue: no generator for " + v.Type().String())
	}
}

// randomString mixes what encoding/json escapes: quotes, control
// characters, HTML characters, U+2028/U+2029, invalid UTF-8.
func randomString(r *rand.Rand) string {
	parts := []string{"double", "default", `"`, `\`, "\n", "\t", "\b", "\f", "\r", "\x00", "\x1f", "<", ">", "&", "\u2028", "\u2029",
		"é", "日本", "\xff", "\xe2\x80", "😀", " ", "ok", "\x7f"}
	var b []byte
	for range r.IntN(6) {
		b = append(b, parts[r.IntN(len(parts))]...)
	}
	return string(b)
}

func TestAppendTaskMatchesMarshal(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 5000 {
		var task client.Task
		randomValue(r, reflect.ValueOf(&task).Elem())
		checkAppend(t, i, &task, func(b []byte) ([]byte, bool) { return appendTask(b, &task) })
		var list client.TaskList
		randomValue(r, reflect.ValueOf(&list).Elem())
		checkAppend(t, i, &list, func(b []byte) ([]byte, bool) { return appendTaskList(b, &list) })
		if t.Failed() {
			return
		}
	}
}

// checkAppend compares an appender's output with json.Marshal's, after a
// prefix that the appender must keep.
func checkAppend(t *testing.T, i int, v any, appendFn func([]byte) ([]byte, bool)) {
	t.Helper()
	want, werr := json.Marshal(v)
	got, ok := appendFn([]byte("prefix"))
	switch {
	case werr != nil && ok:
		t.Errorf("case %d: json.Marshal fails (%v) but the appender wrote\n%s", i, werr, got)
	case werr == nil && !ok:
		t.Errorf("case %d: the appender refused what json.Marshal writes:\n%s", i, want)
	case werr == nil && !bytes.Equal(got, append([]byte("prefix"), want...)):
		t.Errorf("case %d:\n got %s\nwant prefix%s", i, got, want)
	}
}

// TestAppendRefuses checks that the appenders refuse what encoding/json
// refuses, so that writeJSONBody lets it fail as before.
func TestAppendRefuses(t *testing.T) {
	nan, year := math.NaN(), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	zone := time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("", 24*3600))
	for name, task := range map[string]client.Task{
		"NaN duration":    {Attempts: []client.Attempt{{DurationMS: nan}}},
		"infinite jitter": {TaskSummary: client.TaskSummary{Backoff: client.Backoff{Jitter: new(math.Inf(1))}}},
		"year 10000":      {TaskSummary: client.TaskSummary{CreatedAt: year}},
		"zone of 24h":     {TaskSummary: client.TaskSummary{StartedAt: &zone}},
		"negative year":   {TaskSummary: client.TaskSummary{ScheduledAt: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)}},
		"invalid args":    {TaskSummary: client.TaskSummary{Args: json.RawMessage(`{"a":`)}},
		"empty result":    {TaskSummary: client.TaskSummary{Result: json.RawMessage{}}},
	} {
		if _, err := json.Marshal(task); err == nil {
			t.Errorf("%s: json.Marshal accepts it; the case tests nothing", name)
		}
		if b, ok := appendTask(nil, &task); ok {
			t.Errorf("%s: appendTask wrote %s", name, b)
		}
	}
}

func FuzzAppendTask(f *testing.F) {
	f.Add("double", `{"value": 1}`, 1.5, int64(1700000000), int64(5), "<&>")
	f.Add("\xff\u2028", ` [ ] `, 1e-7, int64(-62135596800), int64(0), "")
	f.Fuzz(func(t *testing.T, s, raw string, fl float64, sec, nsec int64, msg string) {
		at := time.Unix(sec, nsec)
		task := client.Task{
			TaskSummary: client.TaskSummary{Kind: s, Args: json.RawMessage(raw), CreatedAt: at, Tags: []string{msg, s},
				Errors: []client.TaskError{{At: at, Message: msg}}, Backoff: client.Backoff{Multiplier: &fl, Initial: &s}},
			Attempts: []client.Attempt{{DurationMS: fl, Worker: msg, StartedAt: at, Error: &s}},
		}
		checkAppend(t, 0, &task, func(b []byte) ([]byte, bool) { return appendTask(b, &task) })
	})
}

func BenchmarkAppendTask(b *testing.B) {
	task := benchTask()
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		var buf bytes.Buffer
		for range b.N {
			buf.Reset()
			if err := json.NewEncoder(&buf).Encode(task); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("appendTask", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 4096)
		for range b.N {
			var ok bool
			if buf, ok = appendTask(buf[:0], &task); !ok {
				b.Fatal("refused")
			}
		}
	})
}

// benchTask is a completed task with one attempt, as scenario 5 reads.
func benchTask() client.Task {
	at := time.Date(2026, 12, 2, 12, 0, 0, 123456000, time.UTC)
	done := at.Add(1500 * time.Microsecond)
	initial, maxDelay, mult, jitter, timeout := "1s", "1h0m0s", 2.0, 0.1, "1m0s"
	return client.Task{
		TaskSummary: client.TaskSummary{ID: 123456, Kind: "double", Queue: "default", State: "completed", Args: json.RawMessage(`{"value": 21}`),
			Priority: 1, Attempt: 1, MaxAttempts: 25, Tags: []string{}, CreatedAt: at, ScheduledAt: at, StartedAt: &at, FinishedAt: &done,
			Result: json.RawMessage(`{"result": 42}`), Errors: []client.TaskError{},
			Backoff: client.Backoff{Initial: &initial, Max: &maxDelay, Multiplier: &mult, Jitter: &jitter}, Timeout: &timeout},
		Attempts: []client.Attempt{{Attempt: 1, StartedAt: at, FinishedAt: &done, Outcome: "completed", DurationMS: 1.5, Worker: "host-1234-default"}},
	}
}

// TestWriteJSONBodyAppends checks the answer as written: json.Encoder's
// bytes, its newline included, for a type with an appender and for one
// without, and encoding/json's refusal (a panic, which the recoverer
// answers 500) for a value the appender refuses.
func TestWriteJSONBodyAppends(t *testing.T) {
	task := benchTask()
	for name, v := range map[string]any{"task": task, "list": client.TaskList{Tasks: []client.TaskSummary{task.TaskSummary}}, "other": client.Ready{Status: "ready"}} {
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(v); err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		if err := writeJSONBody(rec, http.StatusOK, v, false); err != nil {
			t.Fatal(err)
		}
		if got := rec.Body.String(); got != want.String() {
			t.Errorf("%s: wrote\n%q\nwant\n%q", name, got, want.String())
		}
		if cl := rec.Header().Get("Content-Length"); cl != strconv.Itoa(want.Len()) {
			t.Errorf("%s: Content-Length %s, want %d", name, cl, want.Len())
		}
	}
	bad := benchTask()
	bad.Attempts[0].DurationMS = math.NaN()
	defer func() {
		if recover() == nil {
			t.Error("writeJSONBody wrote a task with a NaN duration")
		}
	}()
	_ = writeJSONBody(httptest.NewRecorder(), http.StatusOK, bad, false)
}
