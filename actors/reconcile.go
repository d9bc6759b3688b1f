package actors

// Reconciling heuristic decisions. A Commit of a transaction the operator
// aborted here is answered as damage (onDecisionAfterHeuristic), but under
// presumed abort a coordinator that aborted sends nothing more: a wrong
// heuristic commit would go unreported for ever. So a participant holding
// a heuristic decision asks the transaction's coordinator — only it: the
// peers never tell a heuristic decision (onQuery), and their own answers
// are not the coordinator's decision — with the in-doubt DecisionQuery, on
// the query timer and with the same doubling pauses, until the coordinator
// says commit or abort. Then it logs whether the operator guessed right
// (WARN) or not (ERROR, HEURISTIC DAMAGE), and stops asking. Nothing else
// changes: no record is written, no value touched, nothing acked.
//
// The state is memory only: a restarted participant asks again about every
// heuristic decision in its log, and logs the answer again.

import (
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"twopc/messages"
)

// heuristicCheck is a heuristic decision not yet compared with the
// coordinator's decision.
type heuristicCheck struct {
	begun     int64 // the transaction's Begun if this node still knew it, else 0
	recovered bool  // found in the log at start: it may have been confirmed before, and acked
	nextQuery time.Time
	queryGap  backoff
	asked     int
}

// startReconciling begins asking the coordinator about tx, at once.
func (p *participant) startReconciling(ctx actor.Context, tx messages.TxID, begun int64) {
	p.unreconciled[tx] = &heuristicCheck{begun: begun, nextQuery: time.Now(), queryGap: p.queryBackoff()}
	p.askAboutHeuristics(ctx)
}

// askAboutHeuristics sends a DecisionQuery to the coordinator of every
// unreconciled heuristic decision whose pause is over, and doubles the
// pause (up to MaxQueryInterval).
func (p *participant) askAboutHeuristics(ctx actor.Context) {
	now := time.Now()
	for tx, h := range p.unreconciled {
		if now.Before(h.nextQuery) {
			continue
		}
		if t := p.txs[tx]; t != nil && t.state == prepared {
			// The forced decision's own record could not be written: the
			// transaction is asked about as in doubt (askAboutInDoubt), and
			// the coordinator's answer reconciles it as well.
			continue
		}
		if p.log.IsInfo() {
			p.log.Info("asking coordinator whether it agrees with the operator's heuristic decision", "tx", tx, "coordinator", tx.Node, "decision", forcedDecision(p.heuristics[tx]))
		}
		ctx.Send(p.cfg.Directory.Coordinator(tx.Node), &messages.DecisionQuery{Tx: tx, From: p.cfg.Node, Begun: h.begun})
		h.asked++
		h.nextQuery = now.Add(h.queryGap.grow())
	}
}

// onHeuristicReply handles a DecisionReply about a transaction the
// operator decided here. Only the coordinator's answer counts; a peer's is
// ignored, and so is "unknown" (asked again later).
func (p *participant) onHeuristicReply(ctx actor.Context, m *messages.DecisionReply, commit bool) {
	if m.From != m.Tx.Node {
		if p.log.IsDebug() {
			p.log.Debug("a peer's answer about a heuristically decided transaction; ignored", "tx", m.Tx, "from", m.From, "decision", m.Decision)
		}
		return
	}
	if m.Decision == messages.DecisionUnknown {
		return
	}
	forced := forcedDecision(commit)
	if t := p.txs[m.Tx]; t != nil && t.state == prepared && t.forcing == nil {
		// The forced decision's record could not be written: retry it, as
		// on any decision that arrives (onDecisionAfterHeuristic).
		p.decide(ctx, m.Tx, forced, nil, "heuristic abort by the operator")
	}
	h, open := p.unreconciled[m.Tx]
	if !open {
		return // reconciled already: a late or duplicate answer
	}
	if h.recovered && commit && m.Presumed {
		// Before this restart the coordinator may have committed, been
		// acked by this node and every other, and forgotten: its "abort"
		// is then presumed over a commit. Say what cannot be told apart
		// rather than raise a false alarm.
		delete(p.unreconciled, m.Tx)
		p.log.Warn(fmt.Sprintf("heuristic commit of %v cannot be confirmed: its coordinator no longer remembers it (presumed abort): either it aborted, and the operator's commit was wrong, or it committed and ended once every participant acked", m.Tx),
			"tx", m.Tx, "node", p.cfg.Node)
		return
	}
	p.reconciled(m.Tx, m.Decision, forced)
}

// reconciled logs how the coordinator's decision d compares with the
// operator's forced one, and stops asking about tx.
func (p *participant) reconciled(tx messages.TxID, d, forced messages.Decision) {
	delete(p.unreconciled, tx)
	if d == forced {
		p.logConfirmed(tx, d)
	} else {
		p.logDamage(tx, d, forced)
	}
}

func (p *participant) logConfirmed(tx messages.TxID, d messages.Decision) {
	p.log.Warn(fmt.Sprintf("heuristic decision confirmed: the coordinator also decided %v for %v", d, tx), "tx", tx, "node", p.cfg.Node)
}

// logDamage reports a heuristic decision that disagrees with the
// coordinator's.
func (p *participant) logDamage(tx messages.TxID, d, forced messages.Decision) {
	p.log.Error(fmt.Sprintf("HEURISTIC DAMAGE: coordinator decided %v for %v, this node applied the operator's %v", d, tx, forced),
		"tx", tx, "node", p.cfg.Node)
}
