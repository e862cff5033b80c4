package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/riverqueue/river"
	"go.yaml.in/yaml/v3"

	"github.com/taskd/taskd/internal/backoff"
	"github.com/taskd/taskd/internal/kinds"
)

// parser walks the YAML tree of one file, collecting every problem.
//
// The tree is walked by hand rather than decoded into structs: only then
// can every error carry its line and key path, and every problem of the
// file be reported at once.
type parser struct {
	file   string
	dir    string
	getenv func(string) string
	errs   []*Error
	// expanded holds the scalars that held a ${NAME} reference.
	expanded map[*yaml.Node]bool
	// kindNames holds the name of every entry of kinds, valid or not, so
	// that a limit of a kind with a mistake is not reported as well.
	kindNames map[string]bool
}

func (p *parser) errorf(n *yaml.Node, path, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Path: path, Message: fmt.Sprintf(format, args...)})
}

// Top-level keys. Adding one (limits) is one entry here and one block in
// parse.
const (
	keyQueues       = "queues"
	keyAllowPrivate = "allow_private"
	keyKinds        = "kinds"
	keyLimits       = "limits"
	keySchedules    = "schedules"
)

var topKeys = []string{keyQueues, keyAllowPrivate, keyKinds, keyLimits, keySchedules}

// yamlLineRE finds the line in the parser's errors ("yaml: line 3: ...").
var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseYAML parses data as one YAML document; nil is an empty file.
func (p *parser) parseYAML(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if !errors.Is(err, io.EOF) {
			p.yamlError(err)
		}
		return nil
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		if err != nil {
			p.yamlError(err)
		} else {
			p.errorf(&next, "", "the file holds more than one YAML document")
		}
		return nil
	}
	return &doc
}

func (p *parser) yamlError(err error) {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		p.errs = append(p.errs, &Error{File: p.file, Line: line, Message: m[2], err: err})
		return
	}
	p.errs = append(p.errs, &Error{File: p.file, Message: strings.TrimPrefix(msg, "yaml: "), err: err})
}

// parse checks the whole file. Later keys depend on earlier ones (kinds on
// queues and allow_private), so the keys are read in a fixed order, not
// the file's.
func (p *parser) parse(data []byte) *File {
	f := &File{}
	doc := p.parseYAML(data)
	if doc == nil || len(doc.Content) == 0 {
		return f
	}
	p.expandTree(doc, "")
	root := resolve(doc.Content[0])
	if root.ShortTag() == "!!null" {
		return f // a file of comments only
	}
	fields := p.fields(root, "", topKeys)
	if fields == nil {
		return f
	}
	if fl, ok := fields[keyQueues]; ok {
		// nil after an error: the kinds are then checked as if the file
		// had no queues, so that one mistake does not bring another about
		// each http kind.
		f.Queues = p.queues(fl.value, keyQueues)
	}
	if fl, ok := fields[keyAllowPrivate]; ok {
		f.AllowPrivate = p.prefixes(fl.value, keyAllowPrivate)
	}
	if fl, ok := fields[keyKinds]; ok {
		p.kinds(f, fl.value, keyKinds)
	}
	if fl, ok := fields[keyLimits]; ok {
		p.limits(f, fl.value, keyLimits)
	}
	if fl, ok := fields[keySchedules]; ok {
		p.schedules(f, fl.value, keySchedules)
	}
	return f
}

// field is one key of a mapping and its value.
type field struct {
	key, value *yaml.Node
}

// fields returns the keys of mapping n by name, reporting keys not in
// known and repeated ones. It returns nil (after an error) when n is not a
// mapping.
func (p *parser) fields(n *yaml.Node, path string, known []string) map[string]field {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		p.errorf(n, path, "must be a mapping of %s", strings.Join(known, ", "))
		return nil
	}
	fields := make(map[string]field, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name := k.Value
		switch {
		case k.Kind != yaml.ScalarNode:
			p.errorf(k, path, "a key must be a string")
		case !slices.Contains(known, name):
			p.errorf(k, joinPath(path, name), "unknown key (known keys: %s)", strings.Join(known, ", "))
		case fields[name].key != nil:
			p.errorf(k, joinPath(path, name), "repeated key (first at line %d)", fields[name].key.Line)
		default:
			fields[name] = field{key: k, value: v}
		}
	}
	return fields
}

// pairs returns the key/value pairs of mapping n, reporting non-string and
// repeated keys; fold says keys that differ only in case are the same (HTTP
// header names). It returns nil (after an error) when n is not a mapping.
func (p *parser) pairs(n *yaml.Node, path, what string, fold bool) []field {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		p.errorf(n, path, "must be a mapping of %s", what)
		return nil
	}
	list := []field{} // not nil: nil says n is not a mapping
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		id := k.Value
		if fold {
			id = strings.ToLower(id)
		}
		switch line, dup := seen[id]; {
		case k.Kind != yaml.ScalarNode:
			p.errorf(k, path, "a key must be a string")
		case dup:
			p.errorf(k, joinPath(path, k.Value), "repeated key (first at line %d)", line)
		default:
			seen[id] = k.Line
			list = append(list, field{key: k, value: v})
		}
	}
	return list
}

// resolve follows aliases to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for range 100 {
		if n.Kind != yaml.AliasNode || n.Alias == nil {
			return n
		}
		n = n.Alias
	}
	return n
}

// text returns scalar n as text. Any scalar but null is accepted
// ("description: 42" is the text 42), as is anything that came from a
// ${NAME} reference.
func (p *parser) text(n *yaml.Node, path string) (string, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || (n.ShortTag() == "!!null" && !p.expanded[n]) {
		p.errorf(n, path, "must be a string")
		return "", false
	}
	return n.Value, true
}

// integer returns n as an integer within [lo, hi]. A quoted ${NAME} reference
// holding an integer is accepted: in a flow mapping ({default: "${N}"})
// the quotes are required.
func (p *parser) integer(n *yaml.Node, path string, lo, hi int) (int, bool) {
	i, ok := p.anInteger(n)
	if !ok || i < lo || i > hi {
		p.errorf(resolve(n), path, "must be an integer between %d and %d", lo, hi)
		return 0, false
	}
	return i, true
}

// anInteger returns n as an integer, as integer reads it, reporting
// nothing.
func (p *parser) anInteger(n *yaml.Node) (int, bool) {
	n = resolve(n)
	var (
		i   int
		err = errors.New("not an integer")
	)
	switch {
	case n.Kind != yaml.ScalarNode:
	case n.ShortTag() == "!!int":
		err = n.Decode(&i)
	case p.expanded[n]:
		i, err = strconv.Atoi(strings.TrimSpace(n.Value))
	}
	return i, err == nil
}

// number returns n as a number within [lo, hi]; like integer, it accepts
// a ${NAME} reference holding one.
func (p *parser) number(n *yaml.Node, path string, lo, hi float64) (float64, bool) {
	n = resolve(n)
	var (
		f   float64
		err = errors.New("not a number")
	)
	switch {
	case n.Kind != yaml.ScalarNode:
	case n.ShortTag() == "!!int" || n.ShortTag() == "!!float":
		err = n.Decode(&f)
	case p.expanded[n]:
		f, err = strconv.ParseFloat(strings.TrimSpace(n.Value), 64)
	}
	// Written so that NaN (.nan) is out of bounds too.
	if err != nil || !(f >= lo && f <= hi) {
		p.errorf(n, path, "must be a number between %g and %g", lo, hi)
		return 0, false
	}
	return f, true
}

// duration returns n as a Go duration within [lo, hi]; what says for what
// the range holds in the error.
func (p *parser) duration(n *yaml.Node, path string, lo, hi time.Duration, what string) (time.Duration, bool) {
	s, ok := p.text(n, path)
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		p.errorf(n, path, "must be a duration such as 30s or 10m, not %q", s)
		return 0, false
	}
	if d < lo || d > hi {
		p.errorf(n, path, "must be between %s and %s%s", shortDuration(lo), shortDuration(hi), what)
		return 0, false
	}
	return d, true
}

// shortDuration formats d without its zero units: 30m, not 30m0s (as
// taskd shows durations everywhere).
var shortDuration = backoff.FormatDuration

// The queue-name rule is River's, kept in one place.
var (
	validQueueName = kinds.QueueNameOK
	queueNameRule  = kinds.QueueNameRule
)

// queues reads the queues mapping: name → workers per process.
func (p *parser) queues(n *yaml.Node, path string) map[string]int {
	pairs := p.pairs(n, path, "queue names to workers", false)
	if pairs == nil {
		return nil
	}
	if len(pairs) == 0 {
		p.errorf(resolve(n), path, "at least one queue is required (remove the key for the default queues)")
		return nil
	}
	queues := make(map[string]int, len(pairs))
	for _, pair := range pairs {
		name := pair.key.Value
		qpath := joinPath(path, name)
		if !validQueueName(name) {
			p.errorf(pair.key, qpath, "invalid queue name %q: %s", name, queueNameRule)
			continue
		}
		if workers, ok := p.integer(pair.value, qpath, 1, river.QueueNumWorkersMax); ok {
			queues[name] = workers
		}
	}
	return queues
}

// prefixes reads a list of CIDR prefixes; a bare address is the prefix of
// that one address (/32 or /128).
func (p *parser) prefixes(n *yaml.Node, path string) []netip.Prefix {
	n = resolve(n)
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, path, "must be a list of CIDR prefixes or addresses, such as [\"127.0.0.1/32\", \"10.0.0.0/8\", \"::1\"]")
		return nil
	}
	var list []netip.Prefix
	for i, item := range n.Content {
		ipath := joinPath(path, fmt.Sprintf("[%d]", i))
		s, ok := p.text(item, ipath)
		if !ok {
			continue
		}
		prefix, err := parsePrefix(strings.TrimSpace(s))
		if err != nil {
			p.errorf(item, ipath, "%q is not a CIDR prefix (such as 10.0.0.0/8) or an address", s)
			continue
		}
		list = append(list, prefix)
	}
	return list
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		prefix, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		// 10.1.2.3/8 means 10.0.0.0/8: the operator gave a network.
		return prefix.Masked(), nil
	}
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if addr.Zone() != "" {
		return netip.Prefix{}, errors.New("an address with a zone is not a prefix")
	}
	return netip.PrefixFrom(addr, addr.BitLen()), nil
}

// joinPath joins key paths as kinds.JoinPath joins field paths, so that
// configuration and submission errors read alike.
func joinPath(prefix, key string) string { return kinds.JoinPath(prefix, key) }
