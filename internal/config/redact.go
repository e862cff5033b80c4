package config

import (
	"bytes"
	"fmt"
	"maps"
	"slices"

	"go.yaml.in/yaml/v3"

	"github.com/taskd/taskd/internal/backoff"
	"github.com/taskd/taskd/internal/kinds"
	"github.com/taskd/taskd/internal/schedule"
)

// redactedValue replaces every secret in Redacted's output.
const redactedValue = "<redacted>"

// redactedFile is the shape of Redacted's output: the file's keys, in the
// file's order.
type redactedFile struct {
	Queues       map[string]int     `yaml:"queues,omitempty"`
	AllowPrivate []string           `yaml:"allow_private,omitempty,flow"`
	Kinds        []redactedKind     `yaml:"kinds,omitempty"`
	Limits       []redactedLimit    `yaml:"limits,omitempty"`
	Schedules    []redactedSchedule `yaml:"schedules,omitempty"`
}

type redactedLimit struct {
	Kind              string `yaml:"kind,omitempty"`
	Queue             string `yaml:"queue,omitempty"`
	Concurrency       int    `yaml:"concurrency,omitempty"`
	ConcurrencyKey    string `yaml:"concurrency_key,omitempty"`
	ConcurrencyPerKey int    `yaml:"concurrency_per_key,omitempty"`
	Rate              string `yaml:"rate,omitempty"`
}

type redactedSchedule struct {
	Name        string     `yaml:"name"`
	Cron        string     `yaml:"cron,omitempty"`
	Every       string     `yaml:"every,omitempty"`
	Kind        string     `yaml:"kind"`
	Args        *yaml.Node `yaml:"args,omitempty"`
	Queue       string     `yaml:"queue,omitempty"`
	Priority    *int       `yaml:"priority,omitempty"`
	MaxAttempts *int       `yaml:"max_attempts,omitempty"`
	Tags        []string   `yaml:"tags,omitempty,flow"`
}

type redactedKind struct {
	Name         string            `yaml:"name"`
	Run          kinds.Run         `yaml:"run"`
	Queue        string            `yaml:"queue"`
	Description  string            `yaml:"description,omitempty"`
	MaxAttempts  int               `yaml:"max_attempts,omitempty"`
	Timeout      string            `yaml:"timeout,omitempty"`
	Backoff      *redactedBackoff  `yaml:"backoff,omitempty"`
	URL          string            `yaml:"url,omitempty"`
	Headers      map[string]string `yaml:"headers,omitempty"`
	Secret       string            `yaml:"secret,omitempty"`
	AllowPrivate []string          `yaml:"allow_private,omitempty,flow"`
	ArgsSchema   *yaml.Node        `yaml:"args_schema,omitempty"`
	ResultSchema *yaml.Node        `yaml:"result_schema,omitempty"`
}

// redactedBackoff is a kind's backoff with the defaults it did not set.
type redactedBackoff struct {
	Initial    string  `yaml:"initial"`
	Max        string  `yaml:"max"`
	Multiplier float64 `yaml:"multiplier"`
	Jitter     float64 `yaml:"jitter"`
}

// Redacted renders the effective configuration as YAML, for `taskd config
// check`: ${NAME} references expanded, defaults filled in (queue, timeout,
// the fields a kind's backoff leaves out), schema files inlined, and the
// secrets replaced by "<redacted>": each kind's secret, every header value
// (headers carry tokens) and the password of a URL. Queues are shown only when the file sets them; their
// defaults are the command's.
func (f *File) Redacted() ([]byte, error) {
	out := redactedFile{Queues: f.Queues, AllowPrivate: prefixStrings(f.AllowPrivate)}
	for i, k := range f.Kinds {
		rk := redactedKind{
			Name:        k.Name,
			Run:         k.Run,
			Queue:       k.Queue,
			Description: k.Description,
			MaxAttempts: k.MaxAttempts,
		}
		if k.Timeout > 0 {
			rk.Timeout = shortDuration(k.Timeout)
		}
		if k.Backoff != (backoff.Policy{}) {
			rk.Backoff = &redactedBackoff{Initial: shortDuration(k.Backoff.Initial), Max: shortDuration(k.Backoff.Max),
				Multiplier: k.Backoff.Multiplier, Jitter: k.Backoff.Jitter}
		}
		if t := k.Push; t != nil {
			if t.URL != nil {
				u := *t.URL
				if u.RawQuery != "" {
					// Query strings carry tokens as often as passwords do.
					u.RawQuery = "redacted"
				}
				rk.URL = u.Redacted()
			}
			if len(t.Headers) > 0 {
				rk.Headers = make(map[string]string, len(t.Headers))
				for _, name := range slices.Sorted(maps.Keys(t.Headers)) {
					rk.Headers[name] = redactedValue
				}
			}
			if t.Secret != nil {
				rk.Secret = redactedValue
			}
		}
		if i < len(f.own) {
			rk.AllowPrivate = prefixStrings(f.own[i].allowPrivate)
		}
		var err error
		if rk.ArgsSchema, err = schemaNode(k.ArgsSchema); err != nil {
			return nil, fmt.Errorf("config: kind %s: args_schema: %w", k.Name, err)
		}
		if rk.ResultSchema, err = schemaNode(k.ResultSchema); err != nil {
			return nil, fmt.Errorf("config: kind %s: result_schema: %w", k.Name, err)
		}
		out.Kinds = append(out.Kinds, rk)
	}
	for _, l := range f.Limits {
		out.Limits = append(out.Limits, redactedLimit{Kind: l.Kind, Queue: l.Queue, Concurrency: l.Concurrency,
			ConcurrencyKey: l.Key, ConcurrencyPerKey: l.PerKey, Rate: l.RateString()})
	}
	for _, sch := range f.Schedules {
		rs := redactedSchedule{Name: sch.Name, Cron: sch.Spec.Cron(), Priority: sch.Task.Priority, MaxAttempts: sch.Task.MaxAttempts, Tags: sch.Task.Tags}
		if d := sch.Spec.Interval(); d > 0 {
			rs.Every = schedule.FormatInterval(d)
		}
		if sch.Task.Kind != nil {
			rs.Kind = *sch.Task.Kind
		}
		if sch.Task.Queue != nil {
			rs.Queue = *sch.Task.Queue
		}
		var err error
		if rs.Args, err = schemaNode(sch.Task.Args); err != nil {
			return nil, fmt.Errorf("config: schedule %s: args: %w", sch.Name, err)
		}
		out.Schedules = append(out.Schedules, rs)
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(out); err != nil {
		return nil, fmt.Errorf("config: rendering the configuration: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("config: rendering the configuration: %w", err)
	}
	return b.Bytes(), nil
}

// schemaNode turns a schema's (or a schedule's args') JSON into a YAML node
// in flow style, which keeps its keys in order and reads as the JSON it is.
func schemaNode(schema []byte) (*yaml.Node, error) {
	if len(schema) == 0 {
		return nil, nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(schema, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	n := doc.Content[0]
	n.Style = yaml.FlowStyle
	return n, nil
}
