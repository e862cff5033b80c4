// Package strictjson decodes JSON request bodies strictly (no unknown fields,
// no trailing data) and turns decoding failures into errors that name the
// offending field, so that an API can answer with a precise 4xx.
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
	"sync"
	"unicode/utf8"
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

// Unmarshal decodes data into v, rejecting trailing data and any
// top-level object key that is not exactly the JSON name of one of v's
// fields: unknown keys, and keys that match a field only when case is
// ignored (which encoding/json would accept). Nested objects are not
// checked; decode each with its own call, as taskd does for args and batch
// items. Failures are *Error values.
func Unmarshal(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return convert(err)
	}
	return checkExactKeys(data, reflect.TypeOf(v))
}

// checkExactKeys rejects top-level keys of data that are not exactly the
// JSON name of a field of the struct t points to. Nested structs are not
// checked; taskd decodes each nested object it cares about on its own.
func checkExactKeys(data []byte, t reflect.Type) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	keys, ok := topLevelKeys(data)
	if !ok {
		return nil // not an object (null), which json.Unmarshal accepted
	}
	names := fieldNames(t)
	for _, k := range keys {
		if !names[k] {
			return &Error{Field: k, Message: "unknown field (field names are case-sensitive)"}
		}
	}
	return nil
}

// fieldNamesCache maps a struct type to the set of its JSON field names.
// Like encoding/json's own field cache it is process-wide: it only grows,
// by one entry per struct type ever decoded, and saves reading struct tags
// on every request.
var fieldNamesCache sync.Map // reflect.Type → map[string]bool

func fieldNames(t reflect.Type) map[string]bool {
	if names, ok := fieldNamesCache.Load(t); ok {
		return names.(map[string]bool)
	}
	names := make(map[string]bool, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names[name] = true
	}
	fieldNamesCache.Store(t, names)
	return names
}

// topLevelKeys returns the keys of the JSON object data, in order, in one
// pass that skips over the values without decoding them (a batch body is
// megabytes of values under one key). data must be valid JSON; ok is false
// when it is not an object.
func topLevelKeys(data []byte) (keys []string, ok bool) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return nil, false
	}
	i++
	for {
		i = skipSpace(data, i)
		if i >= len(data) || data[i] == '}' {
			return keys, true
		}
		if data[i] == ',' {
			i = skipSpace(data, i+1)
		}
		end := skipString(data, i)
		raw := data[i:end]
		key := string(raw[1 : len(raw)-1])
		if bytes.IndexByte(raw, '\\') >= 0 || !utf8.Valid(raw) { // as encoding/json reads it
			if err := json.Unmarshal(raw, &key); err != nil {
				return nil, false
			}
		}
		keys = append(keys, key)
		i = skipSpace(data, end)
		i = skipValue(data, skipSpace(data, i+1)) // past ':' and the value
	}
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the string starting at data[i].
func skipString(data []byte, i int) int {
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(data)
}

// skipValue returns the index just past the value starting at data[i].
func skipValue(data []byte, i int) int {
	depth := 0
	for i < len(data) {
		switch data[i] {
		case '"':
			i = skipString(data, i)
			if depth == 0 {
				return i
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i + 1
			}
			if depth < 0 {
				return i
			}
		case ',':
			if depth == 0 {
				return i
			}
		}
		i++
	}
	return i
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
// in text or jsonb. data must be valid JSON; the check is a byte scan unless
// the escape appears at all.
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
			p := k
			if path != "" {
				p = path + "." + k
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

// Canonical returns a canonical encoding of the JSON document data (object
// keys sorted, insignificant whitespace removed, numbers kept as written), so
// that two requests meaning the same thing compare equal.
func Canonical(data []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	return json.Marshal(doc)
}
