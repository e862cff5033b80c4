package kinds

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river"
)

type testArgs struct{}

func (testArgs) Kind() string { return "t" }

func TestNewRegistryRefusesIncompleteKinds(t *testing.T) {
	t.Parallel()
	decode := func(json.RawMessage, *Errors) river.JobArgs { return testArgs{} }
	ok := Kind{Name: "t", Queue: "default", Run: RunExternal, Decode: decode, Timeout: time.Hour}
	for _, tc := range []struct {
		name string
		kind Kind
		want string
	}{
		{"no name", Kind{Queue: "default", Decode: decode}, "no name"},
		{"no queue", Kind{Name: "a", Decode: decode}, "no queue"},
		{"no decoder", Kind{Name: "a", Queue: "default"}, "no args decoder"},
		{"go without worker", Kind{Name: "a", Queue: "default", Run: RunGo, Decode: decode}, "no worker"},
		{"no way to run", Kind{Name: "a", Queue: "default", Decode: decode}, "run must be"},
	} {
		if _, err := NewRegistry(ok, tc.kind); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to say %q", tc.name, err, tc.want)
		}
	}
	if _, err := NewRegistry(ok, ok); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("a kind registered twice: err = %v", err)
	}
	r, err := NewRegistry(ok)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.LongestTimeout(time.Minute); got != time.Hour {
		t.Errorf("LongestTimeout = %s, want the kind's 1h", got)
	}
}

func TestDecodeArgs(t *testing.T) {
	t.Parallel()
	var dst struct {
		N *int `json:"n"`
	}
	errs := &Errors{Prefix: "tasks[1].args"}
	if DecodeArgs(json.RawMessage(`{"n":1,"m":2}`), &dst, errs) || len(errs.List) != 1 || errs.List[0].Field != "tasks[1].args.m" {
		t.Errorf("unknown field: %+v", errs.List)
	}
	errs = &Errors{Prefix: "args"}
	if DecodeArgs(json.RawMessage(`[1]`), &dst, errs) || errs.List[0].Field != "args" || errs.List[0].Message != "must be a JSON object" {
		t.Errorf("not an object: %+v", errs.List)
	}
	var fresh struct {
		N *int `json:"n"`
	}
	if !DecodeArgs(nil, &fresh, &Errors{}) || fresh.N != nil {
		t.Errorf("missing args must decode as {}")
	}
}
