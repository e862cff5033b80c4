package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"
)

// usageError is a mistake in the command line or configuration; main exits
// with status 2 on it.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// errHelp is returned (as a usage error) after --help printed the usage.
var errHelp = errors.New("help requested")

const usage = `Usage: taskd <command> [flags]

Commands:
  serve     run the HTTP API and the workers
  api       run the HTTP API only (works no queue, never leads)
  worker    run the workers only (health and metrics on --addr, :8081)
  migrate   apply or inspect database migrations (up, down, status, version)
  config    check a configuration file: taskd config check FILE
  token     create, list or revoke API tokens (talks to the database)

Client commands, over the HTTP API of the taskd at TASKD_URL
(default http://127.0.0.1:8080):
  submit    submit a task: taskd submit --kind K [--args JSON] [--wait]
  tasks     get, list, cancel or retry tasks: taskd tasks list --state running
  batch     submit a batch from a JSON Lines file: taskd batch submit FILE [--wait]
  queues    list the queues, or pause or resume one: taskd queues pause NAME

Run "taskd <command> --help" for a command's flags. Every flag has an
environment variable twin, shown in its help.
`

// run is the whole program, with its environment passed in so that tests
// can run it in-process.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usagef("no command given")
	}
	switch args[0] {
	case "serve":
		return runServe(ctx, args[1:], getenv, stdout, stderr, roleServe)
	case "api":
		return runServe(ctx, args[1:], getenv, stdout, stderr, roleAPI)
	case "worker":
		return runServe(ctx, args[1:], getenv, stdout, stderr, roleWorker)
	case "migrate":
		return runMigrate(ctx, args[1:], getenv, stdout, stderr)
	case "token":
		return runToken(ctx, args[1:], getenv, stdout, stderr)
	case "config":
		return runConfig(args[1:], getenv, stdout, stderr)
	case "submit":
		return runSubmit(ctx, args[1:], getenv, stdout, stderr)
	case "tasks":
		return runTasks(ctx, args[1:], getenv, stdout, stderr)
	case "batch":
		// Standard input is read only by "batch submit -"; tests give
		// runBatch their own.
		return runBatch(ctx, args[1:], getenv, os.Stdin, stdout, stderr)
	case "queues":
		return runQueues(ctx, args[1:], getenv, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usagef("unknown command %q", args[0])
}

// newLogger logs text to a terminal and JSON otherwise.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, usagef("invalid --log-level (TASKD_LOG_LEVEL) %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if isTerminal(w) {
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return slog.New(slog.NewJSONHandler(w, opts)), nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// redactURL hides the password of a connection string for logs.
func redactURL(url string) string {
	// A password may also sit in the query ("?password=...") of a URL, or
	// be a key of a key/value DSN ("host=db password='s3 cret'").
	url = dsnPasswordRE.ReplaceAllString(url, "${1}xxxxx")
	at := strings.LastIndex(url, "@")
	scheme := strings.Index(url, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return url
	}
	creds := url[scheme+3 : at]
	if user, _, ok := strings.Cut(creds, ":"); ok {
		return url[:scheme+3] + user + ":xxxxx" + url[at:]
	}
	return url
}

// dsnPasswordRE matches the value of a password setting in a key/value DSN
// (quoted with single quotes and backslash escapes, or bare) or a URL
// query.
var dsnPasswordRE = regexp.MustCompile(`((?:^|[\s?&])password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]*)`)
