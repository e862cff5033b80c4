// Package config reads taskd's configuration file (--config, TASKD_CONFIG):
// the queues a process works, the private addresses HTTP kinds may reach,
// the kinds the operator declares (run over HTTP or by external workers)
// with their JSON Schemas, and the schedules (periodic tasks).
//
// The file is YAML. Every problem is reported with the file, the line and
// the key path ("taskd.yaml:7: kinds[1].timeout: must be between 1s and
// 30m"), and unknown keys are refused, so that a typo is an error at start
// rather than a setting silently ignored.
//
// Scalar values (never keys) may reference environment variables as
// ${NAME}, so that secrets stay out of the file; see expand.go for the
// rules. Flags overriding the file are the command's business: File only
// says what the file holds.
package config

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/taskd/taskd/internal/kinds"
	"github.com/taskd/taskd/internal/limits"
)

// MaxErrors is how many problems Load and Parse report at most; the rest
// are counted in one last error.
const MaxErrors = 20

// File is a loaded configuration file.
type File struct {
	// Path is the file's path (or the name given to Parse).
	Path string
	// Queues maps the queues to work to their workers per process; nil when
	// the file has no queues key, so that the command can tell "not set"
	// from a setting and let its flag or its defaults decide.
	Queues map[string]int
	// AllowPrivate lists the loopback, private or internal addresses every
	// HTTP kind may reach. Bare addresses are single-address prefixes.
	AllowPrivate []netip.Prefix
	// Kinds are the declared kinds, in file order, ready for
	// kinds.NewRegistry next to the built-in ones.
	Kinds []kinds.Kind
	// Limits are the cluster-wide limits on starting tasks, in file order
	// (limits.NewSet).
	Limits []limits.Limit
	// Schedules are the periodic tasks, in file order. Their tasks are
	// checked as submissions by CheckSchedules, not by Load.
	Schedules []Schedule

	// own holds what Redacted and CheckQueues need that Kinds does not
	// say, by kind index.
	own []declared
	// scheduleDecls says where each schedule is, by index, for
	// CheckSchedules.
	scheduleDecls []scheduleDecl
}

// declared is what the file said of one kind beyond its kinds.Kind.
type declared struct {
	// path is the kind's key path ("kinds[1]").
	path string
	// queueLine is the line of the kind's queue (or of the kind, when the
	// queue is the default), for CheckQueues.
	queueLine int
	// allowPrivate is the kind's own list, without the top-level one that
	// Push.AllowPrivate includes.
	allowPrivate []netip.Prefix
}

// Error is one problem with the configuration file. Unknown parts are
// zero and left out of the message.
type Error struct {
	// File is the path of the file at fault.
	File string
	// Line is the 1-based line of the value (or key) at fault.
	Line int
	// Path is the key path, such as "kinds[1].timeout".
	Path string
	// Message says what is wrong.
	Message string

	err error // the underlying error, if any, for errors.Is
}

// Error formats e as "FILE:LINE: PATH: MESSAGE".
func (e *Error) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc += ":" + strconv.Itoa(e.Line)
	}
	var parts []string
	for _, s := range []string{loc, e.Path, e.Message} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, ": ")
}

// Unwrap returns the error behind e, such as fs.ErrNotExist for a file that
// cannot be read.
func (e *Error) Unwrap() error { return e.err }

// Load reads and checks the configuration file at path. getenv resolves
// ${NAME} references (os.Getenv in production, a map in tests); schema
// files are read relative to the file's directory.
//
// Every error it returns is an *Error, or an errors.Join of up to
// MaxErrors+1 of them sorted by line, so that an operator fixes the whole
// file in one go; errors.As finds the first.
func Load(path string, getenv func(string) string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var perr *fs.PathError
		msg := err.Error()
		if errors.As(err, &perr) {
			msg = perr.Err.Error()
		}
		return nil, &Error{File: path, Message: "cannot read the configuration file: " + msg, err: err}
	}
	return Parse(path, data, filepath.Dir(path), getenv)
}

// Parse checks the configuration in data, named name in errors; dir is
// where relative schema file paths start. Its errors are Load's.
func Parse(name string, data []byte, dir string, getenv func(string) string) (*File, error) {
	p := &parser{file: name, dir: dir, getenv: getenv}
	f := p.parse(data)
	if err := p.err(); err != nil {
		return nil, err
	}
	f.Path = name
	return f, nil
}

// err returns the parser's problems as one error, or nil.
func (p *parser) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	// Problems are found in the order the checks run, not the order of the
	// file; an operator reads the file top to bottom.
	slices.SortStableFunc(p.errs, func(a, b *Error) int { return cmp.Compare(a.Line, b.Line) })
	if len(p.errs) == 1 {
		return p.errs[0]
	}
	errs := make([]error, 0, MaxErrors+1)
	for i, e := range p.errs {
		if i == MaxErrors {
			errs = append(errs, &Error{File: p.file, Message: fmt.Sprintf("%d more problems not shown", len(p.errs)-MaxErrors)})
			break
		}
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}
