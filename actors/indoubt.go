package actors

// In doubt: a prepared participant never decides alone; it asks its
// coordinator and, failing that, the other participants.

import (
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"twopc/messages"
)

func (p *participant) onDecisionReply(ctx actor.Context, m *messages.DecisionReply) {
	t := p.txs[m.Tx]
	if t == nil || t.state != prepared {
		return // not in doubt (any more): a late or duplicate answer
	}
	if m.Decision == messages.DecisionUnknown {
		return // the asked node is in doubt too, or cannot tell
	}
	if p.log.IsInfo() {
		p.log.Info("in-doubt transaction resolved", "tx", m.Tx, "decision", m.Decision, "by", m.From)
	}
	if m.Decision == messages.DecisionCommit {
		p.onDecision(ctx, m.Tx, messages.DecisionCommit, p.cfg.Directory.Coordinator(m.Tx.Node), "")
	} else {
		p.onDecision(ctx, m.Tx, messages.DecisionAbort, nil, fmt.Sprintf("resolved by node %d", m.From))
	}
}

// onQuery answers another participant's DecisionQuery (cooperative
// termination) with what this node knows:
//   - commit, if it committed the transaction or is committing it;
//   - abort, if it voted no or aborted it — or if its Prepare is still
//     waiting for locks: it votes no now (it may: the coordinator cannot
//     have decided commit without its vote), so the outcome is abort;
//   - unknown, if it is in doubt too, or has no memory of the transaction
//     (a forgotten commit cannot be told from one never seen).
func (p *participant) onQuery(ctx actor.Context, m *messages.DecisionQuery) {
	d := messages.DecisionUnknown
	t, w := p.txs[m.Tx], p.waits.prepares[m.Tx]
	switch {
	case p.recentCommits.has(m.Tx), t != nil && t.state == committing:
		d = messages.DecisionCommit
	case p.recentAborts.has(m.Tx):
		d = messages.DecisionAbort
	case w != nil:
		p.waits.drop(w)
		p.vote(ctx, w.to, m.Tx, messages.VoteNo, fmt.Sprintf("node %d: a peer in doubt asked before this node voted", p.cfg.Node))
		d = messages.DecisionAbort
	}
	ctx.Send(p.cfg.Directory.Participant(m.From), &messages.DecisionReply{Tx: m.Tx, From: p.cfg.Node, Decision: d})
}

// askAboutInDoubt sends a DecisionQuery to the coordinator of every
// transaction this node has been prepared for too long, with a doubling
// pause per transaction.
func (p *participant) askAboutInDoubt(ctx actor.Context) {
	now := time.Now()
	for tx, t := range p.txs {
		if t.state != prepared || now.Before(t.nextQuery) {
			continue
		}
		if p.log.IsInfo() {
			p.log.Info("asking coordinator about in-doubt transaction", "tx", tx, "coordinator", tx.Node, "waiting", now.Sub(t.preparedAt).Round(time.Millisecond))
		}
		ctx.Send(p.cfg.Directory.Coordinator(tx.Node), &messages.DecisionQuery{Tx: tx, From: p.cfg.Node})
		if t.asked > 0 {
			// The coordinator did not settle it the first time: ask the
			// other participants too (cooperative termination).
			for _, n := range t.participants {
				if n != p.cfg.Node {
					ctx.Send(p.cfg.Directory.Participant(n), &messages.DecisionQuery{Tx: tx, From: p.cfg.Node})
				}
			}
		}
		t.asked++
		t.queryGap *= 2
		if t.queryGap > p.timing.MaxQueryInterval {
			t.queryGap = p.timing.MaxQueryInterval
		}
		t.nextQuery = now.Add(t.queryGap)
	}
	p.queryTimer.arm(ctx, p.queryTick())
}
