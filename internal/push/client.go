package push

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Defaults and limits of Config.
const (
	// MaxConnsDefault is the connection pool size per host when
	// Config.MaxConns is 0.
	MaxConnsDefault = 100
	// UserAgentDefault is the User-Agent when Config.UserAgent is empty.
	UserAgentDefault = "taskd"
	// TimeoutDefault bounds an attempt's request when Target.Timeout is 0.
	TimeoutDefault = 30 * time.Second
	// TimeoutMin and TimeoutMax bound Target.Timeout. Below a second an
	// endpoint can hardly answer over TLS; above half an hour an attempt
	// holds a worker and a connection for longer than an HTTP endpoint
	// should take, and the work belongs to an external (pull) worker.
	TimeoutMin = time.Second
	TimeoutMax = 30 * time.Minute
)

// Config configures a Client.
type Config struct {
	// Target is where the tasks go. Target.URL is required; Target.Timeout
	// defaults to TimeoutDefault.
	Target Target
	// MaxConns bounds the connections to the target's host, open and idle.
	// The caller sizes it to the workers of the kind's queue, so that no
	// worker waits for a connection. Defaults to MaxConnsDefault.
	MaxConns int
	// UserAgent is sent as User-Agent, unless Target.Headers sets one.
	// Defaults to UserAgentDefault.
	UserAgent string
	// Now returns the time of the webhook-timestamp header and of a
	// Retry-After date. Defaults to time.Now.
	Now func() time.Time
	// Resolver resolves the target's host name. Whatever it answers, the
	// dialer checks every address before connecting to it (see Refused),
	// so a resolver can change where a push goes but never past
	// Target.AllowPrivate. Defaults to net.DefaultResolver, the system's;
	// tests set one that answers from a table.
	Resolver *net.Resolver
}

func (c Config) withDefaults() Config {
	c.Target.Timeout = cmp.Or(c.Target.Timeout, TimeoutDefault)
	c.MaxConns = cmp.Or(c.MaxConns, MaxConnsDefault)
	c.UserAgent = cmp.Or(c.UserAgent, UserAgentDefault)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Resolver == nil {
		c.Resolver = net.DefaultResolver
	}
	return c
}

// ConfigError is an invalid setting of Config. Field names it ("Target.URL",
// "Target.Headers"), so that the caller can name its own configuration key
// instead of checking the rule again.
type ConfigError struct {
	// Field is the Config field at fault.
	Field string
	// Message says what is wrong, without the field's name.
	Message string
}

func (e *ConfigError) Error() string { return "push: " + e.Field + " " + e.Message }

func (c Config) validate() error {
	t := c.Target
	switch {
	case t.URL == nil:
		return &ConfigError{Field: "Target.URL", Message: "is required"}
	case t.URL.Scheme != "http" && t.URL.Scheme != "https":
		return &ConfigError{Field: "Target.URL", Message: fmt.Sprintf("must be http or https, not %q", t.URL.Scheme)}
	case t.URL.Host == "" || t.URL.Hostname() == "":
		return &ConfigError{Field: "Target.URL", Message: "has no host"}
	case t.Timeout < TimeoutMin || t.Timeout > TimeoutMax:
		return &ConfigError{Field: "Target.Timeout", Message: fmt.Sprintf("must be between %s and %s", TimeoutMin, TimeoutMax)}
	case c.MaxConns < 0:
		return &ConfigError{Field: "MaxConns", Message: "must not be negative"}
	}
	for name, value := range t.Headers {
		if msg := headerProblem(name, value); msg != "" {
			return &ConfigError{Field: "Target.Headers", Message: msg}
		}
	}
	for _, p := range t.AllowPrivate {
		if !p.IsValid() {
			return &ConfigError{Field: "Target.AllowPrivate", Message: "holds an invalid prefix"}
		}
	}
	return nil
}

// headerProblem says what is wrong with one of Target.Headers, or "".
//
// The headers that carry the task and its signature (Content-Type,
// webhook-*, Taskd-*) and the ones net/http writes itself (Host,
// Content-Length, Transfer-Encoding, Connection) cannot be set: a
// receiver must be able to trust them, and a configuration that tries is
// a mistake better reported at start-up than silently overridden on every
// request. User-Agent may be set; it wins over Config.UserAgent.
func headerProblem(name, value string) string {
	if !validHeaderName(name) {
		return fmt.Sprintf("%q is not a valid header name", name)
	}
	if strings.ContainsAny(value, "\r\n\x00") {
		return fmt.Sprintf("%q: value holds a line break or NUL", name)
	}
	canonical := http.CanonicalHeaderKey(name)
	switch {
	case strings.HasPrefix(canonical, "Webhook-"), strings.HasPrefix(canonical, "Taskd-"):
		return fmt.Sprintf("%q is set by taskd on every request and cannot be configured", name)
	}
	switch canonical {
	case "Content-Type", "Content-Length", "Host", "Transfer-Encoding", "Connection":
		return fmt.Sprintf("%q is set by taskd on every request and cannot be configured", name)
	}
	return ""
}

// validHeaderName reports whether name is an RFC 9110 token.
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for _, c := range []byte(name) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// Client delivers one target's tasks. It is safe for concurrent use by
// the workers of the kind's queue.
type Client struct {
	target    Target
	url       string
	headers   http.Header // Target.Headers and User-Agent, canonical
	now       func() time.Time
	http      *http.Client
	transport *http.Transport
}

// NewClient returns a Client for cfg.Target, or a *ConfigError. It opens no
// connection.
func NewClient(cfg Config) (*Client, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	headers := http.Header{"User-Agent": {cfg.UserAgent}}
	for name, value := range cfg.Target.Headers {
		headers.Set(name, value)
	}
	// No dial timeout of its own: Do's context, bounded by Target.Timeout,
	// bounds the dial with the rest of the attempt.
	dialer := &net.Dialer{
		KeepAlive: 30 * time.Second,
		Resolver:  cfg.Resolver,
		Control:   control(cfg.Target.AllowPrivate),
	}
	transport := &http.Transport{
		// The operator's proxy variables are for the operator's tools; a
		// proxy would also connect where the dialer cannot check.
		Proxy:               nil,
		DialContext:         dialer.DialContext,
		ForceAttemptHTTP2:   true, // a custom DialContext turns it off otherwise
		MaxIdleConnsPerHost: cfg.MaxConns,
		MaxConnsPerHost:     cfg.MaxConns,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	return &Client{
		target:  cfg.Target,
		url:     cfg.Target.URL.String(),
		headers: headers,
		now:     cfg.Now,
		http: &http.Client{
			Transport: transport,
			// A redirect is a failed attempt: following it would POST the
			// task somewhere the operator did not configure.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		transport: transport,
	}, nil
}

// Close closes the idle connections. Requests in flight are not affected.
func (c *Client) Close() { c.transport.CloseIdleConnections() }

// Request is one attempt's delivery.
type Request struct {
	TaskID      int64
	Kind        string
	Args        json.RawMessage
	Attempt     int
	MaxAttempts int
	Queue       string
	// BatchID is the task's batch; nil when it is in none.
	BatchID *int64
	// AfterBatch is the batch whose callback the task is; nil when none.
	AfterBatch *int64
	// Timeout replaces Target.Timeout for this attempt (the task's own
	// timeout); 0 keeps the target's.
	Timeout time.Duration
	// Schedule is the schedule that enqueued the task; nil when none did.
	Schedule *string
}

// wireRequest is the body of every POST.
type wireRequest struct {
	ID          int64           `json:"id"`
	Kind        string          `json:"kind"`
	Args        json.RawMessage `json:"args"`
	Attempt     int             `json:"attempt"`
	MaxAttempts int             `json:"max_attempts"`
	Queue       string          `json:"queue"`
	BatchID     *int64          `json:"batch_id"`
	AfterBatch  *int64          `json:"after_batch"`
	Schedule    *string         `json:"schedule"`
}

// Do delivers one attempt of a task and classifies what came back. The
// request is bounded by r.Timeout (else Target.Timeout), the response body
// included, and
// by ctx: when ctx ends first (the task was cancelled, the process is
// shutting down) Outcome.Err wraps ctx.Err().
func (c *Client) Do(ctx context.Context, r Request) Outcome {
	body, err := json.Marshal(wireRequest{
		ID:          r.TaskID,
		Kind:        r.Kind,
		Args:        r.Args,
		Attempt:     r.Attempt,
		MaxAttempts: r.MaxAttempts,
		Queue:       r.Queue,
		BatchID:     r.BatchID,
		AfterBatch:  r.AfterBatch,
		Schedule:    r.Schedule,
	})
	if err != nil {
		// Only args that are not JSON get here, and every attempt would
		// fail the same way.
		return Outcome{Err: fmt.Errorf("push: encoding the request: %w", err), Permanent: true}
	}

	limit := attemptLimit{timeout: c.target.Timeout, whose: "the target's"}
	if r.Timeout > 0 {
		limit = attemptLimit{timeout: r.Timeout, whose: "the task's"}
	}
	reqCtx, cancel := context.WithTimeout(ctx, limit.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return Outcome{Err: fmt.Errorf("push: building the request: %w", err), Permanent: true}
	}
	// User-Agent and Target.Headers first, so that the headers below win;
	// validate keeps them from colliding anyway.
	for name, values := range c.headers {
		req.Header[name] = values
	}
	id := strconv.FormatInt(r.TaskID, 10)
	timestamp := c.now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Webhook-Id", id)
	req.Header.Set("Webhook-Timestamp", strconv.FormatInt(timestamp, 10))
	if len(c.target.Secret) > 0 {
		req.Header.Set("Webhook-Signature", Sign(c.target.Secret, id, timestamp, body))
	}
	req.Header.Set("Taskd-Task-Id", id)
	req.Header.Set("Taskd-Attempt", strconv.Itoa(r.Attempt))
	req.Header.Set("Taskd-Max-Attempts", strconv.Itoa(r.MaxAttempts))
	req.Header.Set("Taskd-Kind", r.Kind)

	resp, err := c.http.Do(req)
	if err != nil {
		return Outcome{Err: c.requestError(ctx, reqCtx, limit, "", err)}
	}
	defer resp.Body.Close()
	return c.classify(ctx, reqCtx, limit, resp)
}

// attemptLimit is the timeout of one request, and whose it is, for its
// error.
type attemptLimit struct {
	timeout time.Duration
	whose   string
}

// ErrTimeout is the error of an attempt that ran out of its timeout
// (Request.Timeout, else Target.Timeout). It
// does not wrap context.DeadlineExceeded, so that the caller can tell it
// from the end of its own ctx.
// It is exported so that the caller can record the attempt as a timeout.
var ErrTimeout = errors.New("timed out")

// requestError turns the error of a request, or of reading its response
// (then reading says which, as "reading the HTTP 200 OK response"), into
// an attempt's error. The URL is left out: the error is shown to whoever
// submitted the task, and an operator's URL may carry a token.
func (c *Client) requestError(ctx, reqCtx context.Context, limit attemptLimit, reading string, err error) error {
	var while string
	if reading != "" {
		while = " while " + reading
	}
	switch {
	case ctx.Err() != nil:
		// The cause (River's, when it cancels a task) says why; ctx.Err()
		// is what the caller tests with errors.Is.
		if cause := context.Cause(ctx); cause != nil && cause != ctx.Err() {
			return fmt.Errorf("push: request aborted%s: %w: %w", while, ctx.Err(), cause)
		}
		return fmt.Errorf("push: request aborted%s: %w", while, ctx.Err())
	case reqCtx.Err() != nil:
		return fmt.Errorf("push: %w after %s (%s timeout)%s", ErrTimeout, limit.timeout, limit.whose, while)
	}
	if refused, ok := errors.AsType[*RefusedError](err); ok {
		return refused
	}
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err
	}
	if reading != "" {
		return fmt.Errorf("push: %s: %w", reading, err)
	}
	return fmt.Errorf("push: %w", err)
}
