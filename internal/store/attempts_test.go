package store

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
)

// attemptCases are inputs on both sides of scanAttempts' fast path.
var attemptCases = []string{
	`[]`, ` [ ] `, `[{"error": null, "worker": "w", "attempt": 1, "outcome": "completed", "started_at": "2026-12-02T12:35:51.505114+00:00", "duration_ms": 1.234, "finished_at": "2026-12-02T12:35:51.505114+00:00", "http_status": null}]`,
	`[{"attempt":2,"worker":"é","started_at":"2026-01-01T00:00:00Z","finished_at":"2026-01-01T00:00:01.5+05:30","outcome":"failed","error":"boom","duration_ms":0,"http_status":503},{"attempt":3,"worker":"","started_at":"2026-01-01T00:00:00Z","finished_at":"2026-01-01T00:00:00Z","outcome":"x","error":null,"duration_ms":1e3,"http_status":null}]`,
	`[{"attempt":1,"worker":"w","started_at":"2026-01-01T00:00:00Z","finished_at":"2026-01-01T00:00:00Z","outcome":"o","error":"a \"quoted\"\nline","duration_ms":1,"http_status":null}]`, // escapes: encoding/json
	`[{"attempt":1}]`, // keys missing
	`[{"Attempt":1,"worker":"w","started_at":"2026-01-01T00:00:00Z","finished_at":"2026-01-01T00:00:00Z","outcome":"o","error":null,"duration_ms":1,"http_status":null}]`,             // case-folded key
	`[{"attempt":1,"attempt":2,"worker":"w","started_at":"2026-01-01T00:00:00Z","finished_at":"2026-01-01T00:00:00Z","outcome":"o","error":null,"duration_ms":1,"http_status":null}]`, // duplicate
	`[{"attempt":1.5,"worker":"w","started_at":"2026-01-01T00:00:00Z","finished_at":"2026-01-01T00:00:00Z","outcome":"o","error":null,"duration_ms":1,"http_status":null}]`,
	`[{"attempt":01,"worker":"w","started_at":"2026-01-01T00:00:00Z","finished_at":"2026-01-01T00:00:00Z","outcome":"o","error":null,"duration_ms":1,"http_status":null}]`,
	`[{"attempt":1,"worker":"w","started_at":"2026-01-01 00:00:00Z","finished_at":"2026-01-01T00:00:00Z","outcome":"o","error":null,"duration_ms":1,"http_status":null}]`,
	`[{"attempt":1,"worker":"w","started_at":"2026-01-01T00:00:00Z","finished_at":"2026-01-01T00:00:00Z","outcome":"o","error":null,"duration_ms":-0.5e-3,"http_status":null}] x`,
	`[{"attempt":1,"worker":"\xff","started_at":"2026-01-01T00:00:00Z","finished_at":"2026-01-01T00:00:00Z","outcome":"o","error":null,"duration_ms":1,"http_status":null}]`,
	`[{"attempt":null,"worker":"w","started_at":null,"finished_at":"2026-01-01T00:00:00Z","outcome":"o","error":null,"duration_ms":1,"http_status":nul}]`,
	`[{"attempt":99999999999999999999,"worker":"w","started_at":"2026-01-01T00:00:00Z","finished_at":"2026-01-01T00:00:00Z","outcome":"o","error":null,"duration_ms":1,"http_status":null}]`,
	`[{}]`, `[`, `[,]`, `null`, `{}`, ``,
}

// checkAttempts fails when scanAttempts answers differently from
// encoding/json.
func checkAttempts(t *testing.T, in []byte) (fast bool) {
	t.Helper()
	got, ok := scanAttempts(in)
	var want []storedAttempt
	err := json.Unmarshal(in, &want)
	switch {
	case ok && err != nil:
		t.Errorf("%q: scanAttempts decoded %+v where encoding/json fails: %v", in, got, err)
	case ok && !reflect.DeepEqual(got, want):
		t.Errorf("%q:\nscanAttempts  %+v\nencoding/json %+v", in, got, want)
	}
	return ok
}

func TestDecodeAttemptsAgrees(t *testing.T) {
	fast := 0
	for _, in := range attemptCases {
		if checkAttempts(t, []byte(in)) {
			fast++
		}
	}
	// The first four are what the fast path is for.
	if fast != 4 {
		t.Errorf("the fast path decoded %d of the cases, want 4", fast)
	}
}

func FuzzDecodeAttempts(f *testing.F) {
	for _, in := range attemptCases {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, in []byte) { checkAttempts(t, in) })
}

// TestTaskAttemptsFastPath checks that what PostgreSQL writes for
// ordinary attempts is read by the fast path, so that the optimization
// does not silently stop applying, and is read right.
func TestTaskAttemptsFastPath(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	id := insertFinished(t, s)
	if _, err := s.pool.Exec(ctx, `INSERT INTO task_attempts (task_id, attempt, worker, started_at, finished_at, outcome, error, duration_ms, http_status)
		VALUES ($1, 1, 'host-1-default', now() - interval '2 s', now() - interval '1 s', 'failed', 'status 503 from the endpoint', 1000.25, 503),
		       ($1, 2, 'host-1-default', now() - interval '1 s', now(), 'completed', NULL, 12.5, NULL)`, id); err != nil {
		t.Fatal(err)
	}
	row, err := s.q.TaskGetByID(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !checkAttempts(t, row.Attempts) {
		t.Fatalf("the fast path refused PostgreSQL's attempts: %s", row.Attempts)
	}
	task, err := s.Task(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(task.Attempts) != 2 || task.Attempts[0].HTTPStatus != 503 || task.Attempts[0].Error != "status 503 from the endpoint" ||
		task.Attempts[1].Outcome != OutcomeCompleted || task.Attempts[1].Error != "" {
		t.Errorf("attempts = %+v", task.Attempts)
	}
}

func BenchmarkDecodeAttempts(b *testing.B) {
	in := []byte(attemptCases[2])
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			var out []storedAttempt
			if err := json.Unmarshal(in, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decodeAttempts", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := decodeAttempts(in); err != nil {
				b.Fatal(err)
			}
		}
	})
}
