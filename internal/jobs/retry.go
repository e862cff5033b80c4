package jobs

import (
	"math/rand/v2"
	"time"

	"github.com/riverqueue/river/rivertype"

	"github.com/taskd/taskd/internal/store"
)

const (
	// RetryBase is the wait before the second attempt; each later wait
	// doubles it (about 1 s, 2 s, 4 s, ...), as in the FastAPI article taskd grew from.
	RetryBase = time.Second
	// RetryMax caps the wait between two attempts.
	RetryMax = time.Hour
	// retryJitter spreads retries of tasks that failed together by ±10%.
	retryJitter = 0.1
)

// RetryPolicy is taskd's river.ClientRetryPolicy: exponential backoff of
// 2^(attempt-1) seconds with jitter, capped at RetryMax.
type RetryPolicy struct {
	// Now returns the current time. Defaults to time.Now.
	Now func() time.Time
	// Jitter returns a number in [0, 1). Defaults to math/rand/v2.
	Jitter func() float64
}

// NextRetry implements river.ClientRetryPolicy. The attempt that just
// failed is counted from the recorded errors (its own is not yet among
// them), so snoozes and interruptions do not lengthen the wait.
func (p *RetryPolicy) NextRetry(job *rivertype.JobRow) time.Time {
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	jitter := rand.Float64
	if p.Jitter != nil {
		jitter = p.Jitter
	}
	return now().Add(Backoff(len(job.Errors)+1, jitter()))
}

// Backoff is the wait after a failed attempt (counted from 1), given a
// random number r in [0, 1) for the jitter.
func Backoff(attempt int, r float64) time.Duration {
	wait := RetryMax
	if attempt < 1 {
		attempt = 1
	}
	if attempt <= 32 { // beyond that 2^n seconds is far past the cap
		if d := RetryBase << (attempt - 1); d < RetryMax {
			wait = d
		}
	}
	wait = time.Duration(float64(wait) * (1 + retryJitter*(2*r-1)))
	return min(wait, RetryMax)
}

// attemptNumber is the number of the attempt that is running (or just ran)
// for job; see store.AttemptNumber.
func attemptNumber(job *rivertype.JobRow) int {
	return store.AttemptNumber(len(job.Errors), job.Attempt)
}
