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

// knownOutcome is what this participant knows of tx, and how. The reasons
// are phrased to follow "node N ".
func (p *participant) knownOutcome(tx messages.TxID) (messages.Decision, string) {
	t := p.txs[tx]
	heuristic := ""
	if p.heuristic != nil && p.heuristic.has(tx) {
		heuristic = " (by the operator's heuristic decision)"
	}
	switch {
	case p.recentReadOnly.has(tx):
		return messages.DecisionUnknown, "voted read-only: the outcome was decided without it"
	case p.recentCommits.has(tx):
		return messages.DecisionCommit, "committed it" + heuristic
	case t != nil && t.state == committing:
		return messages.DecisionCommit, "is committing it" + heuristic
	case p.recentAborts.has(tx):
		return messages.DecisionAbort, "aborted it" + heuristic
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
// in doubt here, through the very path a real Commit or Abort takes (a
// commit: COMMITTED forced, applied, acked to the coordinator; an abort:
// ABORTED lazily, locks released). It refuses anything not in doubt: a
// transaction this node has decided, or is deciding, needs no operator.
//
// Nothing can tell afterwards that the decision was the coordinator's: peers
// in doubt asking this node learn it as the outcome, and a coordinator that
// decided otherwise finds the nodes disagreeing (see Local.Resolve).
// Applied means the decision is taken: an abort is done; a commit is being
// logged (a read of its keys waits for it), and if that write fails the
// transaction is in doubt here again.
func (p *participant) onForceDecision(ctx actor.Context, m *ForceDecision) {
	t := p.txs[m.Tx]
	if t == nil || t.state != prepared {
		ctx.Respond(&ForceDecisionResult{Tx: m.Tx, Node: p.cfg.Node, Err: fmt.Sprintf("not in doubt on node %d: %s", p.cfg.Node, p.stateOf(m.Tx))})
		return
	}
	what := "abort"
	if m.Commit {
		what = "commit"
	}
	p.log.Error(fmt.Sprintf("HEURISTIC DECISION by the operator: %s of %v without knowing the coordinator's decision; if it decided otherwise, the nodes now disagree", what, m.Tx),
		"tx", m.Tx, "node", p.cfg.Node, "participants", t.participants, "in_doubt_for", time.Since(t.preparedAt).Round(time.Millisecond))
	now := time.Now()
	if p.heuristic == nil {
		p.heuristic = newOutcomes()
	}
	p.heuristic.forgetBefore(now.Add(-p.timing.RememberOutcomes))
	p.heuristic.add(m.Tx, now)
	if m.Commit {
		p.onDecision(ctx, m.Tx, messages.DecisionCommit, nil, "")
	} else {
		p.onDecision(ctx, m.Tx, messages.DecisionAbort, nil, "heuristic abort by the operator")
	}
	ctx.Respond(&ForceDecisionResult{Tx: m.Tx, Node: p.cfg.Node, Applied: true})
}

// stateOf names what this participant holds of tx, in a word or two.
func (p *participant) stateOf(tx messages.TxID) string {
	if t := p.txs[tx]; t != nil {
		switch t.state {
		case preparing:
			return "preparing"
		case prepared:
			return "in doubt"
		case committing:
			return "committing"
		}
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
