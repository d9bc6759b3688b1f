package actors

// Operator's requests: what an operator (the REPL, a test) may ask a role
// that the protocol itself never does. OutcomeQuery only looks; unlike a
// DecisionQuery it changes nothing, so asking can never decide a
// transaction. ForceDecision is the operator's heuristic decision on a
// transaction a participant is stuck in doubt about: it breaks the
// protocol's guarantee on purpose, and says so loudly.

import (
	"fmt"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"twopc/messages"
)

// OutcomeQuery asks a coordinator or a participant what it knows of a
// transaction's outcome; answered (ctx.Respond) with an OutcomeAnswer. It
// has no side effect: unlike a DecisionQuery it never makes a participant
// vote no, never makes a coordinator decide abort or re-drive a commit.
type OutcomeQuery struct {
	Tx messages.TxID
}

// OutcomeAnswer answers an OutcomeQuery. Decision is DecisionCommit or
// DecisionAbort when the answering role knows, DecisionUnknown otherwise;
// Why says how it knows (or why it cannot tell).
type OutcomeAnswer struct {
	Tx       messages.TxID
	From     int32
	Decision messages.Decision
	Why      string
	// Presumed: a coordinator's abort only because its log holds no COMMIT
	// (presumed abort). Exact for a transaction still in doubt somewhere;
	// for one every participant acked, the COMMIT was forgotten at its END
	// and the transaction committed.
	Presumed bool
}

// ForceDecision makes a participant take a decision on a transaction it is
// in doubt about, without its coordinator: an operator's heuristic
// decision. Answered with a ForceDecisionResult.
type ForceDecision struct {
	Tx     messages.TxID
	Commit bool
}

// ForceDecisionResult answers a ForceDecision. Applied is false, with Err
// saying why, unless the transaction was in doubt (prepared) here.
type ForceDecisionResult struct {
	Tx      messages.TxID
	Node    int32
	Applied bool
	Err     string
}

// InDoubtTx is one transaction a participant has voted yes on and has no
// decision for, with what an operator needs to judge it.
type InDoubtTx struct {
	Tx           messages.TxID
	Since        time.Time // when PREPARED became durable, or when the node restarted in doubt about it
	Participants []int32   // every participant of the transaction (who could be asked)
	Asked        int       // DecisionQuery rounds sent so far
	Recovered    bool      // in doubt since before this participant (re)started
}

// The coordinator's reasons, shared by its answers.
const (
	commitPendingWhy = "COMMIT logged, not all acked"
	presumedAbortWhy = "no COMMIT in the coordinator's log: presumed abort"
)

// noteDecision records what a txn actor reported, so that an OutcomeQuery
// can be answered while it still runs. A txn actor reports Committed only
// once COMMIT is durable (or when every participant was read-only), and an
// abort once it has sent its Aborts.
func (c *coordinator) noteDecision(o *messages.Outcome) {
	lt := c.txns[o.Tx]
	if lt == nil || lt.decided != messages.DecisionUnknown {
		return
	}
	switch {
	case o.Unknown:
	case o.Committed && o.Reason == "read-only":
		lt.decided, lt.decidedWhy = messages.DecisionCommit, "committed (every participant was read-only)"
	case o.Committed:
		lt.decided, lt.decidedWhy = messages.DecisionCommit, commitPendingWhy
	default:
		lt.decided, lt.decidedWhy = messages.DecisionAbort, "decided abort: "+o.Reason
	}
}

// onOutcomeQuery answers what this coordinator knows of a transaction,
// without the side effects of onQuery: no txn actor is spawned (a COMMIT
// found in the log is reported, not re-driven) and a running txn actor is
// not asked (a DecisionQuery would make it decide abort).
//
// A presumed abort is exact for a transaction still in doubt somewhere: a
// participant in doubt has not acked, so the coordinator cannot have ended
// and forgotten a commit of it. For a transaction every participant has
// acked, the log no longer holds its COMMIT either, and "presumed abort"
// may be a forgotten commit: ask the participants too (Local.KnownOutcome
// does).
func (c *coordinator) onOutcomeQuery(ctx actor.Context, m *OutcomeQuery) {
	answer := func(d messages.Decision, why string) {
		ctx.Respond(&OutcomeAnswer{Tx: m.Tx, From: c.cfg.Node, Decision: d, Why: why, Presumed: why == presumedAbortWhy})
	}
	if m.Tx.Node != c.cfg.Node {
		answer(messages.DecisionUnknown, fmt.Sprintf("coordinated by node %d, not by node %d", m.Tx.Node, c.cfg.Node))
		return
	}
	if lt := c.txns[m.Tx]; lt != nil {
		if lt.decided != messages.DecisionUnknown {
			answer(lt.decided, lt.decidedWhy)
			return
		}
		if lt.pid != nil && !lt.crashed {
			// Collecting votes, or logging COMMIT: either way not durable,
			// so a crash now would still make it an abort.
			answer(messages.DecisionUnknown, "still collecting votes (or logging the decision)")
			return
		}
		// A crashed txn actor being settled: the log decides, as below.
	}
	switch {
	case m.Tx.Incarnation > c.cfg.Incarnation:
		answer(messages.DecisionUnknown, fmt.Sprintf("incarnation %d is later than this coordinator's (%d): its log is not the one that would hold the decision", m.Tx.Incarnation, c.cfg.Incarnation))
		return
	case m.Tx.Incarnation == c.cfg.Incarnation && m.Tx.Seq > *c.seq:
		answer(messages.DecisionUnknown, "not begun yet")
		return
	}
	f := ctx.RequestFuture(c.cfg.Persistence, &messages.DecisionLookup{Tx: m.Tx}, c.timing.VoteTimeout)
	ctx.ReenterAfter(f, func(res interface{}, err error) {
		r, err := lookupResult(res, err)
		switch {
		case err != nil:
			answer(messages.DecisionUnknown, "the coordinator's log cannot tell: "+err.Error())
		case r.CommitPending:
			answer(messages.DecisionCommit, commitPendingWhy)
		default:
			answer(messages.DecisionAbort, presumedAbortWhy)
		}
	})
}

// onOutcomeQuery answers what this participant knows of a transaction. It
// remembers nothing and votes on nothing (compare onQuery): a transaction it
// has never seen can still prepare here afterwards.
func (p *participant) onOutcomeQuery(ctx actor.Context, m *OutcomeQuery) {
	d, why := p.knownOutcome(m.Tx)
	ctx.Respond(&OutcomeAnswer{Tx: m.Tx, From: p.cfg.Node, Decision: d, Why: why})
}

// heuristicBy qualifies what this node did when the operator decided it.
const heuristicBy = " (by the operator's heuristic decision)"

// knownOutcome is what this participant knows of tx, and how. The reasons
// are phrased to follow "node N ". A transaction decided here by the
// operator is reported as what this node applied, for as long as the node
// lives: that is what its data says, whatever its coordinator decided.
func (p *participant) knownOutcome(tx messages.TxID) (messages.Decision, string) {
	t := p.txs[tx]
	if commit, forced := p.heuristics[tx]; forced {
		switch {
		case t != nil && t.state == committing:
			return messages.DecisionCommit, "is committing it" + heuristicBy
		case t != nil:
			// Its COMMITTED could not be written: retried on the next
			// Commit or Abort, or after a restart.
			return forcedDecision(commit), "is to " + forcedDecision(commit).String() + " it" + heuristicBy + "; not yet applied (its log write failed)"
		case commit:
			return messages.DecisionCommit, "committed it" + heuristicBy
		default:
			return messages.DecisionAbort, "aborted it" + heuristicBy
		}
	}
	switch {
	case p.recentReadOnly.has(tx):
		return messages.DecisionUnknown, "voted read-only: the outcome was decided without it"
	case p.recentCommits.has(tx):
		return messages.DecisionCommit, "committed it"
	case t != nil && t.state == committing:
		return messages.DecisionCommit, "is committing it"
	case p.recentAborts.has(tx):
		return messages.DecisionAbort, "aborted it"
	case t != nil && t.forcing != nil:
		return messages.DecisionUnknown, "in doubt here too (the operator's heuristic decision is being logged)"
	case t != nil && t.state == prepared:
		return messages.DecisionUnknown, "in doubt here too"
	case t != nil && t.state == preparing:
		return messages.DecisionUnknown, "still preparing it (PREPARED being logged)"
	case p.waits.prepares[tx] != nil:
		return messages.DecisionUnknown, "has not voted yet (its Prepare waits for locks)"
	}
	return messages.DecisionUnknown, "no trace of it"
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
// coordinator is asked whether it agrees (reconcile.go).
func (p *participant) onForceDecision(ctx actor.Context, m *ForceDecision) {
	t := p.txs[m.Tx]
	if t == nil || t.state != prepared || t.forcing != nil {
		ctx.Respond(&ForceDecisionResult{Tx: m.Tx, Node: p.cfg.Node, Err: fmt.Sprintf("not in doubt on node %d: %s", p.cfg.Node, p.stateOf(m.Tx))})
		return
	}
	p.log.Error(fmt.Sprintf("HEURISTIC DECISION by the operator: %s of %v without knowing the coordinator's decision; if it decided otherwise, the nodes now disagree", forcedDecision(m.Commit), m.Tx),
		"tx", m.Tx, "node", p.cfg.Node, "participants", t.participants, "in_doubt_for", time.Since(t.preparedAt).Round(time.Millisecond))
	t.forcing = &forcing{commit: m.Commit, replyTo: ctx.Sender()}
	p.appendRecord(ctx, messages.Record{Kind: messages.RecHeuristic, Tx: m.Tx, Decision: forcedDecision(m.Commit)}, true)
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
	// heuristic one (see reconcile.go). An agreeing one must: once this
	// node acks the Commit, the coordinator may end the transaction and
	// forget it, and would then answer a query with a presumed abort.
	_, open := p.unreconciled[tx]
	delete(p.unreconciled, tx)
	if d != forced {
		p.logDamage(tx, d, forced)
	} else if open {
		p.logConfirmed(tx, d)
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

// stateOf names what this participant holds of tx, in a word or two.
func (p *participant) stateOf(tx messages.TxID) string {
	if t := p.txs[tx]; t != nil {
		if t.forcing != nil {
			return "in doubt, being decided by the operator (its HEURISTIC record is being logged)"
		}
		switch t.state {
		case preparing:
			return "preparing"
		case prepared:
			return "in doubt"
		case committing:
			return "committing"
		}
	}
	if commit, forced := p.heuristics[tx]; forced {
		if commit {
			return "committed by the operator's heuristic decision"
		}
		return "aborted by the operator's heuristic decision"
	}
	switch {
	case p.recentCommits.has(tx):
		return "committed"
	case p.recentAborts.has(tx):
		return "aborted"
	case p.recentReadOnly.has(tx):
		return "voted read-only"
	case p.waits.prepares[tx] != nil:
		return "waiting for locks"
	}
	return "unknown here"
}

// doubts lists the transactions in doubt here, sorted by id.
func (p *participant) doubts() []InDoubtTx {
	var out []InDoubtTx
	for tx, t := range p.txs {
		if t.state != prepared {
			continue
		}
		out = append(out, InDoubtTx{
			Tx: tx, Since: t.preparedAt, Participants: slices.Clone(t.participants),
			Asked: t.asked, Recovered: t.recovered,
		})
	}
	slices.SortFunc(out, func(a, b InDoubtTx) int { return a.Tx.Compare(b.Tx) })
	return out
}
