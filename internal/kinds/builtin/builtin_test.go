package builtin

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/riverqueue/river"

	"github.com/taskd/taskd/internal/kinds"
)

func TestRegistry(t *testing.T) {
	t.Parallel()
	r := Registry()
	want := []string{"cpu", "double", "fail", "sleep"}
	for _, k := range chaosKinds { // built with -tags chaos
		want = append(want, k.Name)
	}
	slices.Sort(want)
	if got := r.Names(); !slices.Equal(got, want) {
		t.Fatalf("names = %v, want %v", got, want)
	}
	workers := river.NewWorkers()
	r.AddWorkers(workers, nil) // panics on a worker registered twice
	for _, k := range r.All() {
		if !json.Valid(k.ArgsSchema) || !json.Valid(k.ResultSchema) {
			t.Errorf("kind %s: schemas are not JSON", k.Name)
		}
		// The args a kind decodes must carry its name, or River would file
		// its tasks under another kind.
		errs := &kinds.Errors{}
		example := map[string]string{"cpu": `{"n":10}`, "double": `{"value":1}`, "fail": `{"times":0}`, "sleep": `{"ms":0}`,
			"chaos_work": `{"ms":0}`, "chaos_exit": `{}`}[k.Name]
		args := k.Decode(json.RawMessage(example), errs)
		if len(errs.List) > 0 || args == nil || args.Kind() != k.Name {
			t.Errorf("kind %s: Decode(%s) = %v, %v", k.Name, example, args, errs.List)
		}
	}
	// River's stuck-job backstop is sized by the longest attempt: sleep's
	// hour plus its minute of margin.
	if got, want := r.LongestTimeout(15*time.Minute), time.Hour+time.Minute; got != want {
		t.Errorf("LongestTimeout = %s, want %s", got, want)
	}
	if _, err := kinds.NewRegistry(append(Kinds(), doubleKind)...); err == nil {
		t.Error("a kind registered twice was accepted")
	}
}
