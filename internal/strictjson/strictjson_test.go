package strictjson

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
)

type target struct {
	Kind  string          `json:"kind"`
	Count *int            `json:"count"`
	Args  json.RawMessage `json:"args"`
}

func TestUnmarshal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in     string
		field  string
		syntax bool
		ok     bool
	}{
		{in: `{"kind":"a","count":1,"args":{"X":1}}`, ok: true},
		{in: ` {"kind":"a"} `, ok: true},
		{in: `{"kind":"a","extra":1}`, field: "extra"},
		{in: `{"Kind":"a"}`, field: "Kind"},
		{in: `{"kind":1}`, field: "kind"},
		{in: `{"count":1.5}`, field: "count"},
		{in: `{"count":1e400}`, field: "count"},
		{in: `[1]`, field: ""},
		{in: `{"kind":"a"} {}`, syntax: true},
		{in: `{"kind":"a"}x`, syntax: true},
		{in: `{"kind":`, syntax: true},
		{in: ``, syntax: true},
		{in: `{'kind':1}`, syntax: true},
	}
	for _, tt := range tests {
		var v target
		err := Unmarshal([]byte(tt.in), &v)
		if tt.ok {
			if err != nil {
				t.Errorf("%s: %v", tt.in, err)
			}
			continue
		}
		var jerr *Error
		if !errors.As(err, &jerr) {
			t.Errorf("%s: err = %v, want *Error", tt.in, err)
			continue
		}
		if jerr.Syntax != tt.syntax || (!tt.syntax && jerr.Field != tt.field) || jerr.Message == "" {
			t.Errorf("%s: got %+v, want field %q syntax %v", tt.in, jerr, tt.field, tt.syntax)
		}
	}
}

func TestTopLevelKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		keys []string
		ok   bool
	}{
		{`{}`, nil, true},
		{` { "a" : 1 , "b":[1,{"c":"}]"}], "d\"e": {"x":{}} ,"f":"s,\"t","g":null,"h":-1.5e3,"i":true}`,
			[]string{"a", "b", `d"e`, "f", "g", "h", "i"}, true},
		{`{"\u0041":1}`, []string{"A"}, true},
		{`[1]`, nil, false},
		{`null`, nil, false},
	}
	for _, tt := range tests {
		keys, ok := topLevelKeys([]byte(tt.in))
		if ok != tt.ok || !slices.Equal(keys, tt.keys) {
			t.Errorf("topLevelKeys(%s) = %q, %v; want %q, %v", tt.in, keys, ok, tt.keys, tt.ok)
		}
	}
}

func TestFindNUL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in    string
		path  string
		found bool
	}{
		{`{"a":"x"}`, "", false},
		{`{"a":"\\u0000"}`, "", false}, // an escaped backslash, then text
		{`{"a":{"b":["ok","x\u0000"]}}`, "a.b[1]", true},
		{`{"k\u0000":1}`, "k\u0000", true},
		{`{"tasks":[{"args":{"message":"\u0000"}}]}`, "tasks[0].args.message", true},
	}
	for _, tt := range tests {
		path, found := FindNUL([]byte(tt.in))
		if found != tt.found || path != tt.path {
			t.Errorf("FindNUL(%s) = %q, %v; want %q, %v", tt.in, path, found, tt.path, tt.found)
		}
	}
}

func TestCanonical(t *testing.T) {
	t.Parallel()
	a, err := Canonical([]byte(`{ "b": [1, 2.50], "a": {"y": null, "x": "s"} }`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Canonical([]byte(`{"a":{"x":"s","y":null},"b":[1,2.50]}`))
	if err != nil {
		t.Fatal(err)
	}
	if string(a) != string(b) {
		t.Errorf("%s != %s", a, b)
	}
	if want := `{"a":{"x":"s","y":null},"b":[1,2.50]}`; string(a) != want {
		t.Errorf("Canonical = %s, want %s", a, want)
	}
}

// FuzzTopLevelKeys checks the scanner against encoding/json on any valid
// JSON object (go test -fuzz=FuzzTopLevelKeys ./internal/strictjson).
func FuzzTopLevelKeys(f *testing.F) {
	for _, seed := range []string{`{}`, `{"a":1,"b":{"c":[1,"]"]}}`, `{"x\"y":"\\","z":[{},[]]}`, `{"tasks":[{"kind":"double","args":{"value":1}}]}`} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var m map[string]json.RawMessage
		if json.Unmarshal([]byte(in), &m) != nil || m == nil {
			return
		}
		keys, ok := topLevelKeys([]byte(in))
		if !ok {
			t.Fatalf("topLevelKeys(%q) not ok", in)
		}
		for _, k := range keys {
			if _, found := m[k]; !found {
				t.Fatalf("topLevelKeys(%q) found %q, not a key", in, k)
			}
		}
		uniq := map[string]bool{}
		for _, k := range keys {
			uniq[k] = true
		}
		if len(uniq) != len(m) {
			t.Fatalf("topLevelKeys(%q) = %q, want the keys of %v", in, keys, m)
		}
	})
}
