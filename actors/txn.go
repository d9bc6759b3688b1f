package actors

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/go-hclog"

	"twopc/messages"
)

// txnConfig is everything one transaction's actor needs.
type txnConfig struct {
	tx           messages.TxID
	participants []int32
	ops          [][]messages.Op // ops[i] goes to participants[i]
	directory    Directory
	persistence  *actor.PID
	timing       Timing
	log          hclog.Logger
	// redrive: the commit decision is already durable (found in the log
	// after a restart, or after the previous txn actor crashed); skip to
	// sending Commit.
	redrive bool
	// settled: the coordinator's low-water mark when the transaction began
	// (coordinator.settled), carried on every Prepare, Commit and Abort.
	// An older mark than the coordinator's current one is always safe.
	settled uint64
	// now is the node's clock: Prepare.Begun (lock-wait order) and how
	// long the transaction took. Nothing decided depends on it.
	now func() time.Time
	// reportTo gets the txnOutcome; nil means the parent (the coordinator).
	reportTo *actor.PID
	steps    StepHook

	// nonblocking: the decision is chosen by the transaction's acceptors
	// (acceptor.go), not by the coordinator's log alone; members sizes the
	// ballots. recovering: the txn actor that ran the transaction crashed
	// before its outcome was known; this one learns it, or decides abort,
	// with a ballot of its own (phase 1), then drives it.
	nonblocking bool
	members     int
	recovering  bool
}

// txn runs one transaction. Its states are functions, switched with
// Behavior.Become: collecting votes, logging the commit decision, driving
// the commit until every participant acked.
type txn struct {
	cfg      txnConfig
	behavior actor.Behavior
	durable  *durable // the COMMIT decision, then END

	votes    map[int32]messages.VoteKind
	yes      []int32        // voted yes: they get the decision
	unacked  map[int32]bool // yes-voters that have not acked Commit
	deadline *timer         // vote deadline, then Commit re-send
	resend   backoff        // pause between Commit re-sends
	askers   []int32        // DecisionQuery senders waiting for the decision to be durable
	answered bool           // the client has its Outcome
	start    time.Time      // when collecting began; sent as Prepare.Begun

	// Non-blocking commit: the proposal for the outcome, and the deadline
	// after which the client is told the outcome is not known yet.
	proposal   *proposal
	clientWait *timer
}

// txnOutcome is the txn actor's word to its coordinator: answer the client.
type txnOutcome struct {
	outcome *messages.Outcome
}

func newTxnProps(cfg txnConfig) *actor.Props {
	if cfg.now == nil {
		cfg.now = time.Now
	}
	return actor.PropsFromProducer(func() actor.Actor {
		t := &txn{
			cfg:        cfg,
			behavior:   actor.NewBehavior(),
			votes:      make(map[int32]messages.VoteKind),
			unacked:    make(map[int32]bool),
			deadline:   newTimer("deadline"),
			clientWait: newTimer("client"),
			// A txn actor is never restarted (its coordinator stops a
			// failed one), so its appends need no sequence beyond its own.
			durable: newDurable(cfg.persistence, new(uint64)),
		}
		switch {
		case cfg.redrive:
			t.behavior.Become(t.committing)
		case cfg.recovering:
			t.behavior.Become(t.choosing)
		default:
			t.behavior.Become(t.collecting)
		}
		return t
	})
}

func (t *txn) Receive(ctx actor.Context) {
	if _, ok := ctx.Message().(*actor.Stopping); ok {
		t.deadline.stop()
		t.clientWait.stop()
	}
	t.behavior.Receive(ctx)
}

// collecting: Prepare sent to every participant, waiting for votes.
func (t *txn) collecting(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		t.start = t.cfg.now()
		for i, n := range t.cfg.participants {
			if t.cfg.log.IsInfo() {
				t.cfg.log.Info("prepare sent", "tx", t.cfg.tx, "to", n, "ops", opsString(t.cfg.ops[i]))
			}
			ctx.Request(t.cfg.directory.Participant(n), &messages.Prepare{
				Tx: t.cfg.tx, Ops: t.cfg.ops[i], Participants: t.cfg.participants, Begun: t.start.UnixNano(),
				Settled: t.cfg.settled,
			})
			t.step(StepPrepareSent, n, 0)
		}
		t.deadline.arm(ctx, t.cfg.timing.VoteTimeout)
	case *messages.Vote:
		if m.Tx != t.cfg.tx || !t.isParticipant(m.From) {
			return
		}
		if _, dup := t.votes[m.From]; dup {
			return
		}
		t.votes[m.From] = m.Kind
		if t.cfg.log.IsInfo() {
			t.cfg.log.Info("vote received", "tx", t.cfg.tx, "from", m.From, "vote", m.Kind)
		}
		t.step(StepVoteReceived, m.From, m.Kind)
		switch m.Kind {
		case messages.VoteNo:
			t.abort(ctx, fmt.Sprintf("node %d voted no: %s", m.From, m.Reason))
			return
		case messages.VoteYes:
			t.yes = append(t.yes, m.From)
		}
		if len(t.votes) == len(t.cfg.participants) {
			t.decideCommit(ctx)
		}
	case *timerFired:
		if t.deadline.current(m) {
			t.abort(ctx, fmt.Sprintf("vote timeout: no vote from node(s) %s within %v", t.missingVoters(), t.cfg.timing.VoteTimeout))
		}
	case *messages.DecisionQuery:
		// Someone is in doubt before we decided: decide abort (we may,
		// having not decided), then answer.
		t.askers = append(t.askers, m.From)
		t.abort(ctx, fmt.Sprintf("node %d asked for the decision before all votes arrived", m.From))
	}
}

func (t *txn) decideCommit(ctx actor.Context) {
	t.deadline.stop()
	if len(t.yes) == 0 {
		// Every participant was read-only: nothing to commit anywhere.
		t.reply(ctx, &messages.Outcome{Tx: t.cfg.tx, Committed: true, Reason: "read-only"})
		ctx.Stop(ctx.Self())
		return
	}
	sort.Slice(t.yes, func(i, j int) bool { return t.yes[i] < t.yes[j] })
	t.step(StepCommitDecided, -1, 0)
	if t.cfg.nonblocking {
		t.proposeCommit(ctx)
		return
	}
	// Commit is sent only once the decision is durable: a coordinator that
	// restarts must answer "commit" to anyone who asks.
	t.durable.then(ctx, messages.Record{Kind: messages.RecCommitDecision, Tx: t.cfg.tx, Participants: t.yes}, t.onDecisionLogged)
	t.behavior.Become(t.logging)
}

// onDecisionLogged goes on to committing once COMMIT is durable.
func (t *txn) onDecisionLogged(ctx actor.Context, err error) {
	if err != nil {
		// We cannot tell whether the record reached the disk. Sending
		// either decision could be wrong; the node's log is failed, and
		// its restart settles it (recovered COMMIT → re-drive, none →
		// presumed abort).
		t.cfg.log.Error("commit decision not logged; outcome unknown until this node restarts", "tx", t.cfg.tx, "error", err)
		t.reply(ctx, &messages.Outcome{Tx: t.cfg.tx, Unknown: true, Reason: "outcome unknown: coordinator's log write failed: " + err.Error()})
		ctx.Stop(ctx.Self())
		return
	}
	if t.cfg.log.IsInfo() {
		t.cfg.log.Info("decision logged", "tx", t.cfg.tx, "decision", "commit")
	}
	t.step(StepCommitLogged, -1, 0)
	t.behavior.Become(t.committing)
	t.beginCommitting(ctx)
}

// logging: the COMMIT record is on its way to disk.
func (t *txn) logging(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *messages.Appended:
		t.durable.onAppended(ctx, m)
	case *messages.DecisionQuery:
		t.askers = append(t.askers, m.From) // answered once the decision is durable
	}
}

// committing: Commit sent to every yes-voter, re-sent until each acks.
func (t *txn) committing(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		// Only a re-driven transaction starts here.
		t.start = t.cfg.now()
		t.yes = t.cfg.participants
		if t.cfg.log.IsInfo() {
			t.cfg.log.Info("re-driving commit decision", "tx", t.cfg.tx, "participants", t.yes)
		}
		t.beginCommitting(ctx)
	case *messages.Ack:
		if m.Tx != t.cfg.tx || !t.unacked[m.From] {
			return
		}
		delete(t.unacked, m.From)
		if m.Heuristic {
			// The node heard the Commit, but an operator had forced it to
			// abort: nothing the coordinator can re-send changes that.
			// Counted as acked, so the transaction ends; the damage is
			// reported, not hidden.
			t.cfg.log.Error(fmt.Sprintf("heuristic damage reported by node %d for %v: it applied the operator's decision, not the coordinator's", m.From, t.cfg.tx),
				"tx", t.cfg.tx, "node", m.From)
		} else if t.cfg.log.IsInfo() {
			t.cfg.log.Info("ack received", "tx", t.cfg.tx, "from", m.From)
		}
		t.step(StepAckReceived, m.From, 0)
		if len(t.unacked) == 0 {
			t.finish(ctx)
		}
	case *timerFired:
		if t.deadline.current(m) {
			t.sendCommit(ctx, true)
			t.deadline.arm(ctx, t.resend.grow())
		}
	case *messages.DecisionQuery:
		ctx.Send(t.cfg.directory.Participant(m.From), &messages.DecisionReply{Tx: t.cfg.tx, From: t.cfg.tx.Node, Decision: messages.DecisionCommit})
	}
}

func (t *txn) beginCommitting(ctx actor.Context) {
	for _, n := range t.yes {
		t.unacked[n] = true
	}
	for _, n := range t.askers {
		ctx.Send(t.cfg.directory.Participant(n), &messages.DecisionReply{Tx: t.cfg.tx, From: t.cfg.tx.Node, Decision: messages.DecisionCommit})
	}
	t.askers = nil
	t.sendCommit(ctx, false)
	t.resend = newBackoff(t.cfg.timing.ResendInterval, t.cfg.timing.MaxResendInterval)
	t.deadline.arm(ctx, t.resend.pause)
	// The decision is durable, so the transaction is committed: the client
	// hears it now, not after the acks. It still reads its own writes: a
	// participant holds a read of a key until every transaction prepared on
	// that key when the read arrived has been applied or aborted.
	t.reply(ctx, &messages.Outcome{Tx: t.cfg.tx, Committed: true})
}

func (t *txn) sendCommit(ctx actor.Context, resend bool) {
	for _, n := range t.yes {
		if !t.unacked[n] {
			continue
		}
		if resend {
			if t.cfg.log.IsInfo() {
				t.cfg.log.Info("commit re-sent", "tx", t.cfg.tx, "to", n)
			}
		} else {
			if t.cfg.log.IsInfo() {
				t.cfg.log.Info("commit sent", "tx", t.cfg.tx, "to", n)
			}
		}
		ctx.Request(t.cfg.directory.Participant(n), &messages.Commit{Tx: t.cfg.tx, From: t.cfg.tx.Node, Settled: t.cfg.settled})
		if !resend {
			t.step(StepCommitSent, n, 0)
		}
	}
}

func (t *txn) finish(ctx actor.Context) {
	t.step(StepAllAcked, -1, 0)
	// END is lazy: if it is lost, a restart re-drives the commit once more
	// and the participants ack again. Only a COMMIT in this node's log
	// needs one (none under the non-blocking commit, but for a commit
	// re-driven from a log written under 2PC).
	if !t.cfg.nonblocking || t.cfg.redrive {
		t.durable.lazy(ctx, messages.Record{Kind: messages.RecEnd, Tx: t.cfg.tx})
	}
	if t.cfg.log.IsInfo() {
		t.cfg.log.Info("transaction ended", "tx", t.cfg.tx, "took", t.cfg.now().Sub(t.start).Round(time.Microsecond))
	}
	ctx.Stop(ctx.Self())
}

// abort: presumed abort needs no log record and no acks. Abort goes to
// everyone who may hold locks: all but those that voted no or read-only.
func (t *txn) abort(ctx actor.Context, reason string) {
	t.deadline.stop()
	t.cfg.steps.reportReason(t.cfg.tx.Node, StepAbortDecided, t.cfg.tx, reason)
	if t.cfg.log.IsInfo() {
		t.cfg.log.Info("decision", "tx", t.cfg.tx, "decision", "abort", "reason", reason)
	}
	for _, n := range t.cfg.participants {
		if v, ok := t.votes[n]; ok && v != messages.VoteYes {
			continue
		}
		if t.cfg.log.IsInfo() {
			t.cfg.log.Info("abort sent", "tx", t.cfg.tx, "to", n)
		}
		ctx.Send(t.cfg.directory.Participant(n), &messages.Abort{Tx: t.cfg.tx, From: t.cfg.tx.Node, Reason: reason, Settled: t.cfg.settled})
	}
	for _, n := range t.askers {
		ctx.Send(t.cfg.directory.Participant(n), &messages.DecisionReply{Tx: t.cfg.tx, From: t.cfg.tx.Node, Decision: messages.DecisionAbort})
	}
	t.askers = nil
	t.reply(ctx, &messages.Outcome{Tx: t.cfg.tx, Reason: reason})
	ctx.Stop(ctx.Self())
}

func (t *txn) reply(ctx actor.Context, o *messages.Outcome) {
	if t.answered {
		return
	}
	t.answered = true
	to := t.cfg.reportTo
	if to == nil {
		to = ctx.Parent()
	}
	ctx.Send(to, &txnOutcome{outcome: o})
}

func (t *txn) step(kind StepKind, peer int32, vote messages.VoteKind) {
	t.cfg.steps.report(t.cfg.tx.Node, kind, t.cfg.tx, peer, vote)
}

func (t *txn) isParticipant(n int32) bool {
	for _, p := range t.cfg.participants {
		if p == n {
			return true
		}
	}
	return false
}

func (t *txn) missingVoters() string {
	var missing []string
	for _, n := range t.cfg.participants {
		if _, ok := t.votes[n]; !ok {
			missing = append(missing, fmt.Sprint(n))
		}
	}
	return strings.Join(missing, ",")
}

func opsString(ops []messages.Op) string {
	parts := make([]string, len(ops))
	for i, o := range ops {
		parts[i] = o.String()
	}
	return strings.Join(parts, "; ")
}

// proposeCommit (non-blocking commit): every vote is yes, so commit is
// proposed in ballot 0 to the transaction's acceptors. It is the decision
// once a majority of them has logged it (choosing); until then nothing is
// said to the client or the participants.
func (t *txn) proposeCommit(ctx actor.Context) {
	t.proposal = newProposal(t.cfg.tx, t.cfg.tx.Node, t.cfg.members, t.cfg.directory)
	if t.cfg.log.IsInfo() {
		t.cfg.log.Info("commit proposed to the acceptors", "tx", t.cfg.tx, "acceptors", t.proposal.acceptors)
	}
	t.proposal.propose(ctx, messages.DecisionCommit, t.cfg.settled, func(n int32) { t.step(StepAcceptSent, n, 0) })
	t.resend = newBackoff(t.cfg.timing.ResendInterval, t.cfg.timing.MaxResendInterval)
	t.deadline.arm(ctx, t.resend.pause)
	t.clientWait.arm(ctx, t.cfg.timing.VoteTimeout)
	t.behavior.Become(t.choosing)
}

// choosing (non-blocking commit): a proposal for the outcome is out to the
// acceptors — commit in ballot 0, or, once that was overtaken by a
// recovering participant's ballot (or for a txn actor started to recover
// a crashed one's transaction), whatever a round of this node's own ballot
// finds may have been chosen.
func (t *txn) choosing(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		// Only a recovering txn actor starts here.
		t.start = t.cfg.now()
		t.yes = t.cfg.participants
		t.proposal = newProposal(t.cfg.tx, t.cfg.tx.Node, t.cfg.members, t.cfg.directory)
		t.resend = newBackoff(t.cfg.timing.ResendInterval, t.cfg.timing.MaxResendInterval)
		t.recoverOutcome(ctx, "its txn actor crashed")
		t.clientWait.arm(ctx, t.cfg.timing.VoteTimeout)
	case *messages.AcceptReply:
		if m.Tx != t.cfg.tx {
			return
		}
		if t.proposal.onAccepted(m) {
			t.onChosen(ctx, t.proposal.chosen)
			return
		}
		if t.proposal.refused && t.proposal.ballot == 0 {
			// A participant in doubt took over with a higher ballot: commit
			// may or may not be chosen; a round of our own finds out.
			t.recoverOutcome(ctx, fmt.Sprintf("acceptor %d promised ballot %d", m.From, m.Promised))
		}
	case *messages.PromiseReply:
		if m.Tx == t.cfg.tx {
			t.proposal.onPromise(ctx, m)
		}
	case *timerFired:
		switch {
		case t.clientWait.current(m):
			// Not a decision: the acceptors may still choose either way,
			// and this actor keeps at it. The client is not left hanging.
			t.reply(ctx, &messages.Outcome{Tx: t.cfg.tx, Unknown: true, Reason: fmt.Sprintf(
				"outcome unknown: no majority of the acceptors (nodes %v) answered within %v; it will be what they choose", t.proposal.acceptors, t.cfg.timing.VoteTimeout)})
		case t.deadline.current(m):
			if t.proposal.running() {
				t.proposal.resendAccepts(ctx, t.cfg.settled)
				if t.proposal.phase == 1 {
					t.proposal.recover(ctx) // promises lost: a fresh ballot
				}
			} else {
				t.recoverOutcome(ctx, "the previous round was overtaken")
			}
			t.deadline.arm(ctx, t.resend.grow())
		}
	case *messages.DecisionQuery:
		t.askers = append(t.askers, m.From) // answered once the outcome is chosen
	case *messages.Vote:
		// late or duplicate: the votes are counted
	}
}

// recoverOutcome starts a round of this node's own ballot.
func (t *txn) recoverOutcome(ctx actor.Context, why string) {
	t.proposal.recover(ctx)
	if t.cfg.log.IsInfo() {
		t.cfg.log.Info("recovering the outcome with a ballot of its own", "tx", t.cfg.tx, "ballot", t.proposal.ballot, "why", why)
	}
	t.cfg.steps.reportReason(t.cfg.tx.Node, StepRecoveryStarted, t.cfg.tx, why)
}

// onChosen: the acceptors have chosen d. Commit goes on as in 2PC once
// COMMIT is durable (committing), but this node logs no COMMIT (nor END):
// the acceptors hold the decision durably already, and a participant in
// doubt recovers it from them. Two records fewer per transaction than
// logging them, lazily, would cost — all a COMMIT would buy is a
// restarted coordinator driving the commit itself, a round sooner.
func (t *txn) onChosen(ctx actor.Context, d messages.Decision) {
	t.deadline.stop()
	t.clientWait.stop()
	if d == messages.DecisionAbort {
		t.abort(ctx, fmt.Sprintf("the acceptors chose abort (ballot %d)", t.proposal.ballot))
		return
	}
	t.step(StepCommitLogged, -1, 0)
	if t.cfg.log.IsInfo() {
		t.cfg.log.Info("decision chosen", "tx", t.cfg.tx, "decision", "commit", "ballot", t.proposal.ballot)
	}
	t.behavior.Become(t.committing)
	t.beginCommitting(ctx)
}
