package http

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/taskd/taskd/client"
)

// The answers read most often (a task, a page of tasks) are written by
// appenders instead of encoding/json's reflection: under a GET load the
// encoding was about a tenth of taskd's CPU, most of it walking the
// struct, and every time.Time field allocated its own text
// (docs/PERFORMANCE.md, "Round 2, fourth run"). They write exactly the
// bytes json.Marshal writes for the same value (HTML escaped, as
// json.Encoder does by default), which TestAppendTaskMatchesMarshal and
// FuzzAppendTask check over every field of the wire types, so that adding
// a field to the client's types without adding it here fails a test. An
// appender reports false for a value encoding/json would refuse (a NaN, a
// year past 9999, invalid raw JSON); writeJSONBody then lets encoding/json
// fail on it as before.

// appendAnswer appends v when it is of a type with an appender.
func appendAnswer(b []byte, v any) ([]byte, bool) {
	switch v := v.(type) {
	case client.Task:
		return appendTask(b, &v)
	case client.TaskList:
		return appendTaskList(b, &v)
	}
	return b, false
}

// appendTask appends t as json.Marshal writes it.
func appendTask(b []byte, t *client.Task) ([]byte, bool) {
	a := jsonAppender{b: b, ok: true}
	a.summaryFields(&t.TaskSummary)
	a.lit(`,"attempts":`)
	if t.Attempts == nil {
		a.lit("null")
	} else {
		a.lit("[")
		for i := range t.Attempts {
			if i > 0 {
				a.lit(",")
			}
			a.attempt(&t.Attempts[i])
		}
		a.lit("]")
	}
	a.lit("}")
	return a.b, a.ok
}

// appendTaskList appends l as json.Marshal writes it.
func appendTaskList(b []byte, l *client.TaskList) ([]byte, bool) {
	a := jsonAppender{b: b, ok: true}
	a.lit(`{"tasks":`)
	if l.Tasks == nil {
		a.lit("null")
	} else {
		a.lit("[")
		for i := range l.Tasks {
			if i > 0 {
				a.lit(",")
			}
			a.summaryFields(&l.Tasks[i])
			a.lit("}")
		}
		a.lit("]")
	}
	a.lit(`,"next_cursor":`)
	a.strPtr(l.NextCursor)
	a.lit("}")
	return a.b, a.ok
}

// jsonAppender appends JSON to b. ok turns false at the first value
// encoding/json would refuse, and what is appended after it no longer
// matters.
type jsonAppender struct {
	b  []byte
	ok bool
}

// lit appends JSON text as it is: punctuation and keys.
func (a *jsonAppender) lit(s string) { a.b = append(a.b, s...) }

func (a *jsonAppender) str(s string) { a.b = appendString(a.b, s) }

func (a *jsonAppender) int(n int64) { a.b = strconv.AppendInt(a.b, n, 10) }

func (a *jsonAppender) bool(v bool) { a.b = strconv.AppendBool(a.b, v) }

func (a *jsonAppender) strPtr(s *string) {
	if s == nil {
		a.lit("null")
		return
	}
	a.str(*s)
}

func (a *jsonAppender) int64Ptr(n *int64) {
	if n == nil {
		a.lit("null")
		return
	}
	a.int(*n)
}

func (a *jsonAppender) float(f float64) {
	var ok bool
	a.b, ok = appendFloat(a.b, f)
	a.ok = a.ok && ok
}

func (a *jsonAppender) time(t time.Time) {
	var ok bool
	a.b, ok = appendTime(a.b, t)
	a.ok = a.ok && ok
}

func (a *jsonAppender) timePtr(t *time.Time) {
	if t == nil {
		a.lit("null")
		return
	}
	a.time(*t)
}

func (a *jsonAppender) raw(raw json.RawMessage) {
	var ok bool
	a.b, ok = appendRaw(a.b, raw)
	a.ok = a.ok && ok
}

// summaryFields appends t's object without its closing brace, so that
// client.Task can add its attempts.
func (a *jsonAppender) summaryFields(t *client.TaskSummary) {
	a.lit(`{"id":`)
	a.int(t.ID)
	a.lit(`,"kind":`)
	a.str(t.Kind)
	a.lit(`,"queue":`)
	a.str(t.Queue)
	a.lit(`,"state":`)
	a.str(t.State)
	a.lit(`,"args":`)
	a.raw(t.Args)
	a.lit(`,"priority":`)
	a.int(int64(t.Priority))
	a.lit(`,"attempt":`)
	a.int(int64(t.Attempt))
	a.lit(`,"max_attempts":`)
	a.int(int64(t.MaxAttempts))
	a.lit(`,"tags":`)
	if t.Tags == nil {
		a.lit("null")
	} else {
		a.lit("[")
		for i, tag := range t.Tags {
			if i > 0 {
				a.lit(",")
			}
			a.str(tag)
		}
		a.lit("]")
	}
	a.lit(`,"created_at":`)
	a.time(t.CreatedAt)
	a.lit(`,"scheduled_at":`)
	a.time(t.ScheduledAt)
	a.lit(`,"started_at":`)
	a.timePtr(t.StartedAt)
	a.lit(`,"finished_at":`)
	a.timePtr(t.FinishedAt)
	a.lit(`,"result":`)
	a.raw(t.Result)
	a.lit(`,"errors":`)
	if t.Errors == nil {
		a.lit("null")
	} else {
		a.lit("[")
		for i, e := range t.Errors {
			if i > 0 {
				a.lit(",")
			}
			a.lit(`{"attempt":`)
			a.int(int64(e.Attempt))
			a.lit(`,"at":`)
			a.time(e.At)
			a.lit(`,"message":`)
			a.str(e.Message)
			a.lit("}")
		}
		a.lit("]")
	}
	a.lit(`,"cancel_requested":`)
	a.bool(t.CancelRequested)
	a.lit(`,"batch_id":`)
	a.int64Ptr(t.BatchID)
	a.lit(`,"after_batch":`)
	a.int64Ptr(t.AfterBatch)
	a.lit(`,"schedule":`)
	a.strPtr(t.Schedule)
	a.lit(`,"next_retry_at":`)
	a.timePtr(t.NextRetryAt)
	a.lit(`,"backoff":`)
	a.backoff(&t.Backoff)
	a.lit(`,"timeout":`)
	a.strPtr(t.Timeout)
}

// backoff appends a policy, whose fields are all omitempty.
func (a *jsonAppender) backoff(p *client.Backoff) {
	sep := `{`
	if p.Initial != nil {
		a.lit(sep)
		a.lit(`"initial":`)
		a.str(*p.Initial)
		sep = ","
	}
	if p.Max != nil {
		a.lit(sep)
		a.lit(`"max":`)
		a.str(*p.Max)
		sep = ","
	}
	if p.Multiplier != nil {
		a.lit(sep)
		a.lit(`"multiplier":`)
		a.float(*p.Multiplier)
		sep = ","
	}
	if p.Jitter != nil {
		a.lit(sep)
		a.lit(`"jitter":`)
		a.float(*p.Jitter)
		sep = ","
	}
	if sep == "{" {
		a.lit("{")
	}
	a.lit("}")
}

func (a *jsonAppender) attempt(at *client.Attempt) {
	a.lit(`{"attempt":`)
	a.int(int64(at.Attempt))
	a.lit(`,"started_at":`)
	a.time(at.StartedAt)
	a.lit(`,"finished_at":`)
	a.timePtr(at.FinishedAt)
	a.lit(`,"outcome":`)
	a.str(at.Outcome)
	a.lit(`,"error":`)
	a.strPtr(at.Error)
	a.lit(`,"duration_ms":`)
	a.float(at.DurationMS)
	a.lit(`,"worker":`)
	a.str(at.Worker)
	a.lit(`,"http_status":`)
	if at.HTTPStatus == nil {
		a.lit("null")
	} else {
		a.int(int64(*at.HTTPStatus))
	}
	a.lit("}")
}

// appendTime appends t as time.Time.MarshalJSON does (RFC 3339 with
// nanoseconds), refusing what it refuses: a year that is not four digits
// wide, a zone offset of 24 hours or more.
func appendTime(b []byte, t time.Time) ([]byte, bool) {
	n0 := len(b) + 1
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	if len(b) < n0+len("2006-01-02T15:04:05Z") || b[n0+len("2006")] != '-' {
		return b, false
	}
	if b[len(b)-1] != 'Z' {
		c := b[len(b)-len("Z07:00")]
		hh := b[len(b)-len("07:00"):]
		if ('0' <= c && c <= '9') || 10*(hh[0]-'0')+(hh[1]-'0') >= 24 {
			return b, false
		}
	}
	return append(b, '"'), true
}

// appendFloat appends f as encoding/json writes a float64: like %g, with
// its own exponent cutoffs and unpadded exponents; NaN and infinities are
// refused.
func appendFloat(b []byte, f float64) ([]byte, bool) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return b, false
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-09 to e-9
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, true
}

// appendRaw appends raw JSON as encoding/json writes a json.RawMessage:
// null when nil, otherwise compacted, with <, >, &, U+2028 and U+2029
// escaped; refused when it is not valid JSON.
func appendRaw(b []byte, raw json.RawMessage) ([]byte, bool) {
	if raw == nil {
		return append(b, "null"...), true
	}
	n0 := len(b)
	buf := bytes.NewBuffer(b)
	if err := json.Compact(buf, raw); err != nil {
		return b, false
	}
	b = buf.Bytes()
	if bytes.ContainsAny(b[n0:], "<>&\u2028\u2029") {
		var esc bytes.Buffer
		json.HTMLEscape(&esc, b[n0:])
		b = append(b[:n0], esc.Bytes()...)
	}
	return b, true
}

// htmlSafe reports the ASCII bytes encoding/json writes as they are in a
// string with HTML escaping on: not a control character, a quote, a
// backslash, <, > or &.
var htmlSafe = func() (set [utf8.RuneSelf]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		set[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return set
}()

const hexDigits = "0123456789abcdef"

// appendString appends s as encoding/json writes a string with HTML
// escaping on: invalid UTF-8 becomes U+FFFD, and U+2028 and U+2029 are
// escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if htmlSafe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
