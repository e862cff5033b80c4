package strictjson

import (
	"bytes"
	"testing"
)

// canonicalCases are documents of both of Canonical's ways: the fast pass
// and the fall back to encoding/json.
var canonicalCases = []string{
	`{}`, `[]`, `0`, `-0`, `1.50`, `1E+2`, `-12.5e-3`, `true`, `false`, `null`, `""`,
	` { "b" : [ 1 , 2.50 ] , "a" : { "y" : null , "x" : "s" } } `,
	`{"kind":"double","args":{"value":21},"tags":["a","b"],"priority":2}`,
	`{"z":1,"y":{"c":[{"b":1,"a":2}],"a":{}},"x":[]}`,
	`{"b":1,"a":2,"b":3}`,          // a duplicate: the last wins
	`{"a":"<tag> & more"}`,         // HTML characters, escaped
	`{"a":"line\u2028sep"}`,        // an escape in a string
	"{\"a\":\"line\u2028sep\"}",    // U+2028 itself, escaped
	"{\"a\":\"\xff\"}",             // invalid UTF-8
	`{"\u0062":1,"a":2}`,           // an escaped key, which sorts by its text
	`{"a":"caf\u00e9","b":"café"}`, // the same text two ways
	`{"a":"\/\"\\\n\t"}`,
	`{"a":1} trailing`, // encoding/json reads the first value only
	`{"a":1}{"b":2}`,
	`{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`, `{"a":-}`, `{"a":tru}`, `{"a":1,}`, `[1,]`, `{"a" 1}`,
	`{"a":1`, `[`, ``, `   `, `{"a":"unterminated}`, "{\"a\":\"tab\there\"}",
	`{"é":1,"e":2,"z":3,"":4}`,
	`[[[[[[[[[[1]]]]]]]]]]`,
}

// TestCanonicalAsEncodingJSON checks that Canonical gives encoding/json's
// output, or fails as it does, for documents of both ways.
func TestCanonicalAsEncodingJSON(t *testing.T) {
	t.Parallel()
	fast := 0
	for _, doc := range canonicalCases {
		if checkCanonical(t, []byte(doc)) {
			fast++
		}
	}
	// The cases must exercise the fast pass, or the test checks nothing
	// of it.
	if fast < 12 {
		t.Errorf("only %d of %d cases took the fast pass", fast, len(canonicalCases))
	}
}

// checkCanonical compares Canonical with canonicalSlow on doc and reports
// whether the fast pass took it.
func checkCanonical(t *testing.T, doc []byte) bool {
	t.Helper()
	want, wantErr := canonicalSlow(doc)
	got, err := Canonical(doc)
	if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) {
		t.Errorf("Canonical(%q) = %q, %v; encoding/json gives %q, %v", doc, got, err, want, wantErr)
	}
	fastOut, ok := canonicalFast(doc)
	if ok && !bytes.Equal(fastOut, want) {
		t.Errorf("the fast pass made %q of %q; encoding/json gives %q", fastOut, doc, want)
	}
	return ok
}

func FuzzCanonical(f *testing.F) {
	for _, doc := range canonicalCases {
		f.Add([]byte(doc))
	}
	f.Fuzz(func(t *testing.T, doc []byte) { checkCanonical(t, doc) })
}

// BenchmarkCanonical compares the two ways on a typical submission.
func BenchmarkCanonical(b *testing.B) {
	doc := []byte(`{"kind": "resize", "args": {"customer_id": "c42", "image": "s3://bucket/path/to/image.png", "sizes": [64, 128, 256]}, "queue": "default", "tags": ["web", "upload"], "max_attempts": 5}`)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Canonical(doc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := canonicalSlow(doc); err != nil {
				b.Fatal(err)
			}
		}
	})
}
