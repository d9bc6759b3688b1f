package actors

// Recovery without the coordinator (non-blocking commit): a participant in
// doubt does not only ask; at every round of asking it also runs a round
// of Paxos with the transaction's acceptors in a ballot of its own
// (proposer.go). The round ends with the outcome chosen — commit if commit
// may have been chosen before, abort otherwise — which this node applies
// and passes on to the other participants. With four nodes, any single
// crash leaves a majority of any transaction's three acceptors up, so no
// one stays in doubt for longer than a few rounds.

import (
	"fmt"

	"github.com/asynkron/protoactor-go/actor"

	"twopc/messages"
)

func (p *participant) nonblocking() bool { return p.cfg.Protocol.OrDefault() == NonBlocking }

// startRecovery begins a round in a new ballot. A round that is still
// running from the previous time is given up: its messages or acceptors
// were lost, or a competing proposer overtook it.
func (p *participant) startRecovery(ctx actor.Context, tx messages.TxID, t *ptx) {
	if t.forcing != nil {
		return // the operator's decision is being logged
	}
	if t.recovery == nil {
		t.recovery = newProposal(tx, p.cfg.Node, p.cfg.Members, p.cfg.Directory)
	}
	t.recovery.recover(ctx)
	if p.log.IsInfo() {
		p.log.Info("recovery round started", "tx", tx, "ballot", t.recovery.ballot, "acceptors", t.recovery.acceptors)
	}
	p.cfg.Steps.report(p.cfg.Node, StepRecoveryStarted, tx, -1, 0)
}

// recoverPending starts the recovery of every transaction still in doubt
// whose first round of asking went unanswered (askAboutInDoubt): one tick
// after it, not a whole round, so a dead coordinator costs little more
// than the first round.
func (p *participant) recoverPending(ctx actor.Context) {
	for tx, t := range p.txs {
		if !t.recoverDue {
			continue
		}
		t.recoverDue = false
		if p.standing(tx).kind == standInDoubt {
			p.startRecovery(ctx, tx, t)
		}
	}
}

// recovering returns the live proposal m answers, if tx is still in doubt
// here: a reply for a transaction decided meanwhile is stale.
func (p *participant) recovering(tx messages.TxID) (*ptx, *proposal) {
	s := p.standing(tx)
	if s.kind != standInDoubt || s.heuristic || s.t.recovery == nil || s.t.forcing != nil {
		return nil, nil
	}
	return s.t, s.t.recovery
}

func (p *participant) onPromiseReply(ctx actor.Context, m *messages.PromiseReply) {
	if _, r := p.recovering(m.Tx); r != nil {
		r.onPromise(ctx, m)
	}
}

func (p *participant) onAcceptReply(ctx actor.Context, m *messages.AcceptReply) {
	t, r := p.recovering(m.Tx)
	if r == nil || !r.onAccepted(m) {
		return
	}
	d := r.chosen
	why := fmt.Sprintf("chosen by node %d's recovery (ballot %d)", p.cfg.Node, r.ballot)
	if p.log.IsInfo() {
		p.log.Info("in-doubt transaction recovered", "tx", m.Tx, "decision", d, "ballot", r.ballot)
	}
	p.cfg.Steps.reportReason(p.cfg.Node, StepRecoveryChosen, m.Tx, why+": "+d.String())
	// The others in doubt hear it as a peer's answer; the coordinator, if
	// it is up, learns it from the acceptors or this node's ack.
	for _, n := range t.participants {
		if n != p.cfg.Node {
			ctx.Send(p.cfg.Directory.Participant(n), &messages.DecisionReply{Tx: m.Tx, From: p.cfg.Node, Decision: d})
		}
	}
	p.onDecision(ctx, m.Tx, d, nil, why)
}
