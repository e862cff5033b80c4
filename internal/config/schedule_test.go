package config

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/taskd/taskd/client"
	"github.com/taskd/taskd/internal/kinds"
)

const scheduleConfig = `kinds:
  - {name: transcode, run: external}
schedules:
  - name: nightly-report
    cron: "0 3 * * *"
    kind: double
    args:
      value: 21
      note: {by: "${WHO}", at: 0.10}
    queue: reports
    priority: 2
    max_attempts: 3
    tags: [nightly, reports]
  - {name: beat, every: 1m30s, kind: transcode}
`

func TestParseSchedules(t *testing.T) {
	t.Parallel()
	f, err := parse(t, scheduleConfig, map[string]string{"WHO": "ops"})
	require.NoError(t, err)
	require.Len(t, f.Schedules, 2)

	nightly := f.Schedules[0]
	require.Equal(t, "nightly-report", nightly.Name)
	require.Equal(t, "0 3 * * *", nightly.Spec.Cron())
	require.Zero(t, nightly.Spec.Interval())
	require.Equal(t, "double", *nightly.Task.Kind)
	// Args as written, in order, numbers kept, references expanded.
	require.Equal(t, `{"value":21,"note":{"by":"ops","at":0.10}}`, string(nightly.Task.Args))
	require.Equal(t, "reports", *nightly.Task.Queue)
	require.Equal(t, 2, *nightly.Task.Priority)
	require.Equal(t, 3, *nightly.Task.MaxAttempts)
	require.Equal(t, []string{"nightly", "reports"}, nightly.Task.Tags)
	require.Nil(t, nightly.Task.Delay)
	require.Nil(t, nightly.Task.ScheduledAt)

	beat := f.Schedules[1]
	require.Equal(t, 90*time.Second, beat.Spec.Interval())
	require.Equal(t, "transcode", *beat.Task.Kind)
	require.Nil(t, beat.Task.Args, "no args: the submission's default")
	require.Nil(t, beat.Task.Queue)
	require.Nil(t, beat.Task.Priority)
	require.Nil(t, beat.Task.Tags)
}

// TestCheckSchedules reports each problem the check finds at the line of
// the deepest key on its path.
func TestCheckSchedules(t *testing.T) {
	t.Parallel()
	f, err := parse(t, `schedules:
  - name: a1
    every: 1m
    kind: double
    args:
      items:
        - {sku: x}
        - qty: 0
  - {name: b1, every: 1m, kind: nope}
`, nil)
	require.NoError(t, err)
	var prefixes []string
	err = f.CheckSchedules(func(task *client.TaskRequest, prefix string) []kinds.FieldError {
		prefixes = append(prefixes, prefix)
		if *task.Kind == "nope" {
			return []kinds.FieldError{{Field: prefix + ".kind", Message: `unknown kind "nope"`}, {Field: prefix + ".queue", Message: "no queue"}}
		}
		return []kinds.FieldError{
			{Field: prefix + ".args.items[1].qty", Message: "minimum: got 0, want 1"},
			{Field: prefix + ".args.items[0].qty", Message: "is required"},
			{Field: prefix + ".args.dotted.key", Message: "is not allowed"},
			{Field: prefix + ".args", Message: "too big"},
		}
	})
	require.Equal(t, []string{"schedules[0]", "schedules[1]"}, prefixes)
	require.EqualError(t, err, strings.Join([]string{
		`taskd.yaml:6: schedules[0].args.dotted.key: is not allowed`, // no such key: the args mapping, whose first key is on line 6
		`taskd.yaml:6: schedules[0].args: too big`,
		`taskd.yaml:7: schedules[0].args.items[0].qty: is required`, // missing: its item
		`taskd.yaml:8: schedules[0].args.items[1].qty: minimum: got 0, want 1`,
		`taskd.yaml:9: schedules[1].kind: unknown kind "nope"`,
		`taskd.yaml:9: schedules[1].queue: no queue`, // not in the file: the schedule
	}, "\n"))

	require.NoError(t, f.CheckSchedules(func(*client.TaskRequest, string) []kinds.FieldError { return nil }))
}

func TestRedactedSchedules(t *testing.T) {
	t.Parallel()
	f, err := parse(t, scheduleConfig, map[string]string{"WHO": "ops"})
	require.NoError(t, err)
	out, err := f.Redacted()
	require.NoError(t, err)
	var back struct {
		Schedules []struct {
			Name        string         `yaml:"name"`
			Cron        string         `yaml:"cron"`
			Every       string         `yaml:"every"`
			Kind        string         `yaml:"kind"`
			Args        map[string]any `yaml:"args"`
			Queue       string         `yaml:"queue"`
			Priority    int            `yaml:"priority"`
			MaxAttempts int            `yaml:"max_attempts"`
			Tags        []string       `yaml:"tags"`
		} `yaml:"schedules"`
	}
	require.NoError(t, yaml.Unmarshal(out, &back), string(out))
	require.Len(t, back.Schedules, 2, string(out))
	nightly, beat := back.Schedules[0], back.Schedules[1]
	require.Equal(t, "nightly-report", nightly.Name)
	require.Equal(t, "0 3 * * *", nightly.Cron)
	require.Empty(t, nightly.Every)
	require.Equal(t, 21, nightly.Args["value"])
	require.Equal(t, "reports", nightly.Queue)
	require.Equal(t, 2, nightly.Priority)
	require.Equal(t, 3, nightly.MaxAttempts)
	require.Equal(t, []string{"nightly", "reports"}, nightly.Tags)
	require.Equal(t, "1m30s", beat.Every)
	require.Empty(t, beat.Cron)
	require.Nil(t, beat.Args)
}
