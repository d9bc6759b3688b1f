package actors

// Waiting: a Prepare that finds its keys held by older transactions, and a
// read of keys held by prepared transactions, are held back, holding
// nothing, until those transactions stop holding their keys here. (What a
// read answers once they have is in reads.go.)

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"twopc/messages"
)

// waiter is a Prepare or a read held back until the transactions it waits
// for (its blockers) have committed or aborted here.
//
// A waiting Prepare waits only for older transactions (or ones already
// committing), and holds no lock while it waits, so waits never form a
// cycle: no deadlock, here or across nodes.
//
// A waiting read is how a client reads its own writes: a client told
// "committed" may read at once, and every transaction committed before the
// read arrived is either applied here already or still prepared here (the
// coordinator decides only after every yes vote).
type waiter struct {
	blockers []messages.TxID
	pending  int // blockers still holding their keys
	deadline time.Time
	to       *actor.PID        // where the vote or the reply goes
	prepare  *messages.Prepare // a waiting Prepare; nil for a read
	read     *heldRead         // a waiting read (see reads.go)
	// readers: snapshot read locks a waiting Prepare waits for (not in
	// blockers: see parkOnReaders); it is tried again when the last goes.
	readers int
	done    bool // woken, expired or given up: ignore it
}

// waits indexes waiters by the transactions they wait for, so that a
// transaction's end wakes exactly its waiters.
type waits struct {
	byBlocker map[messages.TxID][]*waiter
	prepares  map[messages.TxID]*waiter // waiting Prepares, by their own transaction
	reads     int                       // waiting reads
	all       []*waiter                 // in arrival order, for expiry
	// dropped counts waiters given up on (not woken by their blockers)
	// since byBlocker was last cleaned: they stay in its lists until then.
	dropped int
}

func newWaits() *waits {
	return &waits{byBlocker: make(map[messages.TxID][]*waiter), prepares: make(map[messages.TxID]*waiter)}
}

func (ws *waits) add(w *waiter) {
	w.pending = len(w.blockers)
	for _, b := range w.blockers {
		ws.byBlocker[b] = append(ws.byBlocker[b], w)
	}
	if w.prepare != nil {
		ws.prepares[w.prepare.Tx] = w
	} else {
		ws.reads++
	}
	ws.all = append(ws.all, w)
}

// drop marks w done: woken, expired, or given up on.
func (ws *waits) drop(w *waiter) {
	if w.done {
		return
	}
	w.done = true
	ws.dropped++
	if w.prepare != nil {
		delete(ws.prepares, w.prepare.Tx)
	} else {
		ws.reads--
	}
}

// released drops and returns the waiters that were waiting only for tx.
func (ws *waits) released(tx messages.TxID) []*waiter {
	list := ws.byBlocker[tx]
	delete(ws.byBlocker, tx)
	var ready []*waiter
	for _, w := range list {
		if w.done {
			continue
		}
		if w.pending--; w.pending == 0 {
			ws.drop(w)
			ws.dropped-- // woken, and gone from this blocker's list already
			ready = append(ready, w)
		}
	}
	return ready
}

// expired drops and returns the waiters past their deadline, and forgets
// every done waiter, so that a transaction in doubt for long does not
// collect them.
func (ws *waits) expired(now time.Time) []*waiter {
	var out []*waiter
	kept := ws.all[:0]
	for _, w := range ws.all {
		if !w.done && now.After(w.deadline) {
			ws.drop(w)
			out = append(out, w)
		}
		if !w.done {
			kept = append(kept, w)
		}
	}
	clear(ws.all[len(kept):])
	ws.all = kept
	// Waiters given up on (expired, aborted, asked about by a peer) stay in
	// their blockers' lists: clean those, or a transaction in doubt for long
	// would collect every Prepare and read that ever waited for it.
	if ws.dropped > 0 {
		ws.dropped = 0
		for b, list := range ws.byBlocker {
			live := list[:0]
			for _, w := range list {
				if !w.done {
					live = append(live, w)
				}
			}
			clear(list[len(live):])
			if len(live) == 0 {
				delete(ws.byBlocker, b)
			} else {
				ws.byBlocker[b] = live
			}
		}
	}
	return out
}

// mayWait: a conflicting Prepare waits (instead of voting no) when every
// holder is already committing here, or is older than it. Holders that are
// older never wait for younger ones, so no cycle of waits can form; a
// younger holder makes the older requester vote no at once.
func (p *participant) mayWait(m *messages.Prepare, holders []messages.TxID) bool {
	for _, h := range holders {
		t := p.txs[h]
		if t == nil || t.recovered {
			return false // held by an unknown or long-undecided transaction: do not wait
		}
		if t.state == committing {
			continue
		}
		if !older(t.begun, h, m.Begun, m.Tx) {
			return false
		}
	}
	return true
}

// older orders transactions by begin time, then by id, so the order is total.
func older(aBegun int64, a messages.TxID, bBegun int64, b messages.TxID) bool {
	if aBegun != bBegun {
		return aBegun < bBegun
	}
	if a.Node != b.Node {
		return a.Node < b.Node
	}
	if a.Incarnation != b.Incarnation {
		return a.Incarnation < b.Incarnation
	}
	return a.Seq < b.Seq
}

// settle ends tx here once it committed or aborted (or failed to prepare):
// its locks go, and whatever waited only for it goes on.
func (p *participant) settle(ctx actor.Context, tx messages.TxID, t *ptx) {
	p.locks.release(tx, t.ops)
	delete(p.txs, tx)
	var prepares []*waiter
	for _, w := range p.waits.released(tx) {
		if w.prepare == nil {
			p.answerRead(ctx, w)
		} else {
			prepares = append(prepares, w)
		}
	}
	// Oldest first: it must not lose the key to a younger waiter and then
	// be refused for a conflict it waited to avoid.
	sort.Slice(prepares, func(i, j int) bool {
		a, b := prepares[i].prepare, prepares[j].prepare
		return older(a.Begun, a.Tx, b.Begun, b.Tx)
	})
	for _, w := range prepares {
		p.tryPrepare(ctx, w.prepare, w.to)
	}
}

// expireWaits gives up on waiters older than the vote timeout. A Prepare
// votes no (its coordinator has given up on it by now anyway); a read gets
// an error rather than a value that is not known yet.
func (p *participant) expireWaits(ctx actor.Context) {
	for _, w := range p.waits.expired(p.now()) {
		if w.prepare != nil {
			p.vote(ctx, w.to, w.prepare.Tx, messages.VoteNo, fmt.Sprintf("node %d: gave up waiting for locks held by older transactions", p.cfg.Node))
			continue
		}
		var txs []string
		for _, tx := range w.blockers {
			if p.txs[tx] != nil {
				txs = append(txs, tx.String())
			}
		}
		why := fmt.Sprintf("node %d: key held by transaction(s) %s awaiting their decision; the value is not known yet", p.cfg.Node, strings.Join(txs, ", "))
		if l := w.read.lock; l != nil {
			// A snapshot read gives its lock up with its wait.
			ctx.Send(w.to, &messages.ReadLocked{Reader: l.id, From: p.cfg.Node, Err: why})
			p.dropReadLock(ctx, l)
			continue
		}
		ctx.Send(w.to, &messages.ReadReply{From: p.cfg.Node, Err: why})
	}
	p.expireReadLocks(ctx)
}
