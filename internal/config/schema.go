package config

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/riverqueue/river"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"go.yaml.in/yaml/v3"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/taskd/taskd/internal/kinds"
	"github.com/taskd/taskd/internal/strictjson"
)

// MaxViolations is how many problems one submission's args are reported
// with at most, so that a large invalid array does not make a response of
// thousands of errors.
const MaxViolations = 50

// schemaMaxDepth bounds the nesting of an inline schema; YAML aliases can
// otherwise make a tree that never ends.
const schemaMaxDepth = 100

// printer renders the schema library's messages in English.
var printer = message.NewPrinter(language.English)

// schemaBase is where the schemas are said to be, for the library, which
// identifies each by a URL. It is never loaded; a relative $ref resolves
// under it and is refused by noLoader.
const schemaBase = "https://taskd.invalid/config/"

// compiledSchema is one schema of a kind: as JSON for GET /v1/kinds, and
// compiled for validation. Both are nil when the kind has none.
type compiledSchema struct {
	json     json.RawMessage
	compiled *jsonschema.Schema
}

// schema reads a kind's schema, given inline under key or as a file under
// fileKey, and compiles it, so that a schema that cannot be used is an
// error at load rather than at the first submission.
func (p *parser) schema(fields map[string]field, key, fileKey, path string) compiledSchema {
	inline, hasInline := fields[key]
	file, hasFile := fields[fileKey]
	var (
		doc   []byte
		at    field
		where string // where the schema is, for messages
		ok    bool
	)
	switch {
	case hasInline && hasFile:
		p.errorf(file.key, joinPath(path, fileKey), "give %s or %s, not both", key, fileKey)
		return compiledSchema{}
	case hasInline:
		at, where = inline, joinPath(path, key)
		if resolve(inline.value).Kind != yaml.MappingNode {
			p.errorf(inline.value, where, "must be a mapping: a JSON Schema (draft 2020-12) written in YAML")
			return compiledSchema{}
		}
		var b bytes.Buffer
		if err := nodeJSON(&b, inline.value, 0); err != nil {
			p.errorf(err.node, where, "%s", err.msg)
			return compiledSchema{}
		}
		doc = b.Bytes()
	case hasFile:
		at, where = file, joinPath(path, fileKey)
		name, okName := p.text(file.value, where)
		if !okName {
			return compiledSchema{}
		}
		if doc, ok = p.schemaFile(file.value, where, name); !ok {
			return compiledSchema{}
		}
	default:
		return compiledSchema{}
	}
	compiled, err := compileSchema(doc, schemaBase+url.PathEscape(where)+".json")
	if err != nil {
		p.errorf(at.key, where, "is not a valid JSON Schema: %s", err)
		return compiledSchema{}
	}
	return compiledSchema{json: doc, compiled: compiled}
}

// schemaFile reads the schema file name (relative to the configuration
// file's directory), JSON or YAML, as compact JSON. Its contents are not
// expanded: ${NAME} is for settings, and a schema file is a document of
// its own.
func (p *parser) schemaFile(n *yaml.Node, path, name string) ([]byte, bool) {
	full := name
	if !filepath.IsAbs(full) {
		full = filepath.Join(p.dir, name)
	}
	data, err := os.ReadFile(full)
	if err != nil {
		msg := err.Error()
		var perr *os.PathError
		if errors.As(err, &perr) {
			msg = perr.Err.Error()
		}
		p.errs = append(p.errs, &Error{File: p.file, Line: n.Line, Path: path, Message: fmt.Sprintf("cannot read %s: %s", full, msg), err: err})
		return nil, false
	}
	if json.Valid(data) {
		var b bytes.Buffer
		_ = json.Compact(&b, data) // valid, so it compacts
		if b.Len() == 0 || b.Bytes()[0] != '{' {
			p.errorf(n, path, "%s must hold a JSON object", full)
			return nil, false
		}
		return b.Bytes(), true
	}
	// Not JSON: YAML, parsed by a parser of its own so that its problems
	// name its own lines.
	sub := &parser{file: full}
	doc := sub.parseYAML(data)
	if len(sub.errs) > 0 {
		p.errorf(n, path, "%s", sub.errs[0].Error())
		return nil, false
	}
	if doc == nil || len(doc.Content) == 0 || resolve(doc.Content[0]).Kind != yaml.MappingNode {
		p.errorf(n, path, "%s must hold a JSON Schema object, in JSON or YAML", full)
		return nil, false
	}
	var b bytes.Buffer
	if err := nodeJSON(&b, doc.Content[0], 0); err != nil {
		p.errorf(n, path, "%s:%d: %s", full, err.node.Line, err.msg)
		return nil, false
	}
	return b.Bytes(), true
}

// nodeError is a YAML value that JSON cannot hold.
type nodeError struct {
	node *yaml.Node
	msg  string
}

// nodeJSON writes YAML tree n as JSON, keeping the order of keys (so that
// GET /v1/kinds shows the schema as written) and numbers as written.
func nodeJSON(b *bytes.Buffer, n *yaml.Node, depth int) *nodeError {
	if depth > schemaMaxDepth {
		return &nodeError{n, fmt.Sprintf("is nested more than %d levels deep", schemaMaxDepth)}
	}
	n = resolve(n)
	switch n.Kind {
	case yaml.MappingNode:
		b.WriteByte('{')
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode {
				return &nodeError{k, "a key must be a string"}
			}
			if line, dup := seen[k.Value]; dup {
				return &nodeError{k, fmt.Sprintf("repeated key %q (first at line %d)", k.Value, line)}
			}
			seen[k.Value] = k.Line
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONString(b, k.Value)
			b.WriteByte(':')
			if err := nodeJSON(b, n.Content[i+1], depth+1); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case yaml.SequenceNode:
		b.WriteByte('[')
		for i, c := range n.Content {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := nodeJSON(b, c, depth+1); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case yaml.ScalarNode:
		return scalarJSON(b, n)
	default:
		return &nodeError{n, "cannot be written as JSON"}
	}
	return nil
}

// scalarJSON writes one scalar as JSON. A number is kept as written when
// JSON can hold it so ("0.1" stays 0.1), and converted when YAML wrote it
// otherwise (0x10 is 16).
func scalarJSON(b *bytes.Buffer, n *yaml.Node) *nodeError {
	switch n.ShortTag() {
	case "!!null":
		b.WriteString("null")
	case "!!bool":
		var v bool
		if err := n.Decode(&v); err != nil {
			return &nodeError{n, "is not a boolean"}
		}
		b.WriteString(strconv.FormatBool(v))
	case "!!int", "!!float":
		if isJSONNumber(n.Value) {
			b.WriteString(n.Value)
			return nil
		}
		var v float64
		if n.ShortTag() == "!!int" {
			var i int64
			if err := n.Decode(&i); err != nil {
				return &nodeError{n, "is an integer too large for taskd"}
			}
			b.WriteString(strconv.FormatInt(i, 10))
			return nil
		}
		if err := n.Decode(&v); err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
			return &nodeError{n, fmt.Sprintf("%s is not a number JSON can hold", n.Value)}
		}
		b.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
	default: // strings, and timestamps and the like, which JSON has not
		writeJSONString(b, n.Value)
	}
	return nil
}

func isJSONNumber(s string) bool {
	return s != "" && (s[0] == '-' || '0' <= s[0] && s[0] <= '9') && json.Valid([]byte(s))
}

// writeJSONString writes s as a JSON string, leaving <, > and & alone:
// schemas are served as JSON, not embedded in HTML.
func writeJSONString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)       // a string always encodes
	b.Truncate(b.Len() - 1) // Encode's newline
}

// noLoader refuses every document a schema refers to. A schema is checked
// at start, and a start must not depend on the network or on files other
// than the ones the configuration names; shared parts go under $defs.
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, errors.New("taskd loads no schema documents but the kind's own and the JSON Schema drafts; put shared parts under $defs")
}

// compileSchema compiles the JSON schema doc, known as loc. Draft 2020-12
// is the default draft; "format" is asserted (as operators expect of
// "format: email", though the draft makes it an annotation).
func compileSchema(doc []byte, loc string) (*jsonschema.Schema, error) {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.UseLoader(noLoader{})
	if err := c.AddResource(loc, v); err != nil {
		return nil, err
	}
	sch, err := c.Compile(loc)
	if err == nil {
		return sch, nil
	}
	// Against the draft's metaschema, list where the schema is wrong.
	var (
		serr *jsonschema.SchemaValidationError
		verr *jsonschema.ValidationError
	)
	if errors.As(err, &serr) && errors.As(serr.Err, &verr) {
		var msgs []string
		for _, leaf := range violations(v, verr) {
			msgs = append(msgs, "at "+cmp.Or(pointer(leaf.loc), "the top")+": "+leaf.msg)
			if len(msgs) == 3 {
				break
			}
		}
		return nil, errors.New(strings.Join(msgs, "; "))
	}
	// Other errors name the schema by its made-up URL: leave the part the
	// operator wrote (after "#", or a $ref's relative path).
	msg := strings.ReplaceAll(err.Error(), loc, "")
	return nil, errors.New(strings.ReplaceAll(msg, schemaBase, ""))
}

// pointer is the JSON pointer of loc.
func pointer(loc []string) string {
	var b strings.Builder
	for _, tok := range loc {
		b.WriteByte('/')
		b.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(tok))
	}
	return b.String()
}

// violation is one problem of a value against a schema: where (the
// instance location, and the field path in taskd's form) and what.
type violation struct {
	loc   []string
	field string
	msg   string
}

// violations flattens err to its leaves, one per problem, sorted by field
// so that a response does not change from one submission to the next (the
// library walks maps). A missing required property and an additional one
// are reported at the property's own path, one per property.
func violations(inst any, err *jsonschema.ValidationError) []violation {
	var list []violation
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		field := fieldPath(inst, e.InstanceLocation)
		switch k := e.ErrorKind.(type) {
		case *kind.Required:
			for _, name := range k.Missing {
				list = append(list, violation{append(slices.Clone(e.InstanceLocation), name), kinds.JoinPath(field, name), "is required"})
			}
		case *kind.AdditionalProperties:
			for _, name := range k.Properties {
				list = append(list, violation{append(slices.Clone(e.InstanceLocation), name), kinds.JoinPath(field, name), "is not allowed"})
			}
		case *kind.FalseSchema:
			list = append(list, violation{e.InstanceLocation, field, "is not allowed"})
		default:
			list = append(list, violation{e.InstanceLocation, field, e.ErrorKind.LocalizedString(printer)})
		}
	}
	walk(err)
	slices.SortStableFunc(list, func(a, b violation) int {
		return cmp.Or(cmp.Compare(a.field, b.field), cmp.Compare(a.msg, b.msg))
	})
	// Branches of anyOf and oneOf can say the same thing twice.
	return slices.CompactFunc(list, func(a, b violation) bool { return a.field == b.field && a.msg == b.msg })
}

// fieldPath turns an instance location into taskd's field path, relative
// to the args: an array index is "[3]", an object key ".name". Tokens are
// strings either way, so the instance tells which is which.
func fieldPath(inst any, loc []string) string {
	path := ""
	v := inst
	for _, tok := range loc {
		switch x := v.(type) {
		case []any:
			path = kinds.JoinPath(path, "["+tok+"]")
			v = nil
			if i, err := strconv.Atoi(tok); err == nil && i >= 0 && i < len(x) {
				v = x[i]
			}
		case map[string]any:
			path = kinds.JoinPath(path, tok)
			v = x[tok]
		default:
			path = kinds.JoinPath(path, tok)
			v = nil
		}
	}
	return path
}

// decoder returns the Decode of a declared kind: the args validated
// against sch (when the kind has one) and kept as submitted, compacted. A
// missing or null args is an empty object, as for the built-in kinds, so
// that required properties are reported by name.
func decoder(name string, sch *jsonschema.Schema) func(json.RawMessage, *kinds.Errors) river.JobArgs {
	return func(raw json.RawMessage, errs *kinds.Errors) river.JobArgs {
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 || string(raw) == "null" {
			raw = json.RawMessage("{}")
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, raw); err != nil {
			errs.Add("", "must be valid JSON")
			return nil
		}
		if sch != nil {
			// Numbers as json.Number, so that 1e400 or a 20-digit integer
			// is checked as sent, not as a float64.
			inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(compact.Bytes()))
			if err != nil {
				errs.Add("", "must be valid JSON")
				return nil
			}
			if err := sch.Validate(inst); err != nil {
				var verr *jsonschema.ValidationError
				if !errors.As(err, &verr) {
					errs.Add("", "%s", err)
					return nil
				}
				list := violations(inst, verr)
				if len(list) == 0 {
					errs.Add("", "does not match the kind's args_schema")
				}
				for i, v := range list {
					if i == MaxViolations {
						errs.Add("", "%d more problems not shown", len(list)-MaxViolations)
						break
					}
					// A message may quote the value it refuses, whole:
					// clipped, as every problem quotes client input.
					errs.Add(v.field, "%s", strictjson.Clip(v.msg))
				}
				return nil
			}
		}
		return kinds.RawArgs{KindName: name, Raw: json.RawMessage(compact.Bytes())}
	}
}
