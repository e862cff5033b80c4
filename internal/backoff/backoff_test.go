package backoff

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/taskd/taskd/client"
)

func TestNextRetryAt(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	flat := Policy{Initial: time.Second, Max: time.Hour, Multiplier: 1, Jitter: 0}
	tripling := Policy{Initial: 500 * time.Millisecond, Max: 10 * time.Second, Multiplier: 3, Jitter: 0.5}
	tests := []struct {
		name    string
		p       Policy
		attempt int
		r       float64
		want    time.Duration
	}{
		// Default is the policy taskd always had: 2^(n-1) s, ±10%, 1 h cap.
		{"default 1", Default, 1, 0.5, time.Second},
		{"default 2", Default, 2, 0.5, 2 * time.Second},
		{"default 3", Default, 3, 0.5, 4 * time.Second},
		{"default 12", Default, 12, 0.5, 2048 * time.Second},
		{"default 13 capped", Default, 13, 0.5, time.Hour}, // 4096 s is past the cap
		{"default 1000 capped", Default, 1000, 0.5, time.Hour},
		{"default 0 is 1", Default, 0, 0.5, time.Second},
		{"default -10%", Default, 1, 0, 900 * time.Millisecond},
		{"default +10%", Default, 3, 0.999999, 4399999 * time.Microsecond},
		{"jitter never passes the cap", Default, 20, 0.999999, time.Hour},
		{"flat 1", flat, 1, 0.9, time.Second},
		{"flat 7", flat, 7, 0.1, time.Second},
		{"tripling 1 -50%", tripling, 1, 0, 250 * time.Millisecond},
		{"tripling 3", tripling, 3, 0.5, 4500 * time.Millisecond},
		{"tripling 4 capped", tripling, 4, 0.5, 10 * time.Second}, // 13.5 s
		{"tripling 4 capped -50%", tripling, 4, 0, 5 * time.Second},
		{"full jitter low", Policy{Initial: time.Second, Max: time.Minute, Multiplier: 2, Jitter: 1}, 2, 0, 0},
		{"overflowing power", Policy{Initial: time.Second, Max: 7 * 24 * time.Hour, Multiplier: 10, Jitter: 0}, math.MaxInt32, 0.5, 7 * 24 * time.Hour},
	}
	for _, tt := range tests {
		got := NextRetryAt(tt.p, tt.attempt, now, tt.r).Sub(now)
		if diff := got - tt.want; diff < -time.Millisecond || diff > time.Millisecond {
			t.Errorf("%s: NextRetryAt(%+v, %d, r=%v) = now+%s, want now+%s", tt.name, tt.p, tt.attempt, tt.r, got, tt.want)
		}
	}
}

func TestRead(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		w    client.Backoff
		base Policy
		// want is the policy after applying, when there is no problem.
		want       Policy
		wantFields []string
	}{
		{name: "empty", base: Default, want: Default},
		{name: "some fields", w: client.Backoff{Initial: new("2s"), Jitter: new(0.0)}, base: Default,
			want: Policy{Initial: 2 * time.Second, Max: time.Hour, Multiplier: 2, Jitter: 0}},
		{name: "every field", w: client.Backoff{Initial: new("100ms"), Max: new("168h"), Multiplier: new(10.0), Jitter: new(1.0)}, base: Default,
			want: Policy{Initial: 100 * time.Millisecond, Max: 7 * 24 * time.Hour, Multiplier: 10, Jitter: 1}},
		{name: "not durations", w: client.Backoff{Initial: new("soon"), Max: new("1")}, base: Default, wantFields: []string{"initial", "max"}},
		{name: "initial too short", w: client.Backoff{Initial: new("99ms")}, base: Default, wantFields: []string{"initial"}},
		{name: "max too long", w: client.Backoff{Max: new("169h")}, base: Default, wantFields: []string{"max"}},
		{name: "multiplier", w: client.Backoff{Multiplier: new(0.5)}, base: Default, wantFields: []string{"multiplier"}},
		{name: "multiplier above", w: client.Backoff{Multiplier: new(10.5)}, base: Default, wantFields: []string{"multiplier"}},
		{name: "jitter", w: client.Backoff{Jitter: new(-0.1)}, base: Default, wantFields: []string{"jitter"}},
		{name: "jitter above", w: client.Backoff{Jitter: new(1.5)}, base: Default, wantFields: []string{"jitter"}},
		{name: "all wrong at once", w: client.Backoff{Initial: new("x"), Max: new("8d"), Multiplier: new(11.0), Jitter: new(2.0)}, base: Default,
			wantFields: []string{"initial", "max", "multiplier", "jitter"}},
		{name: "initial past the base's max", w: client.Backoff{Initial: new("2h")}, base: Default, wantFields: []string{"initial"}},
		{name: "max below the base's initial", w: client.Backoff{Max: new("500ms")}, base: Default, wantFields: []string{"max"}},
		{name: "both, out of order", w: client.Backoff{Initial: new("1m"), Max: new("30s")}, base: Default, wantFields: []string{"initial"}},
		{name: "max below a kind's initial", w: client.Backoff{Max: new("5s")}, base: Policy{Initial: 10 * time.Second, Max: time.Hour, Multiplier: 2}, wantFields: []string{"max"}},
		{name: "order checked beside other problems", w: client.Backoff{Initial: new("2h"), Jitter: new(3.0)}, base: Default, wantFields: []string{"jitter", "initial"}},
		// A bad duration is its only problem: no order problem on top.
		{name: "bad initial and small max", w: client.Backoff{Initial: new("x"), Max: new("500ms")}, base: Default, wantFields: []string{"initial"}},
	}
	for _, tt := range tests {
		o, problems := Read(tt.w, tt.base)
		var fields []string
		for _, p := range problems {
			fields = append(fields, p.Field)
			if p.Message == "" {
				t.Errorf("%s: problem on %s has no message", tt.name, p.Field)
			}
		}
		if !slices.Equal(fields, tt.wantFields) {
			t.Errorf("%s: problems on %v (%v), want on %v", tt.name, fields, problems, tt.wantFields)
			continue
		}
		if len(problems) == 0 {
			if got := o.Apply(tt.base); got != tt.want {
				t.Errorf("%s: applied = %+v, want %+v", tt.name, got, tt.want)
			}
		}
	}
}

// The wire form of an Override reads back as the same Override, and a
// Policy's wire form sets every field.
func TestWire(t *testing.T) {
	t.Parallel()
	o := Override{Initial: new(1500 * time.Millisecond), Multiplier: new(1.5)}
	w := o.Wire()
	if *w.Initial != "1.5s" || w.Max != nil || *w.Multiplier != 1.5 || w.Jitter != nil {
		t.Errorf("Wire() = %+v", w)
	}
	back, problems := Parse(w)
	if problems != nil || back.Apply(Default) != o.Apply(Default) {
		t.Errorf("Parse(Wire()) = %+v, %v", back, problems)
	}
	dw := Default.Wire()
	if *dw.Initial != "1s" || *dw.Max != "1h" || *dw.Multiplier != 2 || *dw.Jitter != 0.1 {
		t.Errorf("Default.Wire() = initial %s, max %s, multiplier %v, jitter %v", *dw.Initial, *dw.Max, *dw.Multiplier, *dw.Jitter)
	}
	for d, want := range map[time.Duration]string{time.Hour: "1h", 90 * time.Second: "1m30s", 100 * time.Millisecond: "100ms", 168 * time.Hour: "168h", 61 * time.Minute: "1h1m"} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%s) = %q, want %q", d, got, want)
		}
	}
}
