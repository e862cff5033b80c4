// Package strictjson decodes JSON request bodies strictly (no unknown fields,
// no duplicate keys, no trailing data) and turns decoding failures into
// errors that name the offending field, so that an API can answer with a
// precise 4xx.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// Error is a decoding failure. Syntax is true when the input is not JSON at
// all (a 400 in HTTP terms); otherwise the JSON is well-formed but does not
// fit the target (a 422), and Field names where.
type Error struct {
	Field   string
	Message string
	Syntax  bool
}

func (e *Error) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// Unmarshal decodes data into v like json.Unmarshal, but strictly, so that
// taskd reads a body the way any other reader of it would:
//
//   - A key repeated within one object, at any depth, is an error (with
//     the path of the repeated key): encoding/json keeps the last value,
//     other parsers the first, and a body checked by one and acted on by
//     another must not mean two things. Keys compare as text, after
//     unescaping ("a" and "\u0061" are the same key).
//   - Every top-level key must be exactly the JSON name of one of v's
//     fields: unknown keys are errors, and so are keys that match a field
//     only when case is ignored (which encoding/json would accept). Keys of
//     nested objects are not matched to fields; decode each such object
//     with its own call, as taskd does for args and batch items.
//   - A number written with a fraction or an exponent but integral, such as
//     1.0, 1e2 or 100.000, decodes into a Go integer: JSON Schema calls it an
//     integer, and taskd's schemas promise "type": "integer". The test is
//     exact, so 1.0000000000000000001 is refused. Other targets see the
//     bytes as sent (a json.RawMessage keeps 1.0); data is never modified.
//   - Trailing data after the value is an error.
//
// All of this takes one pass over data that decodes nothing, before the
// values are decoded: by decodeFast where a value's type and text are
// plain, by encoding/json everywhere else. Failures are *Error values.
func Unmarshal(data []byte, v any) error { return unmarshal(data, v, false) }

// UnmarshalAll is Unmarshal with the keys of every object that decodes into
// a struct checked, at any depth, not only the top level's: an unknown or
// case-folded key anywhere is an error naming its path ("tasks[3].kind").
// One call decodes a document whose nested objects Unmarshal would need a
// call each for; objects handed over as bytes (json.RawMessage) are still
// not looked into.
func UnmarshalAll(data []byte, v any) error { return unmarshal(data, v, true) }

func unmarshal(data []byte, v any, deep bool) error { return decode(data, v, deep, true) }

// decode is unmarshal; fast false leaves every value to encoding/json, for
// the tests that compare the two.
func decode(data []byte, v any, deep, fast bool) error {
	s := scanner{data: data, deep: deep}
	if !s.scan(reflect.TypeOf(v)) {
		// Not JSON: let encoding/json word the error.
		if err := json.Unmarshal(data, v); err != nil {
			return convert(err)
		}
		return &Error{Syntax: true, Message: "invalid JSON"} // not reached; FuzzScan checks the scanner against json.Valid
	}
	doc := data
	if len(s.integers) > 0 {
		doc = s.rewritten()
	}
	if fast && s.dup == nil && s.unknown == nil && s.big == nil && decodeFast(doc, v) {
		return nil
	}
	// Errors about what a value is come first: a batch item or args that
	// is an array is better told "must be a JSON object" than about a key
	// repeated inside it.
	if err := json.Unmarshal(doc, v); err != nil {
		return convert(err)
	}
	if s.dup != nil {
		return s.dup
	}
	if s.unknown != nil {
		return s.unknown
	}
	if s.big != nil {
		return s.big
	}
	return nil
}

// ClipLength is how many characters of a client's input an error message
// may quote: enough to recognise any real name, few enough that a message
// stays a line.
const ClipLength = 200

// Clip returns s cut to its first ClipLength characters, followed by "…",
// if it is longer. Messages that quote client input (unknown field, kind or
// queue names) quote it clipped, so that a megabyte-long name does not come
// back in the response, nor go into logs, a megabyte long. Characters are
// runes (an invalid byte counts as one), so the cut never splits one.
func Clip(s string) string {
	if len(s) <= ClipLength {
		return s
	}
	n := 0
	for i := range s {
		if n == ClipLength {
			return s[:i] + "…"
		}
		n++
	}
	return s
}

func convert(err error) error {
	var (
		syntaxErr *json.SyntaxError
		typeErr   *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &syntaxErr) && strings.Contains(syntaxErr.Error(), "after top-level value"):
		return &Error{Syntax: true, Message: "unexpected data after the JSON value"}
	case errors.As(err, &syntaxErr) && syntaxErr.Error() == "unexpected end of JSON input":
		if syntaxErr.Offset == 0 {
			return &Error{Syntax: true, Message: "body is empty; expected a JSON object"}
		}
		return &Error{Syntax: true, Message: "unexpected end of JSON input"}
	case errors.As(err, &syntaxErr):
		return &Error{Syntax: true, Message: fmt.Sprintf("invalid JSON at byte %d: %s", syntaxErr.Offset, strings.TrimPrefix(syntaxErr.Error(), "json: "))}
	case errors.As(err, &typeErr):
		return &Error{Field: typeErr.Field, Message: "must be " + describe(typeErr.Type)}
	}
	return err
}

// describe names a Go type the way a JSON client thinks of it.
func describe(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == reflect.TypeFor[json.RawMessage]() {
		return "a JSON value"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer in range"
	case reflect.Float32, reflect.Float64:
		return "a finite number in range"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "a JSON object"
	}
	return "a value of type " + t.String()
}

// nulEscape is how a NUL character appears in JSON text.
var nulEscape = []byte(`\u0000`)

// FindNUL reports the path of the first string (key or value) in the JSON
// document data that contains a NUL character, which PostgreSQL cannot store
// in text or jsonb; keys in the path are clipped (see Clip). data must be
// valid JSON; the check is a byte scan unless the escape appears at all.
func FindNUL(data []byte) (path string, found bool) {
	if !bytes.Contains(data, nulEscape) {
		return "", false
	}
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		return "", false
	}
	return findNUL(doc, "")
}

func findNUL(v any, path string) (string, bool) {
	switch v := v.(type) {
	case string:
		return path, strings.IndexByte(v, 0) >= 0
	case []any:
		for i, e := range v {
			if p, ok := findNUL(e, path+"["+strconv.Itoa(i)+"]"); ok {
				return p, true
			}
		}
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := Clip(k)
			if path != "" {
				p = path + "." + p
			}
			if strings.IndexByte(k, 0) >= 0 {
				return p, true
			}
			if p, ok := findNUL(v[k], p); ok {
				return p, true
			}
		}
	}
	return "", false
}
