package http_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	taskdhttp "github.com/taskd/taskd/internal/http"
)

// Tests of how request bodies are read: limits known before reading, the
// bound on bodies in flight, and deadlines that answer instead of hanging
// up. They talk raw HTTP/1.1 over TCP to control exactly when each byte
// is sent.

const (
	typeOverloaded = "urn:taskd:problem:overloaded"
	typeTimeout    = "urn:taskd:problem:request-timeout"
)

// rawConn is an HTTP/1.1 connection to the test server.
type rawConn struct {
	t    *testing.T
	conn net.Conn
	rd   *bufio.Reader
}

func (b *testBundle) dial(t *testing.T) *rawConn {
	t.Helper()
	conn, err := net.Dial("tcp", b.server.Listener.Addr().String())
	if err != nil {
		t.Fatalf("dialing the server: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawConn{t: t, conn: conn, rd: bufio.NewReader(conn)}
}

func (c *rawConn) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("writing to the server: %v", err)
	}
}

// startPost sends the request line and headers of a POST with the given
// Content-Length (-1: chunked) and no body yet.
func (c *rawConn) startPost(path string, length int) {
	c.t.Helper()
	framing := fmt.Sprintf("Content-Length: %d\r\n", length)
	if length < 0 {
		framing = "Transfer-Encoding: chunked\r\n"
	}
	c.send("POST " + path + " HTTP/1.1\r\nHost: taskd.test\r\n" + framing + "\r\n")
}

// answer reads one response, failing the test unless it arrives within
// timeout (a server that hangs up or never answers fails it).
func (c *rawConn) answer(timeout time.Duration) *response {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(timeout))
	res, err := http.ReadResponse(c.rd, nil)
	if err != nil {
		c.t.Fatalf("want an answer within %s, got: %v", timeout, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatalf("reading the answer: %v", err)
	}
	return &response{Method: "POST", Status: res.StatusCode, Header: res.Header, Body: body, Close: res.Close}
}

func TestBodyDeclaredTooLargeRefusedBeforeReading(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, path := range []string{"/v1/tasks", "/v1/batches"} {
		c := b.dial(t)
		// 1 GiB declared, nothing sent: the answer must not wait for it.
		c.startPost(path, 1<<30)
		r := c.answer(5 * time.Second)
		wantProblem(t, r, http.StatusRequestEntityTooLarge, typeTooLarge)
		if !r.Close {
			t.Errorf("%s: want Connection: close after refusing an unread body", path)
		}
	}
}

// waitInFlight waits until the server holds at least n bytes of bodies.
func (b *testBundle) waitInFlight(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for taskdhttp.BodyBytesInFlight(b.handler) < n {
		if time.Now().After(deadline) {
			t.Fatalf("want %d bytes of bodies in flight, have %d after 10 s", n, taskdhttp.BodyBytesInFlight(b.handler))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestBodiesInFlightBounded(t *testing.T) {
	t.Parallel()
	const (
		limit    = 4096
		inFlight = 6000
	)
	b := setupWith(t, setupOpts{ConfigFunc: func(c *taskdhttp.Config) {
		c.MaxBodyBytes = limit
		c.MaxBatchBodyBytes = limit
		c.MaxBodyBytesInFlight = inFlight
	}})

	// A holds 4000 bytes of the bound (its buffer, for the length it
	// declared) while its body trickles in.
	task := `{"kind":"double","args":{"value":1}}`
	bodyA := task + strings.Repeat(" ", 4000-len(task))
	a := b.dial(t)
	a.startPost("/v1/tasks", len(bodyA))
	a.send(bodyA[:10])
	b.waitInFlight(t, 4000)

	// B needs 3000 more: over the bound while A is in flight.
	bodyB := strings.Repeat("x", 3000)
	r, err := b.tryDo(nopT{t}, "POST", "/v1/tasks", bodyB)
	if err != nil {
		t.Fatal(err)
	}
	wantProblem(t, r, http.StatusServiceUnavailable, typeOverloaded)
	if r.Header.Get("Retry-After") == "" {
		t.Errorf("want Retry-After on a 503, got none: %s", r)
	}
	// A body of unknown length is counted as it arrives.
	chunked := b.dial(t)
	chunked.startPost("/v1/tasks", -1)
	chunked.send(fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(bodyB), bodyB))
	wantProblem(t, chunked.answer(5*time.Second), http.StatusServiceUnavailable, typeOverloaded)
	// Small bodies still fit beside A.
	wantStatus(t, b.post(t, "/v1/tasks", task), http.StatusCreated)

	// A completes; its share comes back and B's fits.
	a.send(bodyA[10:])
	wantStatus(t, a.answer(5*time.Second), http.StatusCreated)
	if n := taskdhttp.BodyBytesInFlight(b.handler); n != 0 {
		t.Errorf("want every byte of the budget back after the requests, %d are still taken", n)
	}
	wantProblem(t, b.post(t, "/v1/tasks", bodyB), http.StatusBadRequest, typeSyntax, "body")
}

// TestBodyBudgetNotTakenByDeclaredLengths checks that clients declaring
// large bodies and trickling them cannot lock others out: the budget holds
// what arrived (in buffer steps of 64 KiB), not what was declared.
func TestBodyBudgetNotTakenByDeclaredLengths(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOpts{ConfigFunc: func(c *taskdhttp.Config) {
		c.MaxBodyBytes = 1 << 20
		c.MaxBatchBodyBytes = 1 << 20
		c.MaxBodyBytesInFlight = 2 << 20
	}})
	for range 4 {
		c := b.dial(t)
		c.startPost("/v1/batches", 1<<20)
		c.send(`{`)
	}
	b.waitInFlight(t, 1) // at least one of them is being read
	wantStatus(t, b.post(t, "/v1/tasks", `{"kind":"double","args":{"value":1}}`), http.StatusCreated)
	if n := taskdhttp.BodyBytesInFlight(b.handler); n > 4*4<<10 {
		t.Errorf("four bodies of one byte hold %d bytes of the budget", n)
	}
}

// TestBodyTooSlowAnswered408 checks that the minimum rate is enforced as
// the body arrives: bytes keep coming (no stall), but too slowly.
func TestBodyTooSlowAnswered408(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOpts{ConfigFunc: func(c *taskdhttp.Config) {
		// A read may wait for a whole 64 KiB chunk at the minimum rate on
		// top of the grace: 1 s here.
		c.BodyGrace = 300 * time.Millisecond
		c.BodyMinRate = 64 << 10
		c.BodyIdleTimeout = time.Minute
	}})
	c := b.dial(t)
	c.startPost("/v1/tasks", 100_000)
	answered := make(chan *response, 1)
	go func() { answered <- c.answer(30 * time.Second) }()
	for i := 0; ; i++ {
		select {
		case r := <-answered:
			wantProblem(t, r, http.StatusRequestTimeout, typeTimeout)
			return
		case <-time.After(100 * time.Millisecond): // the slow link: 10 bytes every 100 ms
		}
		if i > 300 {
			t.Fatal("no answer after 30 s of a 100 B/s upload with a minimum of 64 KiB/s")
		}
		if _, err := c.conn.Write([]byte("          ")); err != nil {
			// The server closed after answering; the answer is on its way.
			continue
		}
	}
}

func TestBodyStallAnswered408(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOpts{ConfigFunc: func(c *taskdhttp.Config) {
		c.BodyIdleTimeout = 300 * time.Millisecond
	}})
	for _, path := range []string{"/v1/tasks", "/v1/batches"} {
		c := b.dial(t)
		c.startPost(path, 100)
		c.send(`{"kind":`)
		r := c.answer(10 * time.Second)
		wantProblem(t, r, http.StatusRequestTimeout, typeTimeout)
		if !r.Close {
			t.Errorf("%s: want Connection: close with a 408", path)
		}
		c.wantClosed(5 * time.Second)
	}
	if n := b.count(t, "river_job"); n != 0 {
		t.Errorf("stalled requests inserted %d tasks", n)
	}
}

// TestSlowBodyOutlastsRequestTimeout sends a batch over a slow link: the
// upload takes longer than the request timeout, which only starts once
// the body is in, and the batch is accepted.
func TestSlowBodyOutlastsRequestTimeout(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOpts{ConfigFunc: func(c *taskdhttp.Config) {
		c.RequestTimeout = 2 * time.Second
		c.BodyIdleTimeout = 5 * time.Second
	}})
	items := make([]string, 200)
	for i := range items {
		items[i] = fmt.Sprintf(`{"kind":"double","args":{"value":%d}}`, i)
	}
	body := `{"tasks":[` + strings.Join(items, ",") + `]}`
	c := b.dial(t)
	c.startPost("/v1/batches", len(body))
	start := time.Now()
	const chunks = 25
	step := (len(body) + chunks - 1) / chunks
	for i := 0; i < len(body); i += step {
		c.send(body[i:min(i+step, len(body))])
		time.Sleep(160 * time.Millisecond) // the slow link, not a wait for a condition
	}
	r := c.answer(10 * time.Second)
	if time.Since(start) < 2*time.Second {
		t.Fatalf("the upload took %s, not longer than the request timeout; the test proves nothing", time.Since(start))
	}
	wantStatus(t, r, http.StatusCreated)
	var created struct {
		ID      int64   `json:"id"`
		TaskIDs []int64 `json:"task_ids"`
	}
	if err := json.Unmarshal(r.Body, &created); err != nil || len(created.TaskIDs) != len(items) {
		t.Fatalf("want %d task ids, got %s (%v)", len(items), r.Body, err)
	}
}

// TestUnreadBodyAnswered checks that answers given without reading a body
// (refusals, 404s, 405s) come at once, even when the body never arrives:
// net/http would otherwise read the rest of the body before answering, and
// a client that sent only part of it waited for the read deadline, or for
// ever where none was set yet (a cross-origin refusal).
func TestUnreadBodyAnswered(t *testing.T) {
	t.Parallel()
	b := setupWithUI(t, nil)
	for _, tc := range []struct {
		method, path, header string
		status               int
	}{
		{"POST", "/v1/tasks", "Sec-Fetch-Site: cross-site\r\n", http.StatusForbidden},
		{"POST", "/riverui/api/jobs/cancel", "Sec-Fetch-Site: cross-site\r\n", http.StatusForbidden},
		{"POST", "/nope", "", http.StatusNotFound},
		{"DELETE", "/v1/tasks/1", "", http.StatusMethodNotAllowed},
		{"POST", "/v1/tasks?x=1", "", http.StatusUnprocessableEntity},
		{"POST", "/v1/tasks/%ff", "", http.StatusUnprocessableEntity},
		{"GET", "/v1/tasks?limit=1", "", http.StatusOK},
	} {
		c := b.dial(t)
		c.send(tc.method + " " + tc.path + " HTTP/1.1\r\nHost: taskd.test\r\n" + tc.header + "Content-Length: 100\r\n\r\n{\"ki")
		r := c.answer(5 * time.Second)
		if r.Status != tc.status {
			t.Errorf("%s %s: want %d, got %d %s", tc.method, tc.path, tc.status, r.Status, r.Body)
		}
		if !r.Close {
			t.Errorf("%s %s: want Connection: close after an answer that left the body unread", tc.method, tc.path)
		}
		c.wantClosed(5 * time.Second)
	}
}

// wantClosed fails the test unless the server closes the connection within
// timeout (rather than reading on, for the rest of a body nobody wants).
func (c *rawConn) wantClosed(timeout time.Duration) {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(timeout))
	if n, err := c.rd.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		c.t.Errorf("want the server to close the connection within %s, got %d bytes, %v", timeout, n, err)
	}
}
