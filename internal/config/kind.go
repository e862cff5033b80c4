package config

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/riverqueue/river"
	"go.yaml.in/yaml/v3"

	"github.com/taskd/taskd/internal/backoff"
	"github.com/taskd/taskd/internal/kinds"
	"github.com/taskd/taskd/internal/kinds/builtin"
	"github.com/taskd/taskd/internal/push"
)

// Rules of a declared kind.
const (
	// MaxAttemptsMax is the largest max_attempts of a kind.
	MaxAttemptsMax = 1000
	// DescriptionMaxLen is the longest description, in characters.
	DescriptionMaxLen = 1000
	// HTTPTimeoutDefault bounds one attempt of an http kind (the request
	// and its response) when the kind sets no timeout.
	HTTPTimeoutDefault = push.TimeoutDefault
	// HTTPTimeoutMin and HTTPTimeoutMax bound an http kind's timeout; they
	// are push's limits (and a task's own timeout's, kinds.TimeoutRange).
	HTTPTimeoutMin, HTTPTimeoutMax = kinds.HTTPTimeoutMin, kinds.HTTPTimeoutMax
	// ExternalTimeoutMin and ExternalTimeoutMax bound an external kind's
	// timeout, the length of one lease. An external kind without one has
	// Timeout 0, and its leases the claim's default.
	ExternalTimeoutMin, ExternalTimeoutMax = kinds.ExternalTimeoutMin, kinds.ExternalTimeoutMax
)

// Keys of a kind.
const (
	keyName             = "name"
	keyRun              = "run"
	keyQueue            = "queue"
	keyDescription      = "description"
	keyMaxAttempts      = "max_attempts"
	keyTimeout          = "timeout"
	keyBackoff          = "backoff"
	keyArgsSchema       = "args_schema"
	keyArgsSchemaFile   = "args_schema_file"
	keyResultSchema     = "result_schema"
	keyResultSchemaFile = "result_schema_file"
	keyURL              = "url"
	keyHeaders          = "headers"
	keySecret           = "secret"
)

var kindKeys = []string{
	keyName, keyRun, keyQueue, keyDescription, keyMaxAttempts, keyTimeout, keyBackoff,
	keyArgsSchema, keyArgsSchemaFile, keyResultSchema, keyResultSchemaFile,
	keyURL, keyHeaders, keySecret, keyAllowPrivate,
}

// httpOnlyKeys are refused on a kind that does not run over HTTP, where
// they would mean nothing.
var httpOnlyKeys = []string{keyURL, keyHeaders, keySecret, keyAllowPrivate}

// kindNameRE is the rule for a declared kind's name. It is a subset of
// River's rule for kinds (rivercommon.UserSpecifiedIDOrKindRE, at least two
// characters), which River enforces on the workers it is given, so that the
// worker of an http kind is always accepted; starting with a letter keeps
// names readable in URLs and logs. At most 127 characters: river_job's
// kind_length constraint (River's migration 002) refuses 128, and every
// submission of a longer kind failed its insert.
var kindNameRE = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_.:/-]{1,126}$`)

const kindNameRule = "a kind name is 2 to 127 characters: a letter, then letters, digits, _ . : / or -"

// kinds reads the list of declared kinds into f.Kinds. A kind with any
// problem is left out, after its problems are recorded.
func (p *parser) kinds(f *File, n *yaml.Node, path string) {
	n = resolve(n)
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, path, "must be a list of kinds")
		return
	}
	seen := map[string]int{} // name → line
	p.kindNames = map[string]bool{}
	for i, item := range n.Content {
		if item := resolve(item); item.Kind == yaml.MappingNode {
			for j := 0; j+1 < len(item.Content); j += 2 {
				if item.Content[j].Value == keyName {
					p.kindNames[resolve(item.Content[j+1]).Value] = true
				}
			}
		}
		k, own, ok := p.kind(f, item, joinPath(path, fmt.Sprintf("[%d]", i)), seen)
		if ok {
			f.Kinds = append(f.Kinds, k)
			f.own = append(f.own, own)
		}
	}
}

// kind reads one declared kind. seen holds the names read so far.
func (p *parser) kind(f *File, n *yaml.Node, path string, seen map[string]int) (kinds.Kind, declared, bool) {
	n = resolve(n)
	fields := p.fields(n, path, kindKeys)
	if fields == nil {
		return kinds.Kind{}, declared{}, false
	}
	start := len(p.errs)
	k := kinds.Kind{Declared: true, Queue: river.QueueDefault}
	var own declared

	if fl, ok := fields[keyName]; !ok {
		p.errorf(n, joinPath(path, keyName), "is required")
	} else if name, ok := p.text(fl.value, joinPath(path, keyName)); ok {
		switch line, dup := seen[name]; {
		case !kindNameRE.MatchString(name):
			p.errorf(fl.value, joinPath(path, keyName), "invalid kind name %q: %s", name, kindNameRule)
		case slices.ContainsFunc(builtin.Kinds(), func(b kinds.Kind) bool { return b.Name == name }):
			p.errorf(fl.value, joinPath(path, keyName), "%q is a built-in kind; a declared kind needs a name of its own", name)
		case dup:
			p.errorf(fl.value, joinPath(path, keyName), "kind %q is declared twice (first at line %d)", name, line)
		default:
			seen[name] = fl.value.Line
			k.Name = name
		}
	}

	if fl, ok := fields[keyRun]; !ok {
		p.errorf(n, joinPath(path, keyRun), "is required: http (taskd calls the kind's URL) or external (workers outside taskd claim its tasks)")
	} else if run, ok := p.text(fl.value, joinPath(path, keyRun)); ok {
		switch kinds.Run(run) {
		case kinds.RunHTTP, kinds.RunExternal:
			k.Run = kinds.Run(run)
		case kinds.RunGo:
			p.errorf(fl.value, joinPath(path, keyRun), "only taskd's built-in kinds run in Go; a declared kind runs over http or is external")
		default:
			p.errorf(fl.value, joinPath(path, keyRun), "must be http or external, not %q", run)
		}
	}
	if k.Run == kinds.RunExternal {
		for _, key := range httpOnlyKeys {
			if fl, ok := fields[key]; ok {
				p.errorf(fl.key, joinPath(path, key), "only an http kind has %s", key)
			}
		}
	}

	if fl, ok := fields[keyQueue]; ok {
		if queue, ok := p.text(fl.value, joinPath(path, keyQueue)); ok {
			if validQueueName(queue) {
				k.Queue = queue
			} else {
				p.errorf(fl.value, joinPath(path, keyQueue), "invalid queue name %q: %s", queue, queueNameRule)
			}
		}
	}
	own.path, own.queueLine = path, n.Line
	if fl, ok := fields[keyQueue]; ok {
		own.queueLine = fl.value.Line
	}
	if k.Run == kinds.RunHTTP {
		p.checkHTTPQueue(f, fields, n, path, k.Queue)
	}

	if fl, ok := fields[keyDescription]; ok {
		if s, ok := p.text(fl.value, joinPath(path, keyDescription)); ok {
			if utf8.RuneCountInString(s) > DescriptionMaxLen {
				p.errorf(fl.value, joinPath(path, keyDescription), "must be at most %d characters", DescriptionMaxLen)
			}
			k.Description = s
		}
	}
	if fl, ok := fields[keyMaxAttempts]; ok {
		k.MaxAttempts, _ = p.integer(fl.value, joinPath(path, keyMaxAttempts), 1, MaxAttemptsMax)
	}
	switch fl, ok := fields[keyTimeout]; {
	case k.Run == kinds.RunHTTP && ok:
		k.Timeout, _ = p.duration(fl.value, joinPath(path, keyTimeout), HTTPTimeoutMin, HTTPTimeoutMax, " for an http kind (one request)")
	case k.Run == kinds.RunHTTP:
		k.Timeout = HTTPTimeoutDefault
	case k.Run == kinds.RunExternal && ok:
		k.Timeout, _ = p.duration(fl.value, joinPath(path, keyTimeout), ExternalTimeoutMin, ExternalTimeoutMax, " for an external kind (one lease)")
	}
	if fl, ok := fields[keyBackoff]; ok {
		k.Backoff = p.backoff(fl.value, joinPath(path, keyBackoff))
	}

	args := p.schema(fields, keyArgsSchema, keyArgsSchemaFile, path)
	result := p.schema(fields, keyResultSchema, keyResultSchemaFile, path)
	k.ArgsSchema, k.ResultSchema = args.json, result.json

	if k.Run == kinds.RunHTTP {
		k.Push, own.allowPrivate = p.target(f, fields, n, path, k.Timeout)
	}

	if len(p.errs) == start && k.Push != nil {
		p.checkTarget(*k.Push, fields, path)
	}
	if len(p.errs) > start {
		return kinds.Kind{}, declared{}, false
	}
	k.Decode = decoder(k.Name, args.compiled)
	return k, own, true
}

// Keys of a backoff policy: the wire names of backoff.Override's fields.
var backoffKeys = []string{"initial", "max", "multiplier", "jitter"}

// backoff reads a kind's retry policy: the fields it sets over
// backoff.Default, within backoff's bounds.
func (p *parser) backoff(n *yaml.Node, path string) backoff.Policy {
	fields := p.fields(n, path, backoffKeys)
	if fields == nil {
		return backoff.Policy{}
	}
	start := len(p.errs)
	var o backoff.Override
	for _, key := range []string{"initial", "max"} {
		fl, ok := fields[key]
		if !ok {
			continue
		}
		if d, ok := p.duration(fl.value, joinPath(path, key), backoff.InitialMin, backoff.MaxMax, ""); ok {
			if key == "initial" {
				o.Initial = &d
			} else {
				o.Max = &d
			}
		}
	}
	if fl, ok := fields["multiplier"]; ok {
		if f, ok := p.number(fl.value, joinPath(path, "multiplier"), backoff.MultiplierMin, backoff.MultiplierMax); ok {
			o.Multiplier = &f
		}
	}
	if fl, ok := fields["jitter"]; ok {
		if f, ok := p.number(fl.value, joinPath(path, "jitter"), 0, backoff.JitterMax); ok {
			o.Jitter = &f
		}
	}
	if len(p.errs) > start {
		return backoff.Policy{}
	}
	for _, pr := range o.Check(backoff.Default) {
		p.errorf(fields[pr.Field].value, joinPath(path, pr.Field), "%s", pr.Message)
	}
	return o.Apply(backoff.Default)
}

// target reads where an http kind's tasks go. It returns the kind's own
// allow_private too, which the target merges with the file's.
func (p *parser) target(f *File, fields map[string]field, n *yaml.Node, path string, timeout time.Duration) (*push.Target, []netip.Prefix) {
	target := &push.Target{Timeout: timeout}
	if fl, ok := fields[keyURL]; !ok {
		p.errorf(n, joinPath(path, keyURL), "is required for an http kind: the endpoint each attempt is POSTed to")
	} else {
		target.URL = p.url(fl.value, joinPath(path, keyURL))
	}
	if fl, ok := fields[keyHeaders]; ok {
		target.Headers = p.headers(fl.value, joinPath(path, keyHeaders))
	}
	if fl, ok := fields[keySecret]; ok {
		if s, ok := p.text(fl.value, joinPath(path, keySecret)); ok {
			secret, err := push.ParseSecret(s)
			if err != nil {
				// push's errors never repeat the value: it is a secret, or
				// nearly.
				p.errorf(fl.value, joinPath(path, keySecret), "%s", strings.TrimPrefix(err.Error(), "push: "))
			}
			target.Secret = secret
		}
	}
	var own []netip.Prefix
	if fl, ok := fields[keyAllowPrivate]; ok {
		own = p.prefixes(fl.value, joinPath(path, keyAllowPrivate))
	}
	target.AllowPrivate = slices.Concat(f.AllowPrivate, own)
	return target, own
}

// checkHTTPQueue reports an http kind whose queue no worker of this
// process serves: its tasks are pushed by the process's River workers, so
// they would wait forever. (An external kind's queue needs no workers:
// workers outside taskd claim its tasks.)
func (p *parser) checkHTTPQueue(f *File, fields map[string]field, n *yaml.Node, path, queue string) {
	at := n
	if fl, ok := fields[keyQueue]; ok {
		at = fl.value
	}
	switch {
	case f.Queues == nil && queue != river.QueueDefault && queue != builtin.QueueCPU:
		p.errorf(at, joinPath(path, keyQueue), "queue %q is not configured: an http kind's tasks are sent by taskd's workers, and without a queues key only %s and %s are worked; add %s under queues",
			queue, river.QueueDefault, builtin.QueueCPU, queue)
	case f.Queues != nil && !hasQueue(f.Queues, queue):
		p.errorf(at, joinPath(path, keyQueue), "queue %q is not configured: an http kind's tasks are sent by taskd's workers, so its queue must be listed under queues", queue)
	}
}

func hasQueue(queues map[string]int, queue string) bool {
	_, ok := queues[queue]
	return ok
}

// CheckQueues reports each http kind whose queue is not among queues, the
// queues the process works once its flags have had their say. Load checks
// the file's own queues (or, without them, default and cpu); a command
// whose --queues overrides the file calls CheckQueues with the result, so
// that no http kind's tasks wait for workers that never come. Its errors
// are Load's.
func (f *File) CheckQueues(queues map[string]int) error {
	p := &parser{file: f.Path}
	for i, k := range f.Kinds {
		if k.Run != kinds.RunHTTP || hasQueue(queues, k.Queue) || i >= len(f.own) {
			continue
		}
		names := slices.Sorted(maps.Keys(queues))
		p.errs = append(p.errs, &Error{File: f.Path, Line: f.own[i].queueLine, Path: f.own[i].path + "." + keyQueue,
			Message: fmt.Sprintf("queue %q is not worked by this process (its queues: %s): an http kind's tasks are sent by taskd's workers", k.Queue, strings.Join(names, ", "))})
	}
	return p.err()
}

// url reads an http kind's endpoint.
func (p *parser) url(n *yaml.Node, path string) *url.URL {
	s, ok := p.text(n, path)
	if !ok {
		return nil
	}
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		p.errorf(n, path, "must be an http or https URL with a host, such as https://example.com/hook")
		return nil
	}
	return u
}

// headers reads an http kind's extra request headers. Which headers may
// be set is push's rule, asked of push one header at a time so that each
// problem names its own line.
func (p *parser) headers(n *yaml.Node, path string) map[string]string {
	pairs := p.pairs(n, path, "header names to values", true)
	if len(pairs) == 0 {
		return nil
	}
	headers := make(map[string]string, len(pairs))
	for _, pair := range pairs {
		name := pair.key.Value
		hpath := joinPath(path, name)
		v, ok := p.text(pair.value, hpath)
		if !ok {
			continue
		}
		if msg := headerProblem(name, v); msg != "" {
			p.errorf(pair.key, hpath, "%s", msg)
			continue
		}
		headers[name] = v
	}
	return headers
}

// probeURL stands in for a kind's URL when only its headers are checked.
var probeURL = &url.URL{Scheme: "https", Host: "example.com"}

// headerProblem returns push's objection to one header, or "". push keeps
// the rule unexported; NewClient opens no connection, so asking it costs
// nothing at load.
func headerProblem(name, value string) string {
	target := push.Target{URL: probeURL, Headers: map[string]string{name: value}}
	c, err := push.NewClient(push.Config{Target: target})
	if err != nil {
		return strings.TrimPrefix(err.Error(), "push: Target.Headers ")
	}
	c.Close()
	return ""
}

// checkTarget asks push whether it accepts target, so that a kind the file
// accepts never fails when its worker starts. The file's own checks come
// first and say more; this one catches a rule push adds later.
func (p *parser) checkTarget(target push.Target, fields map[string]field, path string) {
	c, err := push.NewClient(push.Config{Target: target})
	if err == nil {
		c.Close()
		return
	}
	key := keyURL
	var cerr *push.ConfigError
	msg := err.Error()
	if errors.As(err, &cerr) {
		msg = cerr.Message
		switch cerr.Field {
		case "Target.Headers":
			key = keyHeaders
		case "Target.Timeout":
			key = keyTimeout
		case "Target.AllowPrivate":
			key = keyAllowPrivate
		}
	}
	at := fields[keyURL].key
	if fl, ok := fields[key]; ok {
		at = fl.key
	}
	p.errorf(at, joinPath(path, key), "%s", msg)
}

func prefixStrings(list []netip.Prefix) []string {
	var out []string
	for _, p := range list {
		out = append(out, p.String())
	}
	return out
}
