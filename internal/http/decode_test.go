package http

import (
	"net/http/httptest"
	"reflect"
	"strconv"
	"testing"

	"github.com/taskd/taskd/internal/kinds/builtin"
	"github.com/taskd/taskd/internal/tasks"
)

// BenchmarkBatchDecode decodes and checks a POST /v1/batches body of 1,000
// "double" tasks as the harness's scenario 1 sends it, without the
// database: the body, its items, their args, and the checks Submit makes
// (tasks.Rules.Check). It is the part of a batch's cost that is taskd's
// own, and it is deterministic enough on a quiet machine to compare two
// versions of the code:
//
//	go test -run '^$' -bench BenchmarkBatchDecode -benchmem -count 5 ./internal/http/
func BenchmarkBatchDecode(b *testing.B) {
	body := []byte(`{"tasks":[`)
	for i := range 1000 {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, `{"kind":"double","args":{"value":`...)
		body = strconv.AppendInt(body, int64(i), 10)
		body = append(body, `}}`...)
	}
	body = append(body, `]}`...)
	rules := tasks.Rules{Kinds: builtin.Registry(), Queues: []string{"default", "cpu"}}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		batch := decodeBatch(w, body)
		if batch == nil {
			b.Fatalf("decode failed: %s", w.Body)
		}
		for i := range batch.Tasks {
			if errs := rules.Check(&batch.Tasks[i], ""); errs != nil {
				b.Fatal(errs)
			}
		}
	}
}

// batchBodies are POST /v1/batches bodies that decode whole or only item
// by item, or not at all: the cases where the two decodes could part.
var batchBodies = []string{
	`{"tasks":[{"kind":"double","args":{"value":21}}]}`,
	`{"tasks":[{"kind":"double","args":{"value":1},"queue":"cpu","priority":2.0,"max_attempts":3e0,"tags":["a_b"]}]}`,
	`{"tasks":[{"kind":"double","args":{"value":1},"backoff":{"initial":"1s","max":"1h","multiplier":2,"jitter":0.1},"timeout":"30s"}]}`,
	`{"tasks":[{"\u006bind":"double","args":{"value":1, "x": {"y": 1.0}}}],"then":null}`,
	`{"tasks":[{"kind":"double"},null,{}],"then":{"kind":"double","args":{"value":2},"delay":"1s"}}`,
	`{"tasks":[], "then": {}}`,
	` {"tasks" : [ {"kind":"double","args":{"value":1}} ] } `,
	// Refused whole; item by item they are refused (an unknown key, a
	// case-folded one, a duplicate) or taken (nested keys of args).
	`{"tasks":[{"kind":"double","args":{"value":1},"backoff":{"factor":2}}]}`,
	`{"tasks":[{"kind":"double","args":{"value":1},"Queue":"cpu"}]}`,
	`{"tasks":[{"kind":"double","args":{"value":1}}],"then":{"kind":"double","extra":1}}`,
	`{"tasks":[{"kind":"double","kind":"double"}]}`,
	`{"tasks":[{"kind":"double","args":{"value":1,"value":2}}]}`,
	`{"tasks":[{"kind":"double","priority":1.5}]}`,
	`{"tasks":[1,"x",[]]}`,
	`{"tasks":null}`,
	`{}`,
	`{"tasks":[{"kind":"double"}]} x`,
	`{"tasks":[{"kind":"\ud800"}]}`,
	`{"tasks":[{"kind":"a\u0000"}]}`,
	`[]`,
	``,
}

// TestDecodeBatchWholeAgrees checks decodeBatch's fast path against the
// item-by-item decode it stands in for: every body the whole decode takes,
// the item decode takes too, with the same result.
func TestDecodeBatchWholeAgrees(t *testing.T) {
	t.Parallel()
	whole := 0
	for _, body := range batchBodies {
		if checkDecodeBatch(t, []byte(body)) {
			whole++
		}
	}
	// Both kinds of body are here: the test would not notice a fast path
	// that took nothing.
	if whole == 0 || whole == len(batchBodies) {
		t.Fatalf("%d of %d bodies decoded whole; want some, not all", whole, len(batchBodies))
	}
}

// FuzzDecodeBatch is TestDecodeBatchWholeAgrees on fuzzed bodies.
func FuzzDecodeBatch(f *testing.F) {
	for _, body := range batchBodies {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkDecodeBatch(t, body)
	})
}

// checkDecodeBatch fails t when decodeBatchWhole takes body and
// decodeBatchItems does not, or decodes it differently; it reports
// whether the whole decode took it.
func checkDecodeBatch(t *testing.T, body []byte) bool {
	t.Helper()
	got, ok := decodeBatchWhole(body)
	w := httptest.NewRecorder()
	want := decodeBatchItems(w, body)
	if !ok {
		return false
	}
	if want == nil {
		// The item decode refuses text PostgreSQL cannot store, which
		// decodeBatch checks after the whole decode too.
		if !checkText(httptest.NewRecorder(), body) {
			return true
		}
		t.Fatalf("body %q: decoded whole, refused item by item: %s", body, w.Body)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("body %q: whole decode %+v, item decode %+v", body, got, want)
	}
	return true
}
