package jobs

import (
	"testing"
	"time"

	"github.com/riverqueue/river/rivertype"
)

func TestBackoff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		attempt int
		r       float64
		want    time.Duration
	}{
		{1, 0.5, time.Second},
		{2, 0.5, 2 * time.Second},
		{3, 0.5, 4 * time.Second},
		{4, 0.5, 8 * time.Second},
		{12, 0.5, 2048 * time.Second},
		{13, 0.5, time.Hour}, // 4096 s is past the cap
		{1000, 0.5, time.Hour},
		{0, 0.5, time.Second},
		{1, 0, 900 * time.Millisecond},            // -10% jitter
		{3, 0.999999, 4399999 * time.Microsecond}, // +10% jitter, just under
		{20, 0.999999, time.Hour},                 // jitter never passes the cap
	}
	for _, tt := range tests {
		got := Backoff(tt.attempt, tt.r)
		if diff := got - tt.want; diff < -time.Millisecond || diff > time.Millisecond {
			t.Errorf("Backoff(%d, %v) = %s, want %s", tt.attempt, tt.r, got, tt.want)
		}
	}
}

func TestRetryPolicyCountsErrorsNotAttempt(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := &RetryPolicy{Now: func() time.Time { return now }, Jitter: func() float64 { return 0.5 }}
	// River lowers Attempt on snooze and shutdown; two recorded errors mean
	// the third attempt just failed whatever Attempt says.
	job := &rivertype.JobRow{Attempt: 1, Errors: make([]rivertype.AttemptError, 2)}
	if got, want := p.NextRetry(job), now.Add(4*time.Second); !got.Equal(want) {
		t.Errorf("NextRetry = %s, want %s", got, want)
	}
}
