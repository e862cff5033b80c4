package http

import (
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

// Body and request deadlines and the memory bound on bodies.
const (
	// RequestTimeoutDefault bounds a request apart from the upload of its
	// body: handling it and writing the answer. It is two minutes so that
	// a handler that waits up to 60 s for a task has time to answer.
	RequestTimeoutDefault = 2 * time.Minute
	// BodyIdleTimeoutDefault is the longest a body upload may stall
	// without a byte arriving before it is answered 408.
	BodyIdleTimeoutDefault = 30 * time.Second
	// BodyMinRateDefault is the slowest upload, in bytes a second, that a
	// body may take on average: a body must arrive within 60 s plus its
	// length at this rate (a full 16 MiB batch: about 9.5 minutes, so a
	// 256 kbit/s link still works; a 1 MiB task: about 92 s).
	BodyMinRateDefault = 32 << 10
	// bodyGrace is the part of a body's deadline that does not depend on
	// its length.
	bodyGrace = 60 * time.Second
	// MaxBodyBytesInFlightDefault bounds the bytes of request bodies being
	// read or handled at once, across all requests: two full batches. A
	// body costs about ten times its size in memory while it is decoded,
	// validated and inserted (a full 16 MiB batch about 170 MB of resident
	// memory; docs/API.md, "Limits", and scripts/body-memory.sh).
	MaxBodyBytesInFlightDefault = 32 << 20
)

// errOverloaded ends the read of a body of unknown length that would take
// the bytes in flight over their bound.
var errOverloaded = errors.New("too many request bodies in flight")

// byteBudget counts the bytes of request bodies in flight against a bound.
// It never waits: a request over the bound is answered 503 at once, which
// a client retries after Retry-After, rather than holding its connection
// while others finish.
type byteBudget struct {
	mu   sync.Mutex
	used int64
	max  int64
}

func (b *byteBudget) tryAcquire(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.max {
		return false
	}
	b.used += n
	return true
}

func (b *byteBudget) release(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
}

// bodyReader reads a request body within its deadlines, and, for a body of
// unknown length, takes each chunk from the budget as it arrives.
type bodyReader struct {
	body     io.Reader
	rc       *http.ResponseController
	idle     time.Duration
	deadline time.Time
	budget   *byteBudget // nil when the whole length was taken up front
	taken    int64
}

func (br *bodyReader) Read(p []byte) (int, error) {
	d := time.Now().Add(br.idle)
	if d.After(br.deadline) {
		d = br.deadline
	}
	_ = br.rc.SetReadDeadline(d)
	n, err := br.body.Read(p)
	if br.budget != nil && n > 0 {
		if !br.budget.tryAcquire(int64(n)) {
			return 0, errOverloaded
		}
		br.taken += int64(n)
	}
	return n, err
}

// readBody reads a request body of at most limit bytes. It answers the
// problem itself when ok is false: 413 for a body over the limit (at once
// when Content-Length says so), 503 when the bodies in flight would exceed
// MaxBodyBytesInFlight, 408 when the upload stalls or is too slow. release
// gives the body's bytes back to the budget; call it when the handler is
// done with the body and what it decoded from it.
func (s *server) readBody(w http.ResponseWriter, r *http.Request, limit int64) (body []byte, release func(), ok bool) {
	tooLarge := func() {
		// Unread, the rest of the body would be read and thrown away by
		// net/http before the next request; closing is cheaper.
		w.Header().Set("Connection", "close")
		writeProblem(w, Problem{Type: typeTooLarge, Status: http.StatusRequestEntityTooLarge,
			Detail: "request body is larger than " + strconv.FormatInt(limit, 10) + " bytes"})
	}
	overloaded := func() {
		w.Header().Set("Connection", "close")
		w.Header().Set("Retry-After", retryAfterSeconds)
		writeProblem(w, Problem{Type: typeOverloaded, Status: http.StatusServiceUnavailable,
			Detail: "too many large request bodies are being handled at once; retry shortly"})
	}
	if r.ContentLength > limit {
		tooLarge()
		return nil, nil, false
	}
	rc := http.NewResponseController(w)
	br := &bodyReader{body: r.Body, rc: rc, idle: s.BodyIdleTimeout}
	size := r.ContentLength
	if size < 0 { // chunked: assume the limit for the deadline
		size = limit
		br.budget = s.budget
	} else if !s.budget.tryAcquire(size) {
		overloaded()
		return nil, nil, false
	}
	br.deadline = time.Now().Add(bodyGrace + time.Duration(float64(size)/float64(s.BodyMinRate)*float64(time.Second)))
	release = func() {
		if br.budget == nil {
			s.budget.release(r.ContentLength)
		} else {
			s.budget.release(br.taken)
		}
	}

	body, err := readAll(br, r.ContentLength)
	// The body is in: the handler gets its own time, from now.
	d := time.Now().Add(s.RequestTimeout)
	_ = rc.SetReadDeadline(d)
	_ = rc.SetWriteDeadline(d)
	if err == nil {
		return body, release, true
	}
	release()
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(err, &maxErr):
		tooLarge()
	case errors.Is(err, errOverloaded):
		overloaded()
	case errors.Is(err, os.ErrDeadlineExceeded):
		w.Header().Set("Connection", "close")
		writeProblem(w, Problem{Type: typeTimeout, Status: http.StatusRequestTimeout,
			Detail: "the request body did not arrive in time (a stall of " + s.BodyIdleTimeout.String() +
				", or slower on average than " + strconv.Itoa(s.BodyMinRate) + " bytes/s after the first " + bodyGrace.String() + ")"})
	default:
		fieldProblem(w, http.StatusBadRequest, "body", "could not read the request body: "+clip(err.Error()))
	}
	return nil, nil, false
}

// readAll reads r to the end into a buffer sized for a body of length n
// (-1 when unknown), so that a large body is not copied while its buffer
// grows.
func readAll(r io.Reader, n int64) ([]byte, error) {
	if n < 0 {
		return io.ReadAll(r)
	}
	buf := make([]byte, 0, n+1) // +1: io.EOF needs room to be seen without growing
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		m, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}
