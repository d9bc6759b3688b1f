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
	s := p.standing(m.Tx)
	if s.heuristic {
		// Decided here by the operator: only the coordinator's answer is
		// compared with it (heuristic.go).
		p.onHeuristicReply(ctx, m, s.forcedCommit)
		return
	}
	if s.kind != standInDoubt {
		return // not in doubt (any more): a late or duplicate answer
	}
	t := s.t
	if m.Decision == messages.DecisionUnknown {
		return // the asked node is in doubt too, or cannot tell
	}
	if p.log.IsInfo() {
		p.log.Info("in-doubt transaction resolved", "tx", m.Tx, "decision", m.Decision, "by", m.From)
	}
	if t.forcing != nil {
		// The operator's decision is being logged: handled once it is,
		// as a reply (a peer's then changes nothing).
		t.forcing.deferred = append(t.forcing.deferred, deferredDecision{reply: m})
		return
	}
	if m.Decision == messages.DecisionCommit {
		p.onDecision(ctx, m.Tx, messages.DecisionCommit, p.cfg.Directory.Coordinator(m.Tx.Node), "")
	} else {
		p.onDecision(ctx, m.Tx, messages.DecisionAbort, nil, fmt.Sprintf("resolved by node %d", m.From))
	}
}

// onQuery answers another participant's DecisionQuery (cooperative
// termination) with what this node knows (see standing):
//   - unknown, if the operator forced a heuristic decision here: that
//     is a guess, not the outcome, and must not spread;
//   - commit, if it committed the transaction or is committing it;
//   - abort, if it voted no or aborted it — or if it has not voted yet: a
//     Prepare still waiting for locks, or none received at all, for a
//     transaction recent enough that this node would remember voting yes
//     on it (neverPrepared). It votes no now (it may: the coordinator cannot
//     have decided commit without its vote), so the outcome is abort;
//   - unknown, if it is in doubt too, voted read-only, or cannot tell a
//     transaction it never saw from one it committed and forgot.
func (p *participant) onQuery(ctx actor.Context, m *messages.DecisionQuery) {
	d := messages.DecisionUnknown
	s := p.standing(m.Tx)
	switch {
	case s.heuristic:
		// The operator decided it here, but a heuristic decision is not
		// the transaction's outcome: passing it on would spread the
		// operator's guess beyond the nodes it was applied to, and a peer
		// told "abort" would then refuse its coordinator's Commit. Unknown:
		// the peer waits for the coordinator. (OutcomeQuery, the operator's
		// own question, does say what was forced here.)
	case s.kind == standReadOnly:
		// It voted read-only: the outcome was decided without it.
	case s.kind == standCommitted, s.kind == standCommitting:
		d = messages.DecisionCommit
	case s.kind == standAborted:
		d = messages.DecisionAbort
	case s.kind == standWaiting:
		p.waits.drop(s.w)
		p.vote(ctx, s.w.to, m.Tx, messages.VoteNo, fmt.Sprintf("node %d: a peer in doubt asked before this node voted", p.cfg.Node))
		d = messages.DecisionAbort
	case s.kind == standUnknown && p.neverPrepared(m.Begun):
		// Remembered as a no vote: a Prepare arriving later is refused.
		p.recentAborts.add(m.Tx, time.Now())
		if p.log.IsInfo() {
			p.log.Info("never prepared; voting no for a peer in doubt", "tx", m.Tx, "asked_by", m.From)
		}
		d = messages.DecisionAbort
	}
	ctx.Send(p.cfg.Directory.Participant(m.From), &messages.DecisionReply{Tx: m.Tx, From: p.cfg.Node, Decision: d})
}

// neverPrepared: a transaction begun at begun, of which this participant
// holds no trace, was never voted yes on here. That holds when it began
// after this participant's memory starts (memorySince) and recently enough
// that a commit of it would still be remembered, with the clock skew allowed
// for, since begun is the coordinator's clock.
func (p *participant) neverPrepared(begun int64) bool {
	if begun == 0 {
		return false // the asker does not know (recovered from its log)
	}
	b := time.Unix(0, begun)
	return b.After(p.memorySince) && time.Since(b) < p.timing.RememberOutcomes-p.timing.ClockSkew
}

// askAboutInDoubt sends a DecisionQuery to the coordinator of every
// transaction this node has been prepared for too long, with a doubling
// pause per transaction.
func (p *participant) askAboutInDoubt(ctx actor.Context) {
	now := time.Now()
	for tx, t := range p.txs {
		if p.standing(tx).kind != standInDoubt || now.Before(t.nextQuery) {
			continue
		}
		if p.log.IsInfo() {
			p.log.Info("asking coordinator about in-doubt transaction", "tx", tx, "coordinator", tx.Node, "waiting", now.Sub(t.preparedAt).Round(time.Millisecond))
		}
		q := &messages.DecisionQuery{Tx: tx, From: p.cfg.Node, Begun: t.begun}
		ctx.Send(p.cfg.Directory.Coordinator(tx.Node), q)
		// The other participants too, at once (cooperative termination):
		// the coordinator may be down, and a peer that has not voted can
		// settle it only while the transaction is recent.
		for _, n := range t.participants {
			if n != p.cfg.Node {
				ctx.Send(p.cfg.Directory.Participant(n), q)
			}
		}
		if t.asked > 0 && p.cfg.Rounds != nil {
			p.cfg.Rounds(messages.DecisionUnknown) // the previous round learned nothing
		}
		t.asked++
		t.nextQuery = now.Add(t.queryGap.grow())
	}
	p.queryTimer.arm(ctx, p.queryTick())
}
