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
	// body may take on average: the first n bytes of a body must arrive
	// within BodyGrace plus n at this rate (a full 16 MiB batch: about 9.5 minutes, so a
	// 256 kbit/s link still works; a 1 MiB task: about 92 s).
	BodyMinRateDefault = 32 << 10
	// BodyGraceDefault is the part of a body's deadline that does not
	// depend on its length: after it, a body must keep up with
	// BodyMinRate on average.
	BodyGraceDefault = 60 * time.Second
	// MaxBodyBytesInFlightDefault bounds the bytes of request bodies being
	// read or handled at once, across all requests: two full batches. A
	// body costs about ten times its size in memory while it is decoded,
	// validated and inserted (a full 16 MiB batch about 175 MB of resident
	// memory; docs/API.md, "Limits and timeouts", and
	// scripts/body-memory.sh).
	MaxBodyBytesInFlightDefault = 32 << 20
)

// errOverloaded ends the read of a body that would take the bytes in
// flight over their bound.
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

func (b *byteBudget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// bodyChunk is the most read at once: the deadlines follow a body in steps
// of this size. bodyFirstBuffer is the first buffer of a body, from which
// it doubles: what a connection that declared a large body but sent little
// holds of the budget.
const (
	bodyChunk       = 64 << 10
	bodyFirstBuffer = 4 << 10
)

// bodyReader reads a request body within its deadlines: each read may wait
// at most idle, and the body as a whole must keep up with minRate after
// the first grace. The rate is enforced as the body arrives, not only at
// its end, so that a client trickling a byte now and then is cut off after
// the grace instead of holding its connection for many minutes.
type bodyReader struct {
	body     io.Reader
	rc       *http.ResponseController
	idle     time.Duration
	grace    time.Duration
	minRate  int
	start    time.Time
	received int64
}

func (br *bodyReader) Read(p []byte) (int, error) {
	if len(p) > bodyChunk {
		p = p[:bodyChunk]
	}
	now := time.Now()
	rate := time.Duration(float64(br.received+int64(len(p))) / float64(br.minRate) * float64(time.Second))
	d := now.Add(br.idle)
	if byRate := br.start.Add(br.grace + rate); byRate.Before(d) {
		d = byRate
	}
	if !d.After(now) {
		return 0, os.ErrDeadlineExceeded
	}
	_ = br.rc.SetReadDeadline(d)
	n, err := br.body.Read(p)
	br.received += int64(n)
	return n, err
}

// readBody reads a request body of at most limit bytes. It answers the
// problem itself when ok is false: 413 for a body over the limit (at once
// when Content-Length says so), 503 when the bodies in flight would exceed
// MaxBodyBytesInFlight, 408 when the upload stalls or is too slow. The
// budget is charged for the body's buffer as it grows with the bytes that
// arrive, never for a length only declared. release gives the bytes back;
// call it when the handler is done with the body and what it decoded from
// it.
func (s *server) readBody(w http.ResponseWriter, r *http.Request, limit int64) (body []byte, release func(), ok bool) {
	tooLarge := func() {
		// Unread, the rest of the body would be read and thrown away by
		// net/http before the next request; closing is cheaper.
		w.Header().Set("Connection", "close")
		writeProblem(w, Problem{Type: typeTooLarge, Status: http.StatusRequestEntityTooLarge,
			Detail: "request body is larger than " + strconv.FormatInt(limit, 10) + " bytes"})
	}
	if r.ContentLength > limit {
		tooLarge()
		return nil, nil, false
	}
	rc := http.NewResponseController(w)
	br := &bodyReader{body: r.Body, rc: rc, idle: s.BodyIdleTimeout, grace: s.BodyGrace, minRate: s.BodyMinRate, start: time.Now()}
	size := r.ContentLength // -1 when unknown (chunked)
	if size < 0 {
		size = limit
	}
	body, taken, err := readAll(br, size, s.budget)
	// Idempotent, so that a handler may give the bytes back early (a claim
	// that waits) and still defer it.
	released := false
	release = func() {
		if !released {
			released = true
			s.budget.release(taken)
		}
	}
	// The body is in: the handler gets its own time, from now, and so
	// does its database work.
	startDBDeadline(r.Context())
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
		w.Header().Set("Connection", "close")
		w.Header().Set("Retry-After", retryAfterSeconds)
		writeProblem(w, Problem{Type: typeOverloaded, Status: http.StatusServiceUnavailable,
			Detail: "too many large request bodies are being handled at once; retry shortly"})
	case errors.Is(err, os.ErrDeadlineExceeded):
		w.Header().Set("Connection", "close")
		writeProblem(w, Problem{Type: typeTimeout, Status: http.StatusRequestTimeout,
			Detail: "the request body did not arrive in time (a stall of " + s.BodyIdleTimeout.String() +
				", or slower on average than " + strconv.Itoa(s.BodyMinRate) + " bytes/s after the first " + s.BodyGrace.String() + ")"})
	default:
		fieldProblem(w, http.StatusBadRequest, "body", "could not read the request body: "+clip(err.Error()))
	}
	return nil, nil, false
}

// readAll reads r to the end. Its buffer starts at bodyFirstBuffer and doubles,
// up to size bytes (the declared length, or the limit), and every growth
// is first taken from budget; taken is what was, to be released by the
// caller in any case.
func readAll(r io.Reader, size int64, budget *byteBudget) (buf []byte, taken int64, err error) {
	for {
		if len(buf) == cap(buf) {
			if int64(cap(buf)) >= size {
				// Full: only the end of the body may follow. A longer one
				// can only be chunked, and MaxBytesReader ends it.
				var probe [1]byte
				n, err := r.Read(probe[:])
				switch {
				case n > 0 && err == nil:
					err = errors.New("request body is longer than declared")
				case errors.Is(err, io.EOF):
					return buf, taken, nil
				}
				return nil, taken, err
			}
			newCap := min(max(2*int64(cap(buf)), bodyFirstBuffer), size)
			if !budget.tryAcquire(newCap - int64(cap(buf))) {
				return nil, taken, errOverloaded
			}
			taken += newCap - int64(cap(buf))
			grown := make([]byte, len(buf), newCap)
			copy(grown, buf)
			buf = grown
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, taken, nil
		}
		if err != nil {
			return nil, taken, err
		}
	}
}
