package actors

import (
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/go-hclog"

	"twopc/messages"
)

// CoordinatorConfig is what a coordinator needs to start.
type CoordinatorConfig struct {
	Node        int32
	Members     int
	Incarnation uint32 // this start's incarnation, > every earlier one: makes TxIDs unique across restarts
	Persistence *actor.PID
	Directory   Directory
	Timing      Timing
	Logger      hclog.Logger

	// Pending are commit decisions recovered from the log that have no END:
	// they are re-driven before anything else. A node whose participant is
	// spawned after the coordinator sends them in a RedriveCommits message
	// instead, once the participant exists: a txn actor sending to an actor
	// that is still being spawned races protoactor's mailbox set-up.
	Pending []PendingCommit

	// Steps, if set, is told of every protocol step of every txn actor
	// (see StepHook).
	Steps StepHook

	// TxnProps, if set, is applied to the props of every txn actor. The
	// coordinator builds those props itself, one per transaction, so this
	// is the only way to give them options — the cluster's tracing installs
	// its message middleware here. Nil leaves them unchanged.
	TxnProps func(*actor.Props) *actor.Props

	// Clock, if set, is this node's clock (time.Now otherwise). Only
	// Prepare.Begun (the age that orders lock waits) and logged durations
	// come from it; no decision does.
	Clock func() time.Time

	// Protocol is the commit protocol (DefaultProtocol when unset).
	Protocol Protocol
}

// RedriveCommits tells a coordinator to drive these recovered commit
// decisions to their participants (see CoordinatorConfig.Pending).
type RedriveCommits struct {
	Pending []PendingCommit
}

// PendingCommit is a durable commit decision not yet acknowledged by all.
type PendingCommit struct {
	Tx           messages.TxID
	Participants []int32
}

// coordinator names transactions, spawns a txn actor for each and answers
// for them: to the client with an Outcome, to anyone in doubt with the
// decision. It is the supervisor of its txn actors.
type coordinator struct {
	cfg    CoordinatorConfig
	timing Timing
	log    hclog.Logger
	self   *actor.PID

	now    func() time.Time
	seq    *uint64                    // survives a restart of this actor: ids must never repeat
	txns   map[messages.TxID]*liveTxn // transactions with a txn actor or a client still to answer
	byID   map[string]messages.TxID   // txn actor id → transaction, for Terminated and failures
	spawns uint64                     // makes a re-spawned txn actor's name unique
}

// liveTxn is what the coordinator keeps about a transaction.
type liveTxn struct {
	pid          *actor.PID // its txn actor; nil once that has stopped
	client       *actor.PID // who gets the Outcome; nil once answered, or for a re-driven one
	participants []int32
	crashed      bool // its txn actor failed; what to do is being settled
	// decided is what its txn actor reported deciding (commit only once
	// COMMIT is durable), for OutcomeQuery; Unknown while it is deciding.
	decided    messages.Decision
	decidedWhy string
}

// running returns the transaction's txn actor, if it has one.
func (c *coordinator) running(tx messages.TxID) *actor.PID {
	if lt := c.txns[tx]; lt != nil {
		return lt.pid
	}
	return nil
}

// childCrashed is posted by HandleFailure so that the recovery work runs as
// an ordinary message of the coordinator.
type childCrashed struct {
	tx     messages.TxID
	pid    *actor.PID
	reason string
}

// NewCoordinatorProps returns the props of a coordinator.
func NewCoordinatorProps(cfg CoordinatorConfig) *actor.Props {
	seq := new(uint64)
	return actor.PropsFromProducer(func() actor.Actor {
		return &coordinator{cfg: cfg, seq: seq}
	})
}

func (c *coordinator) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		c.start(ctx)
	case *messages.Begin:
		c.begin(ctx, m)
	case *txnOutcome:
		c.noteDecision(m.outcome)
		c.answerClient(ctx, m.outcome)
	case *actor.Terminated:
		c.forget(m.Who)
	case *messages.Vote:
		c.toChild(ctx, m.Tx)
	case *messages.Ack:
		c.toChild(ctx, m.Tx)
	case *messages.AcceptReply:
		c.toChild(ctx, m.Tx)
	case *messages.PromiseReply:
		c.toChild(ctx, m.Tx)
	case *messages.DecisionQuery:
		c.onQuery(ctx, m)
	case *OutcomeQuery:
		c.onOutcomeQuery(ctx, m)
	case *childCrashed:
		c.onChildCrashed(ctx, m)
	case *RedriveCommits:
		for _, p := range m.Pending {
			if c.running(p.Tx) == nil {
				c.spawn(ctx, p.Tx, p.Participants, nil, true)
			}
		}
	case *CoordinatorStatusRequest:
		inFlight := 0
		for _, lt := range c.txns {
			if lt.pid != nil {
				inFlight++
			}
		}
		ctx.Respond(&CoordinatorStatus{Node: c.cfg.Node, InFlight: inFlight, Incarnation: c.cfg.Incarnation, Protocol: c.cfg.Protocol.OrDefault()})
	}
}

func (c *coordinator) start(ctx actor.Context) {
	c.timing = c.cfg.Timing.WithDefaults()
	c.now = c.cfg.Clock
	if c.now == nil {
		c.now = time.Now
	}
	c.log = orNull(c.cfg.Logger)
	c.self = ctx.Self()
	c.txns = make(map[messages.TxID]*liveTxn)
	c.byID = make(map[string]messages.TxID)
	for _, p := range c.cfg.Pending {
		c.spawn(ctx, p.Tx, p.Participants, nil, true)
	}
}

func (c *coordinator) begin(ctx actor.Context, m *messages.Begin) {
	*c.seq++
	tx := messages.TxID{Node: c.cfg.Node, Incarnation: c.cfg.Incarnation, Seq: *c.seq}
	if m.NotifyBegun && ctx.Sender() != nil {
		// Before anything can go wrong: a client that hears nothing more
		// still knows which transaction to ask about.
		ctx.Respond(&messages.Begun{Tx: tx})
	}
	participants, byNode, err := messages.Split(m.Ops, c.cfg.Members)
	if err != nil {
		if c.log.IsInfo() {
			c.log.Info("transaction refused", "tx", tx, "reason", err)
		}
		ctx.Respond(&messages.Outcome{Tx: tx, Reason: err.Error()})
		return
	}
	if c.log.IsInfo() {
		c.log.Info("begin", "tx", tx, "participants", participants)
	}
	if lt := c.spawn(ctx, tx, participants, byNode, false); lt != nil {
		lt.client = ctx.Sender()
	}
}

func (c *coordinator) spawn(ctx actor.Context, tx messages.TxID, participants []int32, ops [][]messages.Op, redrive bool) *liveTxn {
	return c.spawnTxn(ctx, tx, participants, ops, redrive, false)
}

// spawnTxn starts a txn actor: a new transaction, one re-driving a durable
// commit (redrive), or one recovering the outcome of a transaction whose
// txn actor crashed (recovering, non-blocking commit only).
func (c *coordinator) spawnTxn(ctx actor.Context, tx messages.TxID, participants []int32, ops [][]messages.Op, redrive, recovering bool) *liveTxn {
	props := newTxnProps(txnConfig{
		tx: tx, participants: participants, ops: ops, redrive: redrive, settled: c.settled(tx),
		nonblocking: c.nonblocking(), members: c.cfg.Members, recovering: recovering,
		directory: c.cfg.Directory, persistence: c.cfg.Persistence,
		timing: c.timing, log: c.log, steps: c.cfg.Steps, now: c.now,
	})
	if c.cfg.TxnProps != nil {
		props = c.cfg.TxnProps(props)
	}
	name := tx.String()
	if redrive || recovering {
		// A crashed predecessor may not have terminated yet; its name is
		// still taken.
		c.spawns++
		name = fmt.Sprintf("%s~%d", name, c.spawns)
	}
	pid, err := ctx.SpawnNamed(props, name)
	if err != nil {
		// Only possible if the id repeats, which the sequence rules out.
		c.log.Error("cannot spawn txn actor", "tx", tx, "error", err)
		return nil
	}
	c.byID[pid.Id] = tx
	// A successor (re-driving a crashed actor's commit) inherits the client
	// still waiting for the outcome.
	lt := &liveTxn{pid: pid, participants: participants}
	if redrive { // its COMMIT is durable already
		lt.decided, lt.decidedWhy = messages.DecisionCommit, commitPendingWhy
	}
	if old := c.txns[tx]; old != nil {
		lt.client = old.client
	}
	c.txns[tx] = lt
	return lt
}

func (c *coordinator) nonblocking() bool { return c.cfg.Protocol.OrDefault() == NonBlocking }

// settled is this coordinator's low-water mark, carried on the Prepare,
// Commit and Abort of a transaction tx about to be run: the lowest seq of
// this incarnation still running here (tx's own included, if it is of this
// incarnation). Every transaction of this incarnation below it has ended:
// its txn actor stopped after an abort or after every yes-voter acked its
// commit. Participants forget those and refuse their Prepares, which is
// safe because nothing a participant says about them can count any more:
// votes go to a txn actor that has stopped, and a participant in doubt is
// answered by this coordinator's log. An entry kept only for its client's
// answer lowers the mark a little longer than needed, which is harmless.
//
// A mark speaks of the incarnation of the message's transaction only: for a
// commit of an earlier incarnation re-driven after a restart it is 0 (no
// news; a participant learns that the earlier incarnation is over from any
// message of this one).
func (c *coordinator) settled(tx messages.TxID) uint64 {
	if tx.Incarnation != c.cfg.Incarnation {
		return 0
	}
	low := min(*c.seq+1, tx.Seq)
	for t := range c.txns {
		if t.Incarnation == c.cfg.Incarnation {
			low = min(low, t.Seq)
		}
	}
	return low
}

func (c *coordinator) answerClient(ctx actor.Context, o *messages.Outcome) {
	lt := c.txns[o.Tx]
	if lt == nil || lt.client == nil {
		return
	}
	ctx.Send(lt.client, o)
	lt.client = nil
	if lt.pid == nil && !lt.crashed {
		delete(c.txns, o.Tx)
	}
}

func (c *coordinator) forget(who *actor.PID) {
	tx, ok := c.byID[who.Id]
	if !ok {
		return
	}
	delete(c.byID, who.Id)
	lt := c.txns[tx]
	if lt == nil || lt.pid == nil || lt.pid.Id != who.Id {
		return // a successor runs the transaction now
	}
	lt.pid = nil
	// Terminated is a system message and overtakes the txnOutcome the
	// actor sent just before stopping: keep the client's entry until that
	// outcome has been passed on (answerClient then drops it).
	if lt.client == nil && !lt.crashed {
		delete(c.txns, tx)
	}
}

// toChild forwards a Vote or Ack that reached the coordinator instead of the
// txn actor (e.g. sent by a participant that recovered and lost the txn
// actor's address).
func (c *coordinator) toChild(ctx actor.Context, tx messages.TxID) {
	if pid := c.running(tx); pid != nil {
		ctx.Forward(pid)
	}
}

// onQuery answers a participant in doubt. A running txn actor answers for
// itself. Otherwise the log decides: a commit decision without END means
// commit (and the txn actor is started again to drive it); anything else
// means abort — the coordinator never decided commit, or every participant
// acked already (presumed abort).
func (c *coordinator) onQuery(ctx actor.Context, m *messages.DecisionQuery) {
	if m.Tx.Node != c.cfg.Node {
		c.log.Warn("decision query for a transaction this node did not coordinate; ignored", "tx", m.Tx, "from", m.From)
		return
	}
	if pid := c.running(m.Tx); pid != nil {
		ctx.Forward(pid)
		return
	}
	if m.Tx.Incarnation == c.cfg.Incarnation && m.Tx.Seq > *c.seq {
		c.log.Warn("decision query for a transaction not yet begun; ignored", "tx", m.Tx, "from", m.From)
		return
	}
	if m.Tx.Incarnation > c.cfg.Incarnation {
		// Named by an incarnation this node's log has never recorded: the
		// log that holds its decision is not this one (lost, or replaced).
		// Presumed abort is only safe over the log that would hold a commit.
		c.log.Error("decision query for a transaction of a later incarnation than this node's log knows; not answered (was the data directory replaced?)",
			"tx", m.Tx, "from", m.From, "incarnation", c.cfg.Incarnation)
		return
	}
	q := *m
	f := ctx.RequestFuture(c.cfg.Persistence, &messages.DecisionLookup{Tx: m.Tx}, c.timing.VoteTimeout)
	ctx.ReenterAfter(f, func(res interface{}, err error) {
		r, err := lookupResult(res, err)
		if err != nil {
			// No answer is better than a wrong one: the asker stays in
			// doubt and asks again.
			c.log.Warn("decision lookup failed; not answering", "tx", q.Tx, "from", q.From, "error", err)
			return
		}
		d := messages.DecisionAbort
		if r.CommitPending {
			d = messages.DecisionCommit
			if c.running(q.Tx) == nil {
				c.spawn(ctx, q.Tx, r.Participants, nil, true)
			}
		} else if c.mayNotPresume(q.Tx) {
			if c.log.IsInfo() {
				c.log.Info("decision query for a transaction of an earlier incarnation with no chosen commit logged here; the acceptors hold its outcome", "tx", q.Tx, "from", q.From)
			}
			ctx.Send(c.cfg.Directory.Participant(q.From), &messages.DecisionReply{Tx: q.Tx, From: c.cfg.Node, Decision: messages.DecisionUnknown})
			return
		}
		if c.log.IsInfo() {
			c.log.Info("decision query answered", "tx", q.Tx, "from", q.From, "decision", d)
		}
		ctx.Send(c.cfg.Directory.Participant(q.From), &messages.DecisionReply{Tx: q.Tx, From: c.cfg.Node, Decision: d, Presumed: !r.CommitPending})
	})
}

// mayNotPresume: under the non-blocking commit, presumed abort holds only
// for this incarnation's transactions. One of this incarnation that has no
// txn actor was aborted by it (it never proposed commit) or ended after
// every yes-voter acked. One of an earlier incarnation may have had commit
// chosen by its acceptors just before the crash, with this node's lazy
// COMMIT record lost: only the acceptors can tell.
func (c *coordinator) mayNotPresume(tx messages.TxID) bool {
	return c.nonblocking() && tx.Incarnation < c.cfg.Incarnation
}

// lookupResult unpacks the persistence actor's answer to a DecisionLookup:
// a timeout, an unexpected reply and a failed log are all "cannot tell".
func lookupResult(res interface{}, err error) (*messages.DecisionLookupReply, error) {
	if err != nil {
		return nil, err
	}
	r, ok := res.(*messages.DecisionLookupReply)
	if !ok {
		return nil, fmt.Errorf("unexpected answer %T to a decision lookup", res)
	}
	if r.Err != nil {
		return nil, r.Err
	}
	return r, nil
}

// HandleFailure makes the coordinator the supervisor of its txn actors. A
// crashed txn actor is stopped, never restarted (a restart would forget its
// votes); what to do next depends on whether its commit decision is durable,
// which only the log can tell, so that is settled as a normal message.
func (c *coordinator) HandleFailure(sys *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, _ *actor.RestartStatistics, reason interface{}, _ interface{}) {
	sup.StopChildren(child)
	if tx, ok := c.byID[child.Id]; ok {
		if lt := c.txns[tx]; lt != nil {
			lt.crashed = true
		}
		sys.Root.Send(c.self, &childCrashed{tx: tx, pid: child, reason: fmt.Sprint(reason)})
	}
}

func (c *coordinator) onChildCrashed(ctx actor.Context, m *childCrashed) {
	lt := c.txns[m.tx]
	if lt == nil {
		return
	}
	// settled drops the crashed actor's entry, unless a successor (started
	// by a DecisionQuery meanwhile) runs the transaction now.
	settled := func() {
		if cur := c.txns[m.tx]; cur != nil && (cur.pid == nil || cur.pid.Id == m.pid.Id) {
			delete(c.txns, m.tx)
		}
	}
	c.log.Error("txn actor crashed", "tx", m.tx, "reason", m.reason)
	// The lookup is queued behind any Append the crashed actor sent, so a
	// COMMIT it asked for is seen.
	f := ctx.RequestFuture(c.cfg.Persistence, &messages.DecisionLookup{Tx: m.tx}, c.timing.VoteTimeout)
	ctx.ReenterAfter(f, func(res interface{}, err error) {
		r, err := lookupResult(res, err)
		if err != nil {
			// Cannot tell: say so, and tell nobody to abort; participants
			// in doubt keep asking until the log can answer.
			c.answerClient(ctx, &messages.Outcome{Tx: m.tx, Unknown: true, Reason: fmt.Sprintf("outcome unknown: txn actor crashed (%s) and the log did not answer: %v", m.reason, err)})
			settled()
			return
		}
		if r.CommitPending {
			// The decision is durable: the client may hear it now. A new
			// txn actor drives it to the participants, unless a DecisionQuery
			// has started one meanwhile.
			c.answerClient(ctx, &messages.Outcome{Tx: m.tx, Committed: true})
			if pid := c.running(m.tx); pid == nil || pid.Id == m.pid.Id {
				c.spawn(ctx, m.tx, r.Participants, nil, true)
			}
			return
		}
		if c.nonblocking() {
			// Its AcceptRequests may have made commit chosen already: a
			// successor learns the outcome from the acceptors (or has
			// abort chosen) and answers the client.
			if pid := c.running(m.tx); pid == nil || pid.Id == m.pid.Id {
				c.spawnTxn(ctx, m.tx, lt.participants, nil, false, true)
			}
			return
		}
		for _, n := range lt.participants {
			ctx.Send(c.cfg.Directory.Participant(n), &messages.Abort{Tx: m.tx, From: c.cfg.Node, Reason: "txn actor crashed", Settled: c.settled(m.tx)})
		}
		c.answerClient(ctx, &messages.Outcome{Tx: m.tx, Reason: "txn actor crashed: " + m.reason})
		settled()
	})
}

// CoordinatorStatusRequest asks a coordinator for a CoordinatorStatus.
type CoordinatorStatusRequest struct{}

// CoordinatorStatus is a coordinator's state at a glance.
type CoordinatorStatus struct {
	Node        int32
	Incarnation uint32
	InFlight    int // transactions with a running txn actor
	Protocol    Protocol
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
		case c.mayNotPresume(m.Tx):
			answer(messages.DecisionUnknown, "no chosen commit in this coordinator's log, and it is of an earlier incarnation: its acceptors hold the outcome")
		default:
			answer(messages.DecisionAbort, presumedAbortWhy)
		}
	})
}
