package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// blockInserts holds a lock on river_job that every insert waits for,
// until the returned function releases it.
func blockInserts(t *testing.T, b *testBundle) (release func()) {
	t.Helper()
	ctx := context.Background()
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE river_job IN SHARE MODE`); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() { once.Do(func() { _ = tx.Rollback(ctx) }) }
	t.Cleanup(release)
	return release
}

// waitFor polls cond every few milliseconds until it holds, failing the
// test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10 s for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// insertsWaiting returns how many statements wait for blockInserts' lock.
func insertsWaiting(t *testing.T, b *testBundle) int {
	t.Helper()
	var n int
	err := b.pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'river_job'::regclass AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

type submitted struct {
	job *rivertype.JobRow
	err error
}

// busyWriters submits one task per writer, each waiting for the lock of
// blockInserts in a group of its own, and returns their answers' channels.
func busyWriters(t *testing.T, b *testBundle) []chan submitted {
	t.Helper()
	return busyWritersOf(t, b, submitWriters)
}

func busyWritersOf(t *testing.T, b *testBundle, writers int) []chan submitted {
	t.Helper()
	var out []chan submitted
	for i := range writers {
		out = append(out, submitAll(b, context.Background(), []river.InsertManyParams{doubleParams(t, b)})...)
		waitFor(t, "a writer to wait for the lock", func() bool { return insertsWaiting(t, b) == i+1 })
	}
	return out
}

// submitAll submits each of ps from a goroutine of its own through the
// Service's submitter, with ctx, and returns a channel of each one's
// answer, in the order of ps.
func submitAll(b *testBundle, ctx context.Context, ps []river.InsertManyParams) []chan submitted {
	out := make([]chan submitted, len(ps))
	for i, p := range ps {
		out[i] = make(chan submitted, 1)
		go func() {
			job, err := b.tasks.submits.submit(ctx, p, nil)
			out[i] <- submitted{job, err}
		}()
	}
	return out
}

func doubleParams(t *testing.T, b *testBundle) river.InsertManyParams {
	t.Helper()
	p, errs := decodeAndPrepare(t, b, `{"kind":"double","args":{"value":2}}`)
	if errs != nil {
		t.Fatal(errs)
	}
	return p
}

// Single submissions that arrive while the writers are busy share a
// transaction (and so a commit), each still answered with its own row;
// one given up before a writer took it is not inserted at all.
func TestSubmitterGroups(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	st := b.tasks.submits
	release := blockInserts(t, b)

	first := busyWriters(t, b)

	const n = 10
	ps := make([]river.InsertManyParams, n)
	for i := range ps {
		ps[i] = doubleParams(t, b)
	}
	rest := submitAll(b, context.Background(), ps)
	gaveUpCtx, giveUp := context.WithCancel(context.Background())
	gaveUp := submitAll(b, gaveUpCtx, []river.InsertManyParams{doubleParams(t, b)})
	waitFor(t, "the submissions to wait for a writer", func() bool { return len(st.ch) == n+1 })
	giveUp()
	if r := <-gaveUp[0]; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("submission given up: %+v, want context.Canceled", r)
	}
	release()

	var ids []int64
	for _, c := range append(first, rest...) {
		r := <-c
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.job == nil || r.job.ID == 0 || r.job.Kind != "double" {
			t.Fatalf("row answered: %+v", r.job)
		}
		ids = append(ids, r.job.ID)
	}
	var rows, tx, all int
	err := b.pool.QueryRow(context.Background(),
		`SELECT count(*), count(DISTINCT xmin::text), (SELECT count(*) FROM river_job) FROM river_job WHERE id = ANY($1)`, ids).Scan(&rows, &tx, &all)
	if err != nil {
		t.Fatal(err)
	}
	if rows != n+2 || all != n+2 {
		t.Fatalf("%d of the %d answered ids in river_job, %d rows in all; want every one, and not the one given up", rows, n+2, all)
	}
	// The first two groups held one each; the ten that waited were taken
	// by whichever writer was free first, up to two groups.
	if tx > submitWriters+2 {
		t.Fatalf("%d submissions written in %d transactions, want at most %d", n+2, tx, submitWriters+2)
	}
}

// A group whose insert fails is written again one submission at a time,
// so that only the failing one fails.
func TestSubmitterIsolatesFailures(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.tasks.submits = newSubmitter(b.tasks, 1) // so that the four form one group
	release := blockInserts(t, b)
	first := busyWritersOf(t, b, 1)

	bad := doubleParams(t, b)
	opts := *bad.InsertOpts
	opts.Priority = 9 // River refuses it, and with it the whole insert
	bad.InsertOpts = &opts
	ps := []river.InsertManyParams{doubleParams(t, b), bad, doubleParams(t, b), doubleParams(t, b)}
	rest := submitAll(b, context.Background(), ps)
	waitFor(t, "the submissions to wait for a writer", func() bool { return len(b.tasks.submits.ch) == len(ps) })
	release()

	for i, c := range append(first, rest...) {
		r := <-c
		if i == 2 { // bad
			if r.err == nil {
				t.Fatalf("priority 9 inserted: %+v", r.job)
			}
			continue
		}
		if r.err != nil {
			t.Fatalf("submission %d failed with the bad one: %v", i, r.err)
		}
	}
	if all := jobCount(t, b); all != 4 {
		t.Fatalf("%d rows, want the 4 good ones", all)
	}
}

// Submissions waiting when the Service closes are written; those after it
// each get a transaction of their own.
func TestSubmitterClose(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.tasks.submits = newSubmitter(b.tasks, 1)
	release := blockInserts(t, b)
	ps := []river.InsertManyParams{doubleParams(t, b), doubleParams(t, b), doubleParams(t, b)}
	first := busyWritersOf(t, b, 1)
	waiting := submitAll(b, context.Background(), ps)
	waitFor(t, "three submissions to wait for the writer", func() bool { return len(b.tasks.submits.ch) == len(ps) })
	closed := make(chan struct{})
	go func() {
		b.tasks.submits.close()
		close(closed)
	}()
	release()
	<-closed
	for _, c := range first {
		if r := <-c; r.err != nil {
			t.Fatal(r.err)
		}
	}
	// The writer wrote the three as one group before it returned.
	var ids []int64
	for _, c := range waiting {
		r := <-c
		if r.err != nil {
			t.Fatal(r.err)
		}
		ids = append(ids, r.job.ID)
	}
	if tx := transactions(t, b, ids); tx != 1 {
		t.Fatalf("the submissions waiting at close were written in %d transactions, want one group", tx)
	}
	job, err := b.tasks.submits.submit(context.Background(), doubleParams(t, b), nil)
	if err != nil || job.ID == 0 {
		t.Fatalf("submit after close: %+v, %v", job, err)
	}
	if all := jobCount(t, b); all != 5 {
		t.Fatalf("%d rows, want 5", all)
	}
}

// A request whose deadline passes once its group was taken cancels the
// group, as its own transaction would have been cancelled, and is not
// inserted; the others of the group are inserted alone.
func TestSubmitterDeadlineCancelsGroup(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx, expire := context.WithCancelCause(context.Background())
	x, y, release2 := heldGroupOfTwo(t, b, ctx)
	expire(errors.New("deadline"))
	select {
	case r := <-x:
		if !errors.Is(r.err, context.Canceled) {
			t.Fatalf("submission past its deadline: %+v, want its context's error", r)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the submission past its deadline waited 30 s with its group held: its deadline did not cancel the group")
	}
	// y is tried again on its own, behind the same lock.
	release2()
	r := <-y
	if r.err != nil {
		t.Fatal(r.err)
	}
	var ids []int64
	if err := b.pool.QueryRow(context.Background(), `SELECT array_agg(id ORDER BY id) FROM river_job`).Scan(&ids); err != nil {
		t.Fatal(err)
	}
	if len(ids) != 2 || ids[1] != r.job.ID {
		t.Fatalf("rows %v; want the first and the other one (%d), not the one past its deadline", ids, r.job.ID)
	}
}

// lockBehind queues a second SHARE lock on river_job behind the inserts
// waiting for blockInserts' lock, and returns its release.
func lockBehind(t *testing.T, b *testBundle) (release func()) {
	t.Helper()
	ctx := context.Background()
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	locked := make(chan error, 1)
	go func() {
		_, err := tx.Exec(ctx, `LOCK TABLE river_job IN SHARE MODE`)
		locked <- err
	}()
	waitFor(t, "the second lock to queue", func() bool { return insertsWaiting(t, b) == 2 })
	var once sync.Once
	release = func() {
		once.Do(func() {
			if err := <-locked; err != nil {
				t.Error(err)
			}
			_ = tx.Rollback(ctx)
		})
	}
	t.Cleanup(release)
	return release
}

// Submissions with Idempotency-Keys share a group too: each key is stored
// with its task, a key repeated within the group or taken before it
// gives the first task (the second task is never committed), and a
// different request under a taken key is refused.
func TestSubmitterKeys(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	body := func(v int) (TaskParams, []byte) {
		raw := []byte(`{"kind":"double","args":{"value":` + strconv.Itoa(v) + `}}`)
		var p TaskParams
		if err := json.Unmarshal(raw, &p); err != nil {
			t.Fatal(err)
		}
		hash, err := RequestHash(raw)
		if err != nil {
			t.Fatal(err)
		}
		return p, hash
	}
	p0, h0 := body(0)
	before, err := b.tasks.Submit(ctx, &p0, &Idempotency{Key: "k0", Hash: h0})
	if err != nil || !before.Created {
		t.Fatalf("first submission under k0: %+v, %v", before, err)
	}

	b.tasks.submits = newSubmitter(b.tasks, 1) // so that the requests form one group
	release := blockInserts(t, b)
	first := busyWritersOf(t, b, 1)
	type answer struct {
		sub *Submission
		err error
	}
	p1, h1 := body(1)
	p2, h2 := body(2)
	requests := []struct {
		p    TaskParams
		idem *Idempotency
	}{
		{p1, &Idempotency{Key: "k1", Hash: h1}},
		{p1, &Idempotency{Key: "k1", Hash: h1}}, // the same request again, in the same group
		{p0, &Idempotency{Key: "k0", Hash: h0}}, // repeats the one before the group
		{p2, &Idempotency{Key: "k0", Hash: h2}}, // another request under k0
		{p2, &Idempotency{Key: "k2", Hash: h2}},
		{p2, nil},
	}
	answers := make([]chan answer, len(requests))
	for i, rq := range requests {
		answers[i] = make(chan answer, 1)
		go func() {
			sub, err := b.tasks.Submit(ctx, &rq.p, rq.idem)
			answers[i] <- answer{sub, err}
		}()
	}
	waitFor(t, "the submissions to wait for a writer", func() bool { return len(b.tasks.submits.ch) == len(requests) })
	release()
	for _, c := range first {
		if r := <-c; r.err != nil {
			t.Fatal(r.err)
		}
	}
	got := make([]answer, len(requests))
	for i, c := range answers {
		got[i] = <-c
	}
	for i, a := range got {
		if i == 3 {
			if !errors.Is(a.err, ErrIdempotencyMismatch) {
				t.Errorf("another request under k0: %+v, %v; want ErrIdempotencyMismatch", a.sub, a.err)
			}
			continue
		}
		if a.err != nil {
			t.Fatalf("request %d: %v", i, a.err)
		}
	}
	if got[0].sub.TaskID != got[1].sub.TaskID || got[0].sub.Created == got[1].sub.Created {
		t.Errorf("k1 twice: %+v and %+v; want one task, created once", got[0].sub, got[1].sub)
	}
	if got[2].sub.TaskID != before.TaskID || got[2].sub.Created {
		t.Errorf("k0 again: %+v; want task %d, not created", got[2].sub, before.TaskID)
	}
	if !got[4].sub.Created || !got[5].sub.Created {
		t.Errorf("k2 and the one without a key: %+v, %+v; want both created", got[4].sub, got[5].sub)
	}
	// Exactly the tasks answered exist: k0's, k1's, k2's, the one without
	// a key, and the one that held the writer; each key names its task.
	var jobs, keys int
	err = b.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM river_job),
		(SELECT count(*) FROM idempotency_keys k JOIN river_job j ON j.id = k.task_id
		 WHERE (k.key, k.task_id) IN (('k0', $1::bigint), ('k1', $2::bigint), ('k2', $3::bigint)))`,
		before.TaskID, got[0].sub.TaskID, got[4].sub.TaskID).Scan(&jobs, &keys)
	if err != nil {
		t.Fatal(err)
	}
	if jobs != 5 || keys != 3 {
		t.Errorf("%d tasks and %d keys naming them; want 5 and 3", jobs, keys)
	}
}

// A client that leaves once its submission was taken does not cancel its
// group: the group commits, and the request still learns the outcome.
func TestSubmitterClientLeftKeepsGroup(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx, leave := context.WithCancel(context.Background())
	x, y, release2 := heldGroupOfTwo(t, b, ctx)
	leave()
	release2()
	rx, ry := <-x, <-y
	if rx.err != nil || ry.err != nil {
		t.Fatalf("client left: %+v; the other: %+v; want both inserted", rx, ry)
	}
	if tx := transactions(t, b, []int64{rx.job.ID, ry.job.ID}); tx != 1 {
		t.Fatalf("written in %d transactions, want their group's one", tx)
	}
}

// heldGroupOfTwo makes the Service's submitter one writer, whose groups
// have all the time they need, takes x (with ctx) and y into one group,
// and holds that group's insert behind a second lock until release is
// called.
func heldGroupOfTwo(t *testing.T, b *testBundle, ctx context.Context) (x, y chan submitted, release func()) {
	t.Helper()
	b.tasks.submits = newSubmitter(b.tasks, 1)
	b.tasks.submits.timeout = time.Hour
	release1 := blockInserts(t, b)
	first := busyWritersOf(t, b, 1)
	x = submitAll(b, ctx, []river.InsertManyParams{doubleParams(t, b)})[0]
	y = submitAll(b, context.Background(), []river.InsertManyParams{doubleParams(t, b)})[0]
	waitFor(t, "two submissions to wait for the writer", func() bool { return len(b.tasks.submits.ch) == 2 })
	// A second lock, queued behind the writer's insert, holds the next
	// group once the first is through.
	release = lockBehind(t, b)
	release1()
	if r := <-first[0]; r.err != nil {
		t.Fatal(r.err)
	}
	waitFor(t, "the writer to take both into one group", func() bool { return len(b.tasks.submits.ch) == 0 && insertsWaiting(t, b) == 1 })
	return x, y, release
}

// jobCount returns the number of rows in river_job.
func jobCount(t *testing.T, b *testBundle) int {
	t.Helper()
	var n int
	if err := b.pool.QueryRow(context.Background(), `SELECT count(*) FROM river_job`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// transactions returns how many transactions inserted the tasks ids.
func transactions(t *testing.T, b *testBundle, ids []int64) int {
	t.Helper()
	var n int
	if err := b.pool.QueryRow(context.Background(), `SELECT count(DISTINCT xmin::text) FROM river_job WHERE id = ANY($1)`, ids).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
