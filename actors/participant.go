package actors

import (
	"fmt"
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
	// PREPARED records that have no outcome yet (in doubt).
	KV      map[string]int64
	InDoubt []messages.Record
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

	// recentAborts remembers transactions aborted here, so a Prepare that
	// arrives after its Abort (reordered or duplicated) is refused instead of
	// locking keys for a transaction that is already over.
	recentAborts *txRing

	appendSeq uint64
	appends   map[uint64]pendingAppend

	queryTimer *timer
}

type ptxState uint8

const (
	preparing  ptxState = iota + 1 // PREPARED being logged
	prepared                       // voted yes: in doubt until a decision arrives
	committing                     // COMMITTED being logged
)

// ptx is the participant's view of one transaction it holds locks for.
type ptx struct {
	state        ptxState
	ops          []messages.Op
	participants []int32
	voteTo       *actor.PID // where the vote goes (the txn actor)
	ackTo        *actor.PID // where the ack goes
	abortPending bool       // an Abort arrived while PREPARED was being logged

	preparedAt time.Time
	nextQuery  time.Time
	queryGap   time.Duration
}

type pendingAppend struct {
	tx   messages.TxID
	kind messages.RecordKind
}

// NewParticipantProps returns the props of a participant.
func NewParticipantProps(cfg ParticipantConfig) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor {
		return &participant{cfg: cfg}
	})
}

func (p *participant) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		p.start(ctx)
	case *actor.Stopping:
		p.queryTimer.stop()
	case *messages.Prepare:
		p.onPrepare(ctx, m)
	case *messages.Appended:
		p.onAppended(ctx, m)
	case *messages.Commit:
		p.onDecision(ctx, m.Tx, messages.DecisionCommit, ctx.Sender(), "")
	case *messages.Abort:
		p.onDecision(ctx, m.Tx, messages.DecisionAbort, nil, m.Reason)
	case *messages.DecisionReply:
		p.onDecisionReply(ctx, m)
	case *messages.DecisionQuery:
		p.onQuery(ctx, m)
	case *messages.Read:
		p.onRead(ctx, m)
	case *ParticipantStatusRequest:
		ctx.Respond(p.status())
	case *timerFired:
		if p.queryTimer.current(m) {
			p.askAboutInDoubt(ctx)
		}
	}
}

func (p *participant) start(ctx actor.Context) {
	p.timing = p.cfg.Timing.WithDefaults()
	p.log = orNull(p.cfg.Logger)
	p.kv = make(map[string]int64, len(p.cfg.KV))
	for k, v := range p.cfg.KV {
		p.kv[k] = v
	}
	p.locks = newLockTable()
	p.txs = make(map[messages.TxID]*ptx)
	p.recentAborts = newTxRing(4096)
	p.appends = make(map[uint64]pendingAppend)
	p.queryTimer = newTimer("in-doubt")
	now := time.Now()
	for _, rec := range p.cfg.InDoubt {
		// A transaction prepared before the restart is still promised: its
		// locks are taken again and it waits for the decision. It is asked
		// about at once: its coordinator may have decided long ago.
		p.locks.force(rec.Tx, rec.Ops)
		p.txs[rec.Tx] = &ptx{
			state: prepared, ops: rec.Ops, participants: rec.Participants,
			preparedAt: now, nextQuery: now, queryGap: p.timing.InDoubtAfter,
		}
		p.log.Warn("in doubt after restart", "tx", rec.Tx, "coordinator", rec.Tx.Node)
	}
	p.queryTimer.arm(ctx, p.queryTick())
	if len(p.cfg.InDoubt) > 0 {
		p.askAboutInDoubt(ctx)
	}
}

// queryTick is how often the participant looks for transactions it has been
// in doubt about for too long.
func (p *participant) queryTick() time.Duration {
	d := p.timing.InDoubtAfter / 4
	if d < 10*time.Millisecond {
		d = 10 * time.Millisecond
	}
	return d
}

func (p *participant) vote(ctx actor.Context, to *actor.PID, tx messages.TxID, kind messages.VoteKind, reason string) {
	if to == nil {
		to = p.cfg.Directory.Coordinator(tx.Node)
	}
	if kind == messages.VoteNo {
		p.log.Info("vote", "tx", tx, "vote", kind, "reason", reason)
	} else {
		p.log.Info("vote", "tx", tx, "vote", kind)
	}
	ctx.Send(to, &messages.Vote{Tx: tx, From: p.cfg.Node, Kind: kind, Reason: reason})
}

func (p *participant) onPrepare(ctx actor.Context, m *messages.Prepare) {
	if t, ok := p.txs[m.Tx]; ok {
		// A duplicate Prepare: answer as before once the answer is known.
		t.voteTo = ctx.Sender()
		if t.state != preparing {
			p.vote(ctx, t.voteTo, m.Tx, messages.VoteYes, "")
		}
		return
	}
	if p.recentAborts.has(m.Tx) {
		p.vote(ctx, ctx.Sender(), m.Tx, messages.VoteNo, "transaction already aborted here")
		return
	}
	if err := p.checkOwnership(m.Ops); err != nil {
		p.vote(ctx, ctx.Sender(), m.Tx, messages.VoteNo, err.Error())
		return
	}
	if err := p.locks.acquire(m.Tx, m.Ops, p.value); err != nil {
		p.vote(ctx, ctx.Sender(), m.Tx, messages.VoteNo, fmt.Sprintf("node %d: %v", p.cfg.Node, err))
		return
	}
	if readOnly(m.Ops) {
		// Only floor checks here, and they hold: nothing to commit, so
		// release now and stay out of phase two.
		p.locks.release(m.Tx, m.Ops)
		p.vote(ctx, ctx.Sender(), m.Tx, messages.VoteReadOnly, "")
		return
	}
	p.txs[m.Tx] = &ptx{state: preparing, ops: m.Ops, participants: m.Participants, voteTo: ctx.Sender()}
	// The yes vote is a promise that survives a crash, so PREPARED must be
	// durable before the vote leaves.
	p.appendRecord(ctx, messages.Record{Kind: messages.RecPrepared, Tx: m.Tx, Participants: m.Participants, Ops: m.Ops}, true)
}

func (p *participant) checkOwnership(ops []messages.Op) error {
	if len(ops) == 0 {
		return fmt.Errorf("node %d: no operations to prepare", p.cfg.Node)
	}
	for _, o := range ops {
		if err := messages.ValidateOp(o); err != nil {
			return fmt.Errorf("node %d: %v", p.cfg.Node, err)
		}
		if p.cfg.Members <= 0 {
			continue
		}
		owners, err := messages.Owners(o.Key, p.cfg.Members)
		if err != nil {
			return fmt.Errorf("node %d: %v", p.cfg.Node, err)
		}
		mine := false
		for _, n := range owners {
			mine = mine || n == p.cfg.Node
		}
		if !mine {
			return fmt.Errorf("node %d does not own key %s", p.cfg.Node, o.Key)
		}
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

func (p *participant) appendRecord(ctx actor.Context, rec messages.Record, force bool) {
	p.appendSeq++
	req := &messages.Append{ID: p.appendSeq, Records: []messages.Record{rec}, Force: force}
	if !force {
		ctx.Send(p.cfg.Persistence, req) // lazy: nobody waits for it
		return
	}
	p.appends[p.appendSeq] = pendingAppend{tx: rec.Tx, kind: rec.Kind}
	ctx.Request(p.cfg.Persistence, req)
}

func (p *participant) onAppended(ctx actor.Context, m *messages.Appended) {
	pa, ok := p.appends[m.ID]
	if !ok {
		return
	}
	delete(p.appends, m.ID)
	t := p.txs[pa.tx]
	if t == nil {
		return
	}
	switch pa.kind {
	case messages.RecPrepared:
		if m.Err != nil {
			// Not durable, so not promised: refuse.
			p.log.Error("PREPARED not logged; voting no", "tx", pa.tx, "error", m.Err)
			p.locks.release(pa.tx, t.ops)
			delete(p.txs, pa.tx)
			p.vote(ctx, t.voteTo, pa.tx, messages.VoteNo, fmt.Sprintf("node %d: log write failed: %v", p.cfg.Node, m.Err))
			return
		}
		now := time.Now()
		t.state, t.preparedAt, t.nextQuery, t.queryGap = prepared, now, now.Add(p.timing.InDoubtAfter), p.timing.InDoubtAfter
		if t.abortPending {
			p.abort(ctx, pa.tx, t, "aborted while preparing")
			return
		}
		p.vote(ctx, t.voteTo, pa.tx, messages.VoteYes, "")
	case messages.RecCommitted:
		if m.Err != nil {
			// The commit is decided; only this node's record of it failed.
			// Stay prepared: the coordinator re-sends Commit and we retry.
			p.log.Error("COMMITTED not logged; will retry on the next Commit", "tx", pa.tx, "error", m.Err)
			t.state = prepared
			return
		}
		for _, o := range t.ops {
			p.applyOp(o)
		}
		p.locks.release(pa.tx, t.ops)
		delete(p.txs, pa.tx)
		p.log.Info("committed", "tx", pa.tx)
		to := t.ackTo
		if to == nil {
			to = p.cfg.Directory.Coordinator(pa.tx.Node)
		}
		p.log.Info("ack sent", "tx", pa.tx)
		ctx.Send(to, &messages.Ack{Tx: pa.tx, From: p.cfg.Node})
	}
}

func (p *participant) applyOp(o messages.Op) {
	switch o.Kind {
	case messages.OpSet:
		p.kv[o.Key] = o.Value
	case messages.OpAdd:
		p.kv[o.Key] += o.Value
	case messages.OpDelete:
		delete(p.kv, o.Key)
	}
}

// onDecision handles Commit, Abort and a DecisionReply that carries one.
func (p *participant) onDecision(ctx actor.Context, tx messages.TxID, d messages.Decision, replyTo *actor.PID, reason string) {
	t := p.txs[tx]
	switch d {
	case messages.DecisionCommit:
		if t == nil {
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
			p.log.Info("commit received", "tx", tx)
			// The ack tells the coordinator it may forget the transaction,
			// so COMMITTED must be durable first: otherwise a restart would
			// leave this node in doubt and the coordinator would answer
			// "abort" (presumed) for a committed transaction.
			p.appendRecord(ctx, messages.Record{Kind: messages.RecCommitted, Tx: tx}, true)
		case committing:
			// already logging it; the ack follows
		}
	case messages.DecisionAbort:
		if t == nil {
			p.recentAborts.add(tx)
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
	p.locks.release(tx, t.ops)
	delete(p.txs, tx)
	p.recentAborts.add(tx)
	// Lazy: losing ABORTED in a crash leaves the transaction in doubt after
	// restart, and the coordinator then answers abort (presumed abort).
	p.appendRecord(ctx, messages.Record{Kind: messages.RecAborted, Tx: tx}, false)
	p.log.Info("aborted", "tx", tx, "reason", reason)
}

func (p *participant) onDecisionReply(ctx actor.Context, m *messages.DecisionReply) {
	t := p.txs[m.Tx]
	if t == nil || t.state != prepared {
		return // not in doubt (any more): a late or duplicate answer
	}
	switch m.Decision {
	case messages.DecisionCommit:
		p.log.Info("in-doubt transaction resolved", "tx", m.Tx, "decision", m.Decision, "by", m.From)
		p.onDecision(ctx, m.Tx, messages.DecisionCommit, p.cfg.Directory.Coordinator(m.Tx.Node), "")
	case messages.DecisionAbort:
		p.log.Info("in-doubt transaction resolved", "tx", m.Tx, "decision", m.Decision, "by", m.From)
		p.onDecision(ctx, m.Tx, messages.DecisionAbort, nil, fmt.Sprintf("resolved by node %d", m.From))
	}
}

// onQuery answers another participant's DecisionQuery with what this node
// knows: abort if it aborted the transaction; unknown otherwise (a prepared
// participant is in doubt too, and a forgotten commit cannot be told from a
// transaction never seen).
func (p *participant) onQuery(ctx actor.Context, m *messages.DecisionQuery) {
	d := messages.DecisionUnknown
	if p.recentAborts.has(m.Tx) {
		d = messages.DecisionAbort
	}
	ctx.Send(p.cfg.Directory.Participant(m.From), &messages.DecisionReply{Tx: m.Tx, From: p.cfg.Node, Decision: d})
}

// askAboutInDoubt sends a DecisionQuery to the coordinator of every
// transaction this node has been prepared for too long, with a doubling
// pause per transaction.
func (p *participant) askAboutInDoubt(ctx actor.Context) {
	now := time.Now()
	for tx, t := range p.txs {
		if t.state != prepared || now.Before(t.nextQuery) {
			continue
		}
		p.log.Info("asking coordinator about in-doubt transaction", "tx", tx, "coordinator", tx.Node, "waiting", now.Sub(t.preparedAt).Round(time.Millisecond))
		ctx.Send(p.cfg.Directory.Coordinator(tx.Node), &messages.DecisionQuery{Tx: tx, From: p.cfg.Node})
		t.queryGap *= 2
		if t.queryGap > p.timing.MaxQueryInterval {
			t.queryGap = p.timing.MaxQueryInterval
		}
		t.nextQuery = now.Add(t.queryGap)
	}
	p.queryTimer.arm(ctx, p.queryTick())
}

func (p *participant) onRead(ctx actor.Context, m *messages.Read) {
	out := &messages.ReadReply{From: p.cfg.Node, Values: make([]messages.KeyValue, len(m.Keys))}
	for i, k := range m.Keys {
		out.Values[i] = messages.KeyValue{Key: k, Value: p.kv[k]}
	}
	ctx.Respond(out)
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
	Committing int             // COMMITTED being logged
}

func (p *participant) status() *ParticipantStatus {
	s := &ParticipantStatus{Node: p.cfg.Node, Keys: len(p.kv), LocksHeld: p.locks.held()}
	for tx, t := range p.txs {
		switch t.state {
		case preparing:
			s.Preparing++
		case prepared:
			s.InDoubt = append(s.InDoubt, tx)
		case committing:
			s.Committing++
		}
	}
	return s
}

// txRing is a fixed-size set of recent transaction ids: old entries fall
// out, so memory stays bounded however long the node runs.
type txRing struct {
	ring []messages.TxID
	next int
	set  map[messages.TxID]struct{}
}

func newTxRing(n int) *txRing {
	return &txRing{ring: make([]messages.TxID, n), set: make(map[messages.TxID]struct{}, n)}
}

func (r *txRing) add(tx messages.TxID) {
	if _, ok := r.set[tx]; ok {
		return
	}
	if old := r.ring[r.next]; !old.IsZero() {
		delete(r.set, old)
	}
	r.ring[r.next] = tx
	r.set[tx] = struct{}{}
	r.next = (r.next + 1) % len(r.ring)
}

func (r *txRing) has(tx messages.TxID) bool {
	_, ok := r.set[tx]
	return ok
}
