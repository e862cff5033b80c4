package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/riverqueue/river"

	"github.com/taskd/taskd/internal/config"
	taskhttp "github.com/taskd/taskd/internal/http"
	"github.com/taskd/taskd/internal/jobs"
	"github.com/taskd/taskd/internal/kinds"
	"github.com/taskd/taskd/internal/kinds/builtin"
	"github.com/taskd/taskd/internal/limits"
	"github.com/taskd/taskd/internal/store"
	"github.com/taskd/taskd/internal/tasks"
)

// flagSet wraps flag.FlagSet so that every flag has an environment twin
// whose value becomes the flag's default, and parse errors name both.
type flagSet struct {
	fs     *flag.FlagSet
	getenv func(string) string
	envs   map[string]string // flag name → env name
}

func newFlagSet(name string, getenv func(string) string, out io.Writer) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	return &flagSet{fs: fs, getenv: getenv, envs: map[string]string{}}
}

func (f *flagSet) string(name, env, def, usage string) *string {
	if v := f.getenv(env); v != "" {
		def = v
	}
	f.envs[name] = env
	return f.fs.String(name, def, usage+" ("+env+")")
}

// bool is a string flag that, like a flag.Bool, may be given without a
// value ("--migrate"); parseBool checks its value.
func (f *flagSet) bool(name, env string, def bool, usage string) *string {
	v := strconv.FormatBool(def)
	if e := f.getenv(env); e != "" {
		v = e
	}
	f.envs[name] = env
	b := boolFlag(v)
	f.fs.Var(&b, name, usage+" ("+env+")")
	return (*string)(&b)
}

type boolFlag string

func (b *boolFlag) String() string     { return string(*b) }
func (b *boolFlag) Set(v string) error { *b = boolFlag(v); return nil }
func (b *boolFlag) IsBoolFlag() bool   { return true }

// setting names a flag with its twin for error messages.
func (f *flagSet) setting(name string) string {
	return "--" + name + " (" + f.envs[name] + ")"
}

func (f *flagSet) parse(args []string) error {
	if err := f.fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return &usageError{err: errHelp}
		}
		return &usageError{err: err}
	}
	return nil
}

func (f *flagSet) duration(name, raw string, min time.Duration, allowNegOne bool) (time.Duration, error) {
	d, err := time.ParseDuration(raw)
	if err != nil {
		return 0, usagef("invalid %s %q: want a duration such as 500ms, 30s or 2h", f.setting(name), raw)
	}
	if allowNegOne && d == -1*time.Nanosecond {
		return -1, nil
	}
	if d < min {
		return 0, usagef("invalid %s %q: must be at least %s", f.setting(name), raw, min)
	}
	return d, nil
}

func (f *flagSet) int(name, raw string, min, max int64) (int64, error) {
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || n < min || n > max {
		return 0, usagef("invalid %s %q: want an integer between %d and %d", f.setting(name), raw, min, max)
	}
	return n, nil
}

func (f *flagSet) parseBool(name, raw string) (bool, error) {
	b, err := strconv.ParseBool(raw)
	if err != nil {
		return false, usagef("invalid %s %q: want true or false", f.setting(name), raw)
	}
	return b, nil
}

// role is what a process of `taskd serve`, `taskd api` or `taskd worker`
// does.
type role string

const (
	// roleServe serves the HTTP API and works the queues.
	roleServe role = "serve"
	// roleAPI serves the HTTP API only: an insert-only River client that
	// works no queue and never leads.
	roleAPI role = "api"
	// roleWorker works the queues; its HTTP listener serves health and
	// metrics only.
	roleWorker role = "worker"
)

// serveConfig is the configuration of serve, api and worker.
type serveConfig struct {
	// Role is the command that runs.
	Role role
	// ConfigFile is the configuration file, nil without --config.
	ConfigFile *config.File
	// Kinds are the built-in kinds and the file's.
	Kinds *kinds.Registry
	// Schedules are the file's schedules, checked as submissions to
	// ClusterQueues.
	Schedules []tasks.Schedule
	// ClusterQueues are the cluster's configured queues, sorted: those
	// submissions (and schedules) may go to in every role. They are the
	// file's queues, with those this process works (--queues) added;
	// without a queues key in the file, --queues, or the defaults. An api
	// process works none of them and accepts them all.
	ClusterQueues []string
	// QueueWarning names the http kinds of the file whose queues --queues
	// left out: a process may rightly work only some queues of a cluster,
	// but then other processes must push those kinds' tasks, which is
	// worth a line in the log.
	QueueWarning error
	DatabaseURL  string
	Addr         string
	// Queues are the queues this process works, with their workers; nil
	// for an api process.
	Queues             map[string]int
	FetchCooldown      time.Duration
	FetchPollInterval  time.Duration
	ShutdownGrace      time.Duration
	MaxBodyBytes       int64
	MaxBatchBodyBytes  int64
	MaxBodyInFlight    int64
	TrustedOrigins     []string
	DBMaxConns         int32
	DBTimeout          time.Duration
	LogLevel           string
	PprofAddr          string
	Migrate            bool
	JobTimeout         time.Duration
	CompletedRetention time.Duration
	CancelledRetention time.Duration
	DiscardedRetention time.Duration
	HeartbeatInterval  time.Duration
	RescueAfter        time.Duration
	RecordAttempts     bool
	UI                 bool
	// Insecure lets a process with no API token listen on a non-loopback
	// address, serving everyone without auth.
	Insecure bool
	// TLSCert and TLSKey are the PEM files of the certificate (with its
	// chain) and private key that the listener serves HTTPS with; both
	// empty serves plain HTTP, for loopback or behind a reverse proxy that
	// terminates TLS.
	TLSCert string
	TLSKey  string
}

// jobsConfig is the jobs.Config these settings make, on st.
func (cfg *serveConfig) jobsConfig(st *store.Store) jobs.Config {
	return jobs.Config{
		Store:              st,
		Kinds:              cfg.Kinds,
		Queues:             cfg.Queues,
		InsertOnly:         cfg.Role == roleAPI,
		Limits:             cfg.limitSet(),
		FetchCooldown:      cfg.FetchCooldown,
		FetchPollInterval:  cfg.FetchPollInterval,
		JobTimeout:         cfg.JobTimeout,
		CompletedRetention: cfg.CompletedRetention,
		CancelledRetention: cfg.CancelledRetention,
		DiscardedRetention: cfg.DiscardedRetention,
		HeartbeatInterval:  cfg.HeartbeatInterval,
		RescueAfter:        cfg.RescueAfter,
		DisableAttempts:    !cfg.RecordAttempts,
	}
}

func defaultQueues() string {
	return "default=" + strconv.Itoa(jobs.QueueDefaultWorkers) + ",cpu=" + strconv.Itoa(jobs.CPUWorkersDefault())
}

// Listen addresses by role: a worker's listener serves health and metrics
// only, on another port, so that a worker and an api process may share a
// machine with their defaults.
const (
	addrDefault       = "127.0.0.1:8080"
	workerAddrDefault = "127.0.0.1:8081"
)

// parseServeConfig reads the flags of role and their environment twins.
// Invalid settings give a usage error naming the setting.
func parseServeConfig(r role, args []string, getenv func(string) string, out io.Writer) (*serveConfig, error) {
	name := string(r)
	f := newFlagSet("taskd "+name, getenv, out)
	addrDef, addrUsage := addrDefault, "HTTP listen address"
	queuesUsage := "queues to work and their worker counts, name=n,...; also the queues submissions may go to (with the configuration file's)"
	switch r {
	case roleWorker:
		addrDef, addrUsage = workerAddrDefault, "listen address of /healthz, /readyz and /metrics"
	case roleAPI:
		queuesUsage = "the cluster's queues, name=n,..., that submissions may go to (with the configuration file's); an api process works none"
	}
	f.fs.Usage = func() {
		fmt.Fprintf(out, "Usage: taskd %s [flags]\n\nFlags (each with its environment variable):\n", name)
		f.fs.PrintDefaults()
	}
	var (
		cfgFile    = f.string("config", "TASKD_CONFIG", "", "YAML configuration file: queues and declared kinds (see examples/taskd.yaml); flags override it")
		dbURL      = f.string("database-url", "DATABASE_URL", "", "PostgreSQL connection string (required)")
		addr       = f.string("addr", "TASKD_ADDR", addrDef, addrUsage)
		queues     = f.string("queues", "TASKD_QUEUES", defaultQueues(), queuesUsage)
		cooldown   = f.string("fetch-cooldown", "TASKD_FETCH_COOLDOWN", jobs.FetchCooldownDefault.String(), "minimum time between two fetches of a queue (River FetchCooldown)")
		poll       = f.string("fetch-poll-interval", "TASKD_FETCH_POLL_INTERVAL", jobs.FetchPollIntervalDefault.String(), "how often an idle queue polls when no notification arrives (River FetchPollInterval)")
		grace      = f.string("shutdown-grace", "TASKD_SHUTDOWN_GRACE", "30s", "on SIGTERM, how long running tasks may take to finish before they are cancelled")
		maxBody    = f.string("max-body-bytes", "TASKD_MAX_BODY_BYTES", strconv.Itoa(taskhttp.MaxBodyBytesDefault), "largest POST /v1/tasks body")
		maxBatch   = f.string("max-batch-body-bytes", "TASKD_MAX_BATCH_BODY_BYTES", strconv.Itoa(taskhttp.MaxBatchBodyBytesDefault), "largest POST /v1/batches body")
		inFlight   = f.string("max-body-bytes-in-flight", "TASKD_MAX_BODY_BYTES_IN_FLIGHT", strconv.Itoa(taskhttp.MaxBodyBytesInFlightDefault), "bytes of request bodies handled at once; more are answered 503 (at least --max-batch-body-bytes)")
		origins    = f.string("trusted-origins", "TASKD_TRUSTED_ORIGINS", "", "comma-separated origins (scheme://host[:port]) whose browser pages may send unsafe requests; other cross-origin ones are refused")
		maxConns   = f.string("db-max-conns", "TASKD_DB_MAX_CONNS", "20", "size of the database connection pool")
		dbTimeout  = f.string("db-timeout", "TASKD_DB_TIMEOUT", taskhttp.DatabaseTimeoutDefault.String(), "longest an API request waits for the database (apart from its body upload and ?wait=) before it is answered 503")
		logLevel   = f.string("log-level", "TASKD_LOG_LEVEL", "info", "debug, info, warn or error")
		pprofAddr  = f.string("pprof-addr", "TASKD_PPROF_ADDR", "", "serve net/http/pprof on this address (off when empty)")
		migrate    = f.bool("migrate", "TASKD_MIGRATE", false, "apply pending migrations at start instead of refusing to start")
		jobTimeout = f.string("job-timeout", "TASKD_JOB_TIMEOUT", jobs.JobTimeoutDefault.String(), "longest one attempt may run, for tasks whose kind and submission set no timeout (-1ns: none)")
		completed  = f.string("completed-retention", "TASKD_COMPLETED_RETENTION", jobs.CompletedRetentionDefault.String(), "how long completed tasks are kept (-1ns: forever)")
		cancelled  = f.string("cancelled-retention", "TASKD_CANCELLED_RETENTION", jobs.CancelledRetentionDefault.String(), "how long cancelled tasks are kept (-1ns: forever)")
		discarded  = f.string("discarded-retention", "TASKD_DISCARDED_RETENTION", jobs.DiscardedRetentionDefault.String(), "how long discarded tasks are kept (-1ns: forever)")
		heartbeat  = f.string("heartbeat-interval", "TASKD_HEARTBEAT_INTERVAL", jobs.HeartbeatIntervalDefault.String(), "how often this process marks itself alive")
		rescue     = f.string("rescue-after", "TASKD_RESCUE_AFTER", jobs.RescueAfterDefault.String(), "silence after which a process counts as dead and its running tasks are run again (it stops them itself half a heartbeat earlier)")
		attempts   = f.bool("record-attempts", "TASKD_RECORD_ATTEMPTS", true, "record every attempt in task_attempts (off only to benchmark its cost)")
		ui         = f.bool("ui", "TASKD_UI", true, "serve the River UI under /riverui")
		insecure   = f.bool("insecure", "TASKD_INSECURE", false, "with no API token in the database, listen on a non-loopback address anyway, without auth (a warning at every start)")
		tlsCert    = f.string("tls-cert", "TASKD_TLS_CERT", "", "PEM certificate file (with its chain) to serve HTTPS with; requires --tls-key")
		tlsKey     = f.string("tls-key", "TASKD_TLS_KEY", "", "PEM private key file of --tls-cert")
	)
	if err := f.parse(args); err != nil {
		return nil, err
	}
	if f.fs.NArg() > 0 {
		return nil, usagef("unexpected argument %q", f.fs.Arg(0))
	}
	cfg := &serveConfig{Role: r, DatabaseURL: *dbURL, Addr: *addr, LogLevel: *logLevel, PprofAddr: *pprofAddr,
		TLSCert: *tlsCert, TLSKey: *tlsKey}
	if cfg.DatabaseURL == "" {
		return nil, usagef("%s is required", f.setting("database-url"))
	}
	// One without the other is a mistake, not a request for plain HTTP:
	// serving plain HTTP when the operator meant HTTPS would send tokens
	// in the clear.
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, usagef("%s and %s go together: give both to serve HTTPS, or neither", f.setting("tls-cert"), f.setting("tls-key"))
	}
	if cfg.Addr == "" {
		return nil, usagef("%s must not be empty", f.setting("addr"))
	}
	var err error
	if cfg.ConfigFile, cfg.Kinds, err = loadConfigFile(*cfgFile, getenv); err != nil {
		return nil, err
	}
	// --queues (or TASKD_QUEUES) wins over the file, the file over the
	// defaults.
	queuesSet := getenv("TASKD_QUEUES") != ""
	f.fs.Visit(func(fl *flag.Flag) { queuesSet = queuesSet || fl.Name == "queues" })
	var queueMap map[string]int
	if cfg.ConfigFile != nil && cfg.ConfigFile.Queues != nil && !queuesSet {
		queueMap = cfg.ConfigFile.Queues
	} else if queueMap, err = parseQueues(*queues); err != nil {
		return nil, usagef("invalid %s %q: %v", f.setting("queues"), *queues, err)
	} else if cfg.ConfigFile != nil && r != roleAPI {
		cfg.QueueWarning = cfg.ConfigFile.CheckQueues(queueMap)
	}
	cfg.ClusterQueues = clusterQueues(cfg.ConfigFile, queueMap)
	if r != roleAPI {
		cfg.Queues = queueMap
	}
	if cfg.Schedules, err = fileSchedules(cfg.ConfigFile, cfg.Kinds, cfg.ClusterQueues); err != nil {
		return nil, err
	}
	durations := []struct {
		name   string
		raw    string
		dst    *time.Duration
		min    time.Duration
		negOne bool
	}{
		{"fetch-cooldown", *cooldown, &cfg.FetchCooldown, river.FetchCooldownMin, false},
		{"fetch-poll-interval", *poll, &cfg.FetchPollInterval, river.FetchPollIntervalMin, false},
		{"shutdown-grace", *grace, &cfg.ShutdownGrace, 0, false},
		{"job-timeout", *jobTimeout, &cfg.JobTimeout, time.Second, true},
		{"completed-retention", *completed, &cfg.CompletedRetention, time.Second, true},
		{"cancelled-retention", *cancelled, &cfg.CancelledRetention, time.Second, true},
		{"discarded-retention", *discarded, &cfg.DiscardedRetention, time.Second, true},
		{"heartbeat-interval", *heartbeat, &cfg.HeartbeatInterval, 100 * time.Millisecond, false},
		{"rescue-after", *rescue, &cfg.RescueAfter, time.Second, false},
		{"db-timeout", *dbTimeout, &cfg.DBTimeout, 100 * time.Millisecond, false},
	}
	for _, d := range durations {
		if *d.dst, err = f.duration(d.name, d.raw, d.min, d.negOne); err != nil {
			return nil, err
		}
	}
	// The rules between settings are jobs.Config's; its errors name the
	// field, mapped here to the flag.
	// An api process works no queue, but its --queues are checked as a
	// worker's would be, so that one setting serves every role.
	vcfg := cfg.jobsConfig(nil)
	vcfg.Queues, vcfg.InsertOnly = queueMap, false
	err = vcfg.Validate()
	var cerr *jobs.ConfigError
	flagOf := map[string]string{"Queues": "queues", "FetchCooldown": "fetch-cooldown",
		"FetchPollInterval": "fetch-poll-interval", "RescueAfter": "rescue-after", "HeartbeatInterval": "heartbeat-interval"}
	if errors.As(err, &cerr) && flagOf[cerr.Field] != "" {
		msg := cerr.Message
		for field, flag := range flagOf {
			msg = strings.ReplaceAll(msg, field, f.setting(flag))
		}
		if cerr.Field == "Queues" {
			return nil, usagef("invalid %s %q: %s", f.setting("queues"), *queues, msg)
		}
		return nil, usagef("invalid %s: %s", f.setting(flagOf[cerr.Field]), msg)
	}
	if err != nil {
		return nil, usagef("%v", err)
	}
	if cfg.MaxBodyBytes, err = f.int("max-body-bytes", *maxBody, 1024, 1<<30); err != nil {
		return nil, err
	}
	if cfg.MaxBatchBodyBytes, err = f.int("max-batch-body-bytes", *maxBatch, 1024, 1<<31); err != nil {
		return nil, err
	}
	if cfg.MaxBodyInFlight, err = f.int("max-body-bytes-in-flight", *inFlight, 1024, 1<<40); err != nil {
		return nil, err
	}
	if cfg.MaxBodyInFlight < max(cfg.MaxBatchBodyBytes, cfg.MaxBodyBytes) {
		return nil, usagef("invalid %s: must be at least %s and %s", f.setting("max-body-bytes-in-flight"), f.setting("max-body-bytes"), f.setting("max-batch-body-bytes"))
	}
	for o := range strings.SplitSeq(*origins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			if err := http.NewCrossOriginProtection().AddTrustedOrigin(o); err != nil {
				return nil, usagef("invalid %s %q: %v", f.setting("trusted-origins"), o, err)
			}
			cfg.TrustedOrigins = append(cfg.TrustedOrigins, o)
		}
	}
	n, err := f.int("db-max-conns", *maxConns, 2, 1000)
	if err != nil {
		return nil, err
	}
	cfg.DBMaxConns = int32(n)
	if cfg.Migrate, err = f.parseBool("migrate", *migrate); err != nil {
		return nil, err
	}
	if cfg.RecordAttempts, err = f.parseBool("record-attempts", *attempts); err != nil {
		return nil, err
	}
	if cfg.UI, err = f.parseBool("ui", *ui); err != nil {
		return nil, err
	}
	if cfg.Insecure, err = f.parseBool("insecure", *insecure); err != nil {
		return nil, err
	}
	switch strings.ToLower(cfg.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		return nil, usagef("invalid %s %q: want debug, info, warn or error", f.setting("log-level"), cfg.LogLevel)
	}
	return cfg, nil
}

// parseQueues parses "name=n,name=n".
func parseQueues(s string) (map[string]int, error) {
	queues := map[string]int{}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, count, ok := strings.Cut(item, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return nil, fmt.Errorf("%q is not name=workers", item)
		}
		n, err := strconv.Atoi(strings.TrimSpace(count))
		if err != nil {
			// The range is jobs.Config's rule, checked with the others.
			return nil, fmt.Errorf("queue %q: workers must be an integer", name)
		}
		if !kinds.QueueNameOK(name) {
			return nil, fmt.Errorf("queue %q: a name is up to 64 lowercase letters and digits, separated by single underscores or hyphens (River's rule)", name)
		}
		if _, dup := queues[name]; dup {
			return nil, fmt.Errorf("queue %q given twice", name)
		}
		queues[name] = n
	}
	if len(queues) == 0 {
		return nil, fmt.Errorf("at least one queue is required")
	}
	return queues, nil
}

// queueList formats queues for logs.
func queueList(queues map[string]int) string {
	names := make([]string, 0, len(queues))
	for name, n := range queues {
		names = append(names, name+"="+strconv.Itoa(n))
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}

// loadConfigFile loads the configuration file at path (none when empty)
// and the registry of the built-in kinds with the file's.
func loadConfigFile(path string, getenv func(string) string) (*config.File, *kinds.Registry, error) {
	if path == "" {
		return nil, builtin.Registry(), nil
	}
	file, err := config.Load(path, getenv)
	if err != nil {
		return nil, nil, usagef("%v", err)
	}
	reg, err := kinds.NewRegistry(append(builtin.Kinds(), file.Kinds...)...)
	if err != nil {
		return nil, nil, usagef("%s: %v", path, err)
	}
	return file, reg, nil
}

// clusterQueues are the cluster's configured queues, sorted (see
// serveConfig.ClusterQueues): the file's with queueMap's added, or
// queueMap's without a queues key in the file (or without a file).
func clusterQueues(file *config.File, queueMap map[string]int) []string {
	names := slices.Collect(maps.Keys(queueMap))
	if file != nil && file.Queues != nil {
		for name := range file.Queues {
			if !slices.Contains(names, name) {
				names = append(names, name)
			}
		}
	}
	slices.Sort(names)
	return names
}

// fileSchedules checks the schedules of file (none without a file) as
// submissions of the registry's kinds to the cluster's queues. Errors name
// the file's lines.
func fileSchedules(file *config.File, reg *kinds.Registry, queues []string) ([]tasks.Schedule, error) {
	if file == nil || len(file.Schedules) == 0 {
		return nil, nil
	}
	if err := file.CheckSchedules(tasks.Rules{Kinds: reg, Queues: queues}.Check); err != nil {
		return nil, usagef("%v", err)
	}
	out := make([]tasks.Schedule, len(file.Schedules))
	for i, s := range file.Schedules {
		out[i] = tasks.Schedule{Name: s.Name, Spec: s.Spec, Task: s.Task}
	}
	return out, nil
}

// runConfig runs "taskd config check FILE": it loads the file as serve
// would, with the same environment, and prints the effective configuration
// with its secrets redacted.
func runConfig(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) != 2 || args[0] != "check" {
		fmt.Fprintln(stderr, "Usage: taskd config check FILE")
		return usagef("want: taskd config check FILE")
	}
	file, reg, err := loadConfigFile(args[1], getenv)
	if err != nil {
		return err
	}
	queues := file.Queues
	if queues == nil {
		queues = jobs.DefaultQueues()
	}
	if _, err := fileSchedules(file, reg, clusterQueues(nil, queues)); err != nil {
		return err
	}
	var cerr *jobs.ConfigError
	if err := (jobs.Config{Kinds: reg, Queues: queues}).Validate(); errors.As(err, &cerr) {
		return usagef("%s: %s", args[1], cerr.Message)
	} else if err != nil {
		return usagef("%s: %v", args[1], err)
	}
	out, err := file.Redacted()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "# %s is valid; effective configuration (secrets redacted):\n", args[1])
	_, err = stdout.Write(out)
	return err
}

// limitSet returns the configuration file's limits (none without a file).
func (cfg *serveConfig) limitSet() *limits.Set {
	if cfg.ConfigFile == nil {
		return nil
	}
	return limits.NewSet(cfg.ConfigFile.Limits)
}
