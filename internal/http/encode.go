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
	b, ok := appendSummaryFields(b, &t.TaskSummary)
	if !ok {
		return b, false
	}
	b = append(b, `,"attempts":`...)
	if t.Attempts == nil {
		return append(b, "null}"...), true
	}
	b = append(b, '[')
	for i := range t.Attempts {
		if i > 0 {
			b = append(b, ',')
		}
		if b, ok = appendAttempt(b, &t.Attempts[i]); !ok {
			return b, false
		}
	}
	return append(b, "]}"...), true
}

// appendTaskList appends l as json.Marshal writes it.
func appendTaskList(b []byte, l *client.TaskList) ([]byte, bool) {
	b = append(b, `{"tasks":`...)
	if l.Tasks == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range l.Tasks {
			if i > 0 {
				b = append(b, ',')
			}
			var ok bool
			if b, ok = appendSummaryFields(b, &l.Tasks[i]); !ok {
				return b, false
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"next_cursor":`...)
	b = appendStringPtr(b, l.NextCursor)
	return append(b, '}'), true
}

// appendSummaryFields appends t's object without its closing brace, so
// that client.Task can add its attempts.
func appendSummaryFields(b []byte, t *client.TaskSummary) ([]byte, bool) {
	var ok bool
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, t.ID, 10)
	b = append(b, `,"kind":`...)
	b = appendString(b, t.Kind)
	b = append(b, `,"queue":`...)
	b = appendString(b, t.Queue)
	b = append(b, `,"state":`...)
	b = appendString(b, t.State)
	b = append(b, `,"args":`...)
	if b, ok = appendRaw(b, t.Args); !ok {
		return b, false
	}
	b = append(b, `,"priority":`...)
	b = strconv.AppendInt(b, int64(t.Priority), 10)
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(t.Attempt), 10)
	b = append(b, `,"max_attempts":`...)
	b = strconv.AppendInt(b, int64(t.MaxAttempts), 10)
	b = append(b, `,"tags":`...)
	if t.Tags == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, tag := range t.Tags {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, tag)
		}
		b = append(b, ']')
	}
	b = append(b, `,"created_at":`...)
	if b, ok = appendTime(b, t.CreatedAt); !ok {
		return b, false
	}
	b = append(b, `,"scheduled_at":`...)
	if b, ok = appendTime(b, t.ScheduledAt); !ok {
		return b, false
	}
	b = append(b, `,"started_at":`...)
	if b, ok = appendTimePtr(b, t.StartedAt); !ok {
		return b, false
	}
	b = append(b, `,"finished_at":`...)
	if b, ok = appendTimePtr(b, t.FinishedAt); !ok {
		return b, false
	}
	b = append(b, `,"result":`...)
	if b, ok = appendRaw(b, t.Result); !ok {
		return b, false
	}
	b = append(b, `,"errors":`...)
	if t.Errors == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, e := range t.Errors {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"attempt":`...)
			b = strconv.AppendInt(b, int64(e.Attempt), 10)
			b = append(b, `,"at":`...)
			if b, ok = appendTime(b, e.At); !ok {
				return b, false
			}
			b = append(b, `,"message":`...)
			b = appendString(b, e.Message)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"cancel_requested":`...)
	b = strconv.AppendBool(b, t.CancelRequested)
	b = append(b, `,"batch_id":`...)
	b = appendInt64Ptr(b, t.BatchID)
	b = append(b, `,"after_batch":`...)
	b = appendInt64Ptr(b, t.AfterBatch)
	b = append(b, `,"schedule":`...)
	b = appendStringPtr(b, t.Schedule)
	b = append(b, `,"next_retry_at":`...)
	if b, ok = appendTimePtr(b, t.NextRetryAt); !ok {
		return b, false
	}
	b = append(b, `,"backoff":`...)
	if b, ok = appendBackoff(b, &t.Backoff); !ok {
		return b, false
	}
	b = append(b, `,"timeout":`...)
	b = appendStringPtr(b, t.Timeout)
	return b, true
}

// appendBackoff appends a policy: every field is omitempty.
func appendBackoff(b []byte, p *client.Backoff) ([]byte, bool) {
	b = append(b, '{')
	sep := func() {
		if b[len(b)-1] != '{' {
			b = append(b, ',')
		}
	}
	if p.Initial != nil {
		b = append(b, `"initial":`...)
		b = appendString(b, *p.Initial)
	}
	if p.Max != nil {
		sep()
		b = append(b, `"max":`...)
		b = appendString(b, *p.Max)
	}
	var ok bool
	if p.Multiplier != nil {
		sep()
		b = append(b, `"multiplier":`...)
		if b, ok = appendFloat(b, *p.Multiplier); !ok {
			return b, false
		}
	}
	if p.Jitter != nil {
		sep()
		b = append(b, `"jitter":`...)
		if b, ok = appendFloat(b, *p.Jitter); !ok {
			return b, false
		}
	}
	return append(b, '}'), true
}

func appendAttempt(b []byte, a *client.Attempt) ([]byte, bool) {
	var ok bool
	b = append(b, `{"attempt":`...)
	b = strconv.AppendInt(b, int64(a.Attempt), 10)
	b = append(b, `,"started_at":`...)
	if b, ok = appendTime(b, a.StartedAt); !ok {
		return b, false
	}
	b = append(b, `,"finished_at":`...)
	if b, ok = appendTimePtr(b, a.FinishedAt); !ok {
		return b, false
	}
	b = append(b, `,"outcome":`...)
	b = appendString(b, a.Outcome)
	b = append(b, `,"error":`...)
	b = appendStringPtr(b, a.Error)
	b = append(b, `,"duration_ms":`...)
	if b, ok = appendFloat(b, a.DurationMS); !ok {
		return b, false
	}
	b = append(b, `,"worker":`...)
	b = appendString(b, a.Worker)
	b = append(b, `,"http_status":`...)
	if a.HTTPStatus == nil {
		b = append(b, "null"...)
	} else {
		b = strconv.AppendInt(b, int64(*a.HTTPStatus), 10)
	}
	return append(b, '}'), true
}

func appendInt64Ptr(b []byte, v *int64) []byte {
	if v == nil {
		return append(b, "null"...)
	}
	return strconv.AppendInt(b, *v, 10)
}

func appendStringPtr(b []byte, s *string) []byte {
	if s == nil {
		return append(b, "null"...)
	}
	return appendString(b, *s)
}

func appendTimePtr(b []byte, t *time.Time) ([]byte, bool) {
	if t == nil {
		return append(b, "null"...), true
	}
	return appendTime(b, *t)
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
