package actors

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/go-hclog"

	"twopc/messages"
)

// ParticipantConfig is what a participant needs to start.
type ParticipantConfig struct {
	Node        int32
	Members     int // nodes 0..Members-1; used to refuse keys this node does not own
	Persistence *actor.PID
	Directory   Directory
	Timing      Timing
	Logger      hclog.Logger

	// Recovered state, from replaying the log: committed values, and the
	// PREPARED records that have no outcome yet (in doubt). The participant
	// takes KV over and changes it: pass a map nobody else uses.
	KV      map[string]int64
	InDoubt []messages.Record
	// Heuristic: the operator's heuristic decisions this node's log holds
	// (persistence.State.Heuristic; true: a forced commit, false: a forced
	// abort). The participant takes the map over and never forgets them.
	Heuristic map[messages.TxID]bool
	// Reconciled: those of Heuristic whose comparison with the
	// coordinator's decision was reported before a restart
	// (persistence.State.Reconciled): not asked about, nor reported, again.
	Reconciled map[messages.TxID]bool
	// Notes, if set, is sent a forced Append of a RECONCILED record each
	// time the participant reports a heuristic decision reconciled (the
	// node's persistence actor), so that it stays reported across
	// restarts. Nil: reported again after every restart.
	Notes *actor.PID

	// Reload returns the state the log holds now (maps the participant may
	// take over, like KV and Heuristic). A participant that failed
	// (panicked) and is restarted by its supervisor rebuilds itself from it,
	// never from the possibly half-changed memory of the failed instance.
	// Without Reload a restarted participant stops instead.
	Reload func() (kv map[string]int64, inDoubt []messages.Record, heuristic map[messages.TxID]bool, err error)

	// Outcomes and Marks: what this node's log says it did with
	// transactions it is no longer working on, and below which transaction
	// of each coordinator it no longer vouches for anything
	// (persistence.State.Outcomes and Marks). The participant takes both
	// over. With them, a restarted participant knows every answer it gave
	// that binds it, so it needs no clock to tell which Prepares it may
	// take: there is no window after a restart in which it refuses them.
	Outcomes map[messages.TxID]messages.RecordKind
	Marks    map[int32]messages.TxID

	// Fresh: this is the first start of this node's log. Informational
	// only (it used to open a window, measured by the clock, in which a
	// restarted participant refused Prepares; its log now says what it can
	// vouch for).
	Fresh bool

	// Clock, if set, is this node's clock (time.Now otherwise). Nothing
	// the participant answers depends on it: it paces waits and queries,
	// and bounds how long outcomes are remembered.
	Clock func() time.Time

	// Steps, if set, is told of every protocol step (see StepHook).
	Steps StepHook

	// Rounds, if set, is told how each round of asking about an in-doubt
	// transaction ended, on the participant's goroutine: DecisionCommit or
	// DecisionAbort when the decision arrived (an answer, or the
	// coordinator's Commit or Abort) before the next round, DecisionUnknown
	// when the next round began without one. A node's metrics count them.
	// It must be quick. Nil: nothing is told.
	Rounds func(messages.Decision)

	// Protocol is the commit protocol (DefaultProtocol when unset). Under
	// NonBlocking a participant in doubt also runs recovery rounds with
	// the transaction's acceptors (recovery.go).
	Protocol Protocol
}

// participant owns its node's committed state and lock table. It is the only
// code that reads or writes them, so they need no mutex.
type participant struct {
	cfg    ParticipantConfig
	timing Timing
	log    hclog.Logger

	kv    map[string]int64
	locks *lockTable
	txs   map[messages.TxID]*ptx

	// mem is what this participant did with transactions it no longer
	// works on, and the marks below which it vouches for nothing (see
	// memory). It outlives a restart of this actor: the durable part of it
	// is in the log too, and the rest only ever makes answers safer.
	mem *memory
	now func() time.Time

	// appendSeq outlives a restart of this actor, so an Appended addressed
	// to a failed instance never matches an append of its successor.
	appendSeq *uint64
	durable   *durable
	starts    *int

	queryTimer *timer
	rounds     uint64 // query timer rounds handled (ParticipantStatus.Rounds)

	// heuristics holds the transactions decided here by an operator's
	// ForceDecision (true: forced commit), from the log's HEURISTIC records
	// and never forgotten: a coordinator whose decision was the other one
	// may re-send its Commit at any time, even after a restart, and must be
	// told of the damage instead of getting an ack (see heuristic.go).
	heuristics map[messages.TxID]bool
	// unreconciled holds the heuristic decisions not yet compared with the
	// coordinator's own decision (see heuristic.go): asked about until its
	// answer (or its Commit or Abort) arrives. Memory only: after a restart
	// every recovered heuristic decision is checked again.
	unreconciled map[messages.TxID]*heuristicCheck
	// reported: heuristic decisions whose reconciliation has been reported
	// (ParticipantConfig.Reconciled, and those noted since). Shared by the
	// instances a failure restarts, like mem: it only ever grows.
	reported map[messages.TxID]bool

	// waits holds Prepares and reads that wait for transactions holding
	// their keys to commit or abort.
	waits *waits
	// rlocks: snapshot reads' read locks (reads.go); memory only.
	rlocks *readLocks
}

type ptxState uint8

const (
	preparing  ptxState = iota + 1 // PREPARED being logged
	prepared                       // voted yes: in doubt until a decision arrives
	committing                     // COMMITTED being logged
)

// ptx is the participant's live record of one transaction it holds locks
// for; once the transaction is over here, only the outcome sets remember it
// (see standing). Each flag belongs to one state.
type ptx struct {
	state        ptxState
	begun        int64 // for lock-wait ordering
	ops          []messages.Op
	participants []int32
	voteTo       *actor.PID // where the vote goes (the txn actor)
	ackTo        *actor.PID // where the ack goes

	// preparing: an Abort arrived while PREPARED was being logged; it is
	// carried out once the write is done.
	abortPending bool

	// prepared (in doubt): since when, whether since before a restart
	// (recovered: a conflicting Prepare votes no rather than wait for it),
	// the operator's heuristic decision
	// whose HEURISTIC record is being logged (forcing), and the rounds of
	// asking about it.
	preparedAt time.Time
	recovered  bool
	forcing    *forcing
	nextQuery  time.Time
	queryGap   backoff
	asked      int // DecisionQuery rounds sent
	// recovery: this node's proposal for the outcome (non-blocking
	// commit), from the tick after its first round of asking on
	// (recoverDue: that first round went out).
	recovery   *proposal
	recoverDue bool
}

// standing is where a transaction stands at this participant: the one
// answer every question about it starts from (a Prepare, a peer's
// DecisionQuery, the operator's OutcomeQuery and ForceDecision, status).
type standing struct {
	kind standingKind
	t    *ptx    // the live record (standPreparing, standInDoubt, standCommitting)
	w    *waiter // the waiting Prepare (standWaiting)
	// heuristic: the operator's ForceDecision on it is durable here (its
	// HEURISTIC record); forcedCommit is what was forced. Such a
	// transaction is standCommitted or standAborted once the decision is
	// applied, and a live record until then.
	heuristic    bool
	forcedCommit bool
	// bound (standAborted): abort is the decision (this node was told so),
	// or its REFUSED record is durable, so "abort" may be said to a peer
	// now; otherwise only a no vote, not logged, stands behind it.
	// logging (standReadOnly): the read-only vote waits for its READ-ONLY
	// record; nothing may be said yet.
	bound   bool
	logging bool
}

type standingKind uint8

const (
	standUnknown    standingKind = iota // no trace of it here
	standWaiting                        // its Prepare waits for older lock holders; not voted
	standPreparing                      // PREPARED being logged; not voted yet
	standInDoubt                        // voted yes, no decision yet (t.forcing: the operator's being logged)
	standCommitting                     // COMMITTED being logged
	standCommitted                      // committed here (remembered until its coordinator's mark passes it, or forced by the operator)
	standAborted                        // aborted, voted no or refused here (remembered likewise, or forced)
	standReadOnly                       // voted read-only: the outcome was decided without it
	// standForgotten: no trace of it, and below its coordinator's mark here
	// (memory.below): this node may have done anything with it and
	// forgotten, so it vouches for nothing — a Prepare gets no, a peer in
	// doubt "unknown".
	standForgotten
)

// standing says where tx stands here. The containers it reads are disjoint
// but for a few overlaps, settled by this precedence:
//
//  1. A live record (p.txs) is what this node is doing now; nothing else
//     can be newer. No finished set holds a live transaction (each is added
//     as its record goes, and a Prepare of a finished one is refused).
//  2. A heuristic decision is what this node's data says, for as long as
//     the node lives, whatever else is remembered or forgotten.
//  3. Read-only before aborted: a read-only voter that missed being
//     counted may be sent an Abort, but it knows nothing of the outcome,
//     and must never tell a peer "abort" about a transaction that may have
//     committed.
//  4. Committed before aborted: an Abort after this node committed (which
//     only conflicting decisions can send) does not undo the commit, and a
//     peer must hear what this node's data says.
//  5. A waiting Prepare, then below the coordinator's mark, then nothing.
func (p *participant) standing(tx messages.TxID) standing {
	commit, forced := p.heuristics[tx]
	s := standing{heuristic: forced, forcedCommit: commit}
	if t := p.txs[tx]; t != nil {
		s.t = t
		switch t.state {
		case preparing:
			s.kind = standPreparing
		case prepared:
			s.kind = standInDoubt
		case committing:
			s.kind = standCommitting
		}
		return s
	}
	switch {
	case forced:
		s.kind = standAborted
		if commit {
			s.kind = standCommitted
		}
	case p.mem.done.has(tx):
		// One kind per id; memory.note keeps the precedence of rules 3
		// and 4 (read-only and committed are never overwritten by abort).
		switch k, _ := p.mem.done.kind(tx); k {
		case outReadOnly, outReadOnlyLogging:
			s.kind, s.logging = standReadOnly, k == outReadOnlyLogging
		case outCommitted:
			s.kind = standCommitted
		default:
			s.kind, s.bound = standAborted, k == outRefused || k == outAbortDecided
		}
	case p.waits.prepares[tx] != nil:
		s.kind, s.w = standWaiting, p.waits.prepares[tx]
	case p.mem.below(tx):
		s.kind = standForgotten
	}
	return s
}

// NewParticipantProps returns the props of a participant.
func NewParticipantProps(cfg ParticipantConfig) *actor.Props {
	seq, starts := new(uint64), new(int)
	now := cfg.Clock
	if now == nil {
		now = time.Now
	}
	mem := newMemory(cfg.Outcomes, cfg.Marks, now())
	reported := maps.Clone(cfg.Reconciled)
	if reported == nil {
		reported = map[messages.TxID]bool{}
	}
	return actor.PropsFromProducer(func() actor.Actor {
		return &participant{cfg: cfg, appendSeq: seq, starts: starts, mem: mem, now: now, reported: reported}
	})
}

func (p *participant) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		p.start(ctx)
	case *actor.Stopping, *actor.Restarting:
		// Held reads would otherwise never be answered: a restarted
		// instance rebuilds from the log and knows nothing of them.
		p.queryTimer.stop()
		for _, w := range p.waits.all {
			if !w.done && w.prepare == nil {
				ctx.Send(w.to, &messages.ReadReply{From: p.cfg.Node, Err: fmt.Sprintf("node %d is stopping or restarting; read again", p.cfg.Node)})
			}
		}
	case *messages.Prepare:
		p.onPrepare(ctx, m)
	case *messages.Appended:
		p.durable.onAppended(ctx, m)
	case *messages.Commit:
		p.mem.observe(m.Tx, m.Settled)
		p.onDecision(ctx, m.Tx, messages.DecisionCommit, ctx.Sender(), "")
	case *messages.Abort:
		p.mem.observe(m.Tx, m.Settled)
		p.onDecision(ctx, m.Tx, messages.DecisionAbort, nil, m.Reason)
	case *messages.DecisionReply:
		p.onDecisionReply(ctx, m)
	case *messages.DecisionQuery:
		p.onQuery(ctx, m)
	case *messages.PromiseReply:
		p.onPromiseReply(ctx, m)
	case *messages.AcceptReply:
		p.onAcceptReply(ctx, m)
	case *messages.Read:
		p.onRead(ctx, m)
	case *messages.ReadLock, *messages.ReadRelease:
		p.onSnapshotRead(ctx, m)
	case *ParticipantStatusRequest:
		ctx.Respond(p.status())
	case *OutcomeQuery:
		p.onOutcomeQuery(ctx, m)
	case *ForceDecision:
		p.onForceDecision(ctx, m)
	case *timerFired:
		if p.queryTimer.current(m) {
			p.forget(ctx)
			p.expireWaits(ctx)
			p.recoverPending(ctx) // before asking: a round asked this tick waits for the next
			p.askAboutInDoubt(ctx)
			p.askAboutHeuristics(ctx)
			p.rounds++
		}
	}
}

func (p *participant) start(ctx actor.Context) {
	p.timing = p.cfg.Timing.WithDefaults()
	p.log = orNull(p.cfg.Logger)
	p.durable = newDurable(p.cfg.Persistence, p.appendSeq)
	*p.starts++
	kv, inDoubt, heuristics := p.cfg.KV, p.cfg.InDoubt, p.cfg.Heuristic
	if *p.starts > 1 {
		// Restarted after a failure: what this node promised and committed
		// is in its log, not in the failed instance's memory.
		if p.cfg.Reload == nil {
			p.log.Error("participant failed and cannot reload its state; stopping")
			ctx.Stop(ctx.Self())
			return
		}
		var err error
		if kv, inDoubt, heuristics, err = p.cfg.Reload(); err != nil {
			p.log.Error("participant failed and reloading its state from the log failed; stopping", "error", err)
			ctx.Stop(ctx.Self())
			return
		}
		p.log.Warn("participant restarted from its log", "keys", len(kv), "in_doubt", len(inDoubt), "heuristic", len(heuristics))
	}
	p.heuristics = heuristics // taken over, like kv
	if p.heuristics == nil {
		p.heuristics = make(map[messages.TxID]bool)
	}
	p.kv = kv // taken over: the caller handed it a copy of its own
	if p.kv == nil {
		p.kv = make(map[string]int64)
	}
	p.locks = newLockTable()
	p.txs = make(map[messages.TxID]*ptx)
	p.queryTimer = newTimer("in-doubt")
	p.waits = newWaits()
	now := p.now()
	for _, rec := range inDoubt {
		// A transaction prepared before the restart is still promised: its
		// locks are taken again and it waits for the decision. It is asked
		// about at once: its coordinator may have decided long ago.
		p.locks.force(rec.Tx, rec.Ops)
		p.txs[rec.Tx] = &ptx{
			// Conflicting Prepares vote no at once rather than wait on a
			// transaction in doubt since before the restart.
			recovered: true,
			state:     prepared, ops: rec.Ops, participants: rec.Participants,
			preparedAt: now, nextQuery: now, queryGap: p.queryBackoff(),
		}
		if _, forced := p.heuristics[rec.Tx]; !forced {
			p.log.Warn("in doubt after restart", "tx", rec.Tx, "coordinator", rec.Tx.Node)
		}
	}
	for _, rec := range inDoubt {
		// The operator's decision was logged, but not (durably) applied
		// before the restart: apply it now, as it would have been.
		if commit, forced := p.heuristics[rec.Tx]; forced {
			p.log.Warn("finishing the operator's heuristic decision after restart", "tx", rec.Tx, "decision", forcedDecision(commit))
			p.decide(ctx, rec.Tx, forcedDecision(commit), nil, "heuristic abort by the operator")
		}
	}
	p.unreconciled = make(map[messages.TxID]*heuristicCheck)
	for tx, commit := range p.heuristics {
		p.log.Debug("heuristic decision recovered", "tx", tx, "decision", forcedDecision(commit), "reported", p.reported[tx])
		if p.reported[tx] {
			continue // compared and reported before: nothing to ask or say again
		}
		// Whether the coordinator agreed was known only to the predecessor's
		// memory: ask again (see heuristic.go).
		p.unreconciled[tx] = &heuristicCheck{nextQuery: now, queryGap: p.queryBackoff(), recovered: true}
	}
	p.queryTimer.arm(ctx, p.queryTick())
	if len(inDoubt) > 0 {
		p.askAboutInDoubt(ctx)
	}
	p.askAboutHeuristics(ctx)
}

// forget lets go of outcomes below the coordinators' marks or older than
// RememberOutcomes (see memory), and logs the marks that rose, lazily: a
// mark lost in a crash only makes the restarted node remember more.
func (p *participant) forget(ctx actor.Context) {
	for _, mk := range p.mem.forget(p.now().Add(-p.timing.RememberOutcomes)) {
		p.durable.lazy(ctx, messages.Record{Kind: messages.RecMark, Tx: mk})
	}
}

// voteReadOnly votes read-only once its READ-ONLY record is durable. The
// coordinator may commit counting the vote, so this node must never say
// "abort" for the transaction afterwards, restarted or not — which it
// would if it had no trace of it (see refuse). Until the record is
// durable the transaction stands read-only here (peers hear "unknown"),
// and nothing is said to the coordinator.
func (p *participant) voteReadOnly(ctx actor.Context, tx messages.TxID, voteTo *actor.PID) {
	p.mem.note(tx, outReadOnlyLogging, p.now())
	p.durable.then(ctx, messages.Record{Kind: messages.RecReadOnly, Tx: tx}, func(ctx actor.Context, err error) {
		if err != nil {
			p.log.Error("READ-ONLY not logged; voting no", "tx", tx, "error", err)
			p.mem.note(tx, outAborted, p.now())
			p.sendVote(ctx, voteTo, tx, messages.VoteNo, fmt.Sprintf("node %d: log write failed: %v", p.cfg.Node, err))
			return
		}
		p.mem.note(tx, outReadOnly, p.now())
		p.sendVote(ctx, voteTo, tx, messages.VoteReadOnly, "")
	})
}

// queryBackoff spaces out the rounds of asking about one transaction (in
// doubt, or decided by the operator): InDoubtAfter, doubling up to
// MaxQueryInterval.
func (p *participant) queryBackoff() backoff {
	return newBackoff(p.timing.InDoubtAfter, p.timing.MaxQueryInterval)
}

// queryTick is how often the participant looks for transactions it has been
// in doubt about for too long, and for waits past their deadline.
func (p *participant) queryTick() time.Duration {
	// Also often enough for waits (lock waits, held reads) to end near
	// their deadline, VoteTimeout after they began.
	d := min(p.timing.InDoubtAfter/4, p.timing.VoteTimeout/2)
	if d < 10*time.Millisecond {
		d = 10 * time.Millisecond
	}
	return d
}

func (p *participant) vote(ctx actor.Context, to *actor.PID, tx messages.TxID, kind messages.VoteKind, reason string) {
	if kind == messages.VoteNo {
		// Having voted no, this node knows the outcome: abort. A duplicate
		// of the Prepare must get no again. Not durable: a peer is told
		// "abort" only once a REFUSED record is (see refuse). Forgetting it
		// in a crash is safe, as nobody else was told: the coordinator got
		// the no (and aborts) or, if the no was lost, has a vote missing —
		// a later duplicate Prepare may then be voted on afresh.
		p.mem.note(tx, outAborted, p.now())
	}
	p.sendVote(ctx, to, tx, kind, reason)
}

// sendVote sends a vote without remembering it (vote remembers a no).
func (p *participant) sendVote(ctx actor.Context, to *actor.PID, tx messages.TxID, kind messages.VoteKind, reason string) {
	if to == nil {
		to = p.cfg.Directory.Coordinator(tx.Node)
	}
	if p.log.IsInfo() {
		if kind == messages.VoteNo {
			p.log.Info("vote", "tx", tx, "vote", kind, "reason", reason)
		} else {
			p.log.Info("vote", "tx", tx, "vote", kind)
		}
	}
	ctx.Send(to, &messages.Vote{Tx: tx, From: p.cfg.Node, Kind: kind, Reason: reason})
	p.cfg.Steps.report(p.cfg.Node, StepVoted, tx, tx.Node, kind)
}

func (p *participant) onPrepare(ctx actor.Context, m *messages.Prepare) {
	p.mem.observe(m.Tx, m.Settled)
	switch s := p.standing(m.Tx); s.kind {
	case standPreparing, standInDoubt, standCommitting:
		// A duplicate Prepare: answer as before once the answer is known.
		s.t.voteTo = ctx.Sender()
		if s.kind != standPreparing {
			p.vote(ctx, s.t.voteTo, m.Tx, messages.VoteYes, "")
		}
		return
	case standWaiting:
		s.w.to = ctx.Sender() // a duplicate of one still waiting
		return
	case standForgotten:
		// Below its coordinator's mark: the transaction has ended there (an
		// abort decided, or a commit every yes-voter acked), or this node
		// has seen a later incarnation of that coordinator, whose earlier
		// one died with its txn actors. Either way no vote on it counts any
		// more, so no is safe; preparing it could be wrong, as this node may
		// have committed it and forgotten. Not remembered: below the mark.
		p.sendVote(ctx, ctx.Sender(), m.Tx, messages.VoteNo, fmt.Sprintf(
			"node %d: transaction %v is below what its coordinator has settled (or of an earlier incarnation)", p.cfg.Node, m.Tx))
		return
	}
	p.tryPrepare(ctx, m, ctx.Sender())
}

// tryPrepare locks and checks a transaction's ops and starts logging
// PREPARED, or makes it wait for older lock holders, or votes no.
//
// It is called for a transaction with no live record and no waiting
// Prepare (onPrepare answers those; a woken waiter has been dropped).
func (p *participant) tryPrepare(ctx actor.Context, m *messages.Prepare, voteTo *actor.PID) {
	switch p.standing(m.Tx).kind {
	case standReadOnly:
		// A duplicate of one this node voted read-only on: the same answer,
		// and no second look at the keys — the check could fail now, and a
		// no would tell in-doubt peers "abort" about a transaction that may
		// have committed. While its READ-ONLY record is being written, the
		// vote follows the write.
		if !p.standing(m.Tx).logging {
			p.sendVote(ctx, voteTo, m.Tx, messages.VoteReadOnly, "")
		}
		return
	case standAborted:
		p.vote(ctx, voteTo, m.Tx, messages.VoteNo, "transaction already aborted here")
		return
	case standCommitted:
		// A late duplicate: this node prepared and committed it already.
		p.vote(ctx, voteTo, m.Tx, messages.VoteYes, "")
		return
	}
	if err := p.checkOwnership(m.Ops); err != nil {
		p.vote(ctx, voteTo, m.Tx, messages.VoteNo, err.Error())
		return
	}
	if p.parkOnReaders(ctx, m, voteTo) {
		return // waits for older snapshot reads of its keys (reads.go)
	}
	if err := p.locks.acquire(m.Tx, m.Ops, p.value); err != nil {
		// A key held by others, or a floor that holds only if some of them
		// abort or commit: wait for them if they are all older.
		var holders []messages.TxID
		switch c := err.(type) {
		case *lockConflict:
			holders = c.Holders
		case *floorConflict:
			holders = c.Pending
		}
		if len(holders) > 0 && p.mayWait(m, holders) {
			p.waits.add(&waiter{prepare: m, to: voteTo, blockers: holders, deadline: p.now().Add(p.timing.VoteTimeout)})
			if p.log.IsDebug() {
				p.log.Debug("prepare waits for older transactions", "tx", m.Tx, "reason", err, "holders", holders)
			}
			return
		}
		p.vote(ctx, voteTo, m.Tx, messages.VoteNo, fmt.Sprintf("node %d: %v", p.cfg.Node, err))
		return
	}
	if readOnly(m.Ops) {
		// Only floor checks here, and they hold: nothing to commit, so
		// release now and stay out of phase two.
		p.locks.release(m.Tx, m.Ops)
		p.voteReadOnly(ctx, m.Tx, voteTo)
		return
	}
	p.txs[m.Tx] = &ptx{state: preparing, ops: m.Ops, participants: m.Participants, voteTo: voteTo, begun: m.Begun}
	p.cfg.Steps.report(p.cfg.Node, StepPrepareReceived, m.Tx, m.Tx.Node, 0)
	// The yes vote is a promise that survives a crash, so PREPARED must be
	// durable before the vote leaves.
	p.logThen(ctx, messages.Record{Kind: messages.RecPrepared, Tx: m.Tx, Participants: m.Participants, Ops: m.Ops}, p.onPreparedLogged)
}

func (p *participant) checkOwnership(ops []messages.Op) error {
	if err := messages.CheckOwned(ops, p.cfg.Node, p.cfg.Members); err != nil {
		return fmt.Errorf("node %d: %v", p.cfg.Node, err)
	}
	return nil
}

// readOnly: a transaction that only adds 0 to keys here is a floor check
// ("balance >= F") and changes nothing.
func readOnly(ops []messages.Op) bool {
	for _, o := range ops {
		if o.Kind != messages.OpAdd || o.Value != 0 {
			return false
		}
	}
	return true
}

func (p *participant) value(key string) int64 { return p.kv[key] }

// logThen makes rec durable (forced), then runs done with its
// transaction's live record and the write's error — unless the record is
// gone by then, leaving nothing to act on.
func (p *participant) logThen(ctx actor.Context, rec messages.Record, done func(ctx actor.Context, tx messages.TxID, t *ptx, err error)) {
	p.durable.then(ctx, rec, func(ctx actor.Context, err error) {
		if t := p.txs[rec.Tx]; t != nil {
			done(ctx, rec.Tx, t, err)
		}
	})
}

// onPreparedLogged votes once PREPARED is durable: yes, or no if the write
// failed (or abort, if an Abort came while it was being written).
func (p *participant) onPreparedLogged(ctx actor.Context, tx messages.TxID, t *ptx, err error) {
	if err != nil {
		// Not durable, so not promised: refuse.
		p.log.Error("PREPARED not logged; voting no", "tx", tx, "error", err)
		p.settle(ctx, tx, t)
		p.vote(ctx, t.voteTo, tx, messages.VoteNo, fmt.Sprintf("node %d: log write failed: %v", p.cfg.Node, err))
		return
	}
	now := p.now()
	t.state, t.preparedAt, t.nextQuery, t.queryGap = prepared, now, now.Add(p.timing.InDoubtAfter), p.queryBackoff()
	p.cfg.Steps.report(p.cfg.Node, StepPreparedLogged, tx, tx.Node, 0)
	if t.abortPending {
		p.abort(ctx, tx, t, "aborted while preparing")
		return
	}
	p.vote(ctx, t.voteTo, tx, messages.VoteYes, "")
}

// onCommittedLogged applies and acks a commit once COMMITTED is durable.
func (p *participant) onCommittedLogged(ctx actor.Context, tx messages.TxID, t *ptx, err error) {
	if err != nil {
		// The commit is decided; only this node's record of it failed.
		// Stay prepared: the coordinator re-sends Commit and we retry.
		p.log.Error("COMMITTED not logged; will retry on the next Commit", "tx", tx, "error", err)
		t.state = prepared
		return
	}
	for _, o := range t.ops {
		messages.Apply(p.kv, o)
	}
	p.readsSeeCommit(tx, t.ops) // before settle wakes them
	p.mem.note(tx, outCommitted, p.now())
	p.settle(ctx, tx, t)
	p.cfg.Steps.report(p.cfg.Node, StepCommittedLogged, tx, tx.Node, 0)
	if p.log.IsInfo() {
		p.log.Info("committed", "tx", tx)
	}
	to := t.ackTo
	if to == nil {
		to = p.cfg.Directory.Coordinator(tx.Node)
	}
	if p.log.IsInfo() {
		p.log.Info("ack sent", "tx", tx)
	}
	ctx.Send(to, &messages.Ack{Tx: tx, From: p.cfg.Node})
}

// onDecision handles Commit, Abort and a DecisionReply that carries one:
// held back while an operator's heuristic decision is being logged, checked
// against one that was (see onDecisionAfterHeuristic), otherwise decided.
func (p *participant) onDecision(ctx actor.Context, tx messages.TxID, d messages.Decision, replyTo *actor.PID, reason string) {
	t := p.txs[tx]
	if t != nil && t.forcing != nil {
		t.forcing.deferred = append(t.forcing.deferred, deferredDecision{d: d, replyTo: replyTo, reason: reason})
		return
	}
	if commit, forced := p.heuristics[tx]; forced {
		p.onDecisionAfterHeuristic(ctx, tx, t, commit, d, replyTo)
		return
	}
	if t != nil && t.state == prepared && t.asked > 0 && p.cfg.Rounds != nil {
		p.cfg.Rounds(d) // the last round of asking got its answer
	}
	p.decide(ctx, tx, d, replyTo, reason)
}

// decide applies a decision the protocol delivered (or the operator forced).
func (p *participant) decide(ctx actor.Context, tx messages.TxID, d messages.Decision, replyTo *actor.PID, reason string) {
	t := p.txs[tx]
	switch d {
	case messages.DecisionCommit:
		if t == nil {
			if s := p.standing(tx); s.kind == standAborted {
				// This node voted no or was told abort: a commit now means
				// the decisions disagree. Never ack it; make it loud.
				p.log.Error("Commit for a transaction this node aborted: conflicting decisions; not acked", "tx", tx)
				return
			}
			// Already committed and forgotten (a duplicate or re-sent
			// Commit): the ack got lost, so send it again.
			to := replyTo
			if to == nil {
				to = p.cfg.Directory.Coordinator(tx.Node)
			}
			ctx.Send(to, &messages.Ack{Tx: tx, From: p.cfg.Node})
			return
		}
		if replyTo != nil {
			t.ackTo = replyTo
		}
		switch t.state {
		case preparing:
			// Cannot happen in a correct run: the coordinator commits only
			// after our yes, which follows the durable PREPARED.
			p.log.Error("Commit before this node voted yes; ignored", "tx", tx)
		case prepared:
			t.state = committing
			if p.log.IsInfo() {
				p.log.Info("commit received", "tx", tx)
			}
			p.cfg.Steps.report(p.cfg.Node, StepCommitReceived, tx, tx.Node, 0)
			// The ack tells the coordinator it may forget the transaction,
			// so COMMITTED must be durable first: otherwise a restart would
			// leave this node in doubt and the coordinator would answer
			// "abort" (presumed) for a committed transaction.
			p.logThen(ctx, messages.Record{Kind: messages.RecCommitted, Tx: tx}, p.onCommittedLogged)
		case committing:
			// already logging it; the ack follows
		}
	case messages.DecisionAbort:
		if t == nil {
			// Possibly still waiting for locks: it holds nothing, drop it.
			if w := p.waits.prepares[tx]; w != nil {
				p.waits.drop(w)
			}
			p.mem.note(tx, outAbortDecided, p.now())
			return
		}
		switch t.state {
		case preparing:
			t.abortPending = true
		case prepared:
			p.abort(ctx, tx, t, reason)
		case committing:
			p.log.Error("Abort for a transaction being committed; ignored (conflicting decisions)", "tx", tx)
		}
	}
}

func (p *participant) abort(ctx actor.Context, tx messages.TxID, t *ptx, reason string) {
	p.mem.note(tx, outAbortDecided, p.now())
	// Lazy: losing ABORTED in a crash leaves the transaction in doubt after
	// restart, and the coordinator then answers abort (presumed abort).
	p.durable.lazy(ctx, messages.Record{Kind: messages.RecAborted, Tx: tx})
	p.settle(ctx, tx, t)
	if p.log.IsInfo() {
		p.log.Info("aborted", "tx", tx, "reason", reason)
	}
}

// ParticipantStatusRequest asks a participant for a ParticipantStatus.
type ParticipantStatusRequest struct{}

// ParticipantStatus is a participant's state at a glance.
type ParticipantStatus struct {
	Node       int32
	Keys       int             // keys with a committed value
	LocksHeld  int             // keys locked
	Preparing  int             // PREPARED being logged
	InDoubt    []messages.TxID // voted yes, no decision yet
	Doubts     []InDoubtTx     // the same transactions with details, sorted by Tx
	Committing int             // COMMITTED being logged
	Waiting    int             // Prepares waiting for older lock holders
	Reads      int             // reads waiting for prepared transactions
	Remembered int             // finished transactions remembered for late messages (until their coordinator's mark passes them, or Timing.RememberOutcomes)
	// Unreconciled: heuristic decisions taken here whose agreement with the
	// coordinator's decision is not known yet (still being asked about).
	Unreconciled int
	// Rounds counts the query timer's rounds: each looks for waits past
	// their deadline, for transactions to ask about, and forgets old
	// outcomes. A participant whose Rounds stop growing is stuck.
	Rounds uint64
}

func (p *participant) status() *ParticipantStatus {
	s := &ParticipantStatus{Node: p.cfg.Node, Keys: len(p.kv), LocksHeld: p.locks.held(),
		Waiting: len(p.waits.prepares), Reads: p.waits.reads,
		Remembered:   p.mem.done.len(),
		Unreconciled: len(p.unreconciled), Rounds: p.rounds}
	s.Doubts = p.doubts()
	for tx := range p.txs {
		switch p.standing(tx).kind {
		case standPreparing:
			s.Preparing++
		case standInDoubt:
			s.InDoubt = append(s.InDoubt, tx)
		case standCommitting:
			s.Committing++
		}
	}
	return s
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
	s := p.standing(tx)
	if s.heuristic {
		switch s.kind {
		case standCommitting:
			return messages.DecisionCommit, "is committing it" + heuristicBy
		case standCommitted:
			return messages.DecisionCommit, "committed it" + heuristicBy
		case standAborted:
			return messages.DecisionAbort, "aborted it" + heuristicBy
		default:
			// Its COMMITTED could not be written: retried on the next
			// Commit or Abort, or after a restart.
			d := forcedDecision(s.forcedCommit)
			return d, "is to " + d.String() + " it" + heuristicBy + "; not yet applied (its log write failed)"
		}
	}
	switch s.kind {
	case standReadOnly:
		return messages.DecisionUnknown, "voted read-only: the outcome was decided without it"
	case standCommitted:
		return messages.DecisionCommit, "committed it"
	case standCommitting:
		return messages.DecisionCommit, "is committing it"
	case standAborted:
		return messages.DecisionAbort, "aborted it"
	case standInDoubt:
		if s.t.forcing != nil {
			return messages.DecisionUnknown, "in doubt here too (the operator's heuristic decision is being logged)"
		}
		return messages.DecisionUnknown, "in doubt here too"
	case standPreparing:
		return messages.DecisionUnknown, "still preparing it (PREPARED being logged)"
	case standWaiting:
		return messages.DecisionUnknown, "has not voted yet (its Prepare waits for locks)"
	case standForgotten:
		return messages.DecisionUnknown, "no trace of it (below what its coordinator has settled: forgotten)"
	}
	return messages.DecisionUnknown, "no trace of it"
}

// stateOf names what this participant holds of tx, in a word or two.
func (p *participant) stateOf(tx messages.TxID) string {
	s := p.standing(tx)
	switch s.kind {
	case standPreparing:
		return "preparing"
	case standInDoubt:
		if s.t.forcing != nil {
			return "in doubt, being decided by the operator (its HEURISTIC record is being logged)"
		}
		return "in doubt"
	case standCommitting:
		return "committing"
	case standCommitted:
		if s.heuristic {
			return "committed by the operator's heuristic decision"
		}
		return "committed"
	case standAborted:
		if s.heuristic {
			return "aborted by the operator's heuristic decision"
		}
		return "aborted"
	case standReadOnly:
		return "voted read-only"
	case standWaiting:
		return "waiting for locks"
	case standForgotten:
		return "forgotten (below its coordinator's mark)"
	}
	return "unknown here"
}

// doubts lists the transactions in doubt here, sorted by id.
func (p *participant) doubts() []InDoubtTx {
	var out []InDoubtTx
	for tx, t := range p.txs {
		if p.standing(tx).kind != standInDoubt {
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
