package strictjson

import "testing"

func TestFindBadText(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in     string
		offset int // -1: none
	}{
		{`{"a":"plain"}`, -1},
		{`{"a":"é 日本 \u00e9"}`, -1},
		{`{"a":"\ud83d\ude00"}`, -1},          // a pair: U+1F600
		{`{"a":"\\ud800"}`, -1},               // an escaped backslash, then text
		{`{"a":"x` + "\xff" + `y"}`, 7},       // invalid UTF-8
		{`{"a":"` + "\xed\xa0\x80" + `"}`, 6}, // a surrogate encoded in UTF-8
		{`{"a":"\ud800"}`, 6},                 // lone high
		{`{"a":"\ud800x"}`, 6},                // high then text
		{`{"a":"\ud800\u0041"}`, 6},           // high then not a low
		{`{"a":"\udc00"}`, 6},                 // lone low
		{`{"\udfff":1}`, 2},                   // in a key too
	} {
		off, found := FindBadText([]byte(tc.in))
		if (tc.offset < 0) == found || (found && off != tc.offset) {
			t.Errorf("FindBadText(%q) = %d, %v; want offset %d", tc.in, off, found, tc.offset)
		}
	}
}
