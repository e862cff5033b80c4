package strictjson

import (
	"bytes"
	"encoding"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// maxDepth is encoding/json's nesting limit: a document nested deeper is a
// syntax error there, so the scanner gives up at the same depth.
const maxDepth = 10000

// smallObject is how many keys an object may have before its duplicate
// check switches from comparing with every earlier key to a set: below it,
// the comparisons are cheaper than hashing.
const smallObject = 16

// maxIntegerDigits bounds the integer text the scanner writes for a number
// like 1e5: 20 digits hold every uint64, and the bound keeps 1e999999999 from
// becoming a gigabyte of zeros (it is left as sent and fails as out of
// range).
const maxIntegerDigits = 20

// A scanner makes the one pass over a document that Unmarshal needs before
// decoding it: it checks that the document is JSON as encoding/json reads it,
// finds the first key repeated within an object at any depth, finds the
// first top-level key (any key, when deep) that is not exactly a field name
// of the target, and
// notes the integral numbers written with a fraction or exponent that are
// bound for Go integers. It never decodes a value: a batch body is megabytes
// of values, and encoding/json decodes them right after.
//
// To know where a number goes, the scanner walks the target's type beside
// the document: each open container carries the Go type it decodes into, or
// nil where that is unknown or the value is handed over as bytes
// (json.RawMessage, any, json.Unmarshaler); numbers under nil are left alone.
// So only a Go integer ever sees a rewritten number: a json.RawMessage gets
// the bytes as sent (taskd may store args as sent), a json.Number its text.
type scanner struct {
	data  []byte
	stack []frame
	// keys holds the keys of every open object, each object's after its
	// parent's (frame.keys is where they start), so that checking small
	// objects allocates nothing.
	keys [][]byte
	// integers are the numbers to rewrite, in document order.
	integers []integer
	// dup and unknown are the first duplicate and the first unknown
	// key, as errors; big is the first number PostgreSQL cannot store
	// (StorableNumber).
	dup, unknown, big *Error
	// deep checks the keys of objects at every depth against their
	// struct's fields (UnmarshalAll), not only the top level's.
	deep bool
}

// frame is an open object or array.
type frame struct {
	object bool
	// key is the object's current key; n is the array's current index.
	key []byte
	n   int
	// keys is len(scanner.keys) when the frame opened: an object's own
	// keys start there, and closing any frame truncates back to it. set
	// replaces an object's keys once it has more than smallObject.
	keys int
	set  map[string]struct{}
	// fields describes the struct the object decodes into, elem the type
	// of the array's elements; both are nil when unknown.
	fields *structFields
	mapTo  reflect.Type // the element type of a map the object decodes into
	elem   reflect.Type
}

// integer is a number to replace with its integer text.
type integer struct {
	start, end int
	text       string
}

// scan scans s.data as a value decoded into t, reporting whether it is one
// JSON value (with nothing but whitespace after it) as encoding/json reads
// it.
func (s *scanner) scan(t reflect.Type) bool {
	d := s.data
	typ := targetType(t)
	i := 0
	for {
		// A value starts at i and decodes into typ.
		i = skipSpace(d, i)
		if i >= len(d) {
			return false
		}
		switch d[i] {
		case '{':
			if len(s.stack) == maxDepth {
				return false
			}
			f := frame{object: true, keys: len(s.keys)}
			if typ != nil {
				switch typ.Kind() {
				case reflect.Struct:
					f.fields = cachedFields(typ)
				case reflect.Map:
					f.mapTo = targetType(typ.Elem())
				}
			}
			s.stack = append(s.stack, f)
			i = skipSpace(d, i+1)
			if i < len(d) && d[i] == '}' {
				s.pop()
				i++
				break
			}
			var ok bool
			if i, typ, ok = s.member(i); !ok {
				return false
			}
			continue
		case '[':
			if len(s.stack) == maxDepth {
				return false
			}
			f := frame{keys: len(s.keys)}
			if typ != nil && (typ.Kind() == reflect.Slice || typ.Kind() == reflect.Array) {
				f.elem = targetType(typ.Elem())
			}
			s.stack = append(s.stack, f)
			i = skipSpace(d, i+1)
			if i < len(d) && d[i] == ']' {
				s.pop()
				i++
				break
			}
			typ = f.elem
			continue
		case '"':
			var ok bool
			if i, _, ok = scanString(d, i); !ok {
				return false
			}
		case 't':
			if !bytes.HasPrefix(d[i:], litTrue) {
				return false
			}
			i += len(litTrue)
		case 'f':
			if !bytes.HasPrefix(d[i:], litFalse) {
				return false
			}
			i += len(litFalse)
		case 'n':
			if !bytes.HasPrefix(d[i:], litNull) {
				return false
			}
			i += len(litNull)
		default:
			var ok bool
			if i, ok = s.number(i, typ); !ok {
				return false
			}
		}
		// The value is complete: close what it completes, then move to
		// the next value.
	next:
		for {
			i = skipSpace(d, i)
			if len(s.stack) == 0 {
				return i == len(d)
			}
			if i >= len(d) {
				return false
			}
			f := &s.stack[len(s.stack)-1]
			switch {
			case d[i] == ',' && f.object:
				var ok bool
				if i, typ, ok = s.member(skipSpace(d, i+1)); !ok {
					return false
				}
				break next
			case d[i] == ',':
				f.n++
				typ = f.elem
				i++
				break next
			case d[i] == '}' && f.object, d[i] == ']' && !f.object:
				s.pop()
				i++
			default:
				return false
			}
		}
	}
}

var (
	litTrue  = []byte("true")
	litFalse = []byte("false")
	litNull  = []byte("null")
)

func (s *scanner) pop() {
	s.keys = s.keys[:s.stack[len(s.stack)-1].keys]
	s.stack = s.stack[:len(s.stack)-1]
}

// member scans an object's key at data[i] and the colon after it, checks
// the key, and returns where its value starts and what Go type it decodes
// into.
func (s *scanner) member(i int) (int, reflect.Type, bool) {
	d := s.data
	if i >= len(d) || d[i] != '"' {
		return 0, nil, false
	}
	end, plain, ok := scanString(d, i)
	if !ok {
		return 0, nil, false
	}
	key := d[i+1 : end-1]
	if !plain {
		key = unquote(d[i:end])
	}
	f := &s.stack[len(s.stack)-1]
	f.key = key
	if s.dup == nil {
		s.checkDuplicate(f, key)
	}
	var typ reflect.Type
	switch {
	case f.fields != nil:
		field, known := f.fields.lookup(key)
		if !known && (len(s.stack) == 1 || s.deep) && s.unknown == nil {
			s.unknown = &Error{Field: s.path(), Message: "unknown field (field names are case-sensitive)"}
		}
		typ = field
	case f.mapTo != nil:
		typ = f.mapTo
	}
	i = skipSpace(d, end)
	if i >= len(d) || d[i] != ':' {
		return 0, nil, false
	}
	return i + 1, typ, true
}

// checkDuplicate records key in the object f, noting an error if the object
// has it already.
func (s *scanner) checkDuplicate(f *frame, key []byte) {
	if f.set != nil {
		if _, seen := f.set[string(key)]; seen {
			s.dup = &Error{Field: s.path(), Message: "duplicate key in JSON object"}
			return
		}
		f.set[string(key)] = struct{}{}
		return
	}
	earlier := s.keys[f.keys:]
	for _, k := range earlier {
		if bytes.Equal(k, key) {
			s.dup = &Error{Field: s.path(), Message: "duplicate key in JSON object"}
			return
		}
	}
	if len(earlier) < smallObject {
		s.keys = append(s.keys, key)
		return
	}
	f.set = make(map[string]struct{}, 2*smallObject)
	for _, k := range earlier {
		f.set[string(k)] = struct{}{}
	}
	f.set[string(key)] = struct{}{}
	s.keys = s.keys[:f.keys]
}

// path is where the scanner is, in the syntax of Error.Field ("a.b",
// "tasks[3].kind", "[0].a"), with each key clipped.
func (s *scanner) path() string {
	var b strings.Builder
	for j, f := range s.stack {
		if !f.object {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(f.n))
			b.WriteByte(']')
			continue
		}
		if j > 0 {
			b.WriteByte('.')
		}
		b.WriteString(Clip(string(f.key)))
	}
	return b.String()
}

// unquote returns the text of the JSON string token raw as encoding/json
// reads it: escapes decoded, and invalid UTF-8 and lone surrogates replaced
// by U+FFFD, so that the keys "\xff" and "\ufffd" are the same key here as
// they are there.
func unquote(raw []byte) []byte {
	if bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
		return raw[1 : len(raw)-1]
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return raw // not reached: raw was scanned as a string
	}
	return []byte(s)
}

// stringByte marks the bytes that a string can hold as they are: not the
// quote, not the backslash, no control character, and ASCII (bytes beyond
// ASCII are allowed too, but then the text needs checking as UTF-8).
var stringByte = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// scanString returns the index just past the string token starting at
// data[i], and whether the token is plain: ASCII without escapes, so that
// its bytes are its text.
func scanString(data []byte, i int) (end int, plain, ok bool) {
	plain = true
	for i++; i < len(data); {
		c := data[i]
		if stringByte[c] {
			i++
			continue
		}
		switch {
		case c == '"':
			return i + 1, plain, true
		case c == '\\':
			plain = false
			if i+1 >= len(data) {
				return 0, false, false
			}
			switch data[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(data) || !isHex(data[i+2]) || !isHex(data[i+3]) || !isHex(data[i+4]) || !isHex(data[i+5]) {
					return 0, false, false
				}
				i += 6
			default:
				return 0, false, false
			}
		case c < 0x20:
			return 0, false, false
		default: // beyond ASCII; encoding/json accepts any byte here
			plain = false
			i++
		}
	}
	return 0, false, false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// number scans the number token at data[i], which decodes into typ. When typ
// is a Go integer type and the number is integral but has a fraction or an
// exponent, it is noted for rewriting.
func (s *scanner) number(i int, typ reflect.Type) (int, bool) {
	start := i
	i, ok := numberEnd(s.data, i)
	if !ok {
		return 0, false
	}
	if s.big == nil && !StorableNumber(s.data[start:i]) {
		s.big = &Error{Field: s.path(), Message: NumberRangeMessage}
	}
	plain := bytes.IndexAny(s.data[start:i], ".eE") < 0
	if !plain && typ != nil && isInteger(typ.Kind()) {
		if text, ok := integerText(s.data[start:i]); ok {
			s.integers = append(s.integers, integer{start: start, end: i, text: text})
		}
	}
	return i, true
}

func isInteger(k reflect.Kind) bool {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return true
	}
	return false
}

// integerText returns the plain integer text of the valid JSON number num
// (such as "-25" for "-2.50e1") if num is an integer of at most
// maxIntegerDigits digits. The test is exact, on the decimal digits: no
// float stands in between, so 1.0000000000000000001 is not an integer.
func integerText(num []byte) (string, bool) {
	neg := num[0] == '-'
	if neg {
		num = num[1:]
	}
	mant, exp := num, []byte(nil)
	if e := bytes.IndexAny(num, "eE"); e >= 0 {
		mant, exp = num[:e], num[e+1:]
	}
	intPart, frac, _ := bytes.Cut(mant, []byte{'.'})
	// The value is digits × 10^shift.
	// An exponent beyond limit decides the same as limit: the value has
	// more digits than any integer kept, or a fraction when negative.
	limit := len(num) + maxIntegerDigits + 1
	shift := 0
	if len(exp) > 0 {
		expNeg := exp[0] == '-'
		if exp[0] == '+' || exp[0] == '-' {
			exp = exp[1:]
		}
		for _, c := range exp {
			shift = min(shift*10+int(c-'0'), limit)
		}
		if expNeg {
			shift = -shift
		}
	}
	shift -= len(frac)
	digits := make([]byte, 0, len(intPart)+len(frac))
	digits = append(digits, bytes.TrimLeft(intPart, "0")...)
	if len(digits) == 0 {
		frac = bytes.TrimLeft(frac, "0")
	}
	digits = append(digits, frac...)
	if len(digits) == 0 {
		return "0", true
	}
	for digits[len(digits)-1] == '0' {
		digits = digits[:len(digits)-1]
		shift++
	}
	if shift < 0 || len(digits)+shift > maxIntegerDigits {
		return "", false
	}
	var b strings.Builder
	b.Grow(1 + len(digits) + shift)
	if neg {
		b.WriteByte('-')
	}
	b.Write(digits)
	for range shift {
		b.WriteByte('0')
	}
	return b.String(), true
}

// rewritten returns a copy of data with the noted numbers replaced by their
// integer text. Everything else is copied byte for byte.
func (s *scanner) rewritten() []byte {
	n := len(s.data)
	for _, in := range s.integers {
		n += len(in.text) - (in.end - in.start)
	}
	out := make([]byte, 0, n)
	last := 0
	for _, in := range s.integers {
		out = append(out, s.data[last:in.start]...)
		out = append(out, in.text...)
		last = in.end
	}
	return append(out, s.data[last:]...)
}

var (
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// targetType is the type encoding/json decodes a value into when it is given a
// t, with pointers followed, or nil when the value is handed over whole
// (an Unmarshaler such as json.RawMessage, or an interface) and the scanner
// should not look into it.
func targetType(t reflect.Type) reflect.Type {
	for t != nil {
		if t.Kind() == reflect.Interface {
			return nil
		}
		if t.Implements(unmarshalerType) || t.Implements(textUnmarshalerType) {
			return nil
		}
		if t.Kind() != reflect.Pointer {
			pt := reflect.PointerTo(t)
			if pt.Implements(unmarshalerType) || pt.Implements(textUnmarshalerType) {
				return nil
			}
			return t
		}
		t = t.Elem()
	}
	return nil
}

// structFields are the JSON names of a struct's fields and the types their
// values decode into.
type structFields struct {
	// exact maps each JSON name to the field's target (nil when unknown,
	// as for a name that two fields claim).
	exact map[string]reflect.Type
	// folded maps names folded as encoding/json folds them to the first
	// field with that folded name: encoding/json falls back to it for a key
	// that is not exactly a field name.
	folded map[string]reflect.Type
}

// lookup returns the target of the field key decodes into, and whether key
// is exactly one of the struct's JSON names.
func (f *structFields) lookup(key []byte) (reflect.Type, bool) {
	if t, ok := f.exact[string(key)]; ok {
		return t, true
	}
	return f.folded[string(foldName(key))], false
}

// fieldsCache maps a struct type to its *structFields. Like encoding/json's
// own field cache it is process-wide: it only grows, by one entry per struct
// type ever decoded, and saves reading struct tags on every request.
var fieldsCache sync.Map // reflect.Type → *structFields

// cachedFields describes the struct type t. Its fields are its exported
// ones, named by their json tags; embedded structs are not flattened as
// encoding/json flattens them (taskd has none), so a promoted field is
// unknown here and its numbers are left as sent.
func cachedFields(t reflect.Type) *structFields {
	if f, ok := fieldsCache.Load(t); ok {
		return f.(*structFields)
	}
	f := &structFields{exact: make(map[string]reflect.Type, t.NumField()), folded: make(map[string]reflect.Type, t.NumField())}
	for i := range t.NumField() {
		sf := t.Field(i)
		tag := sf.Tag.Get("json")
		if tag == "-" || !sf.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = sf.Name
		}
		typ := targetType(sf.Type)
		if strings.Contains(","+opts+",", ",string,") {
			typ = nil // the value comes quoted; encoding/json parses it itself
		}
		if _, dup := f.exact[name]; dup {
			typ = nil
		}
		f.exact[name] = typ
		folded := string(foldName([]byte(name)))
		if _, taken := f.folded[folded]; !taken {
			f.folded[folded] = typ
		}
	}
	fieldsCache.Store(t, f)
	return f
}

// foldName folds a name as encoding/json does to match keys to fields
// regardless of case: ASCII letters upper-cased, other runes mapped to the
// smallest rune of their Unicode fold set.
func foldName(in []byte) []byte {
	out := make([]byte, 0, len(in))
	for i := 0; i < len(in); {
		if c := in[i]; c < utf8.RuneSelf {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			out = append(out, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(in[i:])
		for {
			r2 := unicode.SimpleFold(r)
			if r2 <= r {
				r = r2
				break
			}
			r = r2
		}
		out = utf8.AppendRune(out, r)
		i += n
	}
	return out
}
