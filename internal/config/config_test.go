package config

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/taskd/taskd/internal/backoff"
	"github.com/taskd/taskd/internal/kinds"
	"github.com/taskd/taskd/internal/kinds/builtin"
	"github.com/taskd/taskd/internal/limits"
	"github.com/taskd/taskd/internal/strictjson"
)

// testSecret is a valid Standard Webhooks secret of 32 bytes.
var (
	testSecretBytes = bytes.Repeat([]byte{7}, 32)
	testSecret      = "whsec_" + base64.StdEncoding.EncodeToString(testSecretBytes)
)

const example = `queues: {default: 100, cpu: 2}
allow_private: ["127.0.0.1/32"]
kinds:
  - {name: resize, run: http, url: "http://127.0.0.1:9000/resize", secret: "${RESIZE_SECRET}", timeout: 30s, max_attempts: 5}
  - {name: transcode, run: external, queue: media, timeout: 10m, args_schema: {type: object, required: [path], properties: {path: {type: string}}}}
`

func env(vars map[string]string) func(string) string {
	return func(name string) string { return vars[name] }
}

func parse(t *testing.T, src string, vars map[string]string) (*File, error) {
	t.Helper()
	return Parse("taskd.yaml", []byte(src), t.TempDir(), env(vars))
}

func TestParseExample(t *testing.T) {
	t.Parallel()
	f, err := parse(t, example, map[string]string{"RESIZE_SECRET": testSecret})
	require.NoError(t, err)
	require.Equal(t, "taskd.yaml", f.Path)
	require.Equal(t, map[string]int{"default": 100, "cpu": 2}, f.Queues)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, f.AllowPrivate)
	require.Len(t, f.Kinds, 2)

	resize := f.Kinds[0]
	require.Equal(t, "resize", resize.Name)
	require.Equal(t, kinds.RunHTTP, resize.Run)
	require.Equal(t, "default", resize.Queue)
	require.Equal(t, 5, resize.MaxAttempts)
	require.Equal(t, 30*time.Second, resize.Timeout)
	require.True(t, resize.Declared)
	require.Nil(t, resize.ArgsSchema)
	require.NotNil(t, resize.Push)
	require.Equal(t, "http://127.0.0.1:9000/resize", resize.Push.URL.String())
	require.Equal(t, testSecretBytes, resize.Push.Secret)
	require.Equal(t, 30*time.Second, resize.Push.Timeout)
	require.Equal(t, f.AllowPrivate, resize.Push.AllowPrivate)

	transcode := f.Kinds[1]
	require.Equal(t, "transcode", transcode.Name)
	require.Equal(t, kinds.RunExternal, transcode.Run)
	require.Equal(t, "media", transcode.Queue)
	require.Equal(t, 10*time.Minute, transcode.Timeout)
	require.Nil(t, transcode.Push)
	// Keys in the file's order.
	require.JSONEq(t, `{"type":"object","required":["path"],"properties":{"path":{"type":"string"}}}`, string(transcode.ArgsSchema))
	require.True(t, strings.HasPrefix(string(transcode.ArgsSchema), `{"type":"object","required"`), string(transcode.ArgsSchema))

	// The declared kinds sit next to the built-in ones in one registry.
	_, err = kinds.NewRegistry(append(builtin.Kinds(), f.Kinds...)...)
	require.NoError(t, err)
}

func TestParseDefaults(t *testing.T) {
	t.Parallel()
	f, err := parse(t, `kinds:
  - name: hook
    run: http
    url: https://example.com/hook
    allow_private: [10.0.0.1, "fd00::/8", 192.168.1.7/16]
  - name: pull
    run: external
`, nil)
	require.NoError(t, err)
	require.Nil(t, f.Queues, "no queues key")
	hook, pull := f.Kinds[0], f.Kinds[1]
	require.Equal(t, "default", hook.Queue)
	require.Equal(t, HTTPTimeoutDefault, hook.Timeout)
	require.Zero(t, hook.MaxAttempts)
	require.Nil(t, hook.Push.Secret)
	require.Equal(t, []netip.Prefix{
		netip.MustParsePrefix("10.0.0.1/32"),
		netip.MustParsePrefix("fd00::/8"),
		netip.MustParsePrefix("192.168.0.0/16"),
	}, hook.Push.AllowPrivate)
	require.Equal(t, "default", pull.Queue)
	require.Zero(t, pull.Timeout, "an external kind has no timeout by default")

	// An empty file, or one of comments, is an empty configuration.
	for _, src := range []string{"", "# nothing yet\n"} {
		f, err := parse(t, src, nil)
		require.NoError(t, err)
		require.Nil(t, f.Queues)
		require.Empty(t, f.Kinds)
	}
}

// A kind's backoff sets any of its fields over backoff.Default; a kind
// without one keeps the zero policy, which kinds.Kind reads as the default.
func TestParseBackoff(t *testing.T) {
	t.Parallel()
	f, err := parse(t, `kinds:
  - name: flat
    run: external
    backoff: {initial: 5s, multiplier: 1, jitter: 0}
  - name: capped
    run: http
    url: https://example.com/hook
    backoff:
      max: 10m
      jitter: "${JITTER}"
  - name: plain
    run: external
`, map[string]string{"JITTER": "0.25"})
	require.NoError(t, err)
	require.Equal(t, backoff.Policy{Initial: 5 * time.Second, Max: time.Hour, Multiplier: 1, Jitter: 0}, f.Kinds[0].Backoff)
	require.Equal(t, backoff.Policy{Initial: time.Second, Max: 10 * time.Minute, Multiplier: 2, Jitter: 0.25}, f.Kinds[1].Backoff)
	require.Zero(t, f.Kinds[2].Backoff)
	require.Equal(t, backoff.Default, f.Kinds[2].BackoffPolicy())

	out, err := f.Redacted()
	require.NoError(t, err)
	require.Contains(t, string(out), "backoff:\n      initial: 5s\n      max: 1h\n      multiplier: 1\n      jitter: 0\n")
	require.Equal(t, 1, strings.Count(string(out), "backoff:\n      initial: 1s\n      max: 10m\n"), string(out))
	require.Equal(t, 2, strings.Count(string(out), "backoff:"), "a kind without a backoff shows none")
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	secretEnv := map[string]string{"S": testSecret}
	tests := []struct {
		name string
		src  string
		env  map[string]string
		// want is the first error: "LINE: PATH: " and a part of the message.
		line int
		path string
		msg  string
	}{
		{"unknown top-level key", "queues: {default: 1}\nlimit: {}\n", nil, 2, "limit", "unknown key (known keys: queues, allow_private, kinds, limits, schedules)"},
		{"limits not a list", "limits: {}\n", nil, 1, "limits", "must be a list of limits"},
		{"limit of nothing", "limits:\n  - concurrency: 2\n", nil, 2, "limits[0]", "must name exactly one of kind or queue"},
		{"limit of both", "limits:\n  - {kind: sleep, queue: cpu, concurrency: 2}\n", nil, 2, "limits[0]", "must name exactly one of kind or queue"},
		{"limit of unknown kind", "limits:\n  - kind: resize\n    concurrency: 2\n", nil, 2, "limits[0].kind", `unknown kind "resize"`},
		{"limit of bad queue", "limits:\n  - queue: Media\n    concurrency: 2\n", nil, 2, "limits[0].queue", `"Media" is not a queue name`},
		{"limit without a limit", "limits:\n  - kind: sleep\n", nil, 2, "limits[0]", "sets no limit"},
		{"limit concurrency zero", "limits:\n  - {kind: sleep, concurrency: 0}\n", nil, 2, "limits[0].concurrency", "must be an integer between 1 and 100000"},
		{"limit key not args", "limits:\n  - kind: sleep\n    concurrency_key: customer_id\n    concurrency_per_key: 1\n", nil, 3, "limits[0].concurrency_key", `must name a field of the args`},
		{"limit key empty part", "limits:\n  - kind: sleep\n    concurrency_key: args.a..b\n    rate: 1/s\n", nil, 3, "limits[0].concurrency_key", "empty parts"},
		{"limit per key without key", "limits:\n  - kind: sleep\n    concurrency_per_key: 1\n", nil, 3, "limits[0].concurrency_per_key", "needs concurrency_key"},
		{"limit key alone", "limits:\n  - kind: sleep\n    concurrency: 3\n    concurrency_key: args.ms\n", nil, 4, "limits[0].concurrency_key", "needs concurrency_per_key or rate"},
		{"limit bad rate", "limits:\n  - {kind: sleep, rate: 10/d}\n", nil, 2, "limits[0].rate", "the unit must be s, m or h"},
		{"limit rate zero", "limits:\n  - {kind: sleep, rate: 0/s}\n", nil, 2, "limits[0].rate", "the count must be an integer between 1"},
		{"limit rate no slash", "limits:\n  - {kind: sleep, rate: fast}\n", nil, 2, "limits[0].rate", "must be a count per unit"},
		{"limit twice", "limits:\n  - {kind: sleep, concurrency: 2}\n  - {kind: sleep, rate: 2/s}\n", nil, 3, "limits[1]", "a second limit for kind sleep (the first is at line 2)"},
		{"limit unknown key", "limits:\n  - {kind: sleep, concurrency: 2, burst: 3}\n", nil, 2, "limits[0].burst", "unknown key"},
		{"repeated top-level key", "kinds: []\nkinds: []\n", nil, 2, "kinds", "repeated key (first at line 1)"},
		{"not a mapping", "- a\n", nil, 1, "", "must be a mapping"},
		{"yaml syntax", "queues: {default: 1\n", nil, 1, "", "did not find expected"},
		{"unknown kind key", "kinds:\n  - name: a1\n    run: external\n    retries: 3\n", nil, 4, "kinds[0].retries", "unknown key"},
		{"bad queue name", "queues:\n  default: 1\n  Media: 2\n", nil, 3, "queues.Media", `invalid queue name "Media"`},
		{"long queue name", "queues:\n  " + strings.Repeat("q", 65) + ": 2\n", nil, 2, "queues." + strings.Repeat("q", 65), "invalid queue name"},
		{"workers too many", "queues:\n  default: 10001\n", nil, 2, "queues.default", "must be an integer between 1 and 10000"},
		{"workers zero", "queues: {default: 0}\n", nil, 1, "queues.default", "must be an integer between 1 and 10000"},
		{"workers not int", "queues: {default: many}\n", nil, 1, "queues.default", "must be an integer"},
		{"no queues", "queues: {}\n", nil, 1, "queues", "at least one queue"},
		{"bad cidr", "allow_private:\n  - 127.0.0.1/32\n  - 10.0.0.0/33\n", nil, 3, "allow_private[1]", `"10.0.0.0/33" is not a CIDR prefix`},
		{"bad address", "allow_private: [localhost]\n", nil, 1, "allow_private[0]", "is not a CIDR prefix"},
		{"kind bad cidr", "kinds:\n  - {name: h1, run: http, url: 'https://x.example', allow_private: [nope]}\n", nil, 2, "kinds[0].allow_private[0]", "is not a CIDR prefix"},
		{"duplicate kind", "kinds:\n  - {name: a1, run: external}\n  - {name: a1, run: external}\n", nil, 3, "kinds[1].name", `kind "a1" is declared twice (first at line 2)`},
		{"built-in name", "kinds:\n  - {name: double, run: external}\n", nil, 2, "kinds[0].name", `"double" is a built-in kind`},
		{"bad kind name", "kinds:\n  - {name: 'has space', run: external}\n", nil, 2, "kinds[0].name", "invalid kind name"},
		{"one-letter kind name", "kinds:\n  - {name: a, run: external}\n", nil, 2, "kinds[0].name", "invalid kind name"},
		// river_job's kind_length constraint refuses 128 characters.
		{"128-character kind name", "kinds:\n  - {name: a" + strings.Repeat("b", 127) + ", run: external}\n", nil, 2, "kinds[0].name", "2 to 127 characters"},
		{"name missing", "kinds:\n  - {run: external}\n", nil, 2, "kinds[0].name", "is required"},
		{"run missing", "kinds:\n  - name: a1\n    queue: q\n", nil, 2, "kinds[0].run", "is required"},
		{"run invalid", "kinds:\n  - name: a1\n    run: grpc\n", nil, 3, "kinds[0].run", `must be http or external, not "grpc"`},
		{"run go", "kinds:\n  - name: a1\n    run: go\n", nil, 3, "kinds[0].run", "only taskd's built-in kinds run in Go"},
		{"http without url", "kinds:\n  - name: h1\n    run: http\n", nil, 2, "kinds[0].url", "is required for an http kind"},
		{"bad url scheme", "kinds:\n  - name: h1\n    run: http\n    url: ftp://example.com/x\n", nil, 4, "kinds[0].url", "must be an http or https URL with a host"},
		{"url without host", "kinds:\n  - {name: h1, run: http, url: 'https:///path'}\n", nil, 2, "kinds[0].url", "with a host"},
		{"bad secret prefix", "kinds:\n  - name: h1\n    run: http\n    url: https://example.com\n    secret: hunter2\n", nil, 5, "kinds[0].secret", `secret must start with "whsec_"`},
		{"short secret", "kinds:\n  - {name: h1, run: http, url: 'https://example.com', secret: whsec_AAAA}\n", nil, 2, "kinds[0].secret", "decodes to 3 bytes, must be 24 to 64"},
		{"reserved header", "kinds:\n  - name: h1\n    run: http\n    url: https://example.com\n    headers:\n      Authorization: Bearer x\n      webhook-id: x\n", nil, 7, "kinds[0].headers.webhook-id", "cannot be configured"},
		{"repeated header", "kinds:\n  - name: h1\n    run: http\n    url: https://example.com\n    headers:\n      X-A: a\n      x-a: b\n", nil, 7, "kinds[0].headers.x-a", "repeated key (first at line 6)"},
		{"http field on external", "kinds:\n  - name: e1\n    run: external\n    url: https://example.com\n", nil, 4, "kinds[0].url", "only an http kind has url"},
		{"secret on external", "kinds:\n  - name: e1\n    run: external\n    secret: ${S}\n", secretEnv, 4, "kinds[0].secret", "only an http kind has secret"},
		{"http timeout too long", "kinds:\n  - name: h1\n    run: http\n    url: https://example.com\n    timeout: 31m\n", nil, 5, "kinds[0].timeout", "must be between 1s and 30m for an http kind"},
		{"http timeout too short", "kinds:\n  - {name: h1, run: http, url: 'https://example.com', timeout: 500ms}\n", nil, 2, "kinds[0].timeout", "must be between 1s and 30m"},
		{"external timeout too short", "kinds:\n  - name: e1\n    run: external\n    timeout: 2s\n", nil, 4, "kinds[0].timeout", "must be between 5s and 1h for an external kind"},
		{"external timeout too long", "kinds:\n  - {name: e1, run: external, timeout: 2h}\n", nil, 2, "kinds[0].timeout", "must be between 5s and 1h"},
		{"bad duration", "kinds:\n  - name: e1\n    run: external\n    timeout: 30\n", nil, 4, "kinds[0].timeout", `must be a duration such as 30s or 10m, not "30"`},
		{"max_attempts", "kinds:\n  - {name: e1, run: external, max_attempts: 1001}\n", nil, 2, "kinds[0].max_attempts", "between 1 and 1000"},
		{"backoff not a mapping", "kinds:\n  - {name: e1, run: external, backoff: 1s}\n", nil, 2, "kinds[0].backoff", "must be a mapping of initial, max, multiplier, jitter"},
		{"backoff unknown key", "kinds:\n  - name: e1\n    run: external\n    backoff:\n      factor: 2\n", nil, 5, "kinds[0].backoff.factor", "unknown key"},
		{"backoff initial too short", "kinds:\n  - name: e1\n    run: external\n    backoff:\n      initial: 10ms\n", nil, 5, "kinds[0].backoff.initial", "must be between 100ms and 168h"},
		{"backoff max too long", "kinds:\n  - {name: e1, run: external, backoff: {max: 200h}}\n", nil, 2, "kinds[0].backoff.max", "must be between 100ms and 168h"},
		{"backoff multiplier", "kinds:\n  - name: e1\n    run: external\n    backoff:\n      multiplier: 11\n", nil, 5, "kinds[0].backoff.multiplier", "must be a number between 1 and 10"},
		{"backoff multiplier not a number", "kinds:\n  - {name: e1, run: external, backoff: {multiplier: twice}}\n", nil, 2, "kinds[0].backoff.multiplier", "must be a number"},
		{"backoff jitter nan", "kinds:\n  - {name: e1, run: external, backoff: {jitter: .nan}}\n", nil, 2, "kinds[0].backoff.jitter", "must be a number between 0 and 1"},
		{"backoff initial past max", "kinds:\n  - name: e1\n    run: external\n    backoff:\n      max: 1m\n      initial: 2m\n", nil, 6, "kinds[0].backoff.initial", "must be at most max (1m)"},
		{"backoff max below default initial", "kinds:\n  - {name: h1, run: http, url: 'https://example.com', backoff: {max: 500ms}}\n", nil, 2, "kinds[0].backoff.max", "must be at least initial (1s)"},
		{"description too long", "kinds:\n  - {name: e1, run: external, description: " + strings.Repeat("x", 1001) + "}\n", nil, 2, "kinds[0].description", "at most 1000 characters"},
		{"both schemas", "kinds:\n  - name: e1\n    run: external\n    args_schema: {type: object}\n    args_schema_file: args.json\n", nil, 5, "kinds[0].args_schema_file", "give args_schema or args_schema_file, not both"},
		{"missing schema file", "kinds:\n  - name: e1\n    run: external\n    args_schema_file: nope.json\n", nil, 4, "kinds[0].args_schema_file", "cannot read"},
		{"schema not a mapping", "kinds:\n  - {name: e1, run: external, args_schema: [1]}\n", nil, 2, "kinds[0].args_schema", "must be a mapping"},
		{"schema fails to compile", "kinds:\n  - name: e1\n    run: external\n    args_schema:\n      type: objekt\n", nil, 4, "kinds[0].args_schema", "is not a valid JSON Schema: at /type"},
		{"schema bad regex", "kinds:\n  - name: e1\n    run: external\n    args_schema: {type: string, pattern: '(('}\n", nil, 4, "kinds[0].args_schema", "is not a valid JSON Schema"},
		{"schema remote ref", "kinds:\n  - name: e1\n    run: external\n    result_schema: {$ref: 'https://example.com/s.json'}\n", nil, 4, "kinds[0].result_schema", "taskd loads no schema documents"},
		{"unset env var", "kinds:\n  - name: h1\n    run: http\n    url: https://example.com\n    secret: ${RESIZE_SECRET}\n", nil, 5, "kinds[0].secret", "environment variable RESIZE_SECRET is not set"},
		{"unset env in header", "kinds:\n  - name: h1\n    run: http\n    url: https://example.com\n    headers: {Authorization: 'Bearer ${TOKEN}'}\n", nil, 5, "kinds[0].headers.Authorization", "environment variable TOKEN is not set"},
		{"bad env name", "queues: {default: '${1N}'}\n", nil, 1, "queues.default", "invalid environment variable reference ${1N}"},
		{"unterminated env", "kinds:\n  - {name: e1, run: external, description: 'a ${B'}\n", nil, 2, "kinds[0].description", "unterminated ${"},
		{"http kind on unconfigured queue", "queues: {default: 1}\nkinds:\n  - name: h1\n    run: http\n    url: https://example.com\n    queue: media\n", nil, 6, "kinds[0].queue", `queue "media" is not configured`},
		{"http kind without queues key", "kinds:\n  - {name: h1, run: http, url: 'https://example.com', queue: media}\n", nil, 2, "kinds[0].queue", "without a queues key only default and cpu are worked"},
		{"http kind on unconfigured default", "queues: {cpu: 1}\nkinds:\n  - {name: h1, run: http, url: 'https://example.com'}\n", nil, 3, "kinds[0].queue", `queue "default" is not configured`},
		{"kind bad queue name", "kinds:\n  - {name: e1, run: external, queue: Media}\n", nil, 2, "kinds[0].queue", "invalid queue name"},
		{"kinds not a list", "kinds: {a: 1}\n", nil, 1, "kinds", "must be a list"},
		{"two documents", "kinds: []\n---\nkinds: []\n", nil, 2, "", "more than one YAML document"},
		{"schedules not a list", "schedules: {a: 1}\n", nil, 1, "schedules", "must be a list of schedules"},
		{"schedule not a mapping", "schedules: [nightly]\n", nil, 1, "schedules[0]", "must be a mapping of name, cron, every"},
		{"schedule unknown key", "schedules:\n  - {name: a1, every: 1s, kind: double, delay: 5s}\n", nil, 2, "schedules[0].delay", "unknown key (known keys: name, cron, every, kind, args, queue, priority, max_attempts, tags)"},
		{"schedule name missing", "schedules:\n  - {every: 1s, kind: double}\n", nil, 2, "schedules[0].name", "is required"},
		{"schedule bad name", "schedules:\n  - {name: Nightly, every: 1s, kind: double}\n", nil, 2, "schedules[0].name", `invalid schedule name "Nightly": a schedule name follows River's rule for queue names`},
		{"schedule twice", "schedules:\n  - {name: a1, every: 1s, kind: double}\n  - {name: a1, every: 2s, kind: double}\n", nil, 3, "schedules[1].name", `schedule "a1" is declared twice (first at line 2)`},
		{"neither cron nor every", "schedules:\n  - name: a1\n    kind: double\n", nil, 2, "schedules[0]", "needs cron (a cron expression, such as \"*/5 * * * *\") or every"},
		{"cron and every", "schedules:\n  - name: a1\n    cron: '* * * * *'\n    every: 1m\n    kind: double\n", nil, 4, "schedules[0].every", "give cron or every, not both"},
		{"bad cron", "schedules:\n  - name: a1\n    kind: double\n    cron: '* * *'\n", nil, 4, "schedules[0].cron", `invalid cron expression "* * *": expected exactly 5 fields, found 3`},
		{"cron out of range", "schedules:\n  - {name: a1, kind: double, cron: '0 24 * * *'}\n", nil, 2, "schedules[0].cron", "above maximum (23)"},
		{"cron @every", "schedules:\n  - {name: a1, kind: double, cron: '@every 5m'}\n", nil, 2, "schedules[0].cron", "give the interval as every (every: 30s)"},
		{"cron never fires", "schedules:\n  - {name: a1, kind: double, cron: '0 0 31 4 *'}\n", nil, 2, "schedules[0].cron", "never fires"},
		{"cron not a string", "schedules:\n  - {name: a1, kind: double, cron: [1]}\n", nil, 2, "schedules[0].cron", "must be a string"},
		{"every too short", "schedules:\n  - {name: a1, kind: double, every: 500ms}\n", nil, 2, "schedules[0].every", "must be between 1s and 8784h"},
		{"every too long", "schedules:\n  - {name: a1, kind: double, every: 9000h}\n", nil, 2, "schedules[0].every", "must be between 1s and 8784h"},
		{"every not a duration", "schedules:\n  - {name: a1, kind: double, every: 30}\n", nil, 2, "schedules[0].every", `must be a duration such as 30s or 10m, not "30"`},
		{"every below a millisecond", "schedules:\n  - {name: a1, kind: double, every: 1.0005s}\n", nil, 2, "schedules[0].every", "must be a whole number of milliseconds"},
		{"schedule kind missing", "schedules:\n  - name: a1\n    every: 1m\n", nil, 2, "schedules[0].kind", "is required"},
		{"schedule priority not an integer", "schedules:\n  - name: a1\n    every: 1m\n    kind: double\n    priority: high\n", nil, 5, "schedules[0].priority", "must be an integer"},
		{"schedule max_attempts not an integer", "schedules:\n  - {name: a1, every: 1m, kind: double, max_attempts: 2.5}\n", nil, 2, "schedules[0].max_attempts", "must be an integer"},
		{"schedule tags not a list", "schedules:\n  - {name: a1, every: 1m, kind: double, tags: nightly}\n", nil, 2, "schedules[0].tags", "must be a list of strings"},
		{"schedule tag not a string", "schedules:\n  - {name: a1, every: 1m, kind: double, tags: [[a]]}\n", nil, 2, "schedules[0].tags[0]", "must be a string"},
		{"schedule args key not a string", "schedules:\n  - name: a1\n    every: 1m\n    kind: double\n    args:\n      [1]: 2\n", nil, 6, "schedules[0].args", "a key must be a string"},
		{"schedule env unset", "schedules:\n  - {name: a1, every: '${EVERY}', kind: double}\n", nil, 2, "schedules[0].every", "environment variable EVERY is not set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := parse(t, tt.src, tt.env)
			require.Error(t, err)
			var cerr *Error
			require.True(t, errors.As(err, &cerr), "%T %v", err, err)
			require.Equal(t, "taskd.yaml", cerr.File, err.Error())
			require.Equal(t, tt.line, cerr.Line, err.Error())
			require.Equal(t, tt.path, cerr.Path, err.Error())
			require.Contains(t, cerr.Message, tt.msg)
			prefix := "taskd.yaml:" + strconv.Itoa(tt.line) + ": "
			if tt.path != "" {
				prefix += tt.path + ": "
			}
			require.True(t, strings.HasPrefix(err.Error(), prefix), "%q does not start with %q", err.Error(), prefix)
		})
	}
}

func TestParseErrorsJoined(t *testing.T) {
	t.Parallel()
	// Problems come all at once, in the file's order, though kinds are
	// checked after queues whatever the order of the keys.
	_, err := parse(t, `kinds:
  - {name: e1, run: grpc}
queues: {Bad: 1}
`, nil)
	require.EqualError(t, err, `taskd.yaml:2: kinds[0].run: must be http or external, not "grpc"
taskd.yaml:3: queues.Bad: invalid queue name "Bad": `+queueNameRule)

	// Past MaxErrors, the rest are counted.
	var src strings.Builder
	src.WriteString("kinds:\n")
	for i := range MaxErrors + 5 {
		fmt.Fprintf(&src, "  - {name: e%d, run: go}\n", i)
	}
	_, err = parse(t, src.String(), nil)
	lines := strings.Split(err.Error(), "\n")
	require.Len(t, lines, MaxErrors+1)
	require.Equal(t, "taskd.yaml: 5 more problems not shown", lines[MaxErrors])
}

func TestExpand(t *testing.T) {
	t.Parallel()
	getenv := env(map[string]string{"A": "x", "N": "7"})
	for in, want := range map[string]string{
		"${A}":          "x",
		"a${A}b${N}":    "axb7",
		"$${A}":         "${A}",
		"pa$$word":      "pa$$word",
		"$x $ {A}":      "$x $ {A}",
		"$$${A}":        "$${A}",
		"${A}$${N}${N}": "x${N}7",
	} {
		got, err := expand(in, getenv)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for in, msg := range map[string]string{
		"${B}":   "environment variable B is not set",
		"${A":    "unterminated ${",
		"${}":    "invalid environment variable reference ${}",
		"${A-B}": "invalid environment variable reference ${A-B}",
	} {
		_, err := expand(in, getenv)
		require.ErrorContains(t, err, msg, in)
	}
}

func TestParseExpandsBeforeConversion(t *testing.T) {
	t.Parallel()
	f, err := parse(t, `queues:
  default: ${N}
  cpu: "${N}"
kinds:
  - {name: e1, run: external, max_attempts: "${N}", description: "${N} tries, $${literal}"}
  - name: h1
    run: http
    url: ${URL}/hook
    headers:
      Authorization: Bearer ${TOKEN}
    args_schema:
      type: object
      properties:
        n: {description: "${N}"}
        m:
          maximum: ${N}
`, map[string]string{"N": "7", "URL": "https://example.com", "TOKEN": "t0k"})
	require.NoError(t, err)
	require.Equal(t, map[string]int{"default": 7, "cpu": 7}, f.Queues)
	require.Equal(t, 7, f.Kinds[0].MaxAttempts)
	require.Equal(t, "7 tries, ${literal}", f.Kinds[0].Description)
	require.Equal(t, "https://example.com/hook", f.Kinds[1].Push.URL.String())
	require.Equal(t, map[string]string{"Authorization": "Bearer t0k"}, f.Kinds[1].Push.Headers)
	// A plain reference is typed by what it holds; a quoted one is a
	// string, as in YAML.
	require.Equal(t, `{"type":"object","properties":{"n":{"description":"7"},"m":{"maximum":7}}}`, string(f.Kinds[1].ArgsSchema))
}

const decodeConfig = `kinds:
  - name: order
    run: external
    args_schema:
      type: object
      additionalProperties: false
      required: [path, items]
      properties:
        path: {type: string, minLength: 1}
        id: {type: integer}
        items:
          type: array
          items:
            type: object
            required: [name]
            properties:
              name: {type: string}
              n: {type: integer, minimum: 1}
  - name: anything
    run: external
`

func TestDecode(t *testing.T) {
	t.Parallel()
	f, err := parse(t, decodeConfig, nil)
	require.NoError(t, err)
	order, anything := f.Kinds[0], f.Kinds[1]

	decode := func(k kinds.Kind, raw string) (any, []kinds.FieldError) {
		errs := &kinds.Errors{Prefix: "args"}
		var in json.RawMessage
		if raw != "" {
			in = json.RawMessage(raw)
		}
		args := k.Decode(in, errs)
		return args, errs.List
	}

	args, fes := decode(order, `{"path": "a", "id": 12345678901234567890123, "items": [ {"name": "x", "n": 2} ]}`)
	require.Empty(t, fes)
	require.Equal(t, kinds.RawArgs{KindName: "order", Raw: json.RawMessage(`{"path":"a","id":12345678901234567890123,"items":[{"name":"x","n":2}]}`)}, args)
	require.Equal(t, "order", args.(kinds.RawArgs).Kind())

	args, fes = decode(order, `{"path": "", "extra": true, "items": [{"name": "a"}, {"name": 1, "n": 0}, {}]}`)
	require.Nil(t, args)
	require.Equal(t, []kinds.FieldError{
		{Field: "args.extra", Message: "is not allowed"},
		{Field: "args.items[1].n", Message: "minimum: got 0, want 1"},
		{Field: "args.items[1].name", Message: "got number, want string"},
		{Field: "args.items[2].name", Message: "is required"},
		{Field: "args.path", Message: "minLength: got 0, want 1"},
	}, fes)

	// Missing or null args are an empty object, whose required properties
	// are named.
	for _, raw := range []string{"", "null"} {
		args, fes = decode(order, raw)
		require.Nil(t, args)
		require.Equal(t, []kinds.FieldError{
			{Field: "args.items", Message: "is required"},
			{Field: "args.path", Message: "is required"},
		}, fes, raw)
	}
	_, fes = decode(order, `[1]`)
	require.Equal(t, []kinds.FieldError{{Field: "args", Message: "got array, want object"}}, fes)
	_, fes = decode(order, `{"path": "a", "items": 3}`)
	require.Equal(t, []kinds.FieldError{{Field: "args.items", Message: "got number, want array"}}, fes)

	// A kind without a schema takes any JSON.
	args, fes = decode(anything, `[1, {"a": null}]`)
	require.Empty(t, fes)
	require.Equal(t, kinds.RawArgs{KindName: "anything", Raw: json.RawMessage(`[1,{"a":null}]`)}, args)
	args, fes = decode(anything, "")
	require.Empty(t, fes)
	require.Equal(t, kinds.RawArgs{KindName: "anything", Raw: json.RawMessage(`{}`)}, args)
}

func TestDecodeFormatAsserted(t *testing.T) {
	t.Parallel()
	f, err := parse(t, "kinds:\n  - {name: mail, run: external, args_schema: {properties: {to: {format: email}}}}\n", nil)
	require.NoError(t, err)
	errs := &kinds.Errors{Prefix: "args"}
	require.Nil(t, f.Kinds[0].Decode(json.RawMessage(`{"to": "not an address"}`), errs))
	require.Len(t, errs.List, 1)
	require.Equal(t, "args.to", errs.List[0].Field)
}

// TestDecodeClipsQuotedValues: a schema's message may quote the refused
// value; a problem quotes at most strictjson.ClipLength characters of it
// (a 900,000-character path came back whole).
func TestDecodeClipsQuotedValues(t *testing.T) {
	t.Parallel()
	f, err := parse(t, "kinds:\n  - {name: media, run: external, args_schema: {properties: {path: {type: string, pattern: '^[a-z]+$'}}}}\n", nil)
	require.NoError(t, err)
	errs := &kinds.Errors{Prefix: "args"}
	require.Nil(t, f.Kinds[0].Decode(json.RawMessage(`{"path": "`+strings.Repeat("A", 10000)+`"}`), errs))
	require.Len(t, errs.List, 1)
	require.Equal(t, "args.path", errs.List[0].Field)
	require.LessOrEqual(t, utf8.RuneCountInString(errs.List[0].Message), strictjson.ClipLength+1)
}

func TestLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600))
	}
	write("schemas/args.json", `{"type": "object", "required": ["path"],
  "properties": {"path": {"type": "string", "pattern": "^<a>&"}}}`)
	write("schemas/result.yaml", "type: object\nproperties:\n  size: {type: integer}\n")
	write("taskd.yaml", `kinds:
  - name: transcode
    run: external
    args_schema_file: schemas/args.json
    result_schema_file: schemas/result.yaml
`)
	path := filepath.Join(dir, "taskd.yaml")
	f, err := Load(path, env(nil))
	require.NoError(t, err)
	require.Equal(t, path, f.Path)
	require.Equal(t, `{"type":"object","required":["path"],"properties":{"path":{"type":"string","pattern":"^<a>&"}}}`, string(f.Kinds[0].ArgsSchema))
	require.Equal(t, `{"type":"object","properties":{"size":{"type":"integer"}}}`, string(f.Kinds[0].ResultSchema))
	errs := &kinds.Errors{Prefix: "args"}
	require.Nil(t, f.Kinds[0].Decode(json.RawMessage(`{}`), errs))
	require.Equal(t, []kinds.FieldError{{Field: "args.path", Message: "is required"}}, errs.List)

	// A schema file's own problems name its own lines.
	write("schemas/bad.yaml", "type: object\ntype: string\n")
	write("bad.yaml", "kinds:\n  - {name: a1, run: external, args_schema_file: schemas/bad.yaml}\n")
	_, err = Load(filepath.Join(dir, "bad.yaml"), env(nil))
	require.ErrorContains(t, err, "bad.yaml:2: kinds[0].args_schema_file: "+filepath.Join(dir, "schemas/bad.yaml")+":2: repeated key \"type\"")

	_, err = Load(filepath.Join(dir, "missing.yaml"), env(nil))
	var cerr *Error
	require.True(t, errors.As(err, &cerr))
	require.Equal(t, filepath.Join(dir, "missing.yaml"), cerr.File)
	require.ErrorIs(t, err, fs.ErrNotExist)
}

func TestRedacted(t *testing.T) {
	t.Parallel()
	f, err := parse(t, `allow_private: [127.0.0.1]
kinds:
  - name: resize
    run: http
    url: https://user:pa55@example.com/resize
    secret: ${S}
    headers: {Authorization: "Bearer ${TOKEN}", X-Tenant: acme}
    allow_private: [10.0.0.0/8]
    args_schema: {type: object, properties: {path: {type: string}}}
  - name: transcode
    run: external
    description: Transcodes.
`, map[string]string{"S": testSecret, "TOKEN": "s3cr3t-token"})
	require.NoError(t, err)
	out, err := f.Redacted()
	require.NoError(t, err)
	text := string(out)
	for _, secret := range []string{testSecret, "s3cr3t-token", "acme", "pa55"} {
		require.NotContains(t, text, secret)
	}
	var back struct {
		AllowPrivate []string `yaml:"allow_private"`
		Kinds        []struct {
			Name         string            `yaml:"name"`
			Queue        string            `yaml:"queue"`
			Timeout      string            `yaml:"timeout"`
			URL          string            `yaml:"url"`
			Secret       string            `yaml:"secret"`
			Headers      map[string]string `yaml:"headers"`
			AllowPrivate []string          `yaml:"allow_private"`
			ArgsSchema   map[string]any    `yaml:"args_schema"`
		} `yaml:"kinds"`
	}
	require.NoError(t, yaml.Unmarshal(out, &back), text)
	require.Equal(t, []string{"127.0.0.1/32"}, back.AllowPrivate)
	resize := back.Kinds[0]
	require.Equal(t, "<redacted>", resize.Secret)
	require.Equal(t, map[string]string{"Authorization": "<redacted>", "X-Tenant": "<redacted>"}, resize.Headers)
	require.Equal(t, "https://user:xxxxx@example.com/resize", resize.URL)
	require.Equal(t, "default", resize.Queue)
	require.Equal(t, "30s", resize.Timeout)
	require.Equal(t, []string{"10.0.0.0/8"}, resize.AllowPrivate, "the kind's own list")
	require.Equal(t, "object", resize.ArgsSchema["type"])
	require.Empty(t, back.Kinds[1].Secret)
	require.Empty(t, back.Kinds[1].Timeout)
}

func TestCheckQueues(t *testing.T) {
	t.Parallel()
	f, err := parse(t, `queues: {default: 1, media: 2}
kinds:
  - {name: h1, run: http, url: 'https://example.com'}
  - name: h2
    run: http
    url: https://example.com
    queue: media
  - {name: e1, run: external, queue: elsewhere}
`, nil)
	require.NoError(t, err)
	require.NoError(t, f.CheckQueues(map[string]int{"default": 3, "media": 1}))
	// --queues default=3 drops media, which h2 is sent from; e1's workers
	// are not taskd's.
	err = f.CheckQueues(map[string]int{"default": 3})
	require.EqualError(t, err, `taskd.yaml:7: kinds[1].queue: queue "media" is not worked by this process (its queues: default): an http kind's tasks are sent by taskd's workers`)
	err = f.CheckQueues(map[string]int{"cpu": 3, "media": 1})
	require.ErrorContains(t, err, `taskd.yaml:3: kinds[0].queue: queue "default" is not worked`)
}

func TestParseLimits(t *testing.T) {
	t.Parallel()
	f, err := parse(t, `
kinds:
  - name: resize
    run: external
limits:
  - kind: sleep
    concurrency: 2
  - kind: resize
    concurrency_key: args.customer.id
    concurrency_per_key: 1
    rate: 10/s
  - queue: cpu
    rate: 100/m
`, nil)
	require.NoError(t, err)
	require.Equal(t, []limits.Limit{
		{Kind: "sleep", Concurrency: 2},
		{Kind: "resize", Key: "args.customer.id", PerKey: 1, Rate: 10, Per: time.Second},
		{Queue: "cpu", Rate: 100, Per: time.Minute},
	}, f.Limits)
	out, err := f.Redacted()
	require.NoError(t, err)
	require.Contains(t, string(out), "limits:\n  - kind: sleep\n    concurrency: 2\n  - kind: resize\n    concurrency_key: args.customer.id\n    concurrency_per_key: 1\n    rate: 10/s\n  - queue: cpu\n    rate: 100/m\n")
}
