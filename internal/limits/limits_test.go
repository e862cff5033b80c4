package limits

import (
	"strings"
	"testing"
	"time"
)

func TestKeyValue(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args, path, want string
	}{
		{`{"customer_id": "c1"}`, "customer_id", "c1"},
		{`{"customer_id": 42}`, "customer_id", "42"},
		{`{"c": {"id": [1, 2]}}`, "c.id", "[1,2]"},
		{`{"other": 1}`, "customer_id", ""},
		{`[1]`, "customer_id", ""},
		{`null`, "customer_id", ""},
		{`{"c": "x"}`, "c.id", ""},
	} {
		if got := keyValue([]byte(tc.args), strings.Split(tc.path, ".")); got != tc.want {
			t.Errorf("keyValue(%s, %s) = %q, want %q", tc.args, tc.path, got, tc.want)
		}
	}
	long := strings.Repeat("x", 500)
	a, b := keyValue([]byte(`{"k": "`+long+`"}`), []string{"k"}), keyValue([]byte(`{"k": "`+long+`y"}`), []string{"k"})
	if len(a) > KeyMaxLength || a == b {
		t.Errorf("long keys: %d bytes, distinct %v", len(a), a != b)
	}
}

func TestGroups(t *testing.T) {
	t.Parallel()
	s := NewSet([]Limit{
		{Kind: "resize", Concurrency: 5, Key: "args.customer_id", PerKey: 1, Rate: 10, Per: time.Second},
		{Queue: "media", Rate: 100, Per: time.Minute},
	})
	got := s.groups("resize", "media", []byte(`{"customer_id": "c7"}`))
	want := []group{
		{Limit: "kind:resize", Cap: 5},
		{Limit: "kind:resize", Key: "k:c7", Cap: 1, Rate: 10, Per: time.Second},
		{Limit: "queue:media", Rate: 100, Per: time.Minute},
	}
	if len(got) != len(want) {
		t.Fatalf("groups = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("group %d = %+v, want %+v", i, got[i], want[i])
		}
		if g, ok := s.group(want[i].Limit, want[i].Key); !ok || g != want[i] {
			t.Errorf("group(%s, %s) = %+v, %v", want[i].Limit, want[i].Key, g, ok)
		}
	}
	if s.Applies("double", "default") || !s.Applies("double", "media") || !s.Applies("resize", "default") {
		t.Error("Applies is wrong")
	}
	if n, per, err := ParseRate("7/h"); err != nil || n != 7 || per != time.Hour {
		t.Errorf("ParseRate(7/h) = %d, %s, %v", n, per, err)
	}
	if l := (Limit{Kind: "x", Rate: 3, Per: time.Minute}); l.RateString() != "3/m" || l.Name() != "kind:x" {
		t.Errorf("RateString, Name = %q, %q", l.RateString(), l.Name())
	}
}
