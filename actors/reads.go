package actors

// Reads: a participant answers from its committed state, but holds a read
// back while transactions prepared on its keys are undecided.

import (
	"fmt"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"twopc/messages"
)

// waitingRead is a read that must not answer before its blockers are gone:
// a client told "committed" may read at once, and every transaction that
// was committed before the read arrived is either applied here already or
// still prepared here (the coordinator decides only after every yes vote).
type waitingRead struct {
	to       *actor.PID
	keys     []string
	blockers map[messages.TxID]bool
	deadline time.Time
}

func (p *participant) onRead(ctx actor.Context, m *messages.Read) {
	var blockers map[messages.TxID]bool
	for tx, t := range p.txs {
		// A transaction still being prepared has not voted, so nobody has
		// been told it committed: it does not hold the read back.
		if t.state == preparing || !touches(t.ops, m.Keys) {
			continue
		}
		if blockers == nil {
			blockers = make(map[messages.TxID]bool)
		}
		blockers[tx] = true
	}
	if len(blockers) == 0 {
		ctx.Respond(p.readNow(m.Keys))
		return
	}
	if ctx.Sender() == nil {
		return // nobody to answer
	}
	p.waitingReads = append(p.waitingReads, &waitingRead{
		to: ctx.Sender(), keys: m.Keys, blockers: blockers, deadline: time.Now().Add(p.timing.VoteTimeout),
	})
}

func (p *participant) readNow(keys []string) *messages.ReadReply {
	out := &messages.ReadReply{From: p.cfg.Node, Values: make([]messages.KeyValue, len(keys))}
	for i, k := range keys {
		out.Values[i] = messages.KeyValue{Key: k, Value: p.kv[k]}
	}
	return out
}

func touches(ops []messages.Op, keys []string) bool {
	for _, o := range ops {
		for _, k := range keys {
			if o.Key == k {
				return true
			}
		}
	}
	return false
}

// unblockReads answers the reads that were waiting only for tx.
func (p *participant) unblockReads(ctx actor.Context, tx messages.TxID) {
	if len(p.waitingReads) == 0 {
		return
	}
	kept := p.waitingReads[:0]
	for _, r := range p.waitingReads {
		delete(r.blockers, tx)
		if len(r.blockers) == 0 {
			ctx.Send(r.to, p.readNow(r.keys))
			continue
		}
		kept = append(kept, r)
	}
	clear(p.waitingReads[len(kept):])
	p.waitingReads = kept
}

// expireReads answers, with an error, reads whose blockers are in doubt for
// longer than the vote timeout: the value they would read is not yet known.
func (p *participant) expireReads(ctx actor.Context) {
	now := time.Now()
	kept := p.waitingReads[:0]
	for _, r := range p.waitingReads {
		if now.Before(r.deadline) {
			kept = append(kept, r)
			continue
		}
		var txs []string
		for tx := range r.blockers {
			txs = append(txs, tx.String())
		}
		ctx.Send(r.to, &messages.ReadReply{From: p.cfg.Node, Err: fmt.Sprintf(
			"node %d: key held by transaction(s) %s awaiting their decision; the value is not known yet", p.cfg.Node, strings.Join(txs, ", "))})
	}
	clear(p.waitingReads[len(kept):])
	p.waitingReads = kept
}
