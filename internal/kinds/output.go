package kinds

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/riverqueue/river"
)

// Output is the output a task's worker recorded, as JSON; nil when it
// recorded none.
type Output struct {
	JSON []byte
}

type outputKey struct{}

// WithOutput returns a context under which RecordOutput also keeps the
// output in the returned Output: the attempt middleware uses it to write a
// waited-for task's final state itself (store.FinishWaited).
func WithOutput(ctx context.Context) (context.Context, *Output) {
	o := &Output{}
	return context.WithValue(ctx, outputKey{}, o), o
}

// RecordOutput records v as the running task's output, as River's
// RecordOutput does; every worker of taskd records its output through it.
func RecordOutput(ctx context.Context, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding the output: %w", err)
	}
	if err := river.RecordOutput(ctx, json.RawMessage(b)); err != nil {
		return err
	}
	if o, ok := ctx.Value(outputKey{}).(*Output); ok {
		o.JSON = b
	}
	return nil
}
