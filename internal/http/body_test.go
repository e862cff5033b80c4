package http_test

import (
	"bufio"
	"encoding/json"
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

	// A holds 4000 bytes of the bound while its body trickles in.
	task := `{"kind":"double","args":{"value":1}}`
	bodyA := task + strings.Repeat(" ", 4000-len(task))
	a := b.dial(t)
	a.startPost("/v1/tasks", len(bodyA))
	a.send(bodyA[:10])

	// B needs 3000 more: over the bound while A is in flight. B's body is
	// not JSON, so before A holds its share B is refused with 400 and
	// inserts nothing; poll until A's share is taken.
	bodyB := strings.Repeat("x", 3000)
	deadline := time.Now().Add(10 * time.Second)
	var r *response
	for {
		var err error
		if r, err = b.tryDo(nopT{t}, "POST", "/v1/tasks", bodyB); err != nil {
			t.Fatal(err)
		}
		if r.Status != http.StatusBadRequest || time.Now().After(deadline) {
			break
		}
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
	wantProblem(t, b.post(t, "/v1/tasks", bodyB), http.StatusBadRequest, typeSyntax, "body")
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
		c.RequestTimeout = time.Second
		c.BodyIdleTimeout = time.Second
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
		time.Sleep(100 * time.Millisecond) // the slow link, not a wait for a condition
	}
	r := c.answer(10 * time.Second)
	if time.Since(start) < time.Second {
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
