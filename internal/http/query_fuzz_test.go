package http

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseQuery fuzzes the query string parser alone (cheaper than the
// handler targets of fuzz_test.go): it must not panic; what strict parsing
// accepts, lenient parsing accepts too, with the same pairs; and every key
// strict parsing gives is non-empty, valid UTF-8.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{
		"", "limit=3", "state=available,running&kind=double", "kind=d%6Fuble", "limit=1;state=completed",
		"a=1&&b=2", "a=1&", "&", "=1", "limit", "kind=%ff", "kind=%zz", "%ff=1", "a=%2", "a+b=c+d", "a=1&a=2",
		"wait=30s", "x=" + strings.Repeat("%41", 50),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		strict, serr := parseQuery(raw, true)
		lenient, lerr := parseQuery(raw, false)
		if serr != nil {
			if serr.key == "" || serr.message == "" {
				t.Errorf("parseQuery(%q) strict: error without key or message: %+v", raw, serr)
			}
			return
		}
		for _, p := range strict {
			if p.key == "" || !utf8.ValidString(p.key) {
				t.Errorf("parseQuery(%q) strict: bad key %q", raw, p.key)
			}
		}
		if lerr != nil {
			t.Fatalf("parseQuery(%q): strict accepts %v, lenient refuses: %+v", raw, strict, lerr)
		}
		if !slices.Equal(strict, lenient) {
			t.Errorf("parseQuery(%q): strict %v, lenient %v", raw, strict, lenient)
		}
	})
}
