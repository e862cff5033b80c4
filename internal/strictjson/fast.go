package strictjson

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// decodeFast decodes the document data, which the scanner has found to be
// one valid JSON value without repeated or unknown keys, into v, for the
// types and values whose decoding is plain: structs of strings, booleans,
// numbers, json.RawMessage, pointers, slices and structs of these, and
// strings without escapes. It is what encoding/json would do with them,
// minus its second pass over the document (json.Unmarshal checks the whole
// document before it decodes any of it) and its per-value reflection over
// struct tags: on a batch of a thousand tasks, encoding/json was about 3 µs
// of each task's CPU in taskd's process, the largest share of the HTTP
// batch beyond River's insert (docs/PERFORMANCE.md, "Round 2, eighth run").
//
// It reports false for anything else (an escape in a string, a number out
// of a field's range, a type it has no plan for, a key it does not know,
// a slice that has a capacity to begin with), and Unmarshal then asks
// encoding/json, which decides. What it has written into v by then is
// harmless: it only ever stores, for a key, the value encoding/json stores
// for that key, and encoding/json decodes the whole document again over
// it, to its end, since on the types planned here it never stops early
// (a wrong type is an error it notes and decodes on after; json.Number,
// whose invalid text stops it, has no plan). FuzzDecodeFast checks that
// the two agree wherever decodeFast answers.
func decodeFast(data []byte, v any) bool {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return false
	}
	p := planFor(rv.Type().Elem())
	if p == nil {
		return false
	}
	d := fastDecoder{data: data}
	if !d.value(p, rv.Elem()) {
		return false
	}
	return skipSpace(data, d.i) == len(data)
}

// planKind is what a plan decodes into.
type planKind uint8

const (
	planString planKind = iota + 1
	planBool
	planFloat
	planInt
	planUint
	planRaw // json.RawMessage: the value's bytes as they are
	planPointer
	planSlice
	planStruct
)

// plan is how decodeFast writes a value of one Go type.
type plan struct {
	kind planKind
	typ  reflect.Type
	// elem is a pointer's or a slice's element.
	elem *plan
	// fields are a struct's, in declaration order.
	fields []fieldPlan
}

// fieldPlan is one struct field: its JSON name and index.
type fieldPlan struct {
	name  string
	index int
	plan  *plan
}

var (
	// plans caches planFor's answers by type, nil included (a type with no
	// plan); like encoding/json's own cache, it grows by one entry per
	// type ever decoded.
	plans sync.Map // reflect.Type → *plan
	// planMu serialises the building of plans, which may be recursive.
	planMu sync.Mutex
)

var (
	rawMessageType = reflect.TypeFor[json.RawMessage]()
	numberType     = reflect.TypeFor[json.Number]()
)

// planFor returns the plan of t, or nil when decodeFast leaves values of t
// to encoding/json.
func planFor(t reflect.Type) *plan {
	if p, ok := plans.Load(t); ok {
		return p.(*plan)
	}
	planMu.Lock()
	defer planMu.Unlock()
	building := make(map[reflect.Type]*plan)
	p := buildPlan(t, building)
	if p == nil {
		// t has no plan, but the types built on the way may have one of
		// their own (a *int beside a map): they are not cached from here,
		// where some are half built.
		plans.Store(t, (*plan)(nil))
		return nil
	}
	for bt, bp := range building {
		plans.Store(bt, bp)
	}
	plans.Store(t, p)
	return p
}

// buildPlan builds t's plan; building holds the plans under construction,
// so that a recursive type refers to its own.
func buildPlan(t reflect.Type, building map[reflect.Type]*plan) *plan {
	if p, ok := plans.Load(t); ok {
		return p.(*plan)
	}
	if p, ok := building[t]; ok {
		return p
	}
	if t == rawMessageType {
		return &plan{kind: planRaw, typ: t}
	}
	// Types that decode themselves, or that encoding/json fills in ways of
	// its own, are its to decode: json.Number (a string it checks, and
	// stops decoding at when invalid) and those with an unmarshaler.
	if t == numberType || t.Implements(unmarshalerType) || t.Implements(textUnmarshalerType) {
		return nil
	}
	if t.Kind() != reflect.Pointer {
		pt := reflect.PointerTo(t)
		if pt.Implements(unmarshalerType) || pt.Implements(textUnmarshalerType) {
			return nil
		}
	}
	p := &plan{typ: t}
	switch t.Kind() {
	case reflect.String:
		p.kind = planString
	case reflect.Bool:
		p.kind = planBool
	case reflect.Float32, reflect.Float64:
		p.kind = planFloat
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		p.kind = planInt
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		p.kind = planUint
	case reflect.Pointer:
		p.kind = planPointer
		building[t] = p
		if p.elem = buildPlan(t.Elem(), building); p.elem == nil {
			return nil
		}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return nil // []byte decodes from base64
		}
		p.kind = planSlice
		building[t] = p
		if p.elem = buildPlan(t.Elem(), building); p.elem == nil {
			return nil
		}
	case reflect.Struct:
		p.kind = planStruct
		building[t] = p
		seen := make(map[string]bool, t.NumField())
		for i := range t.NumField() {
			sf := t.Field(i)
			if sf.Anonymous {
				return nil // encoding/json promotes embedded fields
			}
			tag := sf.Tag.Get("json")
			if tag == "-" || !sf.IsExported() {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			if strings.Contains(","+opts+",", ",string,") || !plainName(name) {
				return nil
			}
			if name == "" {
				name = sf.Name
			}
			if seen[name] {
				return nil // encoding/json decodes neither field
			}
			seen[name] = true
			fp := buildPlan(sf.Type, building)
			if fp == nil {
				return nil
			}
			p.fields = append(p.fields, fieldPlan{name: name, index: i, plan: fp})
		}
	default:
		return nil
	}
	return p
}

// plainName reports whether a tag's name is one encoding/json takes as it
// is: letters, digits and a few punctuation marks (it ignores other names
// and uses the field's).
func plainName(name string) bool {
	for _, c := range name {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// fastDecoder reads a document that the scanner found valid; it still
// checks every byte it relies on, and gives up (false) on any surprise.
type fastDecoder struct {
	data []byte
	i    int
}

// value decodes the value at d.i into v, of p's type.
func (d *fastDecoder) value(p *plan, v reflect.Value) bool {
	d.i = skipSpace(d.data, d.i)
	if d.i >= len(d.data) {
		return false
	}
	c := d.data[d.i]
	if p.kind == planRaw {
		start := d.i
		if !d.skip() {
			return false
		}
		v.SetBytes(append([]byte(nil), d.data[start:d.i]...))
		return true
	}
	if c == 'n' {
		if !d.literal(litNull) {
			return false
		}
		// encoding/json sets pointers and slices to nil and leaves
		// everything else as it is.
		if p.kind == planPointer || p.kind == planSlice {
			v.SetZero()
		}
		return true
	}
	switch p.kind {
	case planPointer:
		if v.IsNil() {
			v.Set(reflect.New(p.typ.Elem()))
		}
		return d.value(p.elem, v.Elem())
	case planString:
		s, ok := d.plainString()
		if !ok {
			return false
		}
		v.SetString(s)
		return true
	case planBool:
		switch c {
		case 't':
			if !d.literal(litTrue) {
				return false
			}
			v.SetBool(true)
		case 'f':
			if !d.literal(litFalse) {
				return false
			}
			v.SetBool(false)
		default:
			return false
		}
		return true
	case planFloat, planInt, planUint:
		num, ok := d.number()
		if !ok {
			return false
		}
		return storeNumber(p.kind, num, v)
	case planSlice:
		return d.slice(p, v)
	case planStruct:
		return d.object(p, v)
	}
	return false
}

// storeNumber stores the JSON number num into v as encoding/json does,
// or reports false where it would fail.
func storeNumber(kind planKind, num []byte, v reflect.Value) bool {
	switch kind {
	case planFloat:
		f, err := strconv.ParseFloat(string(num), v.Type().Bits())
		if err != nil || v.OverflowFloat(f) {
			return false
		}
		v.SetFloat(f)
	case planInt:
		n, ok := parseInt(num)
		if !ok || v.OverflowInt(n) {
			return false
		}
		v.SetInt(n)
	case planUint:
		n, err := strconv.ParseUint(string(num), 10, 64)
		if err != nil || v.OverflowUint(n) {
			return false
		}
		v.SetUint(n)
	}
	return true
}

// parseInt is strconv.ParseInt(string(num), 10, 64) without the string, for
// the numbers of up to 18 digits, which cannot overflow; longer ones go to
// strconv, and a fraction or an exponent is no integer (false), as there.
func parseInt(num []byte) (int64, bool) {
	neg := len(num) > 0 && num[0] == '-'
	digits := num
	if neg {
		digits = num[1:]
	}
	if len(digits) == 0 || len(digits) > 18 {
		n, err := strconv.ParseInt(string(num), 10, 64)
		return n, err == nil
	}
	var n int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false // a fraction or an exponent: not an integer
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// slice decodes the array at d.i into the slice v, which must be empty and
// without capacity (encoding/json would decode into its old elements).
func (d *fastDecoder) slice(p *plan, v reflect.Value) bool {
	if d.data[d.i] != '[' || v.Cap() != 0 {
		return false
	}
	if d.open() {
		v.Set(reflect.MakeSlice(p.typ, 0, 0))
		return true
	}
	// Count the elements first, so that the slice is made once.
	n, ok := d.count()
	if !ok {
		return false
	}
	s := reflect.MakeSlice(p.typ, n, n)
	for k := range n {
		if !d.value(p.elem, s.Index(k)) {
			return false
		}
		more, ok := d.next(']')
		if !ok || more != (k < n-1) {
			return false
		}
	}
	v.Set(s)
	return true
}

// count returns how many elements the array whose first element is at d.i
// has, without moving d.i.
func (d *fastDecoder) count() (int, bool) {
	save := d.i
	defer func() { d.i = save }()
	for n := 1; ; n++ {
		if !d.skip() {
			return 0, false
		}
		more, ok := d.next(']')
		if !ok {
			return 0, false
		}
		if !more {
			return n, true
		}
	}
}

// object decodes the object at d.i into the struct v.
func (d *fastDecoder) object(p *plan, v reflect.Value) bool {
	if d.data[d.i] != '{' {
		return false
	}
	if d.open() {
		return true
	}
	for {
		d.i = skipSpace(d.data, d.i)
		key, ok := d.plainBytes()
		if !ok || !d.colon() {
			return false
		}
		var f *fieldPlan
		for k := range p.fields {
			if p.fields[k].name == string(key) {
				f = &p.fields[k]
				break
			}
		}
		if f == nil {
			return false // encoding/json matches it regardless of case, or ignores it
		}
		if !d.value(f.plan, v.Field(f.index)) {
			return false
		}
		more, ok := d.next('}')
		if !ok {
			return false
		}
		if !more {
			return true
		}
	}
}

// open moves past the opening bracket at d.i and any space after it, and
// past the closing one too when the container is empty, which it reports.
func (d *fastDecoder) open() (empty bool) {
	closer := byte('}')
	if d.data[d.i] == '[' {
		closer = ']'
	}
	d.i = skipSpace(d.data, d.i+1)
	if d.i < len(d.data) && d.data[d.i] == closer {
		d.i++
		return true
	}
	return false
}

// colon moves past the space and the colon after an object's key.
func (d *fastDecoder) colon() bool {
	d.i = skipSpace(d.data, d.i)
	if d.i >= len(d.data) || d.data[d.i] != ':' {
		return false
	}
	d.i++
	return true
}

// next moves past the space and the comma or closer after a container's
// element, reporting whether another element follows.
func (d *fastDecoder) next(closer byte) (more, ok bool) {
	d.i = skipSpace(d.data, d.i)
	if d.i >= len(d.data) {
		return false, false
	}
	switch d.data[d.i] {
	case ',':
		d.i++
		return true, true
	case closer:
		d.i++
		return false, true
	}
	return false, false
}

// plainString reads the string at d.i when it has no escapes and is valid
// UTF-8: its text is then its bytes.
func (d *fastDecoder) plainString() (string, bool) {
	b, ok := d.plainBytes()
	if !ok {
		return "", false
	}
	return string(b), true
}

// plainBytes reads the string at d.i, as plainString, without its quotes.
// Invalid UTF-8, which encoding/json replaces, is left to it, as escapes
// are (unquote makes the same test).
func (d *fastDecoder) plainBytes() ([]byte, bool) {
	if d.i >= len(d.data) || d.data[d.i] != '"' {
		return nil, false
	}
	end, plain, ok := scanString(d.data, d.i)
	if !ok {
		return nil, false
	}
	b := d.data[d.i+1 : end-1]
	if !plain && (bytes.IndexByte(b, '\\') >= 0 || !utf8.Valid(b)) {
		return nil, false
	}
	d.i = end
	return b, true
}

// number returns the number token at d.i.
func (d *fastDecoder) number() ([]byte, bool) {
	end, ok := numberEnd(d.data, d.i)
	if !ok {
		return nil, false
	}
	num := d.data[d.i:end]
	d.i = end
	return num, true
}

func (d *fastDecoder) literal(lit []byte) bool {
	if len(d.data)-d.i < len(lit) || string(d.data[d.i:d.i+len(lit)]) != string(lit) {
		return false
	}
	d.i += len(lit)
	return true
}

// skip moves d.i past the value at d.i (after any space).
func (d *fastDecoder) skip() bool {
	d.i = skipSpace(d.data, d.i)
	if d.i >= len(d.data) {
		return false
	}
	switch c := d.data[d.i]; c {
	case '"':
		end, _, ok := scanString(d.data, d.i)
		if !ok {
			return false
		}
		d.i = end
		return true
	case 't':
		return d.literal(litTrue)
	case 'f':
		return d.literal(litFalse)
	case 'n':
		return d.literal(litNull)
	case '{', '[':
		closer := byte('}')
		if c == '[' {
			closer = ']'
		}
		if d.open() {
			return true
		}
		for {
			if c == '{' {
				d.i = skipSpace(d.data, d.i)
				if d.i >= len(d.data) || d.data[d.i] != '"' {
					return false
				}
				end, _, ok := scanString(d.data, d.i)
				if !ok {
					return false
				}
				d.i = end
				if !d.colon() {
					return false
				}
			}
			if !d.skip() {
				return false
			}
			more, ok := d.next(closer)
			if !ok {
				return false
			}
			if !more {
				return true
			}
		}
	default:
		_, ok := d.number()
		return ok
	}
}
