package config

import (
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/taskd/taskd/internal/kinds"
	"github.com/taskd/taskd/internal/kinds/builtin"
	"github.com/taskd/taskd/internal/limits"
)

// Keys of a limit.
const (
	keyLimitKind      = "kind"
	keyLimitQueue     = "queue"
	keyConcurrency    = "concurrency"
	keyConcurrencyKey = "concurrency_key"
	keyConcurrencyPer = "concurrency_per_key"
	keyRate           = "rate"
)

var limitKeys = []string{keyLimitKind, keyLimitQueue, keyConcurrency, keyConcurrencyKey, keyConcurrencyPer, keyRate}

// limits reads the top-level limits list. Kinds are known by then (the
// built-in ones and the file's), so a limit of an unknown kind is an error
// here, at start.
func (p *parser) limits(f *File, n *yaml.Node, path string) {
	n = resolve(n)
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, path, "must be a list of limits, each for one kind or one queue")
		return
	}
	seen := map[string]int{} // limit name → line
	for i, item := range n.Content {
		if l, ok := p.limit(f, item, joinPath(path, fmt.Sprintf("[%d]", i)), seen); ok {
			f.Limits = append(f.Limits, l)
		}
	}
}

func (p *parser) limit(f *File, n *yaml.Node, path string, seen map[string]int) (limits.Limit, bool) {
	n = resolve(n)
	fields := p.fields(n, path, limitKeys)
	if fields == nil {
		return limits.Limit{}, false
	}
	before := len(p.errs)
	var l limits.Limit
	kind, hasKind := fields[keyLimitKind]
	queue, hasQueue := fields[keyLimitQueue]
	switch {
	case hasKind == hasQueue:
		p.errorf(n, path, "must name exactly one of kind or queue")
	case hasKind:
		if name, ok := p.text(kind.value, joinPath(path, keyLimitKind)); ok {
			known := slices.ContainsFunc(builtin.Kinds(), func(k kinds.Kind) bool { return k.Name == name }) ||
				p.kindNames[name]
			if !known {
				p.errorf(kind.value, joinPath(path, keyLimitKind), "unknown kind %q (a built-in kind or one declared under kinds)", name)
			}
			l.Kind = name
		}
	default:
		if name, ok := p.text(queue.value, joinPath(path, keyLimitQueue)); ok {
			if !kinds.QueueNameOK(name) {
				p.errorf(queue.value, joinPath(path, keyLimitQueue), "%q is not a queue name: %s", name, kinds.QueueNameRule)
			}
			l.Queue = name
		}
	}
	if fl, ok := fields[keyConcurrency]; ok {
		l.Concurrency, _ = p.integer(fl.value, joinPath(path, keyConcurrency), 1, limits.ConcurrencyMax)
	}
	keyField, hasKey := fields[keyConcurrencyKey]
	if hasKey {
		if key, ok := p.text(keyField.value, joinPath(path, keyConcurrencyKey)); ok {
			if msg := limits.KeyProblem(key); msg != "" {
				p.errorf(keyField.value, joinPath(path, keyConcurrencyKey), "%s", msg)
			}
			l.Key = key
		}
	}
	if fl, ok := fields[keyConcurrencyPer]; ok {
		l.PerKey, _ = p.integer(fl.value, joinPath(path, keyConcurrencyPer), 1, limits.ConcurrencyMax)
		if !hasKey {
			p.errorf(fl.key, joinPath(path, keyConcurrencyPer), "needs concurrency_key, the args field whose values it counts")
		}
	}
	if fl, ok := fields[keyRate]; ok {
		if s, ok := p.text(fl.value, joinPath(path, keyRate)); ok {
			n, per, err := limits.ParseRate(s)
			if err != nil {
				p.errorf(fl.value, joinPath(path, keyRate), "%v", err)
			}
			l.Rate, l.Per = n, per
		}
	}
	_, hasConc := fields[keyConcurrency]
	_, hasPer := fields[keyConcurrencyPer]
	_, hasRate := fields[keyRate]
	switch {
	case !hasConc && !hasPer && !hasRate:
		p.errorf(n, path, "sets no limit: give concurrency, concurrency_per_key (with concurrency_key) or rate")
	case hasKey && !hasPer && !hasRate:
		p.errorf(keyField.key, joinPath(path, keyConcurrencyKey), "needs concurrency_per_key or rate, which count per key")
	}
	if len(p.errs) > before {
		return limits.Limit{}, false
	}
	name := l.Name()
	if line, dup := seen[name]; dup {
		p.errorf(n, path, "a second limit for %s (the first is at line %d): put both in one entry", strings.Replace(name, ":", " ", 1), line)
		return limits.Limit{}, false
	}
	seen[name] = n.Line
	return l, true
}
