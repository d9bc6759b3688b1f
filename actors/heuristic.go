package actors

// Heuristic decisions, the participant's side of the operator's
// ForceDecision: taking one (onForceDecision, onHeuristicLogged), answering
// the coordinator's decision when it comes (onDecisionAfterHeuristic), and
// reconciling it with the coordinator's.
//
// Reconciling. A Commit of a transaction the operator aborted here is
// answered as damage (onDecisionAfterHeuristic), but under presumed abort a
// coordinator that aborted sends nothing more: a wrong heuristic commit
// would go unreported for ever. So a participant holding a heuristic
// decision asks the transaction's coordinator — only it: the peers never
// tell a heuristic decision (onQuery), and their own answers are not the
// coordinator's decision — with the in-doubt DecisionQuery, on the query
// timer and with the same doubling pauses, until the coordinator says
// commit or abort. Then it logs whether the operator guessed right (WARN)
// or not (ERROR, HEURISTIC DAMAGE), and stops asking. Nothing else changes:
// no value touched, nothing acked, no protocol record written. Once it has
// reported, it sends a RECONCILED record to ParticipantConfig.Notes (the
// node's log), so that a restarted participant does not ask about that
// decision again, nor report it again: a confirmed decision stays quiet,
// and one that cannot be judged (see onHeuristicReply) is said once. A
// decision recovered without that record — the report was cut short by a
// crash, or never came — is asked about again after the restart.

import (
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"twopc/messages"
)

// forcing is a ForceDecision waiting for its HEURISTIC record to be durable.
// Decisions arriving meanwhile wait too, and are handled once it is applied.
type forcing struct {
	commit   bool
	replyTo  *actor.PID // the ForceDecision's sender, answered once applied
	deferred []deferredDecision
}

type deferredDecision struct {
	d       messages.Decision
	replyTo *actor.PID
	reason  string
	// reply: the decision came in a DecisionReply (from the coordinator or
	// a peer), not in a Commit or Abort; replayed through onDecisionReply.
	reply *messages.DecisionReply
}

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
	p.unreconciled[tx] = &heuristicCheck{begun: begun, nextQuery: p.now(), queryGap: p.queryBackoff()}
	p.askAboutHeuristics(ctx)
}

// askAboutHeuristics sends a DecisionQuery to the coordinator of every
// unreconciled heuristic decision whose pause is over, and doubles the
// pause (up to MaxQueryInterval).
func (p *participant) askAboutHeuristics(ctx actor.Context) {
	now := p.now()
	for tx, h := range p.unreconciled {
		if now.Before(h.nextQuery) {
			continue
		}
		if p.standing(tx).kind == standInDoubt {
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
	if s := p.standing(m.Tx); s.kind == standInDoubt && s.t.forcing == nil {
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
		p.noteReported(ctx, m.Tx)
		return
	}
	p.reconciled(ctx, m.Tx, m.Decision, forced)
}

// reconciled logs how the coordinator's decision d compares with the
// operator's forced one, and stops asking about tx.
func (p *participant) reconciled(ctx actor.Context, tx messages.TxID, d, forced messages.Decision) {
	delete(p.unreconciled, tx)
	if d == forced {
		p.logConfirmed(tx, d)
	} else {
		p.logDamage(tx, d, forced)
	}
	p.noteReported(ctx, tx)
}

// noteReported writes, forced, that tx's heuristic decision has been
// compared with the coordinator's and reported (RECONCILED), to Notes if
// set, once: a restarted participant then neither asks nor reports again.
// Nothing waits for it; a crash before it is durable only means one more
// report after the restart.
func (p *participant) noteReported(ctx actor.Context, tx messages.TxID) {
	if p.reported[tx] {
		return
	}
	p.reported[tx] = true
	if p.cfg.Notes != nil {
		ctx.Send(p.cfg.Notes, &messages.Append{Records: []messages.Record{{Kind: messages.RecReconciled, Tx: tx}}, Force: true})
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

// onForceDecision takes the operator's heuristic decision on a transaction
// in doubt here. It refuses anything not in doubt: a transaction this node
// has decided, or is deciding, needs no operator.
//
// The decision is first logged, forced, as a HEURISTIC record that this
// node never forgets (onHeuristicLogged then applies it and answers): a
// coordinator that decided otherwise is told of the damage whenever its
// Commit comes, even after a restart of either (onDecisionAfterHeuristic).
// Peers in doubt asking this node are told unknown (onQuery); the
// coordinator is asked whether it agrees (startReconciling).
func (p *participant) onForceDecision(ctx actor.Context, m *ForceDecision) {
	s := p.standing(m.Tx)
	if s.kind != standInDoubt || s.t.forcing != nil {
		ctx.Respond(&ForceDecisionResult{Tx: m.Tx, Node: p.cfg.Node, Err: fmt.Sprintf("not in doubt on node %d: %s", p.cfg.Node, p.stateOf(m.Tx))})
		return
	}
	t := s.t
	p.log.Error(fmt.Sprintf("HEURISTIC DECISION by the operator: %s of %v without knowing the coordinator's decision; if it decided otherwise, the nodes now disagree", forcedDecision(m.Commit), m.Tx),
		"tx", m.Tx, "node", p.cfg.Node, "participants", t.participants, "in_doubt_for", p.now().Sub(t.preparedAt).Round(time.Millisecond))
	t.forcing = &forcing{commit: m.Commit, replyTo: ctx.Sender()}
	p.logThen(ctx, messages.Record{Kind: messages.RecHeuristic, Tx: m.Tx, Decision: forcedDecision(m.Commit)}, p.onHeuristicLogged)
}

// onHeuristicLogged applies a forced decision once its HEURISTIC record is
// durable, through the very path a real Commit or Abort takes (a commit:
// COMMITTED forced, applied, acked to the coordinator; an abort: ABORTED
// lazily, locks released), and answers the ForceDecision. Applied means the
// decision is taken: an abort is done; a commit is being logged (a read of
// its keys waits for it), and if that write fails it is retried on the next
// decision to arrive, or after a restart. Decisions that arrived while the
// record was being logged are handled last, against the forced one.
func (p *participant) onHeuristicLogged(ctx actor.Context, tx messages.TxID, t *ptx, err error) {
	f := t.forcing
	if f == nil {
		return
	}
	t.forcing = nil
	res := &ForceDecisionResult{Tx: tx, Node: p.cfg.Node, Applied: err == nil}
	if err != nil {
		// Not durable, so not taken: a restart would not know of it.
		p.log.Error("HEURISTIC record not logged; the operator's decision is not applied and the transaction stays in doubt", "tx", tx, "error", err)
		res.Err = fmt.Sprintf("node %d: logging the heuristic decision failed: %v", p.cfg.Node, err)
	} else {
		p.heuristics[tx] = f.commit
		p.decide(ctx, tx, forcedDecision(f.commit), nil, "heuristic abort by the operator")
		// Asked at once: the query leaves before a forced commit's ack
		// (sent once COMMITTED is durable), so a coordinator that committed
		// answers commit before that ack can let it end and forget.
		p.startReconciling(ctx, tx, t.begun)
	}
	if f.replyTo != nil {
		ctx.Send(f.replyTo, res)
	}
	for _, d := range f.deferred {
		if d.reply != nil {
			p.onDecisionReply(ctx, d.reply)
			continue
		}
		p.onDecision(ctx, tx, d.d, d.replyTo, d.reason)
	}
}

// onDecisionAfterHeuristic handles a Commit or Abort for a transaction the
// operator decided here, and counts it as reconciled. Where it disagrees
// with what this node applied, the damage is done: it is logged at ERROR, and a
// Commit is answered with an Ack marked Heuristic, so that the coordinator
// learns of it and stops re-sending (a plain ack would say this node
// committed). A Commit of a transaction forced to commit gets a plain ack.
func (p *participant) onDecisionAfterHeuristic(ctx actor.Context, tx messages.TxID, t *ptx, commit bool, d messages.Decision, replyTo *actor.PID) {
	forced := forcedDecision(commit)
	if t != nil && t.state == prepared {
		// The forced commit's COMMITTED could not be written: this node
		// follows the operator's decision, whatever arrives; retry it.
		p.decide(ctx, tx, forced, nil, "heuristic abort by the operator")
	}
	// A Commit or Abort is the coordinator's decision: it reconciles the
	// heuristic one (see Reconciling, above). An agreeing one must: once this
	// node acks the Commit, the coordinator may end the transaction and
	// forget it, and would then answer a query with a presumed abort.
	_, open := p.unreconciled[tx]
	delete(p.unreconciled, tx)
	if d != forced {
		p.logDamage(tx, d, forced)
	} else if open {
		p.logConfirmed(tx, d)
	}
	if open {
		p.noteReported(ctx, tx)
	}
	if d != messages.DecisionCommit {
		return // an Abort is never acked
	}
	if commit {
		p.decide(ctx, tx, messages.DecisionCommit, replyTo, "") // acked now, or once COMMITTED is durable
		return
	}
	to := replyTo
	if to == nil {
		to = p.cfg.Directory.Coordinator(tx.Node)
	}
	ctx.Send(to, &messages.Ack{Tx: tx, From: p.cfg.Node, Heuristic: true})
}

func forcedDecision(commit bool) messages.Decision {
	if commit {
		return messages.DecisionCommit
	}
	return messages.DecisionAbort
}
