package strictjson

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/taskd/taskd/client"
)

// fastAll has a field of every kind decodeFast has a plan for.
type fastAll struct {
	S      string          `json:"s"`
	B      bool            `json:"b"`
	F64    float64         `json:"f64"`
	F32    float32         `json:"f32"`
	I      int             `json:"i"`
	I8     int8            `json:"i8"`
	U16    uint16          `json:"u16"`
	U      uint64          `json:"u"`
	P      *int            `json:"p"`
	PP     **string        `json:"pp"`
	Raw    json.RawMessage `json:"raw"`
	SS     []string        `json:"ss"`
	Named  fastName        `json:"named"`
	Nested struct {
		A *float64 `json:"a"`
		L []int16  `json:"l"`
	} `json:"nested"`
	Items   []fastAll `json:"items"`
	Self    *fastAll  `json:"self"`
	NoTag   string
	skipped string
	Dash    string `json:"-"`
}

type fastName string

// fastNumber has a json.Number, which encoding/json checks (and stops
// decoding at) when it is not a number: no plan, so that a slice decoded
// before it cannot stay behind.
type fastNumber struct {
	SS     []string    `json:"ss"`
	Number json.Number `json:"number"`
	I      int         `json:"i"`
}

// fastNone has fields decodeFast leaves to encoding/json: no plan.
type fastNone struct {
	A any               `json:"a"`
	M map[string]int    `json:"m"`
	B []byte            `json:"b"`
	R *json.RawMessage  `json:"r"`
	Q int               `json:"q,string"`
	E struct{ fastAll } `json:"e"`
}

// fastTargets are the types the fast path is compared on, new each time.
var fastTargets = []func() any{
	func() any { return new(fastAll) },
	func() any { return new(fastNone) },
	func() any { return new(fastNumber) },
	func() any { return new(client.BatchRequest) },
	func() any { return new(client.TaskRequest) },
	func() any { return new(struct{ Value *float64 }) },
	func() any {
		return new(struct {
			Value float64 `json:"value"`
		})
	},
	func() any { return new([]int) },
	func() any { return new(json.RawMessage) },
	func() any { return new(*int) },
	func() any { return new(string) },
	func() any { return new(json.Number) },
}

// agree decodes doc into two new values of each target, with and without
// decodeFast, and fails unless the values and the errors are the same.
func agree(t *testing.T, doc []byte) {
	t.Helper()
	for _, newTarget := range fastTargets {
		for _, deep := range []bool{false, true} {
			fast, slow := newTarget(), newTarget()
			errFast := decode(doc, fast, deep, true)
			errSlow := decode(doc, slow, deep, false)
			if fmt.Sprint(errFast) != fmt.Sprint(errSlow) {
				t.Fatalf("%T (deep %v) from %q: error %v with decodeFast, %v without", fast, deep, doc, errFast, errSlow)
			}
			if !reflect.DeepEqual(fast, slow) {
				t.Fatalf("%T (deep %v) from %q:\nwith decodeFast %+v\nwithout         %+v", fast, deep, doc, deref(fast), deref(slow))
			}
		}
	}
}

func deref(v any) any { return reflect.ValueOf(v).Elem().Interface() }

// fastScalars and fastNested are two documents decodeFast takes whole
// into a fastAll.
const (
	fastScalars = `{"s":"a","b":true,"f64":1.5,"f32":-2e3,"i":-7,"i8":127,"u16":65535,"u":18446744073709551615}`
	fastNested  = `{"nested":{"a":2.5,"l":[1,-2]},"items":[{"s":"x","items":[{}]},{"self":{"i":1}}],"self":null}`
)

var fastSeeds = []string{
	`{}`, `null`, `[]`, `[1,2]`, `"x"`, `1`, fastScalars,
	`{"i8":128}`, `{"u16":-1}`, `{"i":1.0}`, `{"i":1e2}`, `{"i":1.5}`, `{"f32":1e39}`, `{"f64":1e400}`, `{"i":123456789012345678901}`,
	`{"p":null,"pp":"x","raw":{"a": [1, 2 ]},"ss":["a","b"],"named":"n"}`, `{"p":3,"pp":null,"raw":null,"ss":null}`, `{"ss":[]}`,
	fastNested, `{"number":"abc","ss":["a"],"i":1.5}`, `{"ss":["a"],"number":"12","i":1}`, `{"number":1.5e3}`,
	`{"NoTag":"x","skipped":"y","Dash":"z"}`, `{"notag":"x"}`, `{"S":"x"}`, `{"s":"a\"b"}`, `{"s":"\u00e9"}`, "{\"s\":\"\xff\"}", `{"s":"é"}`,
	`{"s":1}`, `{"b":"true"}`, `{"f64":"1"}`, `{"i":true}`, `{"ss":"a"}`, `{"ss":[1]}`, `{"nested":[]}`, `{"items":{}}`, `{"s":null,"b":null,"i":null}`,
	`{"a":1,"m":{"x":1},"b":"AQI=","r":[1],"q":"5","e":{"s":"x"}}`,
	`{"tasks":[{"kind":"double","args":{"value":1},"queue":"q","priority":2,"max_attempts":3,"tags":["t"],"backoff":{"initial":"1s","multiplier":2,"jitter":0.1},"timeout":"5s"}],"then":{"kind":"double"}}`,
	`{"tasks":[{"kind":"double","args":{"value":1}},{"kind":"double","args":{"value":2},"delay":"1s","scheduled_at":null}]}`,
	`{"tasks":[{"kind":"double","backoff":{"Initial":"1s"}}]}`, `{"tasks":[{"kind":"double","Kind":"x"}]}`, `{"tasks":[{"kind":"a"},{"kind":1}]}`,
	`{"kind":"double","args":{"value":1.0}}`, `{"Value":2}`, `{"value":2}`, `{"value":null}`, ` { "value" : 2 } `, `{"value":2,"value":3}`,
}

func TestDecodeFastAgrees(t *testing.T) {
	t.Parallel()
	for _, doc := range fastSeeds {
		agree(t, []byte(doc))
	}
}

// FuzzDecodeFast checks decodeFast against encoding/json on any input: the
// same values and the same errors, for each target, shallow and deep
// (go test -fuzz=FuzzDecodeFast ./internal/strictjson).
func FuzzDecodeFast(f *testing.F) {
	for _, seed := range fastSeeds {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		agree(t, []byte(doc))
	})
}

// TestDecodeFastTakes checks that the fast path answers for what taskd
// decodes on every batch, so that it cannot go unused unnoticed: a batch
// body, a task's args of the double kind, and those of every plan kind.
func TestDecodeFastTakes(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		doc string
		v   any
	}{
		{batchOf(3), new(client.BatchRequest)},
		{`{"kind":"double","args":{"value":1},"backoff":{"max":"1m"},"tags":[]}`, new(client.TaskRequest)},
		{`{"value":1.5}`, new(struct {
			Value *float64 `json:"value"`
		})},
		{fastScalars, new(fastAll)},
		{fastNested, new(fastAll)},
	} {
		s := scanner{data: []byte(c.doc), deep: true}
		if !s.scan(reflect.TypeOf(c.v)) || s.dup != nil || s.unknown != nil {
			t.Fatalf("%s: scan failed", c.doc)
		}
		if !decodeFast([]byte(c.doc), c.v) {
			t.Errorf("decodeFast(%s, %T) left it to encoding/json", c.doc, c.v)
		}
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[fastNone](), reflect.TypeFor[fastNumber](), reflect.TypeFor[json.Number]()} {
		if planFor(typ) != nil {
			t.Errorf("%v has a plan; its fields are encoding/json's", typ)
		}
	}
}

// TestPlanOfFailedTypeKeepsItsParts checks that a type without a plan does
// not take the plans of its fields' types with it: a *uint32 beside a map
// still decodes fast elsewhere (once, a test's struct with a *int beside
// an any left TaskRequest without a plan, depending on which test ran
// first).
func TestPlanOfFailedTypeKeepsItsParts(t *testing.T) {
	t.Parallel()
	type failing struct {
		P *uint32        `json:"p"`
		M map[string]int `json:"m"`
	}
	if planFor(reflect.TypeFor[failing]()) != nil {
		t.Fatal("a struct with a map has a plan")
	}
	if planFor(reflect.TypeFor[*uint32]()) == nil {
		t.Error("*uint32 has no plan after a struct with one and a map had none")
	}
	var v struct {
		P *uint32 `json:"p"`
	}
	if !decodeFast([]byte(`{"p":7}`), &v) || v.P == nil || *v.P != 7 {
		t.Errorf("decodeFast of a *uint32 field: %v", v.P)
	}
}

// batchOf is a batch body of n double tasks as the benchmark submits them.
func batchOf(n int) string {
	var b strings.Builder
	b.WriteString(`{"tasks":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"kind":"double","args":{"value":%d}}`, i)
	}
	b.WriteString(`]}`)
	return b.String()
}

// BenchmarkDecodeBatch decodes a batch of 1,000 double tasks as the batch
// handler does (UnmarshalAll, then each task's args), with decodeFast and
// without it.
func BenchmarkDecodeBatch(b *testing.B) {
	body := []byte(batchOf(1000))
	for _, fast := range []bool{true, false} {
		b.Run(fmt.Sprintf("fast=%v", fast), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				var req client.BatchRequest
				if err := decode(body, &req, true, fast); err != nil {
					b.Fatal(err)
				}
				for _, task := range req.Tasks {
					var args struct {
						Value *float64 `json:"value"`
					}
					if err := decode(task.Args, &args, false, fast); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
