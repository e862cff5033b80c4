package tasks

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/riverqueue/river"

	"github.com/taskd/taskd/internal/auth"
	"github.com/taskd/taskd/internal/store"
	"github.com/taskd/taskd/internal/strictjson"
)

// Tenants by queue: a request whose principal (auth.FromContext) carries
// Queues sees and touches only the tasks of those queues. A task of
// another queue is answered exactly as a missing one (store.ErrNotFound),
// so that a tenant cannot learn which IDs exist; what a tenant asks to
// create in another queue is refused with a *QueueError (403). Without a
// principal, or with one without Queues, nothing changes.

// QueueError refuses a submission or a claim naming queues that the
// request's token may not use. Fields name them ("queue",
// "tasks[2].queue", "then.queue", "queues").
type QueueError struct {
	Errors []FieldError
}

func (e *QueueError) Error() string {
	parts := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		parts[i] = strictjson.Clip(fe.Field) + ": " + fe.Message
	}
	return "queue not allowed for this token: " + strings.Join(parts, "; ")
}

// queueRefusal is the message of a QueueError's field.
func queueRefusal(p *auth.Principal, queue string) string {
	return fmt.Sprintf("queue %q is not one of this token's queues (%s)", strictjson.Clip(queue), strings.Join(p.Queues, ", "))
}

// tenant returns the principal of ctx when it is limited to queues, nil
// otherwise (auth off, or a token of every queue).
func tenant(ctx context.Context) *auth.Principal {
	if p := auth.FromContext(ctx); p != nil && p.Queues != nil {
		return p
	}
	return nil
}

// CheckTask returns nil when the request may see task id, and an error
// wrapping store.ErrNotFound when the task is missing or, for a tenant, of
// another queue. It reads the database only for a tenant.
func (s *Service) CheckTask(ctx context.Context, id int64) error {
	p := tenant(ctx)
	if p == nil {
		return nil
	}
	queue, err := s.store.TaskQueue(ctx, id)
	if err != nil {
		return err
	}
	if !p.QueueAllowed(queue) {
		return fmt.Errorf("task %d: %w", id, store.ErrNotFound)
	}
	return nil
}

// TaskVisible reports whether the request may see t (a task read
// already). A task it may not see is to be answered as missing.
func TaskVisible(ctx context.Context, t *store.Task) bool {
	return auth.QueueAllowedCtx(ctx, t.Queue)
}

// BatchVisible reports whether the request may see batch b: a tenant only
// a batch whose present tasks are all of its queues. A tenant knows a
// batch through its tasks: one with none left (about to be deleted) is
// missing for it, since nothing tells whose it was.
func BatchVisible(ctx context.Context, b *store.Batch) bool {
	p := tenant(ctx)
	return p == nil || (len(b.Tasks) > 0 && !slices.ContainsFunc(b.Tasks, func(t *store.Task) bool { return !p.QueueAllowed(t.Queue) }))
}

// RestrictList limits a listing to the request's queues. It returns false
// when nothing can match (a queue filter outside them): the list is empty
// without asking the database.
func RestrictList(ctx context.Context, l *store.ListParams) bool {
	p := tenant(ctx)
	switch {
	case p == nil:
		return true
	case l.Queue != "":
		// The filter names one queue: allowed, it is limit enough.
		return p.QueueAllowed(l.Queue)
	}
	l.Queues = slices.Clone(p.Queues)
	if l.Queues == nil {
		l.Queues = []string{}
	}
	return len(l.Queues) > 0
}

// QueueVisible reports whether the request may see queue (GET /v1/queues,
// GET /v1/schedules).
func QueueVisible(ctx context.Context, queue string) bool {
	return auth.QueueAllowedCtx(ctx, cmp.Or(queue, river.QueueDefault))
}

// checkSubmitQueues refuses params (and then, when not nil) whose queues
// the request may not use; field is the prefix of each task's fields.
func checkSubmitQueues(ctx context.Context, params []river.InsertManyParams, field func(i int) string, then *river.InsertManyParams) error {
	p := tenant(ctx)
	if p == nil {
		return nil
	}
	var errs []FieldError
	check := func(prefix string, ip river.InsertManyParams) {
		if q := cmp.Or(ip.InsertOpts.Queue, river.QueueDefault); !p.QueueAllowed(q) {
			errs = append(errs, FieldError{Field: prefix + "queue", Message: queueRefusal(p, q)})
		}
	}
	for i, ip := range params {
		check(field(i), ip)
	}
	if then != nil {
		check("then.", *then)
	}
	if errs != nil {
		return &QueueError{Errors: errs}
	}
	return nil
}

// claimQueues limits the queues of a claim to the request's: all of them
// when the claim names none, else those of the claim that are allowed.
// None left is a *QueueError.
func claimQueues(ctx context.Context, asked []string) ([]string, error) {
	p := tenant(ctx)
	if p == nil {
		return asked, nil
	}
	if len(asked) == 0 {
		if len(p.Queues) == 0 {
			return nil, &QueueError{Errors: []FieldError{{Field: "queues", Message: "this token may use no queue"}}}
		}
		return slices.Clone(p.Queues), nil
	}
	var allowed []string
	for _, q := range asked {
		if p.QueueAllowed(q) {
			allowed = append(allowed, q)
		}
	}
	if len(allowed) == 0 {
		return nil, &QueueError{Errors: []FieldError{{Field: "queues",
			Message: "none of these queues is one of this token's (" + strings.Join(p.Queues, ", ") + ")"}}}
	}
	return allowed, nil
}
