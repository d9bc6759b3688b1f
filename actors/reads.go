package actors

// Reads: what a participant answers to a read of keys it owns (Read), and
// the shared read locks of a snapshot read across nodes (ReadLock,
// ReadRelease).

import (
	"fmt"
	"sort"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"twopc/messages"
)

// heldRead is a read waiting for the transactions it waits for (its
// waiter's blockers) to be decided.
type heldRead struct {
	keys []string
	// values: the keys' committed values when the read arrived, plus the
	// changes of each blocker that has committed since. Never the live
	// values: see onRead.
	values map[string]int64
	lock   *readLock // a snapshot read's lock; nil for a plain Read
}

// onRead answers a read of keys this node owns.
//
// The rule: a read answers the keys' committed values as of its arrival
// here, plus the changes of exactly the transactions it waited for — W, the
// transactions holding any of the keys that had voted yes when the read
// arrived — those of W that commit; none prepared later.
//
// Why that is linearizable (per key, and for several keys on this node):
//   - Every transaction whose client was told "committed" before the read
//     began is in the answer: the coordinator decides only after every yes
//     vote, so when the read arrives such a transaction is applied here or
//     has voted yes and holds its keys (it is in W).
//   - A transaction left out (it had not voted yes here when the read
//     arrived) was not committed before the read began, and cannot have
//     finished before any w in W began: w had voted yes here before the
//     read arrived, and the left-out one votes only after. So the read can
//     be placed after base and W and before every transaction left out, in
//     an order that respects real time.
//   - Reads placed so nest: a read arriving later sees all a read arriving
//     earlier saw (what was applied is still applied; what was in W and
//     committed is applied or still in the later read's W).
//   - Exclusive holders (set, delete) are ordered by their locks: while one
//     holds a key nothing else does, so base plus it is its result. Adds
//     commute, so W's adds may be applied to the copy in any order. A floor
//     (escrow) never changes a value, only whether an add is admitted.
//
// Answering from the live values instead, once W is decided, was the bug of
// issue 15: adds share the key, so adds prepared after the read kept being
// applied while it waited, and the answer could show a later add without
// an earlier one. The set W is fixed on arrival, so a stream of adds cannot
// starve the read; W's transactions are already voted, so the wait is for
// their decisions. A read whose W stays undecided past the vote timeout
// fails with a reason (expireWaits), never answers a value not known yet.
func (p *participant) onRead(ctx actor.Context, m *messages.Read) {
	// A transaction still being prepared has not voted, so nobody has been
	// told it committed: it is not in W.
	var blockers []messages.TxID
	for _, k := range m.Keys {
		for _, h := range p.locks.holders(k) {
			if t := p.txs[h]; t != nil && t.state != preparing && !containsTx(blockers, h) {
				blockers = append(blockers, h)
			}
		}
	}
	if len(blockers) == 0 {
		ctx.Respond(p.readNow(m.Keys))
		return
	}
	if ctx.Sender() == nil {
		return // nobody to answer
	}
	p.waits.add(&waiter{to: ctx.Sender(), read: p.newHeldRead(m.Keys, nil), blockers: blockers, deadline: p.now().Add(p.timing.VoteTimeout)})
}

func (p *participant) newHeldRead(keys []string, lock *readLock) *heldRead {
	r := &heldRead{keys: keys, values: make(map[string]int64, len(keys)), lock: lock}
	for _, k := range keys {
		r.values[k] = p.kv[k]
	}
	return r
}

// readsSeeCommit applies a committed transaction's ops to the private
// values of the reads waiting for it: they were in W when it voted yes.
// Called when tx's COMMITTED is durable and applied, before settle wakes
// the reads.
func (p *participant) readsSeeCommit(tx messages.TxID, ops []messages.Op) {
	for _, w := range p.waits.byBlocker[tx] {
		if w.done || w.read == nil {
			continue
		}
		for _, o := range ops {
			if _, asked := w.read.values[o.Key]; asked {
				messages.Apply(w.read.values, o)
			}
		}
	}
}

// answerRead answers a read whose wait is over.
func (p *participant) answerRead(ctx actor.Context, w *waiter) {
	vals := make([]messages.KeyValue, len(w.read.keys))
	for i, k := range w.read.keys {
		vals[i] = messages.KeyValue{Key: k, Value: w.read.values[k]}
	}
	if l := w.read.lock; l != nil {
		l.wait = nil
		l.reply = &messages.ReadLocked{Reader: l.id, From: p.cfg.Node, Values: vals}
		ctx.Send(w.to, l.reply)
		return
	}
	ctx.Send(w.to, &messages.ReadReply{From: p.cfg.Node, Values: vals})
}

func (p *participant) readNow(keys []string) *messages.ReadReply {
	out := &messages.ReadReply{From: p.cfg.Node, Values: make([]messages.KeyValue, len(keys))}
	for i, k := range keys {
		out.Values[i] = messages.KeyValue{Key: k, Value: p.kv[k]}
	}
	return out
}

func containsTx(txs []messages.TxID, tx messages.TxID) bool {
	for _, t := range txs {
		if t == tx {
			return true
		}
	}
	return false
}

// ---------------------------------------------------------------------------
// Snapshot reads across nodes.
//
// A read of keys on several nodes is a read-only transaction under
// two-phase locking: the reader takes a shared read lock on its keys at
// every owner (ReadLock), and releases them all (ReadRelease) only once
// every owner has answered. A read lock conflicts with both write modes
// (exclusive and increment) and not with other read locks.
//
// At each owner, on arrival, the read waits for every transaction holding
// its keys (voted or still preparing), and from then on no transaction
// can prepare on them until the release: so from its answer to the release
// the owner's values are the committed ones. All the owners' intervals
// contain the moment the reader has every answer; a transaction on keys of
// two owners is then applied at both or prepared at neither (had it
// prepared at one before the read, the read waited for its decision there,
// and a commit needs its yes vote at the other, which the other's read lock
// could not have let in). So the answer is the state at one point in the
// serial order, never part of a transaction, and it includes everything
// committed before the read began.
//
// No deadlock: waits go only from younger to older, as for Prepares (see
// mayWait). A read waits only for holders older than itself (or already
// committing); finding a younger one it fails at once and the reader
// retries with a fresh, younger begin time. A Prepare meeting a read lock
// waits if the read is older; a younger read it breaks (wound-wait): the
// read's lock goes at once, and its reader learns it (an error if it was
// still waiting, Held false at the release otherwise) and retries. So a
// writer is never refused because of a read, and waits at most for reads
// older than itself, about a round trip each. A read also steps aside for
// an older Prepare already waiting for its keys, which would otherwise
// break it a moment later. Every wait is bounded by the vote timeout, and a
// read lock by its lease.
//
// No starvation: a writer waits only for reads begun before it. A read is
// refused or broken only by transactions begun before it; each retry
// begins afresh, so only writers in flight at that moment can break it,
// and the reader gives up after a bounded number of attempts.
//
// Nothing is logged: a participant that crashes or restarts loses its read
// locks, and answers the release with Held false (it does not know the
// read), so the reader retries instead of combining values from different
// moments. An owner that gives a lock up early (its lease ran out) answers
// the same.

// readLock is one snapshot read's lock on some of this node's keys.
type readLock struct {
	id    messages.ReadID
	begun int64
	keys  []string
	taken time.Time
	lease time.Time // given up after this, answered or not
	wait  *waiter   // waiting for the holders found on arrival; nil once answered
	reply *messages.ReadLocked
	// parked: Prepares waiting for this lock (and maybe others) to go.
	parked []*waiter
}

// readLocks indexes the participant's read locks. Memory only.
type readLocks struct {
	byID  map[messages.ReadID]*readLock
	byKey map[string][]*readLock
	// released: reads released or given up here, kept for a while so that
	// a late or duplicated ReadLock does not lock their keys again for a
	// reader that has gone.
	released map[messages.ReadID]time.Time
}

func (p *participant) readLocks() *readLocks {
	if p.rlocks == nil {
		p.rlocks = &readLocks{byID: map[messages.ReadID]*readLock{}, byKey: map[string][]*readLock{}, released: map[messages.ReadID]time.Time{}}
	}
	return p.rlocks
}

// readLease is how long a read lock is kept without its release: longer
// than a reader waits for its answers (see cluster.Node.SnapshotRead).
func (p *participant) readLease() time.Duration { return 2*p.timing.VoteTimeout + time.Second }

// readHold is how long a read lock may keep a waiting Prepare out: a read
// answered everywhere releases within a round trip, so a lock held longer
// belongs to a read waiting for a slow owner, or to a reader that is gone
// or whose release was lost. It is broken then (the reader retries) rather
// than hold writers up to their vote timeout.
func (p *participant) readHold() time.Duration { return p.timing.VoteTimeout / 4 }

// holderOlderThanRead orders a transaction and a read by begin time; on a
// tie the transaction counts as older (in both directions alike, so the
// order stays total).
func holderOlderThanRead(txBegun, readBegun int64) bool { return txBegun <= readBegun }

func (p *participant) onSnapshotRead(ctx actor.Context, msg interface{}) {
	switch m := msg.(type) {
	case *messages.ReadLock:
		p.onReadLock(ctx, m)
	case *messages.ReadRelease:
		p.onReadRelease(ctx, m)
	}
}

func (p *participant) onReadLock(ctx actor.Context, m *messages.ReadLock) {
	if ctx.Sender() == nil {
		return // nobody to answer, nobody to release it
	}
	rl := p.readLocks()
	refuse := func(format string, args ...any) {
		ctx.Respond(&messages.ReadLocked{Reader: m.Reader, From: p.cfg.Node, Err: fmt.Sprintf("node %d: ", p.cfg.Node) + fmt.Sprintf(format, args...)})
	}
	if _, gone := rl.released[m.Reader]; gone {
		refuse("read %v already released or broken here", m.Reader)
		return
	}
	if l := rl.byID[m.Reader]; l != nil { // a duplicate
		if l.reply != nil {
			ctx.Respond(l.reply)
		} else if l.wait != nil {
			l.wait.to = ctx.Sender()
		}
		return
	}
	var blockers []messages.TxID
	for _, k := range m.Keys {
		for _, h := range p.locks.holders(k) {
			t := p.txs[h]
			switch {
			case t == nil || t.recovered:
				refuse("key %s is held by transaction %v, in doubt since a restart", k, h)
				return
			case t.state != committing && !holderOlderThanRead(t.begun, m.Begun):
				// Waiting for a younger transaction could close a cycle
				// of waits; the reader retries, younger.
				refuse("key %s is held by transaction %v, begun after this read", k, h)
				return
			}
			if !containsTx(blockers, h) {
				blockers = append(blockers, h)
			}
		}
	}
	for _, w := range p.waits.prepares {
		if !w.done && holderOlderThanRead(w.prepare.Begun, m.Begun) {
			for _, o := range w.prepare.Ops {
				if containsKey(m.Keys, o.Key) {
					refuse("key %s is wanted by transaction %v, begun before this read and waiting for it", o.Key, w.prepare.Tx)
					return
				}
			}
		}
	}
	now := p.now()
	l := &readLock{id: m.Reader, begun: m.Begun, keys: m.Keys, taken: now, lease: now.Add(p.readLease())}
	rl.byID[m.Reader] = l
	for _, k := range m.Keys {
		rl.byKey[k] = append(rl.byKey[k], l)
	}
	w := &waiter{to: ctx.Sender(), read: p.newHeldRead(m.Keys, l), blockers: blockers, deadline: now.Add(p.timing.VoteTimeout)}
	if len(blockers) == 0 {
		p.answerRead(ctx, w)
		return
	}
	l.wait = w
	p.waits.add(w)
}

func (p *participant) onReadRelease(ctx actor.Context, m *messages.ReadRelease) {
	rl := p.readLocks()
	l := rl.byID[m.Reader]
	held := l != nil && l.reply != nil
	if l != nil {
		if l.wait != nil {
			p.waits.drop(l.wait) // the reader gave up before this node answered
		}
		p.dropReadLock(ctx, l)
	}
	rl.released[m.Reader] = p.now()
	if ctx.Sender() != nil {
		ctx.Respond(&messages.ReadReleased{Reader: m.Reader, From: p.cfg.Node, Held: held})
	}
}

// dropReadLock removes l and tries again the Prepares that waited only for
// read locks, oldest first.
func (p *participant) dropReadLock(ctx actor.Context, l *readLock) {
	p.retryPrepares(ctx, p.unlinkReadLock(l))
}

// unlinkReadLock removes l and returns the Prepares that waited only for
// read locks, for retryPrepares.
func (p *participant) unlinkReadLock(l *readLock) []*waiter {
	rl := p.readLocks()
	if rl.byID[l.id] != l {
		return nil
	}
	delete(rl.byID, l.id)
	rl.released[l.id] = p.now()
	for _, k := range l.keys {
		list := rl.byKey[k]
		for i := 0; i < len(list); i++ {
			if list[i] == l {
				list = append(list[:i], list[i+1:]...)
				i--
			}
		}
		if len(list) == 0 {
			delete(rl.byKey, k)
		} else {
			rl.byKey[k] = list
		}
	}
	var ready []*waiter
	for _, w := range l.parked {
		if w.done {
			continue
		}
		if w.readers--; w.readers == 0 {
			p.waits.drop(w)
			ready = append(ready, w)
		}
	}
	return ready
}

// retryPrepares tries waiting Prepares again, oldest first.
func (p *participant) retryPrepares(ctx actor.Context, ready []*waiter) {
	sort.Slice(ready, func(i, j int) bool {
		a, b := ready[i].prepare, ready[j].prepare
		return older(a.Begun, a.Tx, b.Begun, b.Tx)
	})
	for _, w := range ready {
		p.tryPrepare(ctx, w.prepare, w.to)
	}
}

// expireReadLocks gives up read locks whose lease ran out (their reader
// gone, or its release lost) and forgets old releases.
func (p *participant) expireReadLocks(ctx actor.Context) {
	if p.rlocks == nil {
		return
	}
	now := p.now()
	for _, l := range p.rlocks.byID {
		if now.After(l.lease) {
			if l.wait != nil {
				p.waits.drop(l.wait)
			}
			p.dropReadLock(ctx, l)
			continue
		}
		if now.Sub(l.taken) > p.readHold() {
			for _, w := range l.parked {
				if !w.done {
					p.retryPrepares(ctx, p.breakReadLock(ctx, l, w.prepare.Tx))
					break
				}
			}
		}
	}
	horizon := now.Add(-2 * p.readLease())
	for id, at := range p.rlocks.released {
		if at.Before(horizon) {
			delete(p.rlocks.released, id)
		}
	}
}

// parkOnReaders: a Prepare whose keys snapshot reads have locked breaks
// the locks of reads younger than itself, and waits for the older ones
// (each holds its lock for a round trip or so); it reports whether it
// waits. A floor check (adds of 0) changes nothing, so it passes.
func (p *participant) parkOnReaders(ctx actor.Context, m *messages.Prepare, voteTo *actor.PID) bool {
	if p.rlocks == nil || len(p.rlocks.byID) == 0 || readOnly(m.Ops) {
		return false
	}
	var on []*readLock
	for _, o := range m.Ops {
		for _, l := range p.rlocks.byKey[o.Key] {
			if !containsReadLock(on, l) {
				on = append(on, l)
			}
		}
	}
	if len(on) == 0 {
		return false
	}
	var olderReads []*readLock
	var retry []*waiter // Prepares that waited for a broken lock, tried after this one is placed
	for _, l := range on {
		if holderOlderThanRead(m.Begun, l.begun) {
			retry = append(retry, p.breakReadLock(ctx, l, m.Tx)...)
		} else {
			olderReads = append(olderReads, l)
		}
	}
	if len(olderReads) > 0 {
		w := &waiter{prepare: m, to: voteTo, readers: len(olderReads), deadline: p.now().Add(p.timing.VoteTimeout)}
		p.waits.add(w)
		for _, l := range olderReads {
			l.parked = append(l.parked, w)
		}
		if p.log.IsDebug() {
			p.log.Debug("prepare waits for snapshot reads", "tx", m.Tx, "reads", len(olderReads))
		}
	}
	if len(retry) > 0 {
		// Not before: a retried Prepare could break a lock this one has
		// just chosen to wait for.
		defer p.retryPrepares(ctx, retry)
	}
	return len(olderReads) > 0
}

// breakReadLock gives up a read's lock for an older transaction (by): a
// read still waiting is told to retry; one answered finds out at its
// release (Held false). It returns the Prepares that waited for it.
func (p *participant) breakReadLock(ctx actor.Context, l *readLock, by messages.TxID) []*waiter {
	if l.wait != nil {
		p.waits.drop(l.wait)
		ctx.Send(l.wait.to, &messages.ReadLocked{Reader: l.id, From: p.cfg.Node, Err: fmt.Sprintf(
			"node %d: transaction %v, begun before this read, needs its keys", p.cfg.Node, by)})
		l.wait = nil
	}
	if p.log.IsDebug() {
		p.log.Debug("snapshot read's lock broken by an older transaction", "read", l.id, "tx", by)
	}
	return p.unlinkReadLock(l)
}

func containsKey(keys []string, k string) bool {
	for _, x := range keys {
		if x == k {
			return true
		}
	}
	return false
}

func containsReadLock(ls []*readLock, l *readLock) bool {
	for _, x := range ls {
		if x == l {
			return true
		}
	}
	return false
}
