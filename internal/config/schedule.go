package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/taskd/taskd/client"
	"github.com/taskd/taskd/internal/kinds"
	"github.com/taskd/taskd/internal/schedule"
)

// Schedule is a periodic task of the file: Task is enqueued at every tick
// of Spec, once across the cluster.
type Schedule struct {
	// Name identifies the schedule; its tasks carry it.
	Name string
	Spec schedule.Spec
	// Task is the task enqueued at each tick, as a submission would say
	// it: the kind and args, and the queue, priority, max_attempts and
	// tags the file gives. What they may be is the submission's rule,
	// checked by CheckSchedules.
	Task client.TaskRequest
}

// Keys of a schedule. The task's keys are a submission's.
const (
	keyCron     = "cron"
	keyEvery    = "every"
	keyKind     = "kind"
	keyArgs     = "args"
	keyPriority = "priority"
	keyTags     = "tags"
)

var scheduleKeys = []string{keyName, keyCron, keyEvery, keyKind, keyArgs, keyQueue, keyPriority, keyMaxAttempts, keyTags}

const scheduleNameRule = "a schedule name follows River's rule for queue names: up to 64 lowercase letters and digits, separated by single underscores or hyphens"

// scheduleDecl is where the file says one schedule, for CheckSchedules.
type scheduleDecl struct {
	path string // "schedules[2]"
	node *yaml.Node
}

// schedules reads the list of schedules into f.Schedules. A schedule with
// any problem is left out, after its problems are recorded.
func (p *parser) schedules(f *File, n *yaml.Node, path string) {
	n = resolve(n)
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, path, "must be a list of schedules")
		return
	}
	seen := map[string]int{} // name → line
	for i, item := range n.Content {
		ipath := joinPath(path, fmt.Sprintf("[%d]", i))
		if s, ok := p.schedule(resolve(item), ipath, seen); ok {
			f.Schedules = append(f.Schedules, s)
			f.scheduleDecls = append(f.scheduleDecls, scheduleDecl{path: ipath, node: resolve(item)})
		}
	}
}

// schedule reads one schedule. seen holds the names read so far.
func (p *parser) schedule(n *yaml.Node, path string, seen map[string]int) (Schedule, bool) {
	fields := p.fields(n, path, scheduleKeys)
	if fields == nil {
		return Schedule{}, false
	}
	start := len(p.errs)
	var s Schedule

	if fl, ok := fields[keyName]; !ok {
		p.errorf(n, joinPath(path, keyName), "is required")
	} else if name, ok := p.text(fl.value, joinPath(path, keyName)); ok {
		switch line, dup := seen[name]; {
		case !kinds.QueueNameOK(name):
			p.errorf(fl.value, joinPath(path, keyName), "invalid schedule name %q: %s", name, scheduleNameRule)
		case dup:
			p.errorf(fl.value, joinPath(path, keyName), "schedule %q is declared twice (first at line %d)", name, line)
		default:
			seen[name] = fl.value.Line
			s.Name = name
		}
	}

	cronField, hasCron := fields[keyCron]
	everyField, hasEvery := fields[keyEvery]
	switch {
	case hasCron && hasEvery:
		p.errorf(everyField.key, joinPath(path, keyEvery), "give cron or every, not both")
	case hasCron:
		if expr, ok := p.text(cronField.value, joinPath(path, keyCron)); ok {
			spec, err := schedule.ParseCron(expr)
			if err != nil {
				p.errorf(cronField.value, joinPath(path, keyCron), "invalid cron expression %q: %s", expr, err)
			}
			s.Spec = spec
		}
	case hasEvery:
		if d, ok := p.duration(everyField.value, joinPath(path, keyEvery), schedule.EveryMin, schedule.EveryMax, ""); ok {
			spec, err := schedule.Every(d)
			if err != nil {
				p.errorf(everyField.value, joinPath(path, keyEvery), "%s", err)
			}
			s.Spec = spec
		}
	default:
		p.errorf(n, path, "needs cron (a cron expression, such as \"*/5 * * * *\") or every (an interval, such as 30s): when the schedule fires")
	}

	if fl, ok := fields[keyKind]; !ok {
		p.errorf(n, joinPath(path, keyKind), "is required")
	} else if kind, ok := p.text(fl.value, joinPath(path, keyKind)); ok {
		s.Task.Kind = &kind
	}
	if fl, ok := fields[keyArgs]; ok {
		var b bytes.Buffer
		if err := nodeJSON(&b, fl.value, 0); err != nil {
			p.errorf(err.node, joinPath(path, keyArgs), "%s", err.msg)
		} else {
			s.Task.Args = json.RawMessage(b.Bytes())
		}
	}
	if fl, ok := fields[keyQueue]; ok {
		if queue, ok := p.text(fl.value, joinPath(path, keyQueue)); ok {
			s.Task.Queue = &queue
		}
	}
	// The ranges are the submission's, checked by CheckSchedules with the
	// submission's messages.
	for _, num := range []struct {
		key string
		dst **int
	}{{keyPriority, &s.Task.Priority}, {keyMaxAttempts, &s.Task.MaxAttempts}} {
		if fl, ok := fields[num.key]; ok {
			if v, ok := p.anInteger(fl.value); ok {
				*num.dst = &v
			} else {
				p.errorf(resolve(fl.value), joinPath(path, num.key), "must be an integer")
			}
		}
	}
	if fl, ok := fields[keyTags]; ok {
		s.Task.Tags = p.strings(fl.value, joinPath(path, keyTags))
	}
	return s, len(p.errs) == start
}

// strings reads a list of strings.
func (p *parser) strings(n *yaml.Node, path string) []string {
	n = resolve(n)
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, path, "must be a list of strings")
		return nil
	}
	out := []string{}
	for i, item := range n.Content {
		if s, ok := p.text(item, joinPath(path, fmt.Sprintf("[%d]", i))); ok {
			out = append(out, s)
		}
	}
	return out
}

// CheckSchedules checks each schedule's task with check, which validates
// a task as a submission would be (tasks.Rules.Check: the kind exists, the
// args satisfy it, the queue is worked, ...), given the task and the
// schedule's path as the prefix of its field paths. Each problem is
// reported at its line: the deepest key of the file on its field path
// ("schedules[0].args.width" at the line of width). Its errors are Load's.
//
// Load cannot do this itself: the rules are the submission's, and the
// command knows the kinds and queues they are checked against.
func (f *File) CheckSchedules(check func(task *client.TaskRequest, prefix string) []kinds.FieldError) error {
	p := &parser{file: f.Path}
	for i := range f.Schedules {
		if i >= len(f.scheduleDecls) {
			break
		}
		decl := f.scheduleDecls[i]
		for _, fe := range check(&f.Schedules[i].Task, decl.path) {
			at := nodeAt(decl.node, strings.TrimPrefix(fe.Field, decl.path))
			p.errs = append(p.errs, &Error{File: f.Path, Line: at.Line, Path: fe.Field, Message: fe.Message})
		}
	}
	return p.err()
}

// nodeAt follows a field path (".args.items[2].name") from n through
// mappings and sequences, and returns the deepest node found on it: n
// itself when the first step is missing. A key holding a dot is not found,
// and its parent stands for it.
func nodeAt(n *yaml.Node, path string) *yaml.Node {
	for path != "" {
		n = resolve(n)
		var next *yaml.Node
		switch path[0] {
		case '[':
			end := strings.IndexByte(path, ']')
			if end < 0 {
				return n
			}
			i, err := strconv.Atoi(path[1:end])
			if n.Kind == yaml.SequenceNode && err == nil && i >= 0 && i < len(n.Content) {
				next = n.Content[i]
			}
			path = path[end+1:]
		case '.':
			key := path[1:]
			path = ""
			if j := strings.IndexAny(key, ".["); j >= 0 {
				key, path = key[:j], key[j:]
			}
			if n.Kind == yaml.MappingNode {
				for k := 0; k+1 < len(n.Content); k += 2 {
					if n.Content[k].Value == key {
						next = n.Content[k+1]
					}
				}
			}
		default:
			return n
		}
		if next == nil {
			return n
		}
		n = next
	}
	return resolve(n)
}
