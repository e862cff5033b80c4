package main

import (
	"context"
	"log/slog"
	"maps"
	"slices"

	"github.com/taskd/taskd/internal/jobs"
	"github.com/taskd/taskd/internal/metrics"
	"github.com/taskd/taskd/internal/store"
	"github.com/taskd/taskd/internal/tasks"
)

// processMetrics are a process's metrics and what feeds them. Every role
// builds them the same way; only the HTTP listener serving Handler
// differs (the API's for serve, the worker's own for worker).
type processMetrics struct {
	*metrics.Metrics
	// client and svc are set once they exist; Run, which reads them, is
	// started after both.
	client *jobs.Client
	svc    *tasks.Service
}

// newProcessMetrics returns the metrics of a process working queues (and
// reporting the cluster's queues besides, even while empty). Feed them
// with wire before the River client and the service are made, set client
// and svc, then Run.
func newProcessMetrics(st *store.Store, queues map[string]int, clusterQueues []string, logger *slog.Logger) (*processMetrics, error) {
	pm := &processMetrics{}
	m, err := metrics.New(metrics.Config{
		Store:  st,
		Queues: slices.Compact(slices.Sorted(slices.Values(append(slices.Collect(maps.Keys(queues)), clusterQueues...)))),
		LeaderFunc: func(ctx context.Context) (bool, error) {
			return pm.client.IsLeader(ctx)
		},
		WaitersFunc: func() int { return pm.svc.Waiters() },
		Logger:      logger,
	})
	if err != nil {
		return nil, err
	}
	pm.Metrics = m
	return pm, nil
}

// wire adds the metrics' River plugin and insert counter to the
// configurations of the River client and the service.
func (pm *processMetrics) wire(jcfg *jobs.Config, tcfg *tasks.Config) {
	jcfg.Plugins = append(jcfg.Plugins, pm.RiverPlugin())
	tcfg.InsertedFunc = pm.TaskInserted
}
