package actors

// Lock waits: a Prepare that finds its keys held by older transactions
// waits for them, holding nothing, instead of voting no.

import (
	"fmt"
	"sort"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"twopc/messages"
)

// waitingPrepare is a Prepare that found its keys held and may wait: every
// holder is older than it (or already committing). Waits go only from
// younger to older transactions and a waiting Prepare holds nothing, so
// waits never form a cycle: no deadlock, here or across nodes.
type waitingPrepare struct {
	m        *messages.Prepare
	voteTo   *actor.PID
	blockers map[messages.TxID]bool
	deadline time.Time
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

// released is called whenever tx stops holding locks here: waiting reads and
// Prepares it held back get another chance.
func (p *participant) released(ctx actor.Context, tx messages.TxID) {
	p.unblockReads(ctx, tx)
	var ready []*waitingPrepare
	for id, w := range p.waitingPrepares {
		if !w.blockers[tx] {
			continue
		}
		delete(w.blockers, tx)
		if len(w.blockers) == 0 {
			delete(p.waitingPrepares, id)
			ready = append(ready, w)
		}
	}
	// Oldest first: it must not lose the key to a younger waiter and then
	// be refused for a conflict it waited to avoid.
	sort.Slice(ready, func(i, j int) bool {
		return older(ready[i].m.Begun, ready[i].m.Tx, ready[j].m.Begun, ready[j].m.Tx)
	})
	for _, w := range ready {
		p.tryPrepare(ctx, w.m, w.voteTo)
	}
}

// expirePrepares votes no for Prepares that waited longer than the vote
// timeout: their coordinator has given up on them by now anyway.
func (p *participant) expirePrepares(ctx actor.Context) {
	now := time.Now()
	for id, w := range p.waitingPrepares {
		if now.Before(w.deadline) {
			continue
		}
		delete(p.waitingPrepares, id)
		p.vote(ctx, w.voteTo, id, messages.VoteNo, fmt.Sprintf("node %d: gave up waiting for locks held by older transactions", p.cfg.Node))
	}
}
