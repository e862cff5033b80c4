package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/taskd/taskd/client"
)

type batch struct {
	Tasks []json.RawMessage `json:"tasks"`
}

func TestUnmarshalRejectsDuplicateKeys(t *testing.T) {
	t.Parallel()
	many := func(n int) string { // an object of n distinct keys
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, `"k%d":%d,`, i, i)
		}
		return b.String()
	}
	tests := []struct {
		in    string
		v     any
		field string // "" for no error
	}{
		{`{"kind":"a","kind":"b"}`, &target{}, "kind"},
		{`{"kind":"a","\u006bind":"b"}`, &target{}, "kind"},
		{`{"count":1,"kind":"a","count":1}`, &target{}, "count"},
		{`{"args":{"value":1,"value":2}}`, &target{}, "args.value"},
		{`{"args":{"value":1,"v":{"x":[1,{"a":1,"b":2,"a":3}]}}}`, &target{}, "args.v.x[1].a"},
		{`{"tasks":[{"kind":"a"},{"kind":"a"},{"args":{"value":1,"value":2}}]}`, &batch{}, "tasks[2].args.value"},
		{`{"tasks":[{"kind":"a"},{"kind":"a","kind":"b"}]}`, &batch{}, "tasks[1].kind"},
		{`[{"a":1},{"a":1,"a":2}]`, new(any), "[1].a"},
		{`{"a":[],"a":1}`, new(any), "a"},
		{`{"a":{},"b":{"c":[[]],"d":1},"a":1}`, new(any), "a"},
		{`{"` + strings.Repeat("k", 300) + `":1,"` + strings.Repeat("k", 300) + `":2}`, new(any), strings.Repeat("k", 200) + "…"},
		{`{` + many(100) + `"k99":1}`, new(any), "k99"},
		{`{` + many(smallObject) + `"k0":1}`, new(any), "k0"},
		{`{"x":{` + many(100) + `"z":1},"y":{` + many(100) + `"k7":1}}`, new(any), "y.k7"},
		// encoding/json reads invalid UTF-8 as U+FFFD, so these are one key.
		{"{\"\xff\":1,\"\\ufffd\":2}", new(any), "\ufffd"},
		{"{\"\xff\":1,\"\xfe\":2}", new(any), "\ufffd"},

		{`{"a":1,"A":2,"\u00e9":3,"é":4}`, new(any), "é"},
		{`{"a":1,"A":2,"b":{"a":1},"c":[{"a":1},{"a":1}]}`, new(any), ""},
		{`{"x":{"a":1},"y":{"a":1},"a":{"a":{"a":1}}}`, new(any), ""},
		{`{` + many(100) + `"z":{` + many(100) + `"y":1}}`, new(any), ""},
		{`{"tasks":[{"kind":"a","args":{"kind":"a"}},{"kind":"a"}]}`, &batch{}, ""},
		// The integers after a duplicate are read as integers still.
		{`{"count":1,"count":2,"args":{},"kind":"a"}`, &target{}, "count"},
		{`{"args":{"a":1,"a":1},"count":1.0}`, &target{}, "args.a"},
	}
	for _, tt := range tests {
		err := Unmarshal([]byte(tt.in), tt.v)
		if tt.field == "" {
			if err != nil {
				t.Errorf("%.60s: %v", tt.in, err)
			}
			continue
		}
		var jerr *Error
		if !errors.As(err, &jerr) || jerr.Syntax || jerr.Field != tt.field || jerr.Message != "duplicate key in JSON object" {
			t.Errorf("%.60s: err = %v, want a duplicate at %.60s", tt.in, err, tt.field)
		}
	}
}

// A body that is not JSON is a syntax error (400) even when it repeats a
// key before it goes wrong; a value of the wrong type is reported as that,
// not as the duplicate inside it.
func TestUnmarshalErrorOrder(t *testing.T) {
	t.Parallel()
	for _, in := range []string{`{"a":1,"a":2`, `{"a":1,"a":2}x`, `{"a":1,"a":2,}`, "{\"a\":1,\"a\":\"\x01\"}"} {
		var jerr *Error
		if err := Unmarshal([]byte(in), new(any)); !errors.As(err, &jerr) || !jerr.Syntax {
			t.Errorf("%q: err = %v, want a syntax error", in, err)
		}
	}
	var jerr *Error
	if err := Unmarshal([]byte(`[{"a":1,"a":2}]`), &target{}); !errors.As(err, &jerr) || jerr.Field != "" || jerr.Message != "must be a JSON object" {
		t.Errorf("array for an object: err = %v", err)
	}
}

type numbers struct {
	Int   int               `json:"int"`
	Ptr   *int              `json:"ptr"`
	Int8  int8              `json:"int8"`
	Int64 int64             `json:"int64"`
	Uint  uint64            `json:"uint"`
	Float float64           `json:"float"`
	Ints  []int             `json:"ints"`
	Map   map[string]*int32 `json:"map"`
	Raw   json.RawMessage   `json:"raw"`
	Num   json.Number       `json:"num"`
	Any   any               `json:"any"`
	Str   int               `json:"str,string"`
}

func TestUnmarshalIntegralNumbers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want numbers
	}{
		{`{"ptr":1.0}`, numbers{Ptr: ptr(1)}},
		{`{"ptr":1e2}`, numbers{Ptr: ptr(100)}},
		{`{"ptr":1E+2}`, numbers{Ptr: ptr(100)}},
		{`{"ptr":100.000}`, numbers{Ptr: ptr(100)}},
		{`{"ptr":-2.50e1}`, numbers{Ptr: ptr(-25)}},
		{`{"ptr":0.0}`, numbers{Ptr: ptr(0)}},
		{`{"ptr":-0.0e-7}`, numbers{Ptr: ptr(0)}},
		{`{"ptr":120e-1}`, numbers{Ptr: ptr(12)}},
		{`{"ptr":0.05e2}`, numbers{Ptr: ptr(5)}},
		{`{"int":1` + strings.Repeat("0", 1000) + `e-1000}`, numbers{Int: 1}},
		{`{"int64":9223372036854775807.0}`, numbers{Int64: math.MaxInt64}},
		{`{"int64":-9.223372036854775808e18}`, numbers{Int64: math.MinInt64}},
		{`{"uint":1.8446744073709551615e19}`, numbers{Uint: math.MaxUint64}},
		{`{"int8":-1.28e2}`, numbers{Int8: -128}},
		{`{"ints":[1.0,2e0,3]}`, numbers{Ints: []int{1, 2, 3}}},
		{`{"map":{"a":4.0e0}}`, numbers{Map: map[string]*int32{"a": ptr[int32](4)}}},
		{`{"str":"7"}`, numbers{Str: 7}},
		// Not integers: the target is not, or has other means.
		{`{"float":1.50,"raw":[1.0, 1e2 ],"num":1.0,"any":1e2}`, numbers{Float: 1.5, Raw: json.RawMessage(`[1.0, 1e2 ]`), Num: "1.0", Any: 100.0}},
	}
	for _, tt := range tests {
		in := []byte(tt.in)
		var got numbers
		if err := Unmarshal(in, &got); err != nil {
			t.Errorf("%.60s: %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%.60s: got %+v, want %+v", tt.in, got, tt.want)
		}
		if string(in) != tt.in {
			t.Errorf("%.60s: input changed to %.60s", tt.in, in)
		}
	}
	var top int
	if err := Unmarshal([]byte(` 3.0 `), &top); err != nil || top != 3 {
		t.Errorf("3.0 into int: %d, %v", top, err)
	}

	for _, in := range []string{
		`{"ptr":1.5}`, `{"ptr":1e-1}`, `{"ptr":1.0000000000000000001}`, `{"ptr":10000000000000000000001e-1}`,
		`{"int64":9223372036854775808.0}`, `{"int64":-9.223372036854775809e18}`, `{"uint":1.8446744073709551616e19}`,
		`{"uint":-1.0}`, `{"int8":1.28e2}`, `{"ptr":1e19}`, `{"ptr":1e400}`, `{"ptr":1e999999999999999999999}`,
		`{"ptr":1e-999999999999999999999}`, `{"ints":[1,2.5]}`, `{"map":{"a":1e10}}`,
	} {
		var jerr *Error
		err := Unmarshal([]byte(in), &numbers{})
		if !errors.As(err, &jerr) || jerr.Syntax || jerr.Message != "must be an integer in range" {
			t.Errorf("%s: err = %v, want an integer-in-range error", in, err)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestIntegerText(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"1.0", "1"}, {"-1.0", "-1"}, {"1e2", "100"}, {"1E+2", "100"}, {"100.000", "100"}, {"0.0", "0"}, {"-0.0", "0"},
		{"0e5", "0"}, {"0.00e-5", "0"}, {"12.30e1", "123"}, {"12300e-2", "123"}, {"1.8446744073709551615e19", "18446744073709551615"},
		{"99999999999999999999.0", "99999999999999999999"}, {"1.5", ""}, {"1e-1", ""}, {"1.0000000000000000001", ""},
		{"1e20", ""}, {"100000000000000000000.0", ""}, {"1e1000000000000000", ""}, {"1e-1000000000000000", ""}, {"0.1e1", "1"},
	}
	for _, tt := range tests {
		got, ok := integerText([]byte(tt.in))
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("integerText(%s) = %q, %v; want %q", tt.in, got, ok, tt.want)
		}
	}
}

// FuzzIntegerText checks the digit arithmetic against math/big
// (go test -fuzz=FuzzIntegerText ./internal/strictjson).
func FuzzIntegerText(f *testing.F) {
	for _, seed := range []string{"1.0", "-2.50e1", "1e-1", "0.0e0", "123.456e3", "1.0000000000000000001", "9.9e19"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, num string) {
		s := scanner{data: []byte(num)}
		if num == "" {
			return
		}
		if end, ok := s.number(0, nil); !ok || end != len(num) {
			return // not a JSON number
		}
		if _, exp, ok := strings.Cut(strings.ToLower(num), "e"); ok && len(strings.TrimLeft(exp, "+-0")) > 4 {
			return // math/big would take forever
		}
		r, ok := new(big.Rat).SetString(num)
		if !ok {
			t.Fatalf("big.Rat cannot read %q", num)
		}
		want := ""
		if r.IsInt() && len(new(big.Int).Abs(r.Num()).String()) <= maxIntegerDigits {
			want = r.Num().String()
		}
		got, ok := integerText([]byte(num))
		if got != want || ok != (want != "") {
			t.Fatalf("integerText(%s) = %q, %v; want %q", num, got, ok, want)
		}
	})
}

func TestScanDepth(t *testing.T) {
	t.Parallel()
	for _, depth := range []int{maxDepth - 1, maxDepth, maxDepth + 1} {
		doc := []byte(strings.Repeat("[", depth) + strings.Repeat("]", depth))
		s := scanner{data: doc}
		if got, want := s.scan(nil), json.Valid(doc); got != want {
			t.Errorf("depth %d: scan %v, json.Valid %v", depth, got, want)
		}
	}
}

// FuzzScan checks the scanner against encoding/json on any input: the same
// documents are JSON, the same keys are duplicates, and the numbers it
// rewrites keep their values (go test -fuzz=FuzzScan ./internal/strictjson).
func FuzzScan(f *testing.F) {
	for _, seed := range []string{
		`{}`, `{"a":1,"b":{"c":[1,"]"]}}`, `{"x\"y":"\\","z":[{},[]]}`, `{"tasks":[{"kind":"double","args":{"value":1}}]}`,
		` { "a" : 1 , "b":[1,{"c":"}]"}], "d\"e": {"x":{}} ,"f":"s,\"t","g":null,"h":-1.5e3,"i":true}`,
		`{"a":1,"\u0061":2}`, `[{"a":[1.0,2e1]},{"a":1,"a":2}]`, `{"a":[1.0,{"b":2.50e1}]}`, "\"\xff\"", `-0.0e+00`, `[1,]`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		in := []byte(doc)
		for _, typ := range []reflect.Type{reflect.TypeFor[*any](), reflect.TypeFor[*[]int64](), reflect.TypeFor[*map[string]int64]()} {
			s := scanner{data: in}
			valid := s.scan(typ)
			if valid != json.Valid(in) {
				t.Fatalf("scan(%q) = %v, json.Valid %v", in, valid, !valid)
			}
			if !valid {
				return
			}
			path, dup := duplicateKey(in)
			if dup != (s.dup != nil) || (dup && s.dup.Field != path) {
				t.Fatalf("scan(%q): duplicate %v, want %q, %v", in, s.dup, path, dup)
			}
			if len(s.integers) == 0 {
				continue
			}
			var want, got any
			if err := json.Unmarshal(in, &want); err != nil {
				t.Fatal(err)
			}
			out := s.rewritten()
			if err := json.Unmarshal(out, &got); err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("rewriting %q as %q: %v, %v != %v", in, out, err, got, want)
			}
		}
	})
}

// duplicateKey finds the first duplicate key in the valid JSON document
// data with encoding/json's tokenizer, the way the scanner should.
func duplicateKey(data []byte) (string, bool) {
	type level struct {
		object  bool
		keys    map[string]bool
		key     string
		n       int
		wantKey bool
	}
	var stack []*level
	done := func() { // a value ended
		if len(stack) == 0 {
			return
		}
		if top := stack[len(stack)-1]; top.object {
			top.wantKey = true
		} else {
			top.n++
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		var top *level
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch tok := tok.(type) {
		case json.Delim:
			switch tok {
			case '{', '[':
				if top != nil && top.object {
					top.wantKey = false
				}
				stack = append(stack, &level{object: tok == '{', keys: map[string]bool{}, wantKey: true})
			default:
				stack = stack[:len(stack)-1]
				done()
			}
		case string:
			if top != nil && top.object && top.wantKey {
				top.key, top.wantKey = tok, false
				if top.keys[tok] {
					var b strings.Builder
					for j, l := range stack {
						if !l.object {
							b.WriteString("[" + strconv.Itoa(l.n) + "]")
							continue
						}
						if j > 0 {
							b.WriteByte('.')
						}
						b.WriteString(Clip(l.key))
					}
					return b.String(), true
				}
				top.keys[tok] = true
				continue
			}
			done()
		default:
			done()
		}
	}
}

// batchBody returns a POST /v1/batches body of n tasks and about size bytes,
// each task with a long message and the fields a client would send.
func batchBody(n, size int) []byte {
	item := `{"kind":"fail","args":{"times":1,"message":%q},"queue":"default","priority":2,"max_attempts":5,"delay":"1s","tags":["bench_a","bench_b"]}`
	pad := size/n - len(item)
	msg := strings.Repeat(`a "quoted" word, `, pad/len(`a \"quoted\" word, `)+1)
	var b bytes.Buffer
	b.WriteString(`{"tasks":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, item, msg[:len(msg)-i%10])
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// item is a batch item as the server decodes it.
type item = client.TaskRequest

// BenchmarkUnmarshalBatch decodes a 16 MiB batch of 10,000 tasks, the
// largest POST /v1/batches takes: with json.Unmarshal alone (the floor),
// the scan Unmarshal adds to it alone, Unmarshal, and as the handler does,
// the body then every item.
func BenchmarkUnmarshalBatch(b *testing.B) {
	body := batchBody(10_000, 16<<20)
	b.Run("scan", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			s := scanner{data: body}
			if !s.scan(reflect.TypeFor[*batch]()) || s.dup != nil {
				b.Fatal("scan failed")
			}
		}
	})
	b.Run("json.Unmarshal", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			var req batch
			if err := json.Unmarshal(body, &req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Unmarshal", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			var req batch
			if err := Unmarshal(body, &req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Unmarshal+items", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			var req batch
			if err := Unmarshal(body, &req); err != nil {
				b.Fatal(err)
			}
			for _, raw := range req.Tasks {
				var it item
				if err := Unmarshal(raw, &it); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
