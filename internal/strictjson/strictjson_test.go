package strictjson

import (
	"encoding/json"
	"errors"
	"strings"
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
		{in: ` { "kind" : "a" , "args":[1,{"c":"}]"}], "d\"e": {"x":{}} }`, field: `d"e`},
		{in: `{"args":{"x":{"kind":1,"Kind":2}},"\u006bind":"a","count":1}`, ok: true},
		{in: `{"kind":"a","\u004bind":"a"}`, field: "Kind"},
		{in: "{\"\xa6\":{}}", field: "\ufffd"},
		{in: `{"count":1.0}`, ok: true},
		{in: `{"count":1,"count":2}`, field: "count"},
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

func TestClip(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"", ""},
		{"kind", "kind"},
		{strings.Repeat("x", ClipLength), strings.Repeat("x", ClipLength)},
		{strings.Repeat("é", ClipLength), strings.Repeat("é", ClipLength)},
		{strings.Repeat("x", ClipLength+1), strings.Repeat("x", ClipLength) + "…"},
		{strings.Repeat("é", 10_000), strings.Repeat("é", ClipLength) + "…"},
		{strings.Repeat("x", ClipLength-1) + "日本", strings.Repeat("x", ClipLength-1) + "日…"},
		{strings.Repeat("\xff", ClipLength+1), strings.Repeat("\xff", ClipLength) + "…"},
	}
	for _, tt := range tests {
		if got := Clip(tt.in); got != tt.want {
			t.Errorf("Clip(%.20q…) = %.20q…, want %.20q…", tt.in, got, tt.want)
		}
	}
}

// Field names come back to the client in the error; a 10,000-character one
// must come back clipped.
func TestUnmarshalClipsFieldNames(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("f", 10_000)
	clipped := strings.Repeat("f", ClipLength) + "…"
	tests := []struct{ in, field string }{
		{`{"kind":"a","` + long + `":1}`, clipped},
		{`{"args":{"` + long + `":{"x":1,"x":2}}}`, "args." + clipped + ".x"},
	}
	for _, tt := range tests {
		var jerr *Error
		if err := Unmarshal([]byte(tt.in), &target{}); !errors.As(err, &jerr) || jerr.Field != tt.field {
			t.Errorf("%.40s: err = %.300v, want field %.40s…", tt.in, err, tt.field)
		}
	}
	path, found := FindNUL([]byte(`{"` + long + `":["\u0000"]}`))
	if !found || path != clipped+"[0]" {
		t.Errorf("FindNUL = %.300s, %v", path, found)
	}
}

// TestUnmarshalAll checks that UnmarshalAll, unlike Unmarshal, refuses
// unknown and case-folded keys of nested structs, naming their path, and
// still leaves objects handed over as bytes alone.
func TestUnmarshalAll(t *testing.T) {
	t.Parallel()
	type inner struct {
		Name string `json:"name"`
		N    *int   `json:"n"`
	}
	type outer struct {
		Items []inner         `json:"items"`
		One   *inner          `json:"one"`
		Raw   json.RawMessage `json:"raw"`
	}
	tests := []struct {
		in    string
		field string // "" when both take it
		// shallow: Unmarshal takes it all the same.
		shallow bool
	}{
		{in: `{"items":[{"name":"a","n":2.0}],"one":{"name":"b"},"raw":{"x":{"Name":1}}}`},
		{in: `{"items":[{"name":"a"},{"nme":"b"}]}`, field: "items[1].nme", shallow: true},
		{in: `{"items":[{"Name":"a"}]}`, field: "items[0].Name", shallow: true},
		{in: `{"one":{"name":"a","x":{}}}`, field: "one.x", shallow: true},
		{in: `{"ones":{}}`, field: "ones"},
		{in: `{"items":[{"name":"a","name":"b"}]}`, field: "items[0].name"},
	}
	for _, tt := range tests {
		var v outer
		err := UnmarshalAll([]byte(tt.in), &v)
		var jerr *Error
		switch {
		case tt.field == "" && err != nil:
			t.Errorf("%s: %v", tt.in, err)
		case tt.field != "" && (!errors.As(err, &jerr) || jerr.Field != tt.field):
			t.Errorf("%s: err = %v, want one naming %q", tt.in, err, tt.field)
		}
		if tt.field != "" && tt.shallow {
			if err := Unmarshal([]byte(tt.in), &v); err != nil {
				t.Errorf("%s: Unmarshal: %v, want it to take nested keys as they are", tt.in, err)
			}
		}
	}
	var v outer
	if err := UnmarshalAll([]byte(`{"items":[{"n":3e1}]}`), &v); err != nil || v.Items[0].N == nil || *v.Items[0].N != 30 {
		t.Errorf("nested integer: %v, %+v", err, v)
	}
}
