package push

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/taskd/taskd/internal/strictjson"
)

// Limits of what is kept of a response.
const (
	// ResultMaxBytes bounds a successful response's body, the task's
	// result. A larger one fails the attempt: it would not fit the result
	// column any better on the next attempt, but the endpoint may be fixed
	// in between.
	ResultMaxBytes = 1 << 20
	// ErrorBodyMaxBytes is how much of a failed response's body goes into
	// the attempt's error, enough for a problem document or a stack
	// trace's first lines.
	ErrorBodyMaxBytes = 1 << 10
	// RetryAfterMax caps Outcome.RetryAfter, so that an endpoint cannot
	// park a task for a day by answering "Retry-After: 86400".
	RetryAfterMax = time.Hour
)

// drainMaxBytes is how much of an unwanted response body is read to let
// the connection be reused; beyond it, closing the connection is cheaper.
const drainMaxBytes = 64 << 10

// Outcome is the result of one delivery.
type Outcome struct {
	// Result is, on success, the response body as JSON: the body itself
	// (compacted) when it is JSON, null when it is empty, and the body as
	// a JSON string otherwise.
	Result json.RawMessage
	// Status is the HTTP status, 0 when no response arrived.
	Status int
	// Err is nil on success; otherwise it names the status and the start
	// of the body ("HTTP 503 Service Unavailable: ...") or the network
	// error. It wraps ctx.Err() when Do's ctx ended first.
	Err error
	// Permanent says to discard the task at once: the endpoint refused it
	// in a way another attempt will not change (a 4xx other than 408, 425
	// and 429).
	Permanent bool
	// RetryAfter, when positive, is the endpoint's wish that the next
	// attempt come no earlier (Retry-After on a 429 or 503), capped at
	// RetryAfterMax.
	RetryAfter time.Duration
}

// classify reads resp into an Outcome.
func (c *Client) classify(ctx, reqCtx context.Context, limit attemptLimit, resp *http.Response) Outcome {
	code := resp.StatusCode
	status := statusLine(code)
	reading := "reading the " + status + " response"

	if code >= 200 && code <= 299 {
		body, err := io.ReadAll(io.LimitReader(resp.Body, ResultMaxBytes+1))
		if err != nil {
			return Outcome{Status: code, Err: c.requestError(ctx, reqCtx, limit, reading, err)}
		}
		if len(body) > ResultMaxBytes {
			return Outcome{Status: code, Err: fmt.Errorf("%s: response body is over %d bytes", status, ResultMaxBytes)}
		}
		res, err := result(body)
		if err != nil {
			return Outcome{Status: code, Err: fmt.Errorf("%s: %w", status, err)}
		}
		return Outcome{Status: code, Result: res}
	}

	head, err := io.ReadAll(io.LimitReader(resp.Body, ErrorBodyMaxBytes))
	if err != nil && ctx.Err() != nil {
		// Shutting down or cancelled: say so rather than classify a
		// response that was cut short.
		return Outcome{Status: code, Err: c.requestError(ctx, reqCtx, limit, reading, err)}
	}
	_, _ = io.CopyN(io.Discard, resp.Body, drainMaxBytes)

	msg := status
	if code >= 300 && code <= 399 {
		if loc := resp.Header.Get("Location"); loc != "" {
			msg += fmt.Sprintf(" (redirect to %q not followed)", clip([]byte(loc), 256))
		} else {
			msg += " (redirects are not followed)"
		}
	}
	if excerpt := clip(head, ErrorBodyMaxBytes); excerpt != "" {
		msg += ": " + excerpt
	}
	o := Outcome{Status: code, Err: errors.New(msg)}
	switch {
	case code == http.StatusTooManyRequests, code == http.StatusServiceUnavailable:
		o.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), c.now())
	case code == http.StatusRequestTimeout, code == http.StatusTooEarly:
	case code >= 400 && code <= 499:
		o.Permanent = true
	}
	// 3xx, 5xx and anything unheard of: a failed attempt, retried.
	return o
}

// statusLine names a status as "HTTP 503 Service Unavailable". It uses
// net/http's text rather than the server's reason phrase, which is free
// text from the endpoint.
func statusLine(code int) string {
	if text := http.StatusText(code); text != "" {
		return fmt.Sprintf("HTTP %d %s", code, text)
	}
	return fmt.Sprintf("HTTP %d", code)
}

// result turns a successful response's body into the task's result. A
// JSON body holding text PostgreSQL cannot store (a NUL character, a lone
// surrogate, invalid UTF-8) or a number outside its numeric range
// (strictjson.StorableNumber) is an error rather than a result: River
// would fail to save it, and keep retrying that save with every other
// completion of the process behind it.
func result(body []byte) (json.RawMessage, error) {
	trimmed := bytes.Trim(body, " \t\r\n")
	if len(trimmed) == 0 {
		return json.RawMessage("null"), nil
	}
	if json.Valid(trimmed) {
		if path, found := strictjson.FindNUL(trimmed); found {
			return nil, fmt.Errorf("the response's JSON holds a NUL character (\\u0000) at %q, which cannot be stored", path)
		}
		if offset, found := strictjson.FindBadText(trimmed); found {
			return nil, fmt.Errorf("the response's JSON holds invalid UTF-8 or a lone surrogate at byte %d, which cannot be stored", offset)
		}
		if offset, found := strictjson.FindUnstorableNumber(trimmed); found {
			return nil, fmt.Errorf("the response's JSON holds a number at byte %d %s", offset, strictjson.NumberRange)
		}
		var buf bytes.Buffer
		_ = json.Compact(&buf, trimmed) // cannot fail on valid JSON
		return buf.Bytes(), nil
	}
	// Not JSON: keep it as a string, without the HTML escaping json.Marshal
	// would add ("<" as "\u003c"), which only makes a plain-text body
	// unreadable. storable replaces what PostgreSQL cannot keep.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(storable(string(body))) // a string always encodes
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// storable replaces invalid UTF-8 and NUL characters, which PostgreSQL
// cannot store in text or jsonb, with U+FFFD.
func storable(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// clip returns the first n bytes of b as valid UTF-8, cut at a rune
// boundary, without the surrounding white space. Invalid bytes become
// U+FFFD; a rune that the limit of the read cut in two is dropped.
func clip(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				b = b[:i]
			}
			break
		}
	}
	s := storable(string(b))
	for len(s) > n {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return strings.TrimSpace(s)
}

// retryAfter parses a Retry-After value, delay-seconds or an HTTP date,
// into a wait from now, capped at RetryAfterMax; 0 when absent, invalid
// or past.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseUint(v, 10, 64); err == nil || errors.Is(err, strconv.ErrRange) {
		if err != nil || secs >= uint64(RetryAfterMax/time.Second) {
			return RetryAfterMax
		}
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), RetryAfterMax)
}
