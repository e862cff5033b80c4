package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client talks to one taskd over HTTP. It is safe for concurrent use.
type Client struct {
	base  string
	http  *http.Client
	token string
}

// Config configures a Client.
type Config struct {
	// HTTPClient sends the requests. Defaults to http.DefaultClient; give
	// one with a Timeout for anything but tests.
	HTTPClient *http.Client

	// Token, when set, is sent with every request as "Authorization:
	// Bearer TOKEN". Defaults to none.
	Token string
}

// New returns a client of the taskd at baseURL ("http://127.0.0.1:8080").
func New(baseURL string, cfg Config) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("client: base URL %q: want http(s)://host[:port]", baseURL)
	}
	c := &Client{base: strings.TrimSuffix(baseURL, "/"), http: cfg.HTTPClient, token: cfg.Token}
	if c.http == nil {
		c.http = http.DefaultClient
	}
	return c, nil
}

// Error is an error answer of taskd: its status and problem details.
type Error struct {
	Problem
	// RetryAfter is the Retry-After header of a 503, "" otherwise.
	RetryAfter string
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("taskd: %d %s", e.Status, e.Title)
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// SubmitOptions are the optional headers of a submission.
type SubmitOptions struct {
	// IdempotencyKey makes the submission safe to repeat: the same key and
	// body give the first submission's answer.
	IdempotencyKey string
}

// Submit submits one task. created is false when an IdempotencyKey
// matched an earlier submission, whose task is returned.
func (c *Client) Submit(ctx context.Context, t TaskRequest, opts SubmitOptions) (task *Task, created bool, err error) {
	task = &Task{}
	status, err := c.do(ctx, http.MethodPost, "/v1/tasks", t, opts.IdempotencyKey, task)
	if err != nil {
		return nil, false, err
	}
	return task, status == http.StatusCreated, nil
}

// SubmitBatch submits tasks in one all-or-nothing batch.
func (c *Client) SubmitBatch(ctx context.Context, tasks []TaskRequest, opts SubmitOptions) (batch *BatchCreated, created bool, err error) {
	return c.SubmitBatchRequest(ctx, BatchRequest{Tasks: tasks}, opts)
}

// SubmitBatchRequest is SubmitBatch with the whole request, for a batch
// with a callback (BatchRequest.Then).
func (c *Client) SubmitBatchRequest(ctx context.Context, req BatchRequest, opts SubmitOptions) (batch *BatchCreated, created bool, err error) {
	batch = &BatchCreated{}
	status, err := c.do(ctx, http.MethodPost, "/v1/batches", req, opts.IdempotencyKey, batch)
	if err != nil {
		return nil, false, err
	}
	return batch, status == http.StatusCreated, nil
}

// Get returns a task with its attempts.
func (c *Client) Get(ctx context.Context, id int64) (*Task, error) {
	t := &Task{}
	if _, err := c.do(ctx, http.MethodGet, "/v1/tasks/"+strconv.FormatInt(id, 10), nil, "", t); err != nil {
		return nil, err
	}
	return t, nil
}

// ListParams filter GET /v1/tasks; zero values mean any.
type ListParams struct {
	States []string
	Kind   string
	Queue  string
	Limit  int
	// Cursor is a TaskList's NextCursor, to get the page after it.
	Cursor string
}

// List returns a page of tasks, newest first.
func (c *Client) List(ctx context.Context, p ListParams) (*TaskList, error) {
	q := url.Values{}
	if len(p.States) > 0 {
		q.Set("state", strings.Join(p.States, ","))
	}
	for k, v := range map[string]string{"kind": p.Kind, "queue": p.Queue, "cursor": p.Cursor} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if p.Limit > 0 {
		q.Set("limit", strconv.Itoa(p.Limit))
	}
	path := "/v1/tasks"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	l := &TaskList{}
	if _, err := c.do(ctx, http.MethodGet, path, nil, "", l); err != nil {
		return nil, err
	}
	return l, nil
}

// Cancel cancels a task and returns it as it is afterwards.
func (c *Client) Cancel(ctx context.Context, id int64) (*Task, error) {
	return c.change(ctx, id, "cancel")
}

// Retry makes a finished or retryable task run again now.
func (c *Client) Retry(ctx context.Context, id int64) (*Task, error) {
	return c.change(ctx, id, "retry")
}

func (c *Client) change(ctx context.Context, id int64, action string) (*Task, error) {
	t := &Task{}
	if _, err := c.do(ctx, http.MethodPost, "/v1/tasks/"+strconv.FormatInt(id, 10)+"/"+action, nil, "", t); err != nil {
		return nil, err
	}
	return t, nil
}

// Wait returns the task once it is final (completed, cancelled,
// discarded) or d (at most 60s) has passed, as it is then: the server holds
// the request (?wait=). The HTTP client's Timeout must be longer than d.
func (c *Client) Wait(ctx context.Context, id int64, d time.Duration) (*Task, error) {
	t := &Task{}
	if _, err := c.do(ctx, http.MethodGet, "/v1/tasks/"+strconv.FormatInt(id, 10)+"?wait="+d.String(), nil, "", t); err != nil {
		return nil, err
	}
	return t, nil
}

// WaitBatch is Wait for every task of a batch.
func (c *Client) WaitBatch(ctx context.Context, id int64, d time.Duration) (*Batch, error) {
	b := &Batch{}
	if _, err := c.do(ctx, http.MethodGet, "/v1/batches/"+strconv.FormatInt(id, 10)+"?wait="+d.String(), nil, "", b); err != nil {
		return nil, err
	}
	return b, nil
}

// CancelBatch cancels every unfinished task of a batch and returns the
// batch.
func (c *Client) CancelBatch(ctx context.Context, id int64) (*Batch, error) {
	b := &Batch{}
	if _, err := c.do(ctx, http.MethodPost, "/v1/batches/"+strconv.FormatInt(id, 10)+"/cancel", nil, "", b); err != nil {
		return nil, err
	}
	return b, nil
}

// Batch returns a batch's progress with its tasks.
func (c *Client) Batch(ctx context.Context, id int64) (*Batch, error) {
	b := &Batch{}
	if _, err := c.do(ctx, http.MethodGet, "/v1/batches/"+strconv.FormatInt(id, 10), nil, "", b); err != nil {
		return nil, err
	}
	return b, nil
}

// Kinds lists the kinds the service runs.
func (c *Client) Kinds(ctx context.Context) ([]Kind, error) {
	var l KindList
	if _, err := c.do(ctx, http.MethodGet, "/v1/kinds", nil, "", &l); err != nil {
		return nil, err
	}
	return l.Kinds, nil
}

// Queues lists every queue: those some process works or has worked
// lately and those with unfinished tasks, by name.
func (c *Client) Queues(ctx context.Context) ([]Queue, error) {
	var l QueueList
	if _, err := c.do(ctx, http.MethodGet, "/v1/queues", nil, "", &l); err != nil {
		return nil, err
	}
	return l.Queues, nil
}

// PauseQueue pauses a queue in every process (running tasks finish, no new
// ones start) and returns it as it is afterwards. An unknown queue is a
// 404 *Error.
func (c *Client) PauseQueue(ctx context.Context, name string) (*Queue, error) {
	return c.changeQueue(ctx, name, "pause")
}

// ResumeQueue resumes a paused queue in every process and returns it.
func (c *Client) ResumeQueue(ctx context.Context, name string) (*Queue, error) {
	return c.changeQueue(ctx, name, "resume")
}

func (c *Client) changeQueue(ctx context.Context, name, action string) (*Queue, error) {
	q := &Queue{}
	if _, err := c.do(ctx, http.MethodPost, "/v1/queues/"+url.PathEscape(name)+"/"+action, nil, "", q); err != nil {
		return nil, err
	}
	return q, nil
}

// Schedules lists the schedules of the server's configuration file, with
// the task each one's latest tick enqueued and when the next is due.
func (c *Client) Schedules(ctx context.Context) ([]Schedule, error) {
	var l ScheduleList
	if _, err := c.do(ctx, http.MethodGet, "/v1/schedules", nil, "", &l); err != nil {
		return nil, err
	}
	return l.Schedules, nil
}

// Claim asks for tasks of kinds run by external workers (run: external),
// waiting up to req.Wait (default 30s) for some to arrive; an empty list
// means none did. The HTTP client's Timeout must be longer than the wait.
func (c *Client) Claim(ctx context.Context, req ClaimRequest) ([]ClaimedTask, error) {
	var l ClaimList
	if _, err := c.do(ctx, http.MethodPost, "/v1/claims", req, "", &l); err != nil {
		return nil, err
	}
	return l.Tasks, nil
}

// Complete completes a claimed task with result (nil: null). A lease that
// no longer holds gives a 409 *Error.
func (c *Client) Complete(ctx context.Context, id int64, lease string, result json.RawMessage) (*Task, error) {
	t := &Task{}
	_, err := c.do(ctx, http.MethodPost, "/v1/tasks/"+strconv.FormatInt(id, 10)+"/complete", CompleteRequest{Lease: &lease, Result: result}, "", t)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// Fail ends a claimed task's attempt with msg; opts may set RetryAfter and
// Permanent (its Lease and Error are set from the arguments).
func (c *Client) Fail(ctx context.Context, id int64, lease, msg string, opts FailRequest) (*Task, error) {
	opts.Lease, opts.Error = &lease, &msg
	t := &Task{}
	if _, err := c.do(ctx, http.MethodPost, "/v1/tasks/"+strconv.FormatInt(id, 10)+"/fail", opts, "", t); err != nil {
		return nil, err
	}
	return t, nil
}

// Heartbeat extends a claimed task's lease by extend from now ("" : by the
// lease's own length) and says whether its cancellation was asked for.
func (c *Client) Heartbeat(ctx context.Context, id int64, lease, extend string) (*Heartbeat, error) {
	req := HeartbeatRequest{Lease: &lease}
	if extend != "" {
		req.Extend = &extend
	}
	hb := &Heartbeat{}
	if _, err := c.do(ctx, http.MethodPost, "/v1/tasks/"+strconv.FormatInt(id, 10)+"/heartbeat", req, "", hb); err != nil {
		return nil, err
	}
	return hb, nil
}

// do sends a request with body (nil: none) and decodes a 2xx answer into
// out; an error answer is an *Error.
func (c *Client) do(ctx context.Context, method, path string, body any, idempotencyKey string, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return 0, fmt.Errorf("client: encoding request: %w", err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, fmt.Errorf("client: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", idempotencyKey)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return 0, fmt.Errorf("client: reading answer of %s %s: %w", method, path, err)
	}
	if res.StatusCode >= 300 {
		e := &Error{RetryAfter: res.Header.Get("Retry-After")}
		if err := json.Unmarshal(data, &e.Problem); err != nil || e.Status == 0 {
			e.Problem = Problem{Status: res.StatusCode, Title: http.StatusText(res.StatusCode), Detail: strings.TrimSpace(string(data))}
		}
		return res.StatusCode, e
	}
	if err := json.Unmarshal(data, out); err != nil {
		return res.StatusCode, fmt.Errorf("client: decoding answer of %s %s: %w", method, path, err)
	}
	return res.StatusCode, nil
}

// IsStatus reports whether err is an *Error with the status.
func IsStatus(err error, status int) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == status
}
