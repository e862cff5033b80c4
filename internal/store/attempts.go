package store

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

// storedAttempt is one element of the attempts array TaskGetByID builds
// (json_build_object over task_attempts).
type storedAttempt struct {
	Attempt    int       `json:"attempt"`
	Worker     string    `json:"worker"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	Outcome    string    `json:"outcome"`
	Error      *string   `json:"error"`
	DurationMS float64   `json:"duration_ms"`
	HTTPStatus *int      `json:"http_status"`
}

// decodeAttempts decodes TaskGetByID's attempts array. Reading one task
// decodes it on every GET, and encoding/json's reflection over it, with
// its two passes and its time parsing, was about a fifteenth of taskd's
// CPU under a GET load (docs/PERFORMANCE.md, "Round 2, fourth run"). So
// the shape PostgreSQL writes (an array of flat objects of strings
// without escapes, numbers and nulls, under the keys above) is read by
// scanAttempts; anything else (an error message with a quote or a line
// break, a key it does not know) goes to encoding/json, which decides.
// TestDecodeAttemptsAgrees and FuzzDecodeAttempts check that the two
// agree wherever scanAttempts answers.
func decodeAttempts(data []byte) ([]storedAttempt, error) {
	if out, ok := scanAttempts(data); ok {
		return out, nil
	}
	var out []storedAttempt
	err := json.Unmarshal(data, &out)
	return out, err
}

// scanAttempts is decodeAttempts' fast path; false means "ask
// encoding/json", never that the input is invalid.
func scanAttempts(data []byte) ([]storedAttempt, bool) {
	s := attemptScanner{data: data}
	if !s.consume('[') {
		return nil, false
	}
	out := []storedAttempt{}
	if s.consume(']') {
		return out, s.end()
	}
	for {
		a, ok := s.object()
		if !ok {
			return nil, false
		}
		out = append(out, a)
		if s.consume(']') {
			return out, s.end()
		}
		if !s.consume(',') {
			return nil, false
		}
	}
}

type attemptScanner struct {
	data []byte
	i    int
}

func (s *attemptScanner) skipSpace() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// consume skips spaces and then c, if c is next.
func (s *attemptScanner) consume(c byte) bool {
	s.skipSpace()
	if s.i < len(s.data) && s.data[s.i] == c {
		s.i++
		return true
	}
	return false
}

// end reports whether only spaces are left.
func (s *attemptScanner) end() bool {
	s.skipSpace()
	return s.i == len(s.data)
}

// quoted reads a string without escapes or control characters, and
// returns it with its quotes. Invalid UTF-8, which encoding/json would
// replace, is left to it too.
func (s *attemptScanner) quoted() ([]byte, bool) {
	if !s.consume('"') {
		return nil, false
	}
	start := s.i - 1
	for s.i < len(s.data) {
		switch c := s.data[s.i]; {
		case c == '"':
			s.i++
			v := s.data[start:s.i]
			return v, utf8.Valid(v)
		case c == '\\' || c < ' ':
			return nil, false
		default:
			s.i++
		}
	}
	return nil, false
}

// str is quoted's text, without the quotes.
func (s *attemptScanner) str() (string, bool) {
	v, ok := s.quoted()
	if !ok {
		return "", false
	}
	return string(v[1 : len(v)-1]), true
}

// null reads a null if one is next.
func (s *attemptScanner) null() bool {
	s.skipSpace()
	if bytes.HasPrefix(s.data[s.i:], []byte("null")) {
		s.i += len("null")
		return true
	}
	return false
}

// number reads the text of a JSON number (checked by its parser).
func (s *attemptScanner) number() ([]byte, bool) {
	s.skipSpace()
	start := s.i
	for s.i < len(s.data) {
		switch c := s.data[s.i]; {
		case c >= '0' && c <= '9', c == '-', c == '+', c == '.', c == 'e', c == 'E':
			s.i++
			continue
		}
		break
	}
	if s.i == start {
		return nil, false
	}
	return s.data[start:s.i], true
}

// integer reads a number that is a JSON integer in int's range.
func (s *attemptScanner) integer() (int, bool) {
	text, ok := s.number()
	if !ok || !isJSONInteger(text) {
		return 0, false
	}
	n, err := strconv.Atoi(string(text))
	return n, err == nil
}

// timestamp reads a string in RFC 3339 form, as time.Time's UnmarshalJSON
// does.
func (s *attemptScanner) timestamp() (time.Time, bool) {
	text, ok := s.quoted()
	if !ok {
		return time.Time{}, false
	}
	var t time.Time
	// UnmarshalJSON itself: its strict RFC 3339 parsing, not time.Parse's.
	if t.UnmarshalJSON(text) != nil {
		return time.Time{}, false
	}
	return t, true
}

// object reads one attempt: each known key at most once, every one of
// them present.
func (s *attemptScanner) object() (storedAttempt, bool) {
	var a storedAttempt
	if !s.consume('{') {
		return a, false
	}
	const all = 1<<8 - 1
	var seen uint
	for {
		key, ok := s.quoted()
		if !ok || !s.consume(':') {
			return a, false
		}
		var bit uint
		switch string(key[1 : len(key)-1]) {
		case "attempt":
			bit = 1 << 0
			a.Attempt, ok = s.integer()
		case "worker":
			bit = 1 << 1
			a.Worker, ok = s.str()
		case "started_at":
			bit = 1 << 2
			a.StartedAt, ok = s.timestamp()
		case "finished_at":
			bit = 1 << 3
			a.FinishedAt, ok = s.timestamp()
		case "outcome":
			bit = 1 << 4
			a.Outcome, ok = s.str()
		case "error":
			bit = 1 << 5
			if !s.null() {
				var e string
				e, ok = s.str()
				a.Error = &e
			}
		case "duration_ms":
			bit = 1 << 6
			var text []byte
			if text, ok = s.number(); ok && isJSONNumber(text) {
				a.DurationMS, ok = parseFloat(text)
			} else {
				ok = false
			}
		case "http_status":
			bit = 1 << 7
			if !s.null() {
				var n int
				n, ok = s.integer()
				a.HTTPStatus = &n
			}
		default:
			return a, false
		}
		if !ok || seen&bit != 0 {
			return a, false
		}
		seen |= bit
		if s.consume('}') {
			return a, seen == all
		}
		if !s.consume(',') {
			return a, false
		}
	}
}

func parseFloat(text []byte) (float64, bool) {
	f, err := strconv.ParseFloat(string(text), 64)
	return f, err == nil
}

// isJSONNumber reports whether text is a number in JSON's grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func isJSONNumber(text []byte) bool {
	i := 0
	if i < len(text) && text[i] == '-' {
		i++
	}
	digits := func() int {
		start := i
		for i < len(text) && text[i] >= '0' && text[i] <= '9' {
			i++
		}
		return i - start
	}
	switch {
	case i < len(text) && text[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < len(text) && text[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(text) && (text[i] == 'e' || text[i] == 'E') {
		i++
		if i < len(text) && (text[i] == '+' || text[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(text)
}

// isJSONInteger reports whether text is a JSON number without fraction
// or exponent, which encoding/json decodes into an int.
func isJSONInteger(text []byte) bool {
	return isJSONNumber(text) && !bytes.ContainsAny(text, ".eE")
}
