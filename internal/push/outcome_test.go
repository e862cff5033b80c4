package push

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestDoOutcome(t *testing.T) {
	t.Parallel()

	reply := func(status int, body string, header ...string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			for i := 0; i+1 < len(header); i += 2 {
				w.Header().Set(header[i], header[i+1])
			}
			w.WriteHeader(status)
			_, _ = w.Write([]byte(body))
		}
	}
	// A body whose 1024th byte is the first half of "é": the excerpt must
	// stop before it.
	longBody := "x" + strings.Repeat("é", 1000)
	longExcerpt := "x" + strings.Repeat("é", 511)

	for _, tt := range []struct {
		name       string
		handler    http.HandlerFunc
		status     int
		result     string // JSON; "" when the attempt fails
		err        string // the whole error; "" on success
		permanent  bool
		retryAfter time.Duration
	}{
		{name: "200JSON", handler: reply(200, ` {"sent": true, "ids": [1, 2]}`+"\n"), status: 200, result: `{"sent":true,"ids":[1,2]}`},
		{name: "200JSONScalar", handler: reply(200, `42`), status: 200, result: `42`},
		{name: "200Empty", handler: reply(200, ``), status: 200, result: `null`},
		{name: "200WhiteSpace", handler: reply(200, " \r\n"), status: 200, result: `null`},
		{name: "200Text", handler: reply(200, "queued <ok> & done\n", "Content-Type", "text/plain"), status: 200, result: `"queued <ok> & done\n"`},
		{name: "200NotUTF8", handler: reply(200, "a\xffb"), status: 200, result: "\"a\uFFFDb\""},
		{name: "201", handler: reply(201, `{"id":"x"}`), status: 201, result: `{"id":"x"}`},
		// What PostgreSQL cannot store never reaches River's completion.
		{name: "200JSONWithNUL", handler: reply(200, `{"a":"x\u0000y"}`), status: 200,
			err: `HTTP 200 OK: the response's JSON holds a NUL character (\u0000) at "a", which cannot be stored`},
		{name: "200JSONLoneSurrogate", handler: reply(200, `["\ud800"]`), status: 200,
			err: "HTTP 200 OK: the response's JSON holds invalid UTF-8 or a lone surrogate at byte 2, which cannot be stored"},
		{name: "200JSONNumberOutOfRange", handler: reply(200, `{"n":1e200000}`), status: 200,
			err: "HTTP 200 OK: the response's JSON holds a number at byte 5 outside the range PostgreSQL can store (at most 131072 digits before the decimal point and 16383 after it)"},
		{name: "200JSONNumberAtRangeEdge", handler: reply(200, `{"n":1e131071}`), status: 200, result: `{"n":1e131071}`},
		{name: "200TextWithNUL", handler: reply(200, "a\x00b"), status: 200, result: "\"a\uFFFDb\""},
		{name: "500WithNUL", handler: reply(500, "bad\x00news"), status: 500, err: "HTTP 500 Internal Server Error: bad\uFFFDnews"},
		{name: "202Text", handler: reply(202, `accepted`), status: 202, result: `"accepted"`},
		{name: "204", handler: reply(204, ``), status: 204, result: `null`},
		{name: "200ExactlyLimit", handler: reply(200, `"`+strings.Repeat("a", ResultMaxBytes-2)+`"`), status: 200, result: `"` + strings.Repeat("a", ResultMaxBytes-2) + `"`},
		{name: "200OverLimit", handler: reply(200, `"`+strings.Repeat("a", ResultMaxBytes-1)+`"`), status: 200, err: "HTTP 200 OK: response body is over 1048576 bytes"},

		{name: "400", handler: reply(400, "missing field \"to\"\n"), status: 400, err: `HTTP 400 Bad Request: missing field "to"`, permanent: true},
		{name: "401", handler: reply(401, ""), status: 401, err: "HTTP 401 Unauthorized", permanent: true},
		{name: "404", handler: reply(404, "404 page not found"), status: 404, err: "HTTP 404 Not Found: 404 page not found", permanent: true},
		{name: "409", handler: reply(409, "dup"), status: 409, err: "HTTP 409 Conflict: dup", permanent: true},
		{name: "422", handler: reply(422, longBody), status: 422, err: "HTTP 422 Unprocessable Entity: " + longExcerpt, permanent: true},
		{name: "422NotUTF8", handler: reply(422, "bad \xff\xfe input"), status: 422, err: "HTTP 422 Unprocessable Entity: bad \ufffd input", permanent: true},
		{name: "499", handler: reply(499, ""), status: 499, err: "HTTP 499", permanent: true},

		{name: "408", handler: reply(408, "slow"), status: 408, err: "HTTP 408 Request Timeout: slow"},
		{name: "425", handler: reply(425, ""), status: 425, err: "HTTP 425 Too Early"},
		{name: "429", handler: reply(429, "slow down"), status: 429, err: "HTTP 429 Too Many Requests: slow down"},
		{name: "500", handler: reply(500, longBody), status: 500, err: "HTTP 500 Internal Server Error: " + longExcerpt},
		{name: "502", handler: reply(502, "<html>bad gateway</html>"), status: 502, err: "HTTP 502 Bad Gateway: <html>bad gateway</html>"},
		{name: "503", handler: reply(503, "down"), status: 503, err: "HTTP 503 Service Unavailable: down"},
		{name: "504", handler: reply(504, ""), status: 504, err: "HTTP 504 Gateway Timeout"},
		{name: "599", handler: reply(599, "odd"), status: 599, err: "HTTP 599: odd"},

		{name: "429RetryAfterSeconds", handler: reply(429, "", "Retry-After", "120"), status: 429, err: "HTTP 429 Too Many Requests", retryAfter: 2 * time.Minute},
		{name: "503RetryAfterDate", handler: reply(503, "", "Retry-After", testNow.Add(90*time.Second).Format(http.TimeFormat)), status: 503, err: "HTTP 503 Service Unavailable", retryAfter: 90 * time.Second},
		{name: "429RetryAfterCapped", handler: reply(429, "", "Retry-After", "86400"), status: 429, err: "HTTP 429 Too Many Requests", retryAfter: time.Hour},
		{name: "429RetryAfterHuge", handler: reply(429, "", "Retry-After", "99999999999999999999999"), status: 429, err: "HTTP 429 Too Many Requests", retryAfter: time.Hour},
		{name: "503RetryAfterDateCapped", handler: reply(503, "", "Retry-After", testNow.Add(25*time.Hour).Format(http.TimeFormat)), status: 503, err: "HTTP 503 Service Unavailable", retryAfter: time.Hour},
		{name: "503RetryAfterPast", handler: reply(503, "", "Retry-After", testNow.Add(-time.Minute).Format(http.TimeFormat)), status: 503, err: "HTTP 503 Service Unavailable"},
		{name: "429RetryAfterInvalid", handler: reply(429, "", "Retry-After", "soon"), status: 429, err: "HTTP 429 Too Many Requests"},
		{name: "429RetryAfterNegative", handler: reply(429, "", "Retry-After", "-5"), status: 429, err: "HTTP 429 Too Many Requests"},
		{name: "500RetryAfterIgnored", handler: reply(500, "", "Retry-After", "120"), status: 500, err: "HTTP 500 Internal Server Error"},
		{name: "400RetryAfterIgnored", handler: reply(400, "", "Retry-After", "120"), status: 400, err: "HTTP 400 Bad Request", permanent: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := clientFor(t, serve(t, tt.handler).URL)
			o := c.Do(t.Context(), testRequest())
			require.Equal(t, tt.status, o.Status)
			require.Equal(t, tt.permanent, o.Permanent)
			require.Equal(t, tt.retryAfter, o.RetryAfter)
			if tt.err == "" {
				require.NoError(t, o.Err)
				require.Equal(t, tt.result, string(o.Result))
				return
			}
			require.EqualError(t, o.Err, tt.err)
			require.Nil(t, o.Result)
			require.True(t, utf8.ValidString(o.Err.Error()))
		})
	}

	// The excerpt is at most 1 KiB of the body, whatever the body holds.
	for _, body := range []string{strings.Repeat("a", 5000), strings.Repeat("€", 2000), "x" + longBody, "xy" + longBody} {
		c := clientFor(t, serve(t, reply(400, body)).URL)
		o := c.Do(t.Context(), testRequest())
		excerpt, ok := strings.CutPrefix(o.Err.Error(), "HTTP 400 Bad Request: ")
		require.True(t, ok, o.Err.Error())
		require.LessOrEqual(t, len(excerpt), ErrorBodyMaxBytes)
		require.Greater(t, len(excerpt), ErrorBodyMaxBytes-utf8.UTFMax)
		require.True(t, utf8.ValidString(excerpt))
	}
}

func TestDoRedirect(t *testing.T) {
	t.Parallel()

	var followed atomic.Int64
	target := serve(t, func(w http.ResponseWriter, r *http.Request) { followed.Add(1) })
	for _, status := range []int{301, 302, 303, 307, 308} {
		redirector := serve(t, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, target.URL+"/elsewhere", status)
		})
		o := clientFor(t, redirector.URL).Do(t.Context(), testRequest())
		require.Equal(t, status, o.Status)
		require.False(t, o.Permanent)
		require.Zero(t, o.RetryAfter)
		require.Nil(t, o.Result)
		require.ErrorContains(t, o.Err, fmt.Sprintf("HTTP %d %s (redirect to %q not followed)", status, http.StatusText(status), target.URL+"/elsewhere"))
	}

	noLocation := serve(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusFound) })
	o := clientFor(t, noLocation.URL).Do(t.Context(), testRequest())
	require.EqualError(t, o.Err, "HTTP 302 Found (redirects are not followed)")

	require.Zero(t, followed.Load(), "a redirect was followed")
}

// requireNetworkFailure checks the outcome of an attempt that got no
// response: retried, not permanent, the error free of the URL.
func requireNetworkFailure(t *testing.T, o Outcome, url string) {
	t.Helper()
	require.Error(t, o.Err)
	require.Zero(t, o.Status)
	require.False(t, o.Permanent)
	require.Zero(t, o.RetryAfter)
	require.Nil(t, o.Result)
	require.True(t, strings.HasPrefix(o.Err.Error(), "push: "), o.Err.Error())
	require.NotContains(t, o.Err.Error(), url, "the error names the URL")
	require.False(t, errors.Is(o.Err, context.Canceled))
}

func TestDoNetworkFailure(t *testing.T) {
	t.Parallel()

	t.Run("ConnectionRefused", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		require.NoError(t, err)
		url := "http://" + ln.Addr().String() + "/"
		require.NoError(t, ln.Close())

		o := clientFor(t, url).Do(t.Context(), testRequest())
		requireNetworkFailure(t, o, url)
		require.ErrorIs(t, o.Err, syscall.ECONNREFUSED)
	})

	t.Run("ConnectionReset", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		require.NoError(t, err)
		t.Cleanup(func() { _ = ln.Close() })
		got := make(chan string, 1)
		go func() {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			// Read the request line, so that the client is waiting for
			// the response, then reset instead of answering.
			line, _ := bufio.NewReader(conn).ReadString('\n')
			got <- line
			_ = conn.(*net.TCPConn).SetLinger(0)
			_ = conn.Close()
		}()
		url := "http://" + ln.Addr().String() + "/"

		o := clientFor(t, url).Do(t.Context(), testRequest())
		require.Equal(t, "POST / HTTP/1.1\r\n", waitFor(t, got, "the request"))
		requireNetworkFailure(t, o, url)
		require.ErrorIs(t, o.Err, syscall.ECONNRESET)
	})

	t.Run("TLSUntrusted", func(t *testing.T) {
		t.Parallel()
		var handled atomic.Int64
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handled.Add(1) }))
		// Silence the server's log of the handshake the client aborts.
		srv.Config.ErrorLog = log.New(io.Discard, "", 0)
		srv.StartTLS()
		t.Cleanup(srv.Close)

		o := clientFor(t, srv.URL).Do(t.Context(), testRequest())
		requireNetworkFailure(t, o, srv.URL)
		_, ok := errors.AsType[*tls.CertificateVerificationError](o.Err)
		require.True(t, ok, "%v", o.Err)
		require.Zero(t, handled.Load())
	})

	t.Run("Timeout", func(t *testing.T) {
		t.Parallel()
		done := make(chan struct{})
		srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
			// The server notices the client has gone only once it has
			// read the body.
			_, _ = io.Copy(io.Discard, r.Body)
			<-r.Context().Done()
			close(done)
		})
		c := newTestClient(t, Config{Target: Target{URL: mustURL(t, srv.URL), Timeout: TimeoutMin}})

		o := c.Do(t.Context(), testRequest())
		requireNetworkFailure(t, o, srv.URL)
		require.ErrorIs(t, o.Err, ErrTimeout)
		require.False(t, errors.Is(o.Err, context.DeadlineExceeded), "the caller would take it for its own deadline")
		require.EqualError(t, o.Err, "push: timed out after 1s (the target's timeout)")
		waitFor(t, done, "the server to see the request end")
	})

	t.Run("TimeoutReadingBody", func(t *testing.T) {
		t.Parallel()
		srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Length", "100")
			_, _ = w.Write([]byte(`{"partial":`))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		})
		c := newTestClient(t, Config{Target: Target{URL: mustURL(t, srv.URL), Timeout: TimeoutMin}})

		o := c.Do(t.Context(), testRequest())
		require.Equal(t, http.StatusOK, o.Status)
		require.False(t, o.Permanent)
		require.Nil(t, o.Result)
		require.ErrorIs(t, o.Err, ErrTimeout)
		require.EqualError(t, o.Err, "push: timed out after 1s (the target's timeout) while reading the HTTP 200 OK response")
	})

	t.Run("BodyCutShort", func(t *testing.T) {
		t.Parallel()
		srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100")
			_, _ = w.Write([]byte(`{"partial":`))
			w.(http.Flusher).Flush()
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		})
		o := clientFor(t, srv.URL).Do(t.Context(), testRequest())
		require.Equal(t, http.StatusOK, o.Status)
		require.False(t, o.Permanent)
		require.Nil(t, o.Result)
		require.ErrorContains(t, o.Err, "push: reading the HTTP 200 OK response: unexpected EOF")
	})
}

func TestDoCancel(t *testing.T) {
	t.Parallel()

	// hanging serves requests that never end, telling the test when one
	// arrives and when its context is done.
	hanging := func(t *testing.T) (*Client, <-chan struct{}, <-chan struct{}) {
		started, ended := make(chan struct{}, 1), make(chan struct{}, 1)
		srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
			// The server notices the client has gone only once it has
			// read the body.
			_, _ = io.Copy(io.Discard, r.Body)
			started <- struct{}{}
			<-r.Context().Done()
			ended <- struct{}{}
		})
		return clientFor(t, srv.URL), started, ended
	}

	t.Run("Cancel", func(t *testing.T) {
		t.Parallel()
		c, started, ended := hanging(t)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		outcomes := make(chan Outcome, 1)
		go func() { outcomes <- c.Do(ctx, testRequest()) }()

		waitFor(t, started, "the request")
		cancel()
		o := waitFor(t, outcomes, "Do to return after the cancel")
		require.ErrorIs(t, o.Err, context.Canceled)
		require.EqualError(t, o.Err, "push: request aborted: context canceled")
		require.Zero(t, o.Status)
		require.False(t, o.Permanent)
		waitFor(t, ended, "the server to see the request end")
	})

	t.Run("Cause", func(t *testing.T) {
		t.Parallel()
		c, started, ended := hanging(t)
		errCancelled := errors.New("task cancelled")
		ctx, cancel := context.WithCancelCause(t.Context())
		defer cancel(nil)
		outcomes := make(chan Outcome, 1)
		go func() { outcomes <- c.Do(ctx, testRequest()) }()

		waitFor(t, started, "the request")
		cancel(errCancelled)
		o := waitFor(t, outcomes, "Do to return after the cancel")
		require.ErrorIs(t, o.Err, context.Canceled)
		require.ErrorIs(t, o.Err, errCancelled)
		require.EqualError(t, o.Err, "push: request aborted: context canceled: task cancelled")
		waitFor(t, ended, "the server to see the request end")
	})

	t.Run("CallerDeadline", func(t *testing.T) {
		t.Parallel()
		c, _, ended := hanging(t)
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		o := c.Do(ctx, testRequest())
		require.ErrorIs(t, o.Err, context.DeadlineExceeded)
		require.False(t, errors.Is(o.Err, ErrTimeout))
		waitFor(t, ended, "the server to see the request end")
	})

	t.Run("AlreadyCancelled", func(t *testing.T) {
		t.Parallel()
		var requests atomic.Int64
		srv := serve(t, func(w http.ResponseWriter, r *http.Request) { requests.Add(1) })
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		o := clientFor(t, srv.URL).Do(ctx, testRequest())
		require.ErrorIs(t, o.Err, context.Canceled)
		require.Zero(t, requests.Load())
	})
}
