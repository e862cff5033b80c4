package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/taskd/taskd/internal/store/dbsqlc"
)

// LimitGroup is one counter of a cluster-wide limit: the limit's name and a
// key value ("" for the limit as a whole).
type LimitGroup struct {
	Limit, Key string
}

// LockName is the group's advisory lock name.
func (g LimitGroup) LockName() string { return g.Limit + "\x1f" + g.Key }

// LimitSlot is a slot of group held by a task.
type LimitSlot struct {
	LimitGroup
	TaskID int64
}

// LimitHolding is what holds a group's slots (LimitTx.Held).
type LimitHolding struct {
	// Slots are the tasks holding a slot of their own.
	Slots []int64
	// Others is the slots the other live processes hold.
	Others int
	// Waiting is how many tasks wait for the group.
	Waiting int
}

// LimitToken names one acquisition of slots by a task.
type LimitToken struct {
	TaskID int64
	Token  int64
}

// RateWindow is the current window of a rate limit's group.
type RateWindow struct {
	LimitGroup
	Start   time.Time
	Started int
}

// LimitPark is a task to put back to wait: State is "scheduled" or
// "available", Until when it may run at the latest or at the earliest.
type LimitPark struct {
	TaskID int64
	State  string
	Until  time.Time
}

// LimitTx is a transaction of a round of limit decisions
// (internal/limits): each method is one statement of limits.sql.
type LimitTx struct {
	ctx context.Context
	q   *dbsqlc.Queries
}

// LimitRound runs fn in one transaction, retried as WithTx is. It commits
// without waiting for the WAL flush (synchronous_commit off): a round lost
// to a database crash only leaves slots uncounted that the crash ended
// anyway, and waiting tasks rely on their recheck; every round of a
// process's tasks would otherwise wait for a disk flush.
func (s *Store) LimitRound(ctx context.Context, fn func(*LimitTx) error) error {
	err := s.WithTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit = off"); err != nil {
			return err
		}
		return fn(&LimitTx{ctx: ctx, q: s.q.WithTx(tx)})
	})
	if err != nil {
		return fmt.Errorf("deciding limits: %w", unavailable(err))
	}
	return nil
}

func splitTokens(ts []LimitToken) (ids, tokens []int64) {
	ids, tokens = make([]int64, len(ts)), make([]int64, len(ts))
	for i, t := range ts {
		ids[i], tokens[i] = t.TaskID, t.Token
	}
	return ids, tokens
}

func splitGroups(gs []LimitGroup) (names, keys []string) {
	names, keys = make([]string, len(gs)), make([]string, len(gs))
	for i, g := range gs {
		names[i], keys[i] = g.Limit, g.Key
	}
	return names, keys
}

func splitSlots(slots []LimitSlot) (names, keys []string, ids []int64) {
	groups := make([]LimitGroup, len(slots))
	ids = make([]int64, len(slots))
	for i, s := range slots {
		groups[i], ids[i] = s.LimitGroup, s.TaskID
	}
	names, keys = splitGroups(groups)
	return names, keys, ids
}

// SlotGroups returns the groups of the slots that ts hold.
func (t *LimitTx) SlotGroups(ts []LimitToken) ([]LimitGroup, error) {
	ids, tokens := splitTokens(ts)
	rows, err := t.q.LimitSlotGroups(t.ctx, dbsqlc.LimitSlotGroupsParams{TaskIds: ids, Tokens: tokens})
	if err != nil {
		return nil, err
	}
	out := make([]LimitGroup, len(rows))
	for i, r := range rows {
		out[i] = LimitGroup{r.LimitName, r.Key}
	}
	return out, nil
}

// Lock takes the advisory locks of groups and returns the database's time.
func (t *LimitTx) Lock(groups []LimitGroup) (time.Time, error) {
	names := make([]string, len(groups))
	for i, g := range groups {
		names[i] = g.LockName()
	}
	r, err := t.q.LimitLock(t.ctx, names)
	return r.Now, err
}

// Release drops the slots of ts.
func (t *LimitTx) Release(ts []LimitToken) error {
	ids, tokens := splitTokens(ts)
	return t.q.LimitRelease(t.ctx, dbsqlc.LimitReleaseParams{TaskIds: ids, Tokens: tokens})
}

// Held returns what holds the slots of groups, but clientID's own counts:
// a slot handed to a waiting task holds for reserve, a process's counts
// while its heartbeat is younger than alive.
func (t *LimitTx) Held(groups []LimitGroup, clientID string, reserve, alive time.Duration) (map[LimitGroup]*LimitHolding, error) {
	names, keys := splitGroups(groups)
	rows, err := t.q.LimitHeld(t.ctx, dbsqlc.LimitHeldParams{LimitNames: names, Keys: keys, ClientID: clientID,
		ReserveSecs: reserve.Seconds(), AliveSecs: alive.Seconds()})
	if err != nil {
		return nil, err
	}
	out := make(map[LimitGroup]*LimitHolding, len(groups))
	for _, g := range groups {
		out[g] = &LimitHolding{}
	}
	for _, r := range rows {
		h := out[LimitGroup{r.LimitName, r.Key}]
		if h == nil {
			continue
		}
		switch {
		case r.TaskID > 0:
			h.Slots = append(h.Slots, r.TaskID)
		case r.TaskID == 0:
			h.Others = int(r.N)
		default:
			h.Waiting = int(r.N)
		}
	}
	return out, nil
}

// SaveHolds stores clientID's counts of held slots.
func (t *LimitTx) SaveHolds(clientID string, held map[LimitGroup]int) error {
	if len(held) == 0 {
		return nil
	}
	p := dbsqlc.LimitSaveHoldsParams{ClientID: clientID}
	for g, n := range held {
		p.LimitNames = append(p.LimitNames, g.Limit)
		p.Keys = append(p.Keys, g.Key)
		p.Held = append(p.Held, int32(n))
	}
	return t.q.LimitSaveHolds(t.ctx, p)
}

// LimitDropHolds removes clientID's counts, when it stops.
func (s *Store) LimitDropHolds(ctx context.Context, clientID string) error {
	if err := s.q.LimitDropHolds(ctx, clientID); err != nil {
		return fmt.Errorf("dropping held slots: %w", unavailable(err))
	}
	return nil
}

// Rates returns the saved windows of groups.
func (t *LimitTx) Rates(groups []LimitGroup) ([]RateWindow, error) {
	names, keys := splitGroups(groups)
	rows, err := t.q.LimitRates(t.ctx, dbsqlc.LimitRatesParams{LimitNames: names, Keys: keys})
	if err != nil {
		return nil, err
	}
	out := make([]RateWindow, len(rows))
	for i, r := range rows {
		out[i] = RateWindow{LimitGroup{r.LimitName, r.Key}, r.WindowStart, int(r.Started)}
	}
	return out, nil
}

// Waiters returns up to free[i] of the oldest tasks waiting for groups[i]
// that hold no slot of it, but those in skip.
func (t *LimitTx) Waiters(groups []LimitGroup, free []int, skip []int64, reserve time.Duration) ([]LimitSlot, error) {
	if len(groups) == 0 {
		return nil, nil
	}
	names, keys := splitGroups(groups)
	f := make([]int32, len(free))
	for i, n := range free {
		f[i] = int32(n)
	}
	if skip == nil {
		skip = []int64{}
	}
	rows, err := t.q.LimitWaiters(t.ctx, dbsqlc.LimitWaitersParams{LimitNames: names, Keys: keys, Free: f, Skip: skip, ReserveSecs: reserve.Seconds()})
	if err != nil {
		return nil, err
	}
	out := make([]LimitSlot, len(rows))
	for i, r := range rows {
		out[i] = LimitSlot{LimitGroup{r.LimitName, r.Key}, r.TaskID}
	}
	return out, nil
}

// Grant gives slots[i] to its task under tokens[i].
func (t *LimitTx) Grant(slots []LimitSlot, tokens []int64) error {
	if len(slots) == 0 {
		return nil
	}
	names, keys, ids := splitSlots(slots)
	return t.q.LimitGrant(t.ctx, dbsqlc.LimitGrantParams{LimitNames: names, Keys: keys, TaskIds: ids, Tokens: tokens})
}

// SaveRates stores windows.
func (t *LimitTx) SaveRates(ws []RateWindow) error {
	if len(ws) == 0 {
		return nil
	}
	var p dbsqlc.LimitRateSaveParams
	for _, w := range ws {
		p.LimitNames = append(p.LimitNames, w.Limit)
		p.Keys = append(p.Keys, w.Key)
		p.WindowStarts = append(p.WindowStarts, w.Start)
		p.Started = append(p.Started, int32(w.Started))
	}
	return t.q.LimitRateSave(t.ctx, p)
}

// Unwait removes tasks from every wait list.
func (t *LimitTx) Unwait(ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	return t.q.LimitUnwait(t.ctx, ids)
}

// Wait puts each slot's task on its group's wait list, keeping the place
// of a task already on it.
func (t *LimitTx) Wait(slots []LimitSlot) error {
	if len(slots) == 0 {
		return nil
	}
	names, keys, ids := splitSlots(slots)
	return t.q.LimitWait(t.ctx, dbsqlc.LimitWaitParams{LimitNames: names, Keys: keys, TaskIds: ids})
}

// Park puts tasks back to wait without using an attempt and returns those
// it parked (the ones still running).
func (t *LimitTx) Park(ps []LimitPark) ([]int64, error) {
	if len(ps) == 0 {
		return nil, nil
	}
	var p dbsqlc.LimitParkParams
	for _, x := range ps {
		p.TaskIds = append(p.TaskIds, x.TaskID)
		p.ParkStates = append(p.ParkStates, x.State)
		p.Untils = append(p.Untils, x.Until)
	}
	return t.q.LimitPark(t.ctx, p)
}

// DropReservations gives back the slots handed to tasks ids.
func (t *LimitTx) DropReservations(ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	return t.q.LimitDropReservations(t.ctx, ids)
}

// WakeReady makes the waiting tasks that now hold a handed slot of every
// group they wait for (among groups) available, and wakes their queues.
func (t *LimitTx) WakeReady(groups []LimitGroup) error {
	if len(groups) == 0 {
		return nil
	}
	names, keys := splitGroups(groups)
	return t.q.LimitWakeReady(t.ctx, dbsqlc.LimitWakeReadyParams{LimitNames: names, Keys: keys})
}

// LimitCleanup removes slots, waits and rate windows that no longer hold
// anything.
func (s *Store) LimitCleanup(ctx context.Context) error {
	if err := s.q.LimitCleanup(ctx); err != nil {
		return fmt.Errorf("cleaning up limits: %w", unavailable(err))
	}
	return nil
}
