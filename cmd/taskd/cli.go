package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/taskd/taskd/client"
)

// The client commands (submit, tasks, batch, queues) talk to a running
// taskd over its HTTP API through the public client package, so that they
// see exactly what any other client sees.

const (
	// urlDefault is the taskd the client commands talk to without
	// --url (TASKD_URL): serve's default address.
	urlDefault = "http://127.0.0.1:8080"

	// cliHTTPTimeout bounds one request of a client command. It must be
	// longer than the longest ?wait= they send (taskWaitPoll).
	cliHTTPTimeout = taskWaitPoll + 30*time.Second

	// taskWaitPoll is the ?wait= of one long poll of submit --wait: the
	// API's maximum, so that waiting costs one request a minute.
	taskWaitPoll = 60 * time.Second

	// batchWaitPoll is the ?wait= of one long poll of batch submit --wait.
	// The answer comes when the batch is done or the wait is over, so it
	// is also how often the progress is redrawn.
	batchWaitPoll = time.Second

	// waitOutageMax is how long a wait rides out taskd not answering, or
	// answering 503 (a restart, a rolling deploy), before it gives up.
	waitOutageMax = 60 * time.Second

	// waitOutagePause is the pause between two tries during an outage.
	waitOutagePause = 500 * time.Millisecond
)

// cli is what every client command shares: the client, the output and how
// to print.
type cli struct {
	c      *client.Client
	url    string // taskd's base URL, for messages
	stdout io.Writer
	stderr io.Writer
	// json prints the API's JSON instead of tables (--json).
	json bool
}

// cliFlags declares the flags every client command has; newCLI reads them
// once parsed.
type cliFlags struct {
	f    *flagSet
	url  *string
	json *string
}

func newCLIFlags(name, usage string, getenv func(string) string, stderr io.Writer) *cliFlags {
	f := newFlagSet("taskd "+name, getenv, stderr)
	f.fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fmt.Fprint(stderr, "\nFlags:\n")
		f.fs.PrintDefaults()
		fmt.Fprint(stderr, "\nTASKD_TOKEN, when set, is sent as \"Authorization: Bearer TASKD_TOKEN\".\n")
	}
	return &cliFlags{
		f:    f,
		url:  f.string("url", "TASKD_URL", urlDefault, "base URL of the taskd to talk to"),
		json: f.bool("json", "TASKD_JSON", false, "print the API's JSON instead of tables"),
	}
}

// parse parses args, flags and positional arguments in any order
// ("tasks get 5 --json"), and returns the positional ones.
func (cf *cliFlags) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := cf.f.parse(args); err != nil {
			return nil, err
		}
		args = cf.f.fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos, args = append(pos, args[0]), args[1:]
	}
}

// newCLI builds the client from the parsed flags and TASKD_TOKEN.
func (cf *cliFlags) newCLI(getenv func(string) string, stdout, stderr io.Writer) (*cli, error) {
	asJSON, err := cf.f.parseBool("json", *cf.json)
	if err != nil {
		return nil, err
	}
	c, err := client.New(*cf.url, client.Config{
		HTTPClient: &http.Client{Timeout: cliHTTPTimeout},
		Token:      getenv("TASKD_TOKEN"),
	})
	if err != nil {
		return nil, usagef("invalid %s: %w", cf.f.setting("url"), err)
	}
	return &cli{c: c, url: *cf.url, stdout: stdout, stderr: stderr, json: asJSON}, nil
}

// printJSON prints v, an API answer, as the API sends it: one line of
// JSON, for jq and scripts.
func (c *cli) printJSON(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding the answer: %w", err)
	}
	_, err = fmt.Fprintf(c.stdout, "%s\n", data)
	return err
}

// table prints rows aligned in columns, the first row the header.
func (c *cli) table(rows [][]string) error {
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// problemError is an error answer of taskd as the command line shows it:
// the problem's detail, then one line per invalid field.
type problemError struct {
	e *client.Error
	// field names a field of the request for the user, such as a batch
	// item's line of the file; nil: the field as the API names it.
	field func(string) string
}

func (p *problemError) Error() string {
	var b strings.Builder
	msg := p.e.Detail
	if msg == "" {
		msg = p.e.Title
	}
	fmt.Fprintf(&b, "%s (%d %s)", msg, p.e.Status, http.StatusText(p.e.Status))
	for _, fe := range p.e.Errors {
		name := fe.Field
		if p.field != nil {
			name = p.field(name)
		}
		fmt.Fprintf(&b, "\n  %s: %s", name, fe.Message)
	}
	return b.String()
}

func (p *problemError) Unwrap() error { return p.e }

// requestError makes an error of a request readable: an error answer of
// taskd shows its problem, no answer at all names the URL asked.
func (c *cli) requestError(err error) error {
	var e *client.Error
	if errors.As(err, &e) {
		return &problemError{e: e}
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return fmt.Errorf("no answer from taskd at %s (--url, TASKD_URL): %w", c.url, uerr.Err)
	}
	return err
}

// interrupted is the error of a wait that Ctrl-C (or SIGTERM) ended: the
// tasks go on, only the waiting stopped.
func interrupted(what, check string) error {
	return fmt.Errorf("interrupted: stopped waiting for %s, which goes on on the server; see %s", what, check)
}

// isTTY reports whether w is a terminal (not merely a character device
// such as /dev/null).
func isTTY(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// isFinal reports whether a task's state is final: it will not run again
// unless retried.
func isFinal(state string) bool {
	return state == "completed" || state == "cancelled" || state == "discarded"
}

// outage lets a wait ride out a short outage of taskd: the tasks go on
// without it, and a process restarting on the same address (or another
// behind the same URL) answers again soon.
type outage struct {
	c     *cli
	since time.Time // zero while taskd answers
}

// retry reports whether the failed poll should be sent again, after a
// pause: err is a 503 or no answer, and the outage is not too long yet.
func (o *outage) retry(ctx context.Context, err error) bool {
	var uerr *url.Error
	if ctx.Err() != nil || !client.IsStatus(err, http.StatusServiceUnavailable) && !errors.As(err, &uerr) {
		return false
	}
	if o.since.IsZero() {
		o.since = time.Now()
		nl := "" // off the line of a progress bar
		if isTTY(o.c.stderr) {
			nl = "\n"
		}
		fmt.Fprintf(o.c.stderr, "%s%v; trying again for up to %s\n", nl, o.c.requestError(err), waitOutageMax)
	}
	if time.Since(o.since) > waitOutageMax {
		return false
	}
	select {
	case <-ctx.Done():
		return false
	case <-time.After(waitOutagePause):
		return true
	}
}

// ok ends an outage: taskd answered.
func (o *outage) ok() { o.since = time.Time{} }

// waitTask long-polls the task until it is final.
func (c *cli) waitTask(ctx context.Context, id int64) (*client.Task, error) {
	o := outage{c: c}
	for {
		t, err := c.c.Wait(ctx, id, taskWaitPoll)
		if err != nil {
			if o.retry(ctx, err) {
				continue
			}
			if ctx.Err() != nil {
				return nil, interrupted(fmt.Sprintf("task %d", id), fmt.Sprintf("taskd tasks get %d", id))
			}
			return nil, c.requestError(err)
		}
		o.ok()
		if isFinal(t.State) {
			return t, nil
		}
	}
}

func clip(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func fmtTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.RFC3339)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
