package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskd/taskd/internal/auth"
	"github.com/taskd/taskd/internal/kinds/builtin"
	"github.com/taskd/taskd/internal/store"
)

// TestTenantUseCases checks the use cases for a principal limited to the
// cpu queue: another queue's task is missing for it, its submissions and
// schedules are those of its queue; without a principal nothing changes.
func TestTenantUseCases(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	tenant := auth.WithPrincipal(ctx, &auth.Principal{Name: "t", Scopes: []auth.Scope{auth.ScopeSubmit}, Queues: []string{builtin.QueueCPU}})
	none := auth.WithPrincipal(ctx, &auth.Principal{Name: "n", Scopes: []auth.Scope{auth.ScopeSubmit}, Queues: []string{}})

	mine := b.submit(t, "double", map[string]int{"value": 1}, func(p *TaskParams) { p.Queue = ptr(builtin.QueueCPU) })
	other := b.submit(t, "double", map[string]int{"value": 1}, nil)

	require.NoError(t, b.tasks.CheckTask(tenant, mine))
	require.NoError(t, b.tasks.CheckTask(ctx, other), "auth off sees every task")
	require.ErrorIs(t, b.tasks.CheckTask(tenant, other), store.ErrNotFound)
	require.ErrorIs(t, b.tasks.CheckTask(none, mine), store.ErrNotFound)
	require.ErrorIs(t, b.tasks.CheckTask(tenant, 1<<40), store.ErrNotFound)

	// Cancel and retry of another queue's task are "not found" and change
	// nothing.
	require.ErrorIs(t, b.tasks.Cancel(tenant, other), store.ErrNotFound)
	require.ErrorIs(t, b.tasks.Retry(tenant, other), store.ErrNotFound)
	task, err := b.store.Task(ctx, other)
	require.NoError(t, err)
	require.Equal(t, store.StateAvailable, task.State)
	require.NoError(t, b.tasks.Cancel(tenant, mine))

	// Submissions: its queue only, the default queue included.
	_, err = b.tasks.Submit(tenant, &TaskParams{Kind: ptr("double"), Args: json.RawMessage(`{"value":1}`)}, nil)
	var qerr *QueueError
	require.ErrorAs(t, err, &qerr)
	require.Equal(t, "queue", qerr.Errors[0].Field)
	_, err = b.tasks.Submit(tenant, &TaskParams{Kind: ptr("double"), Args: json.RawMessage(`{"value":1}`), Queue: ptr(builtin.QueueCPU)}, nil)
	require.NoError(t, err)

	// Schedules: only those whose queue is the tenant's.
	svc := b.withSchedules(t,
		Schedule{Name: "mine", Spec: every(t, time.Hour), Task: TaskParams{Kind: ptr("double"), Args: json.RawMessage(`{"value":1}`), Queue: ptr(builtin.QueueCPU)}},
		Schedule{Name: "other", Spec: every(t, time.Hour), Task: TaskParams{Kind: ptr("double"), Args: json.RawMessage(`{"value":1}`)}},
	)
	names := func(ctx context.Context) []string {
		list, err := svc.Schedules(ctx)
		require.NoError(t, err)
		out := []string{}
		for _, s := range list {
			out = append(out, s.Name)
		}
		return out
	}
	require.Equal(t, []string{"mine", "other"}, names(ctx))
	require.Equal(t, []string{"mine"}, names(tenant))
	require.Equal(t, []string{}, names(none))

	// Lists: the tenant's queues pushed into the query.
	l := store.ListParams{Limit: 10}
	require.True(t, RestrictList(tenant, &l))
	require.Equal(t, []string{builtin.QueueCPU}, l.Queues)
	l = store.ListParams{Queue: "default", Limit: 10}
	require.False(t, RestrictList(tenant, &l), "a queue filter outside the tenant's matches nothing")
	l = store.ListParams{Limit: 10}
	require.False(t, RestrictList(none, &l))
	l = store.ListParams{Limit: 10}
	require.True(t, RestrictList(ctx, &l))
	require.Nil(t, l.Queues)

	// Claims: intersected with the tenant's queues; none left is refused.
	q, err := claimQueues(tenant, nil)
	require.NoError(t, err)
	require.Equal(t, []string{builtin.QueueCPU}, q)
	q, err = claimQueues(tenant, []string{"default", builtin.QueueCPU})
	require.NoError(t, err)
	require.Equal(t, []string{builtin.QueueCPU}, q)
	_, err = claimQueues(tenant, []string{"default"})
	require.True(t, errors.As(err, &qerr))
	q, err = claimQueues(ctx, nil)
	require.NoError(t, err)
	require.Nil(t, q)
}
