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
//     Prepare still waiting for locks, or none received at all. It refuses
//     the transaction (votes no; it may, as the coordinator cannot have
//     decided commit without its vote), and says so only once its REFUSED
//     record is durable (refuse): the refusal binds it, restarted or not,
//     and no clock enters into it;
//   - unknown, if it is in doubt too, voted read-only, or the transaction
//     lies below its coordinator's mark here (forgotten: it may have
//     committed it).
func (p *participant) onQuery(ctx actor.Context, m *messages.DecisionQuery) {
	reply := func(ctx actor.Context, d messages.Decision) {
		ctx.Send(p.cfg.Directory.Participant(m.From), &messages.DecisionReply{Tx: m.Tx, From: p.cfg.Node, Decision: d})
	}
	abort := func(ctx actor.Context) { reply(ctx, messages.DecisionAbort) }
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
		reply(ctx, messages.DecisionCommit)
		return
	case s.kind == standAborted && s.bound:
		abort(ctx)
		return
	case s.kind == standAborted:
		// Voted no, but nothing durable binds it yet (a no vote is not
		// logged): make it bind before saying so.
		p.refuse(ctx, m.Tx, abort)
		return
	case s.kind == standWaiting:
		p.waits.drop(s.w)
		p.vote(ctx, s.w.to, m.Tx, messages.VoteNo, fmt.Sprintf("node %d: a peer in doubt asked before this node voted", p.cfg.Node))
		p.refuse(ctx, m.Tx, abort)
		return
	case s.kind == standUnknown:
		if p.log.IsInfo() {
			p.log.Info("never prepared; refusing (voting no) for a peer in doubt", "tx", m.Tx, "asked_by", m.From)
		}
		p.refuse(ctx, m.Tx, abort)
		return
	}
	reply(ctx, messages.DecisionUnknown)
}

// refuse binds this node to no on tx — a Prepare of it arriving later,
// even after a restart, gets no — and runs answer once that is durable
// (its REFUSED record, forced). Until then tx stands aborted here, so a
// Prepare meanwhile gets no too. If the write fails nothing is answered:
// the asker asks again.
func (p *participant) refuse(ctx actor.Context, tx messages.TxID, answer func(actor.Context)) {
	p.mem.note(tx, outAborted, p.now())
	p.durable.then(ctx, messages.Record{Kind: messages.RecRefused, Tx: tx}, func(ctx actor.Context, err error) {
		if err != nil {
			p.log.Error("REFUSED not logged; not answering the peer in doubt", "tx", tx, "error", err)
			return
		}
		p.mem.note(tx, outRefused, p.now())
		answer(ctx)
	})
}

// askAboutInDoubt sends a DecisionQuery to the coordinator of every
// transaction this node has been prepared for too long, with a doubling
// pause per transaction.
func (p *participant) askAboutInDoubt(ctx actor.Context) {
	now := p.now()
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
		// settle it by refusing.
		for _, n := range t.participants {
			if n != p.cfg.Node {
				ctx.Send(p.cfg.Directory.Participant(n), q)
			}
		}
		if t.asked > 0 && p.cfg.Rounds != nil {
			p.cfg.Rounds(messages.DecisionUnknown) // the previous round learned nothing
		}
		if p.nonblocking() {
			if t.asked == 0 {
				// The first round only asks: a coordinator that is up
				// answers within a round trip, and a recovery now would
				// overtake its ballot 0 for nothing. Recovery starts on
				// the next tick if no answer came (recoverPending).
				t.recoverDue = true
			} else {
				p.startRecovery(ctx, tx, t)
			}
		}
		t.asked++
		t.nextQuery = now.Add(t.queryGap.grow())
	}
	p.queryTimer.arm(ctx, p.queryTick())
}
