// Package limits holds taskd's cluster-wide limits on starting tasks: at
// most N running at once for a kind or queue (the seed article's
// Semaphore, but across every process), at most M per distinct value of an
// args field, and at most R starts per second, minute or hour.
//
// The limits live in the configuration file; their state lives in the
// database (task_slots, task_limit_waits, task_rate_windows; migration
// 00014), so that every process sharing it enforces them together. A
// Limiter decides for many tasks at once in one transaction; see
// limiter.go.
package limits

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/taskd/taskd/internal/store"
)

// Bounds of a limit's settings.
const (
	ConcurrencyMax = 100_000
	RateMax        = 1_000_000
	// KeyMaxLength bounds the value of a concurrency key kept per task;
	// longer values are hashed down to it.
	KeyMaxLength = 200
)

// KeyPrefix starts every concurrency_key: the key is a field of the
// task's args.
const KeyPrefix = "args."

// Limit is one entry of the configuration file's limits: for one kind or
// one queue.
type Limit struct {
	// Kind or Queue (exactly one) names what the limit applies to.
	Kind, Queue string
	// Concurrency caps the tasks running at once in the whole cluster; 0
	// is no cap.
	Concurrency int
	// Key is the concurrency_key ("args.customer_id"), "" for none.
	Key string
	// PerKey caps the tasks running at once per distinct value of Key; 0
	// is no cap.
	PerKey int
	// Rate is the most starts per Per (per key when Key is set); 0 is no
	// rate.
	Rate int
	Per  time.Duration
}

// Name identifies the limit in the database and in responses:
// "kind:resize" or "queue:cpu".
func (l *Limit) Name() string {
	if l.Kind != "" {
		return "kind:" + l.Kind
	}
	return "queue:" + l.Queue
}

// RateString formats Rate and Per as the configuration file spells them
// ("10/s"), or "" without a rate.
func (l *Limit) RateString() string {
	if l.Rate == 0 {
		return ""
	}
	unit := map[time.Duration]string{time.Second: "s", time.Minute: "m", time.Hour: "h"}[l.Per]
	return strconv.Itoa(l.Rate) + "/" + unit
}

// ParseRate reads "100/s", "5/m" or "1000/h".
func ParseRate(s string) (n int, per time.Duration, err error) {
	count, unit, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return 0, 0, fmt.Errorf("must be a count per unit such as 100/s, 5/m or 1000/h, not %q", s)
	}
	switch strings.TrimSpace(unit) {
	case "s":
		per = time.Second
	case "m":
		per = time.Minute
	case "h":
		per = time.Hour
	default:
		return 0, 0, fmt.Errorf("the unit must be s, m or h, not %q", unit)
	}
	n, err = strconv.Atoi(strings.TrimSpace(count))
	if err != nil || n < 1 || n > RateMax {
		return 0, 0, fmt.Errorf("the count must be an integer between 1 and %d", RateMax)
	}
	return n, per, nil
}

// KeyProblem says what is wrong with a concurrency_key, or "".
func KeyProblem(key string) string {
	rest, ok := strings.CutPrefix(key, KeyPrefix)
	if !ok || rest == "" {
		return `must name a field of the args, such as "args.customer_id"`
	}
	for _, part := range strings.Split(rest, ".") {
		if part == "" {
			return "must not have empty parts between dots"
		}
	}
	return ""
}

// keyValue extracts the value at path (the key without "args.") from a
// task's args: a string as itself, anything else as its JSON text, and a
// missing field (or args that are not an object) as "", which groups all
// such tasks under one key.
func keyValue(args []byte, path []string) string {
	var cur json.RawMessage = args
	for _, part := range path {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(cur, &obj); err != nil {
			return ""
		}
		v, ok := obj[part]
		if !ok {
			return ""
		}
		cur = v
	}
	var s string
	if err := json.Unmarshal(cur, &s); err == nil {
		return clipKey(s)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, cur); err != nil {
		return ""
	}
	return clipKey(buf.String())
}

func clipKey(s string) string {
	if len(s) <= KeyMaxLength {
		return s
	}
	return s[:KeyMaxLength-17] + "#" + strconv.FormatUint(fnv64(s), 16)
}

func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// Set is the limits of a configuration, looked up by kind and queue.
type Set struct {
	list []*compiled
}

type compiled struct {
	Limit
	name    string
	keyPath []string
}

// NewSet returns the set of list. The caller has validated list
// (internal/config); NewSet only copies it.
func NewSet(list []Limit) *Set {
	s := &Set{}
	for _, l := range list {
		c := &compiled{Limit: l, name: l.Name()}
		if l.Key != "" {
			c.keyPath = strings.Split(strings.TrimPrefix(l.Key, KeyPrefix), ".")
		}
		s.list = append(s.list, c)
	}
	return s
}

// Empty reports whether s holds no limit (a nil Set is empty).
func (s *Set) Empty() bool { return s == nil || len(s.list) == 0 }

// All returns the limits in configuration order.
func (s *Set) All() []Limit {
	if s == nil {
		return nil
	}
	out := make([]Limit, len(s.list))
	for i, c := range s.list {
		out[i] = c.Limit
	}
	return out
}

// ForKind returns the limits of kind; ForQueue those of queue.
func (s *Set) ForKind(kind string) []Limit {
	return s.filter(func(c *compiled) bool { return c.Kind == kind })
}

// ForQueue returns the limits of queue.
func (s *Set) ForQueue(queue string) []Limit {
	return s.filter(func(c *compiled) bool { return c.Queue == queue })
}

func (s *Set) filter(keep func(*compiled) bool) []Limit {
	if s == nil {
		return nil
	}
	var out []Limit
	for _, c := range s.list {
		if keep(c) {
			out = append(out, c.Limit)
		}
	}
	return out
}

// Applies reports whether any limit applies to tasks of kind on queue.
func (s *Set) Applies(kind, queue string) bool {
	if s == nil {
		return false
	}
	return slices.ContainsFunc(s.list, func(c *compiled) bool { return c.Kind == kind || c.Queue == queue })
}

// group is one counter a task takes part in: a limit and a key value ("" for
// the limit's global cap and rate). A task needs room in each of its
// groups to start.
type group struct {
	Limit string // the limit's Name
	Key   string
	// Cap is the most running at once; 0 is none.
	Cap int
	// Rate is the most starts per Per; 0 is none.
	Rate int
	Per  time.Duration
}

// id is the group's identity in the database and in maps.
func (g group) id() groupID { return groupID{Limit: g.Limit, Key: g.Key} }

// groupID is a group's identity: the store's, so that the rows a round
// reads and writes need no conversion.
type groupID = store.LimitGroup

// groups returns the groups of a task of kind on queue with args, in a
// fixed order.
func (s *Set) groups(kind, queue string, args []byte) []group {
	if s == nil {
		return nil
	}
	var out []group
	for _, c := range s.list {
		if c.Kind != kind && c.Queue != queue {
			continue
		}
		global := group{Limit: c.name, Cap: c.Concurrency}
		if c.keyPath == nil {
			global.Rate, global.Per = c.Rate, c.Per
		}
		if global.Cap > 0 || global.Rate > 0 {
			out = append(out, global)
		}
		if c.keyPath != nil {
			// "k:" keeps a key value apart from the global group's "".
			perKey := group{Limit: c.name, Key: "k:" + keyValue(args, c.keyPath), Cap: c.PerKey, Rate: c.Rate, Per: c.Per}
			if perKey.Cap > 0 || perKey.Rate > 0 {
				out = append(out, perKey)
			}
		}
	}
	return out
}

// group returns the group of limit name and key as configured now; ok is
// false for a limit no longer configured.
func (s *Set) group(name, key string) (group, bool) {
	if s == nil {
		return group{}, false
	}
	for _, c := range s.list {
		if c.name != name {
			continue
		}
		if key == "" {
			g := group{Limit: name, Cap: c.Concurrency}
			if c.keyPath == nil {
				g.Rate, g.Per = c.Rate, c.Per
			}
			return g, true
		}
		return group{Limit: name, Key: key, Cap: c.PerKey, Rate: c.Rate, Per: c.Per}, true
	}
	return group{}, false
}
