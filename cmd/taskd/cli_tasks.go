package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/taskd/taskd/client"
)

const submitUsage = `Usage: taskd submit --kind KIND [--args JSON] [--queue QUEUE] [--wait] [flags]

Submits one task and prints it; with --wait, waits until it is final
(completed, cancelled or discarded) and prints it then. With --wait the
exit status is 1 unless the task completed. Ctrl-C stops the waiting, not
the task.
`

func runSubmit(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cf := newCLIFlags("submit", submitUsage, getenv, stderr)
	kind := cf.f.fs.String("kind", "", "the task's kind (required)")
	argsJSON := cf.f.fs.String("args", "", "the task's arguments, a JSON object (default: the kind's default)")
	queue := cf.f.fs.String("queue", "", "queue to run on (default: the kind's)")
	wait := cf.f.fs.Bool("wait", false, "wait until the task is final")
	pos, err := cf.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("submit: unexpected argument %q", pos[0])
	}
	if *kind == "" {
		cf.f.fs.Usage()
		return usagef("submit: --kind is required")
	}
	req := client.TaskRequest{Kind: kind}
	if *argsJSON != "" {
		if !json.Valid([]byte(*argsJSON)) {
			return usagef("submit: --args %q is not valid JSON", clip(*argsJSON, 60))
		}
		req.Args = json.RawMessage(*argsJSON)
	}
	if *queue != "" {
		req.Queue = queue
	}
	c, err := cf.newCLI(getenv, stdout, stderr)
	if err != nil {
		return err
	}
	t, _, err := c.c.Submit(ctx, req, client.SubmitOptions{})
	if err != nil {
		return c.requestError(err)
	}
	if *wait {
		if t, err = c.waitTask(ctx, t.ID); err != nil {
			return err
		}
	}
	if err := c.printTask(t); err != nil {
		return err
	}
	if *wait && t.State != "completed" {
		return fmt.Errorf("task %d is %s", t.ID, t.State)
	}
	return nil
}

const tasksUsage = `Usage: taskd tasks <get|list|cancel|retry> [ID] [flags]

  get ID       show a task with its attempts
  list         list tasks, newest first (--state, --kind, --queue, --limit)
  cancel ID    cancel a task
  retry ID     run a finished or retryable task again now
`

func runTasks(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cf := newCLIFlags("tasks", tasksUsage, getenv, stderr)
	state := cf.f.fs.String("state", "", "list: only tasks in these states, comma-separated")
	kind := cf.f.fs.String("kind", "", "list: only tasks of this kind")
	queue := cf.f.fs.String("queue", "", "list: only tasks of this queue")
	limit := cf.f.fs.Int("limit", 0, "list: at most this many tasks (default: the API's, 50)")
	cursor := cf.f.fs.String("cursor", "", "list: the page after this cursor (printed after a full page)")
	pos, err := cf.parse(args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		cf.f.fs.Usage()
		return usagef("tasks: no action given")
	}
	action, pos := pos[0], pos[1:]
	var id int64
	switch action {
	case "get", "cancel", "retry":
		if len(pos) != 1 {
			return usagef("tasks %s: want one task ID", action)
		}
		if id, err = strconv.ParseInt(pos[0], 10, 64); err != nil || id <= 0 {
			return usagef("tasks %s: invalid task ID %q: want a positive integer", action, pos[0])
		}
	case "list":
		if len(pos) > 0 {
			return usagef("tasks list: unexpected argument %q", pos[0])
		}
		// --limit 0 is refused as the API refuses limit=0, rather than
		// read as the flag's default (the API's own limit).
		limitSet := false
		cf.f.fs.Visit(func(f *flag.Flag) { limitSet = limitSet || f.Name == "limit" })
		if *limit < 0 || limitSet && *limit == 0 {
			return usagef("tasks list: invalid --limit %d: must be positive", *limit)
		}
	default:
		cf.f.fs.Usage()
		return usagef("tasks: unknown action %q", action)
	}
	c, err := cf.newCLI(getenv, stdout, stderr)
	if err != nil {
		return err
	}
	var t *client.Task
	switch action {
	case "list":
		p := client.ListParams{Kind: *kind, Queue: *queue, Limit: *limit, Cursor: *cursor}
		if *state != "" {
			p.States = strings.Split(*state, ",")
		}
		l, err := c.c.List(ctx, p)
		if err != nil {
			return c.requestError(err)
		}
		return c.printTaskList(l)
	case "get":
		t, err = c.c.Get(ctx, id)
	case "cancel":
		t, err = c.c.Cancel(ctx, id)
	case "retry":
		t, err = c.c.Retry(ctx, id)
	}
	if err != nil {
		return c.requestError(err)
	}
	return c.printTask(t)
}

// printTask prints one task as "FIELD  value" lines, then its attempts.
func (c *cli) printTask(t *client.Task) error {
	if c.json {
		return c.printJSON(t)
	}
	rows := [][]string{
		{"ID", strconv.FormatInt(t.ID, 10)},
		{"KIND", t.Kind},
		{"QUEUE", t.Queue},
		{"STATE", t.State + cancelNote(t.CancelRequested, t.State)},
		{"ATTEMPT", fmt.Sprintf("%d/%d", t.Attempt, t.MaxAttempts)},
		{"ARGS", orDash(string(t.Args))},
		{"RESULT", orDash(string(t.Result))},
		{"CREATED", fmtTime(&t.CreatedAt)},
		{"SCHEDULED", fmtTime(&t.ScheduledAt)},
		{"STARTED", fmtTime(t.StartedAt)},
		{"FINISHED", fmtTime(t.FinishedAt)},
	}
	if t.NextRetryAt != nil {
		rows = append(rows, []string{"NEXT RETRY", fmtTime(t.NextRetryAt)})
	}
	if len(t.Tags) > 0 {
		rows = append(rows, []string{"TAGS", strings.Join(t.Tags, ",")})
	}
	if t.BatchID != nil {
		rows = append(rows, []string{"BATCH", strconv.FormatInt(*t.BatchID, 10)})
	}
	if len(t.Errors) > 0 {
		last := t.Errors[len(t.Errors)-1]
		rows = append(rows, []string{"LAST ERROR", fmt.Sprintf("attempt %d: %s", last.Attempt, clip(last.Message, 200))})
	}
	if err := c.table(rows); err != nil {
		return err
	}
	if len(t.Attempts) == 0 {
		return nil
	}
	fmt.Fprintln(c.stdout)
	rows = [][]string{{"ATTEMPT", "OUTCOME", "STARTED", "DURATION", "WORKER", "ERROR"}}
	for _, a := range t.Attempts {
		msg := "-"
		if a.Error != nil {
			msg = clip(*a.Error, 80)
		}
		rows = append(rows, []string{strconv.Itoa(a.Attempt), a.Outcome, fmtTime(&a.StartedAt),
			strconv.FormatFloat(a.DurationMS, 'f', 1, 64) + "ms", orDash(a.Worker), msg})
	}
	return c.table(rows)
}

func cancelNote(requested bool, state string) string {
	if requested && !isFinal(state) {
		return " (cancel requested)"
	}
	return ""
}

// printTaskList prints a page of tasks, one per row, and how to get the
// next page.
func (c *cli) printTaskList(l *client.TaskList) error {
	if c.json {
		return c.printJSON(l)
	}
	rows := [][]string{{"ID", "KIND", "QUEUE", "STATE", "ATTEMPT", "CREATED", "ARGS"}}
	for _, t := range l.Tasks {
		rows = append(rows, []string{strconv.FormatInt(t.ID, 10), t.Kind, t.Queue, t.State + cancelNote(t.CancelRequested, t.State),
			fmt.Sprintf("%d/%d", t.Attempt, t.MaxAttempts), fmtTime(&t.CreatedAt), clip(string(t.Args), 50)})
	}
	if err := c.table(rows); err != nil {
		return err
	}
	if l.NextCursor != nil {
		// On stderr: stdout stays the table alone, for scripts.
		fmt.Fprintf(c.stderr, "more tasks: add --cursor %s\n", *l.NextCursor)
	}
	return nil
}
