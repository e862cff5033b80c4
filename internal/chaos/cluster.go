package chaos

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskd/taskd/client"
	"github.com/taskd/taskd/internal/pgtest"
	"github.com/taskd/taskd/internal/taskdtest"
)

// Heartbeat and RescueAfter are the suite's settings for taskd's liveness:
// a process silent for RescueAfter counts as dead and its tasks are run
// again (the default, 15 s, would make each fault take a quarter minute to
// heal); live processes beat five times within it, so that a loaded but
// live process is not taken for dead.
const (
	Heartbeat   = "1s"
	RescueAfter = "5s"
	// RescueBound is how long after a kill every task of the dead process
	// is running again at the latest: RescueAfter, plus one heartbeat
	// (when the next rescue pass runs), its jitter and a margin for a
	// loaded machine. A task not final past the run's end plus this is
	// stuck.
	RescueBound = 10 * time.Second
)

// Cluster is a database and taskd processes serving it.
type Cluster struct {
	// DatabaseURL is the test's database; Pool an oracle pool on it.
	DatabaseURL string
	Pool        *pgxpool.Pool
	Procs       []*taskdtest.Process
}

// ClusterOptions configure NewCluster.
type ClusterOptions struct {
	// Processes is how many `taskd serve` processes run. Defaults to 1.
	Processes int
	// Queues is each process's --queues. Defaults to "default=50".
	Queues string
	// Args and Env are added to every process's (taskdtest.Options).
	Args []string
	Env  []string
	// DatabaseURL, if set, is what the processes connect to instead of the
	// database itself (a proxy in front of it); chaos_work still records
	// on a direct connection.
	DatabaseURL func(direct string) string
	// Config, if not empty, is every process's configuration file (YAML,
	// taskdtest.Options.Config): R5's schedule, the executors' declared
	// kinds.
	Config string
	// DatabaseURLs, if set, is DatabaseURL per process (i from 0), for a
	// proxy per process (R4 cuts one off while the others keep their
	// link). It wins over DatabaseURL.
	DatabaseURLs func(i int, direct string) string
	// Database, if set, is the URL of an existing, migrated database the
	// cluster serves instead of a new one of pgtest's (which is on the
	// shared server): a private PostgreSQL server's ([StartPG]), which the
	// test may restart.
	Database string
}

// NewCluster creates a database with the executions table and starts
// opts.Processes taskd processes (chaos build) on it.
func NewCluster(t testing.TB, opts ClusterOptions) *Cluster {
	t.Helper()
	if opts.Processes == 0 {
		opts.Processes = 1
	}
	if opts.Queues == "" {
		opts.Queues = "default=50"
	}
	c := &Cluster{DatabaseURL: opts.Database}
	if c.DatabaseURL == "" {
		c.DatabaseURL = pgtest.NewDB(t)
	}
	cfg, err := pgxpool.ParseConfig(c.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 4
	cfg.ConnConfig.RuntimeParams["application_name"] = "taskd-chaos-oracle"
	c.Pool, err = pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Pool.Close)
	Setup(t, c.Pool)
	url := c.DatabaseURL
	if opts.DatabaseURL != nil {
		url = opts.DatabaseURL(c.DatabaseURL)
	}
	for i := range opts.Processes {
		url := url
		if opts.DatabaseURLs != nil {
			url = opts.DatabaseURLs(i, c.DatabaseURL)
		}
		c.Procs = append(c.Procs, taskdtest.Start(t, taskdtest.Options{
			DatabaseURL: url,
			Config:      opts.Config,
			BuildTags:   BuildTags,
			Args: append([]string{"--queues", opts.Queues, "--heartbeat-interval", Heartbeat,
				"--rescue-after", RescueAfter}, opts.Args...),
			// Several test runs share one PostgreSQL (max_connections 100).
			Env: append([]string{"TASKD_DB_MAX_CONNS=8", "TASKD_LOG_LEVEL=warn", "TASKD_UI=false",
				"TASKD_CHAOS_DATABASE_URL=" + c.DatabaseURL}, opts.Env...),
		}))
	}
	return c
}

// Clients returns a client per process.
func (c *Cluster) Clients(t testing.TB) []*client.Client {
	t.Helper()
	var out []*client.Client
	for _, p := range c.Procs {
		cl, err := client.New(p.URL, client.Config{HTTPClient: &http.Client{Timeout: 60 * time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, cl)
	}
	return out
}

// Leader returns the process whose /readyz says it leads, waiting up to
// timeout; nil if none does by then.
func (c *Cluster) Leader(timeout time.Duration) *taskdtest.Process {
	deadline := time.Now().Add(timeout)
	hc := &http.Client{Timeout: time.Second}
	for {
		for _, p := range c.Procs {
			if leads(hc, p.URL) {
				return p
			}
		}
		if time.Now().After(deadline) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Leads reports whether p's /readyz says it leads now.
func (c *Cluster) Leads(p *taskdtest.Process) bool {
	return leads(&http.Client{Timeout: time.Second}, p.URL)
}

func leads(hc *http.Client, base string) bool {
	resp, err := hc.Get(base + "/readyz")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var r client.Ready
	return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&r) == nil && r.Leader
}

// WorkArgs returns chaos_work args sleeping 0–200 ms, spread evenly in an
// order that mixes short and long ones (37 and 201 are coprime).
func WorkArgs(i int) json.RawMessage {
	return json.RawMessage(`{"ms":` + strconv.Itoa(i*37%201) + `}`)
}
