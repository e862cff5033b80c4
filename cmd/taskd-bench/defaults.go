package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/taskd/taskd/internal/jobs"
)

// tunedEnv is scenario 1b's tuned taskd: the -tuned-* settings, the cpu
// queue at its default.
func (c *config) tunedEnv() []string {
	return []string{
		"TASKD_QUEUES=default=" + strconv.Itoa(c.TunedWorkers) + ",cpu=" + strconv.Itoa(jobs.CPUWorkersDefault()),
		"TASKD_FETCH_COOLDOWN=" + c.TunedCooldown.String(),
		"TASKD_FETCH_POLL_INTERVAL=" + c.TunedPoll.String(),
		"TASKD_DB_MAX_CONNS=" + strconv.Itoa(c.TunedConns),
	}
}

// tunedRiver is scenario 1b's tuned bare River, set as tunedEnv sets taskd.
func (c *config) tunedRiver() riverSettings {
	return riverSettings{Name: "tuned", FetchCooldown: c.TunedCooldown, FetchPollInterval: c.TunedPoll,
		Workers: c.TunedWorkers, Conns: int32(c.TunedConns)}
}

// scenario1b: how near taskd's defaults come to its best. Scenario 1's
// load against taskd with no settings, taskd tuned (-tuned-*), and bare
// River tuned the same, in turn.
func (b *bench) scenario1b(ctx context.Context) error {
	c := b.cfg
	tuned := fmt.Sprintf("%d workers, cooldown %s, poll %s, %d conns", c.TunedWorkers, c.TunedCooldown, c.TunedPoll, c.TunedConns)
	b.logf("scenario 1b: defaults against tuned: scenario 1's load (%d double tasks, %d per batch, %d submitters) on taskd untuned, taskd tuned and bare River tuned (%s), %d rounds",
		c.N, c.BatchSize, c.Clients, tuned, c.Pairs)
	var untuned, tunedTaskd, tunedBare []float64
	for i := 1; i <= c.Pairs; i++ {
		r, err := b.e2eTaskd(ctx, e2eRun{N: c.N})
		if err != nil {
			return fmt.Errorf("taskd untuned: %w", err)
		}
		b.logf("  round %d taskd untuned:    %s", i, r)
		untuned = append(untuned, r.Rate)
		if r, err = b.e2eTaskd(ctx, e2eRun{N: c.N, Env: c.tunedEnv()}); err != nil {
			return fmt.Errorf("taskd tuned: %w", err)
		}
		b.logf("  round %d taskd tuned:      %s", i, r)
		tunedTaskd = append(tunedTaskd, r.Rate)
		if r, err = b.e2eBare(ctx, c.tunedRiver()); err != nil {
			return fmt.Errorf("bare River tuned: %w", err)
		}
		b.logf("  round %d bare River tuned: %s", i, r)
		tunedBare = append(tunedBare, r.Rate)
	}
	const name = "1b defaults"
	b.compare(row{Scenario: name, Metric: "tasks/s untuned", A: untuned, B: tunedTaskd, Baseline: "taskd tuned (" + tuned + ")", Target: "≥0.85× taskd tuned"})
	b.compare(row{Scenario: name, Metric: "tasks/s tuned", A: tunedTaskd, B: tunedBare, Baseline: "bare River tuned the same"})
	b.compare(row{Scenario: name, Metric: "tasks/s untuned", A: untuned, B: tunedBare, Baseline: "bare River tuned the same"})
	return nil
}

// River's GIN indexes on river_job, which taskd's migration 00016 drops,
// as River's migration 002 makes them.
var (
	ginCreate = []string{
		"CREATE INDEX river_job_args_index ON river_job USING GIN(args)",
		"CREATE INDEX river_job_metadata_index ON river_job USING GIN(metadata)",
	}
	ginDrop = []string{"DROP INDEX river_job_args_index", "DROP INDEX river_job_metadata_index"}
)

// scenario1i: what River's GIN indexes on args and metadata cost. Scenario
// 1's load on taskd as migrated (without them, migration 00016), taskd
// with them made again, bare River on River's full schema, and bare River
// with them dropped, in turn; each on a fresh database, the index changes
// made before the service starts.
func (b *bench) scenario1i(ctx context.Context) error {
	c := b.cfg
	b.logf("scenario 1i: GIN indexes: scenario 1's load (%d double tasks, %d per batch, %d submitters) on taskd without and with river_job_args_index and river_job_metadata_index, and bare River with and without them, %d rounds",
		c.N, c.BatchSize, c.Clients, c.Pairs)
	var rate, wal, own [4][]float64
	add := func(v int, r e2eResult) {
		rate[v], wal[v] = append(rate[v], r.Rate), append(wal[v], r.WALPerTask)
		if r.WALRelations != nil {
			own[v] = append(own[v], r.ownWAL())
		}
	}
	bareWithout := taskdFetch
	bareWithout.Schema = ginDrop
	variants := []struct {
		name string
		run  func() (e2eResult, error)
	}{
		{"taskd without GIN", func() (e2eResult, error) { return b.e2eTaskd(ctx, e2eRun{N: c.N}) }},
		{"taskd with GIN", func() (e2eResult, error) { return b.e2eTaskd(ctx, e2eRun{N: c.N, Schema: ginCreate}) }},
		{"bare River with GIN", func() (e2eResult, error) { return b.e2eBare(ctx, taskdFetch) }},
		{"bare River without GIN", func() (e2eResult, error) { return b.e2eBare(ctx, bareWithout) }},
	}
	// Each round starts with the next variant, so that none always runs
	// first (each still follows the same one in all but the round it
	// opens).
	for i := 1; i <= c.Pairs; i++ {
		for _, v := range roundOrder(i, len(variants)) {
			r, err := variants[v].run()
			if err != nil {
				return fmt.Errorf("%s: %w", variants[v].name, err)
			}
			b.logf("  round %d %-23s %s", i, variants[v].name+":", r)
			b.logWALRelations(r)
			add(v, r)
		}
	}
	const name = "1i GIN indexes"
	for _, m := range []struct {
		metric string
		v      *[4][]float64
		target string
	}{{"tasks/s", &rate, "≥1.0× River (full schema)"}, {"WAL bytes/task", &wal, ""}, {"own WAL bytes/task", &own, ""}} {
		if len(m.v[0]) == 0 {
			continue // no -wal-relations
		}
		b.compare(row{Scenario: name, Metric: m.metric + " taskd", A: m.v[0], B: m.v[1], Baseline: "taskd with the GIN indexes"})
		b.compare(row{Scenario: name, Metric: m.metric + " taskd", A: m.v[0], B: m.v[2], Baseline: "bare River, full schema", Target: m.target})
		if m.v == &rate {
			// A round's taskd and bare River runs are a pair: they ran
			// in the same round, minutes apart at most.
			b.comparePairs(name, "tasks/s taskd / bare River, full schema,", m.v[0], m.v[2])
		}
		// A River-only row: its "taskd" column is bare River without them.
		b.compare(row{Scenario: name, Metric: m.metric + " River w/o GIN", A: m.v[3], B: m.v[2], Baseline: "bare River, full schema"})
	}
	return nil
}
