package strictjson

import (
	"bytes"
	"encoding/json"
	"slices"
	"sync"
	"unicode/utf8"
)

// Canonical returns a canonical encoding of the JSON document data (object
// keys sorted, insignificant whitespace removed, numbers kept as written), so
// that two requests meaning the same thing compare equal.
//
// Its output is encoding/json's: data decoded into Go values (numbers as
// json.Number) and marshalled again, as it always was, since idempotency
// keys stored before an upgrade hold hashes of that output (canonicalSlow).
// Most documents are copied instead, in one pass over the bytes
// (canonicalFast): the decoding into maps was most of the cost of a
// submission with an Idempotency-Key. Whatever the fast pass cannot
// vouch for (an escape in a string, a character encoding/json escapes,
// invalid UTF-8, a duplicate key, anything not JSON) goes the slow way.
func Canonical(data []byte) ([]byte, error) {
	if out, ok := canonicalFast(data); ok {
		return out, nil
	}
	return canonicalSlow(data)
}

// canonicalSlow is Canonical by way of Go values.
func canonicalSlow(data []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	return json.Marshal(doc)
}

// canonicalFast is Canonical for a document that is exactly one JSON value
// (with whitespace around it) whose strings encoding/json writes back as
// they are; ok is false for any other.
func canonicalFast(data []byte) (out []byte, ok bool) {
	c := canonicalizers.Get().(*canonicalizer)
	defer c.release()
	c.data = data
	i, ok := c.value(skipSpace(data, 0), 0)
	if !ok || skipSpace(data, i) != len(data) {
		return nil, false
	}
	return slices.Clone(c.out), true
}

// canonicalDepthMax bounds the nesting canonicalFast follows (deeper goes
// the slow way, which has encoding/json's own bound).
const canonicalDepthMax = 1000

// canonicalizer is the state of one canonicalFast: out is the output so
// far; members holds the members of the objects being written, of every
// level at once (each object uses the part past where it started).
type canonicalizer struct {
	data    []byte
	out     []byte
	members []member
}

// member is an object member written to out[start:end], whose key's text
// (without quotes) is out[start+1 : start+1+keyLen].
type member struct {
	start, end, keyLen int
}

var canonicalizers = sync.Pool{New: func() any { return new(canonicalizer) }}

// canonicalKeep bounds the buffers a canonicalizer keeps for the next one.
const canonicalKeep = 64 << 10

func (c *canonicalizer) release() {
	if cap(c.out) > canonicalKeep || cap(c.members) > canonicalKeep/16 {
		return
	}
	c.data, c.out, c.members = nil, c.out[:0], c.members[:0]
	canonicalizers.Put(c)
}

// value writes the value at data[i:] and returns where it ends.
func (c *canonicalizer) value(i, depth int) (int, bool) {
	data := c.data
	if i >= len(data) || depth > canonicalDepthMax {
		return i, false
	}
	switch b := data[i]; {
	case b == '{':
		return c.object(i+1, depth+1)
	case b == '[':
		return c.array(i+1, depth+1)
	case b == '"':
		end, ok := plainString(data, i)
		if !ok {
			return i, false
		}
		c.out = append(c.out, data[i:end]...)
		return end, true
	case b == '-' || isDigit(b):
		end, ok := numberEnd(data, i)
		if !ok {
			return i, false
		}
		c.out = append(c.out, data[i:end]...)
		return end, true
	default:
		for _, lit := range [...]string{"true", "false", "null"} {
			if bytes.HasPrefix(data[i:], []byte(lit)) {
				c.out = append(c.out, lit...)
				return i + len(lit), true
			}
		}
		return i, false
	}
}

func (c *canonicalizer) array(i, depth int) (int, bool) {
	c.out = append(c.out, '[')
	i = skipSpace(c.data, i)
	if i < len(c.data) && c.data[i] == ']' {
		c.out = append(c.out, ']')
		return i + 1, true
	}
	for {
		var ok bool
		if i, ok = c.value(i, depth); !ok {
			return i, false
		}
		i = skipSpace(c.data, i)
		if i >= len(c.data) {
			return i, false
		}
		switch c.data[i] {
		case ',':
			c.out = append(c.out, ',')
			i = skipSpace(c.data, i+1)
		case ']':
			c.out = append(c.out, ']')
			return i + 1, true
		default:
			return i, false
		}
	}
}

// object writes the members as they come, then puts them in key order in
// place: encoding/json sorts a map's keys by their bytes, and a plain key's
// bytes are its text.
func (c *canonicalizer) object(i, depth int) (int, bool) {
	data := c.data
	open := len(c.out)
	c.out = append(c.out, '{')
	first := len(c.members)
	defer func() { c.members = c.members[:first] }()
	i = skipSpace(data, i)
	if i < len(data) && data[i] == '}' {
		c.out = append(c.out, '}')
		return i + 1, true
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return i, false
		}
		end, ok := plainString(data, i)
		if !ok {
			return i, false
		}
		m := member{start: len(c.out), keyLen: end - i - 2}
		c.out = append(c.out, data[i:end]...)
		i = skipSpace(data, end)
		if i >= len(data) || data[i] != ':' {
			return i, false
		}
		c.out = append(c.out, ':')
		if i, ok = c.value(skipSpace(data, i+1), depth); !ok {
			return i, false
		}
		m.end = len(c.out)
		c.members = append(c.members, m)
		i = skipSpace(data, i)
		if i >= len(data) {
			return i, false
		}
		if data[i] == '}' {
			i++
			break
		}
		if data[i] != ',' {
			return i, false
		}
		c.out = append(c.out, ',')
		i = skipSpace(data, i+1)
	}
	ms := c.members[first:]
	key := func(m member) []byte { return c.out[m.start+1 : m.start+1+m.keyLen] }
	sorted := slices.IsSortedFunc(ms, func(a, b member) int { return bytes.Compare(key(a), key(b)) })
	if !sorted {
		slices.SortFunc(ms, func(a, b member) int { return bytes.Compare(key(a), key(b)) })
	}
	for j := 1; j < len(ms); j++ {
		if bytes.Equal(key(ms[j-1]), key(ms[j])) {
			return i, false // a duplicate: encoding/json keeps the last
		}
	}
	if sorted {
		c.out = append(c.out, '}')
		return i, true
	}
	// Written anew in key order after the object, then moved back over it.
	body, tail := open+1, len(c.out)
	for j, m := range ms {
		if j > 0 {
			c.out = append(c.out, ',')
		}
		c.out = append(c.out, c.out[m.start:m.end]...)
	}
	n := copy(c.out[body:], c.out[tail:])
	c.out = append(c.out[:body+n], '}')
	return i, true
}

// plainString returns where the string starting at data[i] (a quote)
// ends, and whether encoding/json would write it back byte for byte: no
// escape, valid UTF-8, and none of the characters it escapes (control
// characters, <, > and &, U+2028 and U+2029).
func plainString(data []byte, i int) (int, bool) {
	for j := i + 1; j < len(data); {
		b := data[j]
		switch {
		case b == '"':
			return j + 1, true
		case b < 0x20, b == '\\', b == '<', b == '>', b == '&':
			return j, false
		case b < utf8.RuneSelf:
			j++
		default:
			r, size := utf8.DecodeRune(data[j:])
			if r == utf8.RuneError || r == '\u2028' || r == '\u2029' {
				return j, false
			}
			j += size
		}
	}
	return len(data), false
}

// numberEnd returns where the number starting at data[i] ends, and whether
// it follows JSON's grammar.
func numberEnd(data []byte, i int) (int, bool) {
	if data[i] == '-' {
		i++
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
	case i < len(data) && '1' <= data[i] && data[i] <= '9':
		for i < len(data) && isDigit(data[i]) {
			i++
		}
	default:
		return i, false
	}
	if i < len(data) && data[i] == '.' {
		i++
		if i >= len(data) || !isDigit(data[i]) {
			return i, false
		}
		for i < len(data) && isDigit(data[i]) {
			i++
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i >= len(data) || !isDigit(data[i]) {
			return i, false
		}
		for i < len(data) && isDigit(data[i]) {
			i++
		}
	}
	return i, true
}
