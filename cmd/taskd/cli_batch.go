package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/taskd/taskd/client"
)

const batchUsage = `Usage: taskd batch submit FILE.jsonl [--wait] [flags]
       taskd batch get ID [--wait] [flags]

  submit FILE   submit the tasks of FILE, one task JSON per line (as the
                body of POST /v1/tasks), in one all-or-nothing batch; FILE
                "-" reads standard input
  get ID        show a batch's progress

With --wait the command waits until every task of the batch is final,
showing a progress bar on a terminal (standard error) and a progress line
whenever the counts change otherwise, and exits 1 unless every task
completed. Ctrl-C stops the waiting, not the tasks.
`

// runBatch runs the batch command; stdin is read for the file "-".
func runBatch(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	cf := newCLIFlags("batch", batchUsage, getenv, stderr)
	wait := cf.f.fs.Bool("wait", false, "wait until every task of the batch is final, showing the progress")
	pos, err := cf.parse(args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		cf.f.fs.Usage()
		return usagef("batch: no action given")
	}
	if pos[0] != "submit" && pos[0] != "get" {
		cf.f.fs.Usage()
		return usagef("batch: unknown action %q", pos[0])
	}
	if len(pos) != 2 {
		return usagef("batch %s: want one %s", pos[0], map[string]string{"submit": "file", "get": "batch ID"}[pos[0]])
	}
	if pos[0] == "get" {
		id, err := strconv.ParseInt(pos[1], 10, 64)
		if err != nil || id <= 0 {
			return usagef("batch get: invalid batch ID %q: want a positive integer", pos[1])
		}
		c, err := cf.newCLI(getenv, stdout, stderr)
		if err != nil {
			return err
		}
		if *wait {
			return c.waitBatch(ctx, id, 0)
		}
		b, err := c.c.Batch(ctx, id)
		if err != nil {
			return c.requestError(err)
		}
		return c.printBatch(b)
	}

	name := pos[1]
	var in io.Reader = stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return usagef("batch submit: %w", err)
		}
		defer f.Close()
		in = f
	} else {
		name = "standard input"
	}
	reqs, lines, err := readTasks(in, name)
	if err != nil {
		return err
	}
	c, err := cf.newCLI(getenv, stdout, stderr)
	if err != nil {
		return err
	}
	created, _, err := c.c.SubmitBatch(ctx, reqs, client.SubmitOptions{})
	if err != nil {
		err = c.requestError(err)
		if perr, ok := err.(*problemError); ok {
			perr.field = func(f string) string { return itemLine(f, name, lines) }
		}
		return err
	}
	if !*wait {
		if c.json {
			return c.printJSON(created)
		}
		_, err := fmt.Fprintf(c.stdout, "batch %d submitted: %d task(s), IDs %d to %d\n", created.ID, len(created.TaskIDs),
			created.TaskIDs[0], created.TaskIDs[len(created.TaskIDs)-1])
		return err
	}
	return c.waitBatch(ctx, created.ID, len(created.TaskIDs))
}

// readTasks reads one task request per line, skipping blank lines, and
// returns them with the line number of each.
func readTasks(in io.Reader, name string) ([]client.TaskRequest, []int, error) {
	var (
		reqs  []client.TaskRequest
		lines []int
	)
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 16<<20) // a line is one task: up to the largest body taskd takes
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var r client.TaskRequest
		// Unknown fields are refused here, with the line, as the server
		// would refuse them.
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			return nil, nil, usagef("batch submit: %s:%d: not a task: %w", name, n, err)
		}
		if dec.More() {
			return nil, nil, usagef("batch submit: %s:%d: more than one JSON value on the line", name, n)
		}
		reqs, lines = append(reqs, r), append(lines, n)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, usagef("batch submit: reading %s: %w", name, err)
	}
	if len(reqs) == 0 {
		return nil, nil, usagef("batch submit: %s holds no task", name)
	}
	return reqs, lines, nil
}

var itemFieldRE = regexp.MustCompile(`^tasks\[(\d+)\]`)

// itemLine names a field of a batch item by the line of the file it came
// from: "tasks[2].args.value" is "FILE:3: tasks[2].args.value".
func itemLine(field, name string, lines []int) string {
	m := itemFieldRE.FindStringSubmatch(field)
	if m == nil {
		return field
	}
	i, err := strconv.Atoi(m[1])
	if err != nil || i >= len(lines) {
		return field
	}
	return fmt.Sprintf("%s:%d: %s", name, lines[i], field)
}

// batchCounts are a batch's progress as the command line shows it.
type batchCounts struct {
	total, done, completed, failed, cancelled int
}

func countBatch(b *client.Batch) batchCounts {
	n := batchCounts{total: b.Total, completed: b.Counts["completed"], failed: b.Counts["discarded"], cancelled: b.Counts["cancelled"]}
	n.done = n.completed + n.failed + n.cancelled
	return n
}

// waitBatch long-polls the batch until it is done, showing the progress,
// then prints it. submitted is the number of tasks of a batch just
// submitted, whose progress counts from now; 0 for an older batch, whose
// progress counts from the first answer.
func (c *cli) waitBatch(ctx context.Context, id int64, submitted int) error {
	var p batchProgress
	if isTTY(c.stderr) {
		p = &barProgress{w: c.stderr, id: id}
	} else {
		p = &lineProgress{w: c.stderr, id: id, start: time.Now(), seen: submitted > 0}
	}
	if submitted > 0 {
		p.update(batchCounts{total: submitted})
	}
	o := outage{c: c}
	for {
		b, err := c.c.WaitBatch(ctx, id, batchWaitPoll)
		if err != nil {
			if o.retry(ctx, err) {
				continue
			}
			p.stop()
			if ctx.Err() != nil {
				return interrupted(fmt.Sprintf("batch %d", id), fmt.Sprintf("taskd batch get %d", id))
			}
			return c.requestError(err)
		}
		o.ok()
		p.update(countBatch(b))
		if b.Done {
			p.stop()
			if err := c.printBatch(b); err != nil {
				return err
			}
			if n := countBatch(b); n.completed < n.total {
				return fmt.Errorf("batch %d: %d of %d tasks did not complete", id, n.total-n.completed, n.total)
			}
			return nil
		}
	}
}

// printBatch prints a batch's counts and the last error of each task that
// failed.
func (c *cli) printBatch(b *client.Batch) error {
	if c.json {
		return c.printJSON(b)
	}
	n := countBatch(b)
	status := "running"
	if b.Done {
		status = "done"
	}
	rows := [][]string{
		{"BATCH", "STATUS", "TOTAL", "COMPLETED", "FAILED", "CANCELLED", "UNFINISHED"},
		{strconv.FormatInt(b.ID, 10), status, strconv.Itoa(n.total), strconv.Itoa(n.completed), strconv.Itoa(n.failed),
			strconv.Itoa(n.cancelled), strconv.Itoa(n.total - n.done)},
	}
	if err := c.table(rows); err != nil {
		return err
	}
	var failed [][]string
	for _, t := range b.Tasks {
		if t.State == "discarded" || len(t.Errors) > 0 && !isFinal(t.State) {
			msg := "-"
			if len(t.Errors) > 0 {
				last := t.Errors[len(t.Errors)-1]
				msg = fmt.Sprintf("attempt %d: %s", last.Attempt, clip(last.Message, 100))
			}
			failed = append(failed, []string{strconv.FormatInt(t.ID, 10), t.State, msg})
		}
	}
	if len(failed) == 0 {
		return nil
	}
	fmt.Fprintln(c.stdout)
	return c.table(append([][]string{{"TASK", "STATE", "LAST ERROR"}}, failed...))
}

// batchProgress shows a batch's progress while waiting for it.
type batchProgress interface {
	update(n batchCounts)
	// stop ends the display (the batch is done, or the waiting stopped).
	stop()
}

// barProgress is a live progress bar, for a terminal: done/total,
// failed, rate and the ETA.
type barProgress struct {
	bar *progressbar.ProgressBar
	w   io.Writer
	id  int64
}

func (p *barProgress) update(n batchCounts) {
	desc := fmt.Sprintf("batch %d, %d failed", p.id, n.failed)
	if p.bar == nil {
		// Created once the total is known; the rate and ETA count from
		// here.
		p.bar = progressbar.NewOptions(n.total,
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionSetDescription(desc),
			progressbar.OptionSetWidth(30),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("tasks"),
			progressbar.OptionSetPredictTime(true), // [elapsed:ETA]
			progressbar.OptionSetRenderBlankState(true),
			progressbar.OptionThrottle(0),
		)
	}
	p.bar.Describe(desc)
	_ = p.bar.Set(n.done)
}

func (p *barProgress) stop() {
	if p.bar != nil {
		fmt.Fprintln(p.w)
	}
}

// lineProgress prints a line whenever the counts change, for logs and
// pipes.
type lineProgress struct {
	w  io.Writer
	id int64
	// start and first are when the rate counts from, and how many tasks
	// were done then: the submission, or the first answer for an older
	// batch.
	start time.Time
	first int
	seen  bool
	last  batchCounts
}

func (p *lineProgress) update(n batchCounts) {
	now := time.Now()
	if !p.seen {
		p.seen, p.start, p.first = true, now, n.done
	} else if n == p.last {
		return
	}
	p.last = n
	rate, eta := "-", "-"
	if el := now.Sub(p.start).Seconds(); el > 0 && n.done > p.first {
		r := float64(n.done-p.first) / el
		rate = strconv.FormatFloat(r, 'f', 1, 64)
		eta = (time.Duration(float64(n.total-n.done) / r * float64(time.Second))).Round(time.Second).String()
	}
	if n.done == n.total {
		eta = "0s"
	}
	fmt.Fprintf(p.w, "batch %d: %d/%d done, %d failed, %d cancelled, %s tasks/s, ETA %s\n",
		p.id, n.done, n.total, n.failed, n.cancelled, rate, eta)
}

func (p *lineProgress) stop() {}
