package strictjson

import (
	"bytes"
	"unicode/utf8"
)

// FindBadText returns the byte offset of the first text in the JSON
// document data that does not stand for a Unicode character: an invalid
// UTF-8 sequence, or a \u escape of a surrogate that is not part of a pair
// (a lone "\ud800"). encoding/json silently replaces both with U+FFFD, so
// two different bodies would decode to the same value (and the same
// Idempotency-Key hash); PostgreSQL refuses the lone surrogate in jsonb
// outright. The check is a byte scan, skipped unless data holds a
// non-ASCII byte or the escape "\u" at all.
func FindBadText(data []byte) (offset int, found bool) {
	if i := bytes.IndexFunc(data, func(r rune) bool { return r >= utf8.RuneSelf }); i < 0 && !bytes.Contains(data, []byte(`\u`)) {
		return 0, false
	}
	inString := false
	for i := 0; i < len(data); {
		c := data[i]
		switch {
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size == 1 {
				return i, true
			}
			i += size
			continue
		case c == '"':
			inString = !inString
		case c == '\\' && inString && i+1 < len(data):
			if data[i+1] != 'u' {
				i += 2
				continue
			}
			r, ok := hex4(data, i+2)
			switch {
			case !ok:
				// Not an escape encoding/json accepts; it reports that.
			case r >= 0xDC00 && r <= 0xDFFF:
				return i, true // a low surrogate without its high one
			case r >= 0xD800 && r <= 0xDBFF:
				low, ok := rune(0), false
				if i+7 < len(data) && data[i+6] == '\\' && data[i+7] == 'u' {
					low, ok = hex4(data, i+8)
				}
				if !ok || low < 0xDC00 || low > 0xDFFF {
					return i, true
				}
				i += 12
				continue
			}
			i += 6
			continue
		}
		i++
	}
	return 0, false
}

// hex4 decodes the four hex digits at data[i:].
func hex4(data []byte, i int) (rune, bool) {
	if i+4 > len(data) {
		return 0, false
	}
	var r rune
	for _, c := range data[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
