package main

import (
	"context"
	"io"
	"strconv"
	"time"

	"github.com/taskd/taskd/client"
)

const queuesUsage = `Usage: taskd queues [pause|resume NAME] [flags]

  (none)        list the queues with their unfinished tasks
  pause NAME    pause a queue in every process: running tasks finish, no new ones start
  resume NAME   resume a paused queue
`

func runQueues(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cf := newCLIFlags("queues", queuesUsage, getenv, stderr)
	pos, err := cf.parse(args)
	if err != nil {
		return err
	}
	var action, name string
	switch {
	case len(pos) == 0 || (len(pos) == 1 && pos[0] == "list"):
		action = "list"
	case len(pos) == 2 && (pos[0] == "pause" || pos[0] == "resume"):
		action, name = pos[0], pos[1]
	case pos[0] == "pause" || pos[0] == "resume":
		return usagef("queues %s: want one queue name", pos[0])
	default:
		cf.f.fs.Usage()
		return usagef("queues: unknown action %q", pos[0])
	}
	c, err := cf.newCLI(getenv, stdout, stderr)
	if err != nil {
		return err
	}
	if action == "list" {
		qs, err := c.c.Queues(ctx)
		if err != nil {
			return c.requestError(err)
		}
		if c.json {
			return c.printJSON(client.QueueList{Queues: qs})
		}
		return c.printQueues(qs)
	}
	change := c.c.PauseQueue
	if action == "resume" {
		change = c.c.ResumeQueue
	}
	q, err := change(ctx, name)
	if err != nil {
		return c.requestError(err)
	}
	if c.json {
		return c.printJSON(q)
	}
	return c.printQueues([]client.Queue{*q})
}

func (c *cli) printQueues(qs []client.Queue) error {
	rows := [][]string{{"QUEUE", "PAUSED", "WORKERS", "AVAILABLE", "RUNNING", "RETRYABLE", "SCHEDULED", "PENDING", "OLDEST AVAILABLE"}}
	for _, q := range qs {
		paused := "no"
		if q.Paused {
			paused = "yes"
		}
		age := "-"
		if q.OldestAvailableAgeSeconds != nil {
			age = (time.Duration(*q.OldestAvailableAgeSeconds * float64(time.Second))).Round(time.Millisecond).String()
		}
		rows = append(rows, []string{q.Name, paused, strconv.Itoa(q.Workers),
			strconv.Itoa(q.Counts["available"]), strconv.Itoa(q.Running), strconv.Itoa(q.Counts["retryable"]),
			strconv.Itoa(q.Counts["scheduled"]), strconv.Itoa(q.Counts["pending"]), age})
	}
	return c.table(rows)
}
