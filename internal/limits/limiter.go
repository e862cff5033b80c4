package limits

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/taskd/taskd/internal/store"
)

// Defaults of Config.
const (
	// RecheckDefault is the longest a task refused by a concurrency cap
	// waits before it asks again. A freed slot is normally handed to the
	// oldest waiting task at once (its release wakes it); the recheck only
	// covers a hand-over lost with a killed process, and bounds the
	// database work of a waiting task to one fetch per RecheckDefault.
	RecheckDefault = 10 * time.Second
	// LingerDefault is how long a round waits for more requests after the
	// first, so that the tasks a fetch started together are decided in one
	// transaction.
	LingerDefault = time.Millisecond
	// RoundMax is the most requests and releases one round takes.
	RoundMax = 500
	// roundTimeout bounds one round's transaction.
	roundTimeout = 10 * time.Second
	// ReservationTTL is how long a slot handed to a waiting task holds
	// before the task starts: enough for River to put the task back and
	// fetch it again, short enough that a slot handed to a task that never
	// comes (its process died) is soon free again.
	ReservationTTL = 30 * time.Second
	// cleanupInterval is how often a Limiter removes rows that hold
	// nothing any more (store.LimitCleanup).
	cleanupInterval = time.Minute
)

// ErrStopped is returned by Acquire once the Limiter has stopped.
var ErrStopped = errors.New("limits: limiter stopped")

// Config configures a Limiter.
type Config struct {
	// Store holds the limits' state. Required.
	Store *store.Store
	// Set is the limits. Required (may be empty).
	Set *Set
	// Logger defaults to a discarding one.
	Logger *slog.Logger
	// Recheck: see RecheckDefault.
	Recheck time.Duration
	// Linger: see LingerDefault.
	Linger time.Duration
	// ClientID is this process's River client ID (taskd_processes), under
	// which its River tasks' slots are counted. Required when Set limits
	// anything.
	ClientID string
	// Alive is how long another process's counts hold after its last
	// heartbeat: the rescue's RescueAfter, after which its tasks are run
	// again elsewhere. Defaults to AliveDefault.
	Alive time.Duration
}

// AliveDefault: see Config.Alive.
const AliveDefault = 15 * time.Second

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Recheck = cmp.Or(c.Recheck, RecheckDefault)
	c.Linger = cmp.Or(c.Linger, LingerDefault)
	c.Alive = cmp.Or(c.Alive, AliveDefault)
	return c
}

// Task is a task about to start.
type Task struct {
	ID          int64
	Kind, Queue string
	Args        []byte
	// Token names this acquisition; 0 draws a random one. Pull tasks use
	// one derived from their lease, so that whichever process completes
	// them can release it.
	Token int64
	// Park says a refused task is put back in the deciding transaction
	// (claims of external kinds). River's tasks are not: River's completer
	// would later apply its own outcome to whatever attempt then runs, so
	// they are put back by River (a snooze until Decision.Until), and
	// Settle is called once River has saved that.
	Park bool
}

// Grant is what a started task holds; Release gives it back. The zero
// Grant holds nothing.
type Grant struct {
	TaskID, Token int64
	// own: the slots are counted in this process's counts (a River task),
	// not as the task's own rows (a claimed task, released by token in
	// whichever process completes it).
	own    bool
	groups []group
}

// Decision is the outcome of Acquire for one task.
type Decision struct {
	// OK: the task may start; Grant is what it holds.
	OK    bool
	Grant Grant
	// Until is, for a refused task, when it may run at the latest (it
	// waits for a slot and is woken when one is handed to it) or at the
	// earliest (it waits for a rate window). The refused task has been put
	// back in the database already, without using an attempt.
	Until time.Time
}

// Limiter decides whether tasks may start, for every process alike: the
// tasks that ask within Linger of each other are decided in one
// transaction, together with the releases of finished ones, which hand
// their slots to the oldest waiting tasks.
type Limiter struct {
	cfg  Config
	set  *Set
	in   chan *request
	rels chan note
	done chan struct{}
	// held counts the slots this process's River tasks hold, per group,
	// and reserved what it holds in the database (held and its spare;
	// see quotaGroup), as last committed. Only the Run goroutine touches
	// them, and contended and demand.
	held, reserved map[groupID]int
	// contended: tasks waited for the group at the last round, so this
	// process keeps no spare of it.
	contended map[groupID]bool
	// demand is when a task last asked for the group.
	demand map[groupID]time.Time
	// carry are releases of a round that failed, for the next one.
	carry []note
}

// note is a release (grant) or a settled refusal (settle: the groups of a
// task River has put back).
type note struct {
	grant  Grant
	settle []group
}

type request struct {
	tasks  []Task
	groups [][]group
	reply  chan []Decision
	err    error
}

// New returns a Limiter; Run runs it.
func New(cfg Config) *Limiter {
	cfg = cfg.withDefaults()
	return &Limiter{
		cfg:  cfg,
		set:  cfg.Set,
		in:   make(chan *request),
		rels: make(chan note, 10_000),
		done: make(chan struct{}),
		held: map[groupID]int{}, reserved: map[groupID]int{},
		contended: map[groupID]bool{}, demand: map[groupID]time.Time{},
	}
}

// Spare slots (quota). A process that starts many tasks of a limit with a
// large cap reserves slots ahead, a chunk at a time, and starts tasks from
// them without a round: the cost of a generous limit is then a round per
// chunk, not per task. Only a limit's global cap with no rate qualifies
// (per-key caps are small, rates count every start), only from
// QuotaMinCap, and a process keeps no spare while tasks wait for the
// group anywhere, and gives its spare back once its tasks stop asking.
const (
	// QuotaMinCap is the smallest cap a process reserves spare slots of.
	QuotaMinCap = 64
	// quotaIdle is how long a process keeps spare slots nobody asks for.
	quotaIdle = 200 * time.Millisecond
	// quotaTick is how often a process with spare slots looks whether
	// others wait for them.
	quotaTick = 50 * time.Millisecond
)

func quotaGroup(g group) bool { return g.Key == "" && g.Rate == 0 && g.Cap >= QuotaMinCap }

// quotaChunk is how many spare slots a process reserves at once.
func quotaChunk(g group) int { return max(16, g.Cap/8) }

// fast grants the tasks of r from spare slots, without a round, if every
// task's every group has one; it reports whether it did (and replied).
func (l *Limiter) fast(r *request) bool {
	need := map[groupID]int{}
	for _, gs := range r.groups {
		for _, g := range gs {
			id := g.id()
			if !quotaGroup(g) || l.contended[id] {
				return false
			}
			need[id]++
		}
	}
	for id, n := range need {
		if l.reserved[id]-l.held[id] < n {
			return false
		}
	}
	now := time.Now()
	ds := make([]Decision, len(r.tasks))
	for i, t := range r.tasks {
		for _, g := range r.groups[i] {
			l.held[g.id()]++
			l.demand[g.id()] = now
		}
		ds[i] = Decision{OK: true, Grant: Grant{TaskID: t.ID, Token: t.Token, own: true, groups: r.groups[i]}}
	}
	r.reply <- ds
	return true
}

// fastRelease gives a spare slot back to this process's spare, without a
// round, when no task waits for any of g's groups.
func (l *Limiter) fastRelease(g Grant) bool {
	if !g.own {
		return false
	}
	for _, gr := range g.groups {
		if !quotaGroup(gr) || l.contended[gr.id()] {
			return false
		}
	}
	for _, gr := range g.groups {
		if l.held[gr.id()] > 0 {
			l.held[gr.id()]--
		}
	}
	return true
}

// spareGroups are the groups this process holds spare slots of: those the
// quota tick looks at, to give them back when idle or when others wait.
func (l *Limiter) spareGroups() []group {
	var out []group
	for id, r := range l.reserved {
		if r > l.held[id] {
			if g, ok := l.set.group(id.Limit, id.Key); ok && quotaGroup(g) {
				out = append(out, g)
			}
		}
	}
	return out
}

// Set returns the limits.
func (l *Limiter) Set() *Set { return l.set }

// Applies reports whether any limit applies to kind on queue: only then
// does a task need Acquire.
func (l *Limiter) Applies(kind, queue string) bool { return l.set.Applies(kind, queue) }

// Acquire decides for one task; see AcquireMany.
func (l *Limiter) Acquire(ctx context.Context, t Task) (Decision, error) {
	ds, err := l.AcquireMany(ctx, []Task{t})
	if err != nil {
		return Decision{}, err
	}
	return ds[0], nil
}

// AcquireMany decides for tasks that are running (River fetched them, or
// a claim leased them): each either takes its slots and rate starts, or is
// put back to wait (Decision.OK false). Tasks no limit applies to may
// start without a query. A decision is waited for even after ctx ends:
// it commits either way.
func (l *Limiter) AcquireMany(ctx context.Context, ts []Task) ([]Decision, error) {
	out := make([]Decision, len(ts))
	req := &request{reply: make(chan []Decision, 1)}
	var idx []int
	for i, t := range ts {
		gs := l.set.groups(t.Kind, t.Queue, t.Args)
		if len(gs) == 0 {
			out[i].OK = true
			continue
		}
		if t.Token == 0 {
			t.Token = newToken()
		}
		req.tasks = append(req.tasks, t)
		req.groups = append(req.groups, gs)
		idx = append(idx, i)
	}
	if len(req.tasks) == 0 {
		return out, nil
	}
	select {
	case l.in <- req:
	case <-l.done:
		return nil, ErrStopped
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	ds := <-req.reply
	if req.err != nil {
		return nil, req.err
	}
	for j, i := range idx {
		out[i] = ds[j]
	}
	return out, nil
}

// Release gives back what g holds, asynchronously: the slots are freed and
// handed on in the next round.
func (l *Limiter) Release(g Grant) {
	switch {
	case g.own:
		// Counted in this process's counts, which nothing else corrects:
		// the release must not be dropped, so it waits for the loop
		// (never longer than a round).
		select {
		case l.rels <- note{grant: g}:
		case <-l.done:
		}
	case g.Token != 0:
		l.note(note{grant: g})
	}
}

// Settle is called when River has put back a task that Acquire refused:
// a slot freed while River was saving that could not be handed to it (it
// was still running), so the task's groups are looked at once more.
func (l *Limiter) Settle(t Task) {
	if gs := l.set.groups(t.Kind, t.Queue, t.Args); len(gs) > 0 {
		l.note(note{settle: gs})
	}
}

func (l *Limiter) note(n note) {
	select {
	case l.rels <- n:
	default:
		// A slot stops counting when its task leaves 'running'; only the
		// hand-over to a waiting task is lost, and its recheck covers it.
		l.cfg.Logger.Warn("limits: release queue full; a waiting task waits for its recheck")
	}
}

// TokenOf derives a pull task's token from its lease token (a UUID's
// text), so that any process can release it.
func TokenOf(lease string) int64 {
	t := int64(fnv64(lease) &^ (1 << 63))
	return cmp.Or(t, 1)
}

func newToken() int64 { return rand.Int64N(1<<63-1) + 1 }

// Run decides rounds until ctx ends. Requests that arrive later get
// ErrStopped.
func (l *Limiter) Run(ctx context.Context) {
	defer close(l.done)
	cleanup := time.NewTicker(cleanupInterval)
	defer cleanup.Stop()
	tick := time.NewTicker(quotaTick)
	defer tick.Stop()
	for {
		var reqs []*request
		var rels []note
		select {
		case <-ctx.Done():
			l.drainReleases(rels)
			if !l.set.Empty() {
				dctx, cancel := context.WithTimeout(context.Background(), roundTimeout)
				if err := l.cfg.Store.LimitDropHolds(dctx, l.cfg.ClientID); err != nil {
					l.cfg.Logger.Warn("limits: dropping this process's slot counts failed; they lapse with its heartbeat", slog.String("error", err.Error()))
				}
				cancel()
			}
			return
		case <-cleanup.C:
			cctx, cancel := context.WithTimeout(ctx, roundTimeout)
			if err := l.cfg.Store.LimitCleanup(cctx); err != nil && ctx.Err() == nil {
				l.cfg.Logger.Warn("limits: cleanup failed", slog.String("error", err.Error()))
			}
			cancel()
			continue
		case <-tick.C:
			// Spare slots: given back once idle, or when others wait.
			gs := l.spareGroups()
			if len(gs) == 0 {
				continue
			}
			rels = append(rels, note{settle: gs})
		case r := <-l.in:
			if l.fast(r) {
				continue
			}
			reqs = append(reqs, r)
		case g := <-l.rels:
			if g.settle == nil && l.fastRelease(g.grant) {
				continue
			}
			rels = append(rels, g)
		}
		linger := time.NewTimer(l.cfg.Linger)
	collect:
		for len(reqs)+len(rels) < RoundMax {
			select {
			case r := <-l.in:
				if !l.fast(r) {
					reqs = append(reqs, r)
				}
			case g := <-l.rels:
				if g.settle != nil || !l.fastRelease(g.grant) {
					rels = append(rels, g)
				}
			case <-linger.C:
				break collect
			}
		}
		linger.Stop()
		l.round(context.WithoutCancel(ctx), reqs, rels)
	}
}

// drainReleases runs the releases still queued when the Limiter stops, so
// that the slots of tasks that finished last are handed on.
func (l *Limiter) drainReleases(rels []note) {
	for {
		select {
		case g := <-l.rels:
			rels = append(rels, g)
			continue
		default:
		}
		break
	}
	if len(rels) > 0 {
		l.round(context.Background(), nil, rels)
	}
}

// pending is one task of a round.
type pending struct {
	task   Task
	groups []group
	out    *Decision
}

// round decides reqs and releases rels in one transaction.
func (l *Limiter) round(ctx context.Context, reqs []*request, notes []note) {
	ctx, cancel := context.WithTimeout(ctx, roundTimeout)
	defer cancel()
	var tasks []pending
	for _, r := range reqs {
		ds := make([]Decision, len(r.tasks))
		for i := range r.tasks {
			tasks = append(tasks, pending{task: r.tasks[i], groups: r.groups[i], out: &ds[i]})
		}
		defer func() { r.reply <- ds }()
	}
	// Oldest first: a task that has waited longer (a lower ID came earlier)
	// gets the slot.
	slices.SortStableFunc(tasks, func(a, b pending) int { return cmp.Compare(a.task.ID, b.task.ID) })
	notes = append(l.carry, notes...)
	l.carry = nil
	var tokens []store.LimitToken
	var settle, released []group
	for _, n := range notes {
		switch {
		case n.grant.own:
			released = append(released, n.grant.groups...)
		case n.grant.Token != 0:
			tokens = append(tokens, store.LimitToken{TaskID: n.grant.TaskID, Token: n.grant.Token})
		}
		settle = append(settle, n.settle...)
	}
	var st *quotaState
	err := l.cfg.Store.LimitRound(ctx, func(tx *store.LimitTx) error {
		for i := range tasks {
			*tasks[i].out = Decision{}
		}
		st = &quotaState{held: maps.Clone(l.held), reserved: maps.Clone(l.reserved), contended: maps.Clone(l.contended)}
		return l.decide(tx, tasks, tokens, settle, released, st)
	})
	if err == nil {
		l.held, l.reserved, l.contended = st.held, st.reserved, st.contended
		now := time.Now()
		for _, t := range tasks {
			for _, g := range t.groups {
				l.demand[g.id()] = now
			}
		}
	} else {
		// Slots given back stay given back: the next round writes them.
		for _, n := range notes {
			if n.grant.own {
				l.carry = append(l.carry, n)
			}
		}
		l.cfg.Logger.Warn("limits: round failed", slog.Int("tasks", len(tasks)), slog.Int("notes", len(notes)), slog.String("error", err.Error()))
		for _, r := range reqs {
			r.err = err
		}
	}
}

// decide is one round's transaction: releases (rels by token, released
// from this process's counts), settled refusals, then the tasks asking.
// held is this process's counts, changed in place. Free slots go to
// waiting tasks before the tasks of the round, oldest first (a task keeps
// its place in a group's wait list until it starts), so that no task
// starves while newer ones keep arriving.
// quotaState is a round's copy of this process's counts.
type quotaState struct {
	held, reserved map[groupID]int
	contended      map[groupID]bool
}

func (l *Limiter) decide(tx *store.LimitTx, tasks []pending, rels []store.LimitToken, settle, released []group, st *quotaState) error {
	held, reserved := st.held, st.reserved
	committed := maps.Clone(reserved)
	byID := map[groupID]group{}
	changedHeld := map[groupID]bool{}
	for _, g := range settle {
		byID[g.id()] = g
	}
	for _, g := range released {
		id := g.id()
		byID[id] = g
		if g.Cap > 0 {
			held[id] = max(held[id]-1, 0)
			changedHeld[id] = true
		}
	}
	var relGroups []store.LimitGroup
	if len(rels) > 0 {
		var err error
		if relGroups, err = tx.SlotGroups(rels); err != nil {
			return err
		}
		for _, g := range relGroups {
			if cg, ok := l.set.group(g.Limit, g.Key); ok {
				byID[cg.id()] = cg
			}
		}
	}
	for _, t := range tasks {
		for _, g := range t.groups {
			byID[g.id()] = g
		}
	}
	all := make([]store.LimitGroup, 0, len(byID))
	for id := range byID {
		all = append(all, id)
	}
	for _, g := range relGroups {
		if _, ok := byID[g]; !ok {
			all = append(all, g) // a limit no longer configured: lock it all the same
		}
	}
	slices.SortFunc(all, func(a, b store.LimitGroup) int {
		return cmp.Or(cmp.Compare(a.Limit, b.Limit), cmp.Compare(a.Key, b.Key))
	})
	now, err := tx.Lock(all)
	if err != nil {
		return err
	}
	if len(rels) > 0 {
		if err := tx.Release(rels); err != nil {
			return err
		}
	}

	var capped, rated []store.LimitGroup
	for _, g := range all {
		cg, ok := byID[g]
		if ok && cg.Cap > 0 {
			capped = append(capped, g)
		}
		if ok && cg.Rate > 0 {
			rated = append(rated, g)
		}
	}
	// Who holds the capped groups now: other processes (a count each),
	// single tasks (claims, handed slots), and this process (held).
	others := map[groupID]int{}
	waiting := map[groupID]int{}
	slotHolders := map[groupID]map[int64]bool{}
	for _, g := range capped {
		slotHolders[g] = map[int64]bool{}
	}
	if len(capped) > 0 {
		holding, err := tx.Held(capped, l.cfg.ClientID, ReservationTTL, l.cfg.Alive)
		if err != nil {
			return err
		}
		for g, h := range holding {
			id := g
			others[id], waiting[id] = h.Others, h.Waiting
			for _, t := range h.Slots {
				slotHolders[id][t] = true
			}
		}
	}
	// A process keeps no spare slots of a group tasks wait for.
	for _, g := range capped {
		id := g
		st.contended[id] = waiting[id] > 0
		if st.contended[id] || !quotaGroup(byID[id]) {
			reserved[id] = held[id]
		}
	}
	own := func(id groupID) int { return max(held[id], reserved[id]) }
	count := func(id groupID) int { return others[id] + own(id) + len(slotHolders[id]) }
	// handOut hands free slots to the oldest waiting tasks but skip.
	handOut := func(skip []int64) ([]store.LimitSlot, error) {
		var groups []store.LimitGroup
		var free []int
		for _, g := range capped {
			id := g
			if n := byID[id].Cap - count(id); n > 0 && waiting[id] > 0 {
				groups, free = append(groups, g), append(free, n)
			}
		}
		got, err := tx.Waiters(groups, free, skip, ReservationTTL)
		for _, s := range got {
			slotHolders[s.LimitGroup][s.TaskID] = true
		}
		return got, err
	}
	handed, err := handOut(nil)
	if err != nil {
		return err
	}

	// Rate windows: the starts so far in each group's current window.
	used := map[groupID]int{}
	if len(rated) > 0 {
		ws, err := tx.Rates(rated)
		if err != nil {
			return err
		}
		for _, w := range ws {
			id := w.LimitGroup
			if w.Start.Equal(now.Truncate(byID[id].Per)) {
				used[id] = w.Started
			}
		}
	}
	changed := map[groupID]bool{}

	var grants []store.LimitSlot
	var grantTokens []int64
	var granted, refused, unwait, dropped []int64
	var waits []store.LimitSlot
	var parks []store.LimitPark
	for _, t := range tasks {
		id := t.task.ID
		ok := true
		var blocked []group
		var rateUntil time.Time
		for _, g := range t.groups {
			gid := g.id()
			spare := !t.task.Park && held[gid] < reserved[gid]
			if g.Cap > 0 && !slotHolders[gid][id] && !spare && count(gid) >= g.Cap {
				ok = false
				blocked = append(blocked, g)
			}
			if g.Rate > 0 && used[gid] >= g.Rate {
				ok = false
				if end := now.Truncate(g.Per).Add(g.Per); end.After(rateUntil) {
					rateUntil = end
				}
			}
		}
		if ok {
			for _, g := range t.groups {
				gid := g.id()
				switch {
				case g.Cap > 0 && t.task.Park:
					slotHolders[gid][id] = true
					grants = append(grants, store.LimitSlot{LimitGroup: gid, TaskID: id})
					grantTokens = append(grantTokens, t.task.Token)
				case g.Cap > 0:
					// Counted in this process's counts from now on; a slot
					// handed to it is given up for that.
					if slotHolders[gid][id] {
						delete(slotHolders[gid], id)
						dropped = append(dropped, id)
					}
					held[gid]++
					reserved[gid] = max(reserved[gid], held[gid])
					changedHeld[gid] = true
				}
				if g.Cap > 0 && waiting[gid] > 0 {
					unwait = append(unwait, id)
				}
				if g.Rate > 0 {
					used[gid]++
					changed[gid] = true
				}
			}
			granted = append(granted, id)
			*t.out = Decision{OK: true, Grant: Grant{TaskID: id, Token: t.task.Token, own: !t.task.Park, groups: t.groups}}
			continue
		}
		// Refused: whatever was handed to it goes to the next in line.
		refused = append(refused, id)
		for _, g := range t.groups {
			delete(slotHolders[g.id()], id)
		}
		p := store.LimitPark{TaskID: id, State: "available", Until: rateUntil}
		if len(blocked) > 0 {
			// It keeps its place in the wait lists of its groups.
			p.State, p.Until = "scheduled", now.Add(l.cfg.Recheck)
			if rateUntil.After(p.Until) {
				p.Until = rateUntil
			}
			for _, g := range blocked {
				waits = append(waits, store.LimitSlot{LimitGroup: g.id(), TaskID: id})
				waiting[g.id()]++
			}
		} else {
			// Refused by a rate only: it runs once its window comes, and
			// leaves the wait lists, so that slots are not handed to it
			// (and it woken) over and over meanwhile.
			unwait = append(unwait, id)
		}
		if t.task.Park {
			parks = append(parks, p)
		}
		*t.out = Decision{Until: p.Until}
	}

	if err := tx.Unwait(unwait); err != nil {
		return err
	}
	if err := tx.DropReservations(append(refused, dropped...)); err != nil {
		return err
	}
	if err := tx.Wait(waits); err != nil {
		return err
	}
	// A task of the round handed a slot took it (granted) or gave it back
	// (refused).
	handed = slices.DeleteFunc(handed, func(s store.LimitSlot) bool {
		return slices.Contains(refused, s.TaskID) || slices.Contains(granted, s.TaskID)
	})
	if err := tx.Grant(handed, make([]int64, len(handed))); err != nil {
		return err
	}
	if err := tx.Grant(grants, grantTokens); err != nil {
		return err
	}
	// Slots the refused tasks gave back go on down the lists.
	if len(refused) > 0 {
		more, err := handOut(refused)
		if err != nil {
			return err
		}
		if err := tx.Grant(more, make([]int64, len(more))); err != nil {
			return err
		}
		handed = append(handed, more...)
	}
	// Spare slots for the tasks to come, while they keep coming and
	// nobody waits; none otherwise.
	asked := map[groupID]bool{}
	for _, t := range tasks {
		for _, g := range t.groups {
			asked[g.id()] = true
		}
	}
	saved := map[store.LimitGroup]int{}
	for _, g := range capped {
		id := g
		cg := byID[id]
		want := held[id]
		if quotaGroup(cg) && !st.contended[id] && (asked[id] || time.Since(l.demand[id]) < quotaIdle) {
			want = held[id] + quotaChunk(cg)
		}
		want = max(held[id], min(want, cg.Cap-others[id]-len(slotHolders[id])))
		if want != committed[id] || changedHeld[id] {
			reserved[id] = want
			saved[id] = want
		}
	}
	for id := range changedHeld {
		if _, ok := saved[id]; !ok {
			// A limit no longer configured: only the count.
			reserved[id] = held[id]
			saved[id] = held[id]
		}
	}
	if err := tx.SaveHolds(l.cfg.ClientID, saved); err != nil {
		return err
	}
	var windows []store.RateWindow
	for id := range changed {
		windows = append(windows, store.RateWindow{LimitGroup: id, Start: now.Truncate(byID[id].Per), Started: used[id]})
	}
	if err := tx.SaveRates(windows); err != nil {
		return err
	}
	if _, err := tx.Park(parks); err != nil {
		return err
	}
	if len(handed) == 0 && len(settle) == 0 {
		return nil
	}
	return tx.WakeReady(capped)
}
