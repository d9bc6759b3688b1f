package actors

// The acceptor of the non-blocking commit protocol. A transaction's outcome
// is chosen once a majority of its acceptors (messages.Acceptors: its
// coordinator's node and the next two) have durably accepted it in the same
// ballot. Ballot 0 is the coordinator's, implicitly promised by every
// acceptor, so the failure-free commit needs no promise round; any node in
// doubt can take over with a higher ballot (proposer.go). The rules are
// single-decree Paxos: promise nothing lower than a ballot already
// promised, accept only at or above the promise, and report the highest
// accepted value with every promise — all of it durable before it is said.

import (
	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/go-hclog"

	"twopc/messages"
)

// AcceptorConfig is what an acceptor needs to start.
type AcceptorConfig struct {
	Node        int32
	Members     int
	Persistence *actor.PID
	Logger      hclog.Logger
	// Recovered: what this node's log says it promised and accepted
	// (persistence.State.Acceptor). The acceptor takes the map over.
	Recovered map[messages.TxID]messages.Acceptance
	// Steps, if set, is told of StepPromisedLogged and StepAcceptedLogged.
	Steps StepHook
}

// AcceptorStatusRequest asks an acceptor for an AcceptorStatus.
type AcceptorStatusRequest struct{}

// AcceptorStatus is an acceptor's state at a glance.
type AcceptorStatus struct {
	Node int32
	Held int // transactions it holds a promise or an acceptance for
}

type acceptor struct {
	cfg     AcceptorConfig
	log     hclog.Logger
	held    map[messages.TxID]messages.Acceptance
	marks   map[int32]messages.TxID // per coordinator, the highest mark seen
	durable *durable
	seq     *uint64
}

// NewAcceptorProps returns the props of a node's acceptor.
func NewAcceptorProps(cfg AcceptorConfig) *actor.Props {
	seq := new(uint64)
	held := cfg.Recovered
	if held == nil {
		held = make(map[messages.TxID]messages.Acceptance)
	}
	return actor.PropsFromProducer(func() actor.Actor {
		return &acceptor{cfg: cfg, held: held, seq: seq, marks: make(map[int32]messages.TxID)}
	})
}

func (a *acceptor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.log = orNull(a.cfg.Logger)
		a.durable = newDurable(a.cfg.Persistence, a.seq)
	case *messages.PromiseRequest:
		a.onPromiseRequest(ctx, m)
	case *messages.AcceptRequest:
		a.onAcceptRequest(ctx, m)
	case *messages.Appended:
		a.durable.onAppended(ctx, m)
	case *AcceptorStatusRequest:
		ctx.Respond(&AcceptorStatus{Node: a.cfg.Node, Held: len(a.held)})
	}
}

// isAcceptor: only tx's acceptors take part in choosing its outcome; a
// request that reached another node is a mistake of its sender's, and
// answering it could count toward a majority that is not one.
func (a *acceptor) isAcceptor(tx messages.TxID) bool {
	if tx.Node < 0 || int(tx.Node) >= a.cfg.Members {
		return false
	}
	for _, n := range messages.Acceptors(tx, a.cfg.Members) {
		if n == a.cfg.Node {
			return true
		}
	}
	return false
}

func (a *acceptor) onPromiseRequest(ctx actor.Context, m *messages.PromiseRequest) {
	if !a.isAcceptor(m.Tx) || m.Ballot == 0 {
		a.log.Warn("promise request this node cannot answer (not one of the transaction's acceptors, or ballot 0); ignored", "tx", m.Tx, "ballot", m.Ballot, "from", m.From)
		return
	}
	to := ctx.Sender()
	st := a.held[m.Tx]
	if m.Ballot < st.Promised {
		ctx.Send(to, &messages.PromiseReply{Tx: m.Tx, Ballot: m.Ballot, From: a.cfg.Node, Promised: st.Promised})
		return
	}
	// Promised at once in memory: a request arriving while the record is
	// written is judged against it. The reply carries what was accepted
	// when the promise was made; every ACCEPTED before it in the log is on
	// disk by the time the PROMISED is.
	st.Promised = m.Ballot
	a.held[m.Tx] = st
	reply := &messages.PromiseReply{Tx: m.Tx, Ballot: m.Ballot, From: a.cfg.Node, OK: true,
		Promised: m.Ballot, AcceptedBallot: st.AcceptedBallot, Accepted: st.Accepted}
	a.durable.then(ctx, messages.Record{Kind: messages.RecPromised, Tx: m.Tx, Ballot: m.Ballot}, func(ctx actor.Context, err error) {
		if err != nil {
			a.log.Error("PROMISED not logged; not answering", "tx", m.Tx, "ballot", m.Ballot, "error", err)
			return
		}
		a.cfg.Steps.report(a.cfg.Node, StepPromisedLogged, m.Tx, m.From, 0)
		if a.log.IsDebug() {
			a.log.Debug("promised", "tx", m.Tx, "ballot", m.Ballot, "to", m.From, "accepted", reply.Accepted, "accepted_ballot", reply.AcceptedBallot)
		}
		ctx.Send(to, reply)
	})
}

func (a *acceptor) onAcceptRequest(ctx actor.Context, m *messages.AcceptRequest) {
	if !a.isAcceptor(m.Tx) || (m.Decision != messages.DecisionCommit && m.Decision != messages.DecisionAbort) {
		a.log.Warn("accept request this node cannot answer (not one of the transaction's acceptors, or no decision); ignored", "tx", m.Tx, "ballot", m.Ballot, "from", m.From)
		return
	}
	if m.Ballot == 0 && m.Settled > 0 {
		a.forgetBelow(messages.TxID{Node: m.Tx.Node, Incarnation: m.Tx.Incarnation, Seq: m.Settled})
	}
	to := ctx.Sender()
	st := a.held[m.Tx]
	if m.Ballot < st.Promised {
		ctx.Send(to, &messages.AcceptReply{Tx: m.Tx, Ballot: m.Ballot, From: a.cfg.Node, Promised: st.Promised})
		return
	}
	st.Promised, st.AcceptedBallot, st.Accepted = m.Ballot, m.Ballot, m.Decision
	a.held[m.Tx] = st
	a.durable.then(ctx, messages.Record{Kind: messages.RecAccepted, Tx: m.Tx, Ballot: m.Ballot, Decision: m.Decision}, func(ctx actor.Context, err error) {
		if err != nil {
			a.log.Error("ACCEPTED not logged; not answering", "tx", m.Tx, "ballot", m.Ballot, "error", err)
			return
		}
		a.cfg.Steps.report(a.cfg.Node, StepAcceptedLogged, m.Tx, m.From, 0)
		if a.log.IsDebug() {
			a.log.Debug("accepted", "tx", m.Tx, "ballot", m.Ballot, "decision", m.Decision, "from", m.From)
		}
		ctx.Send(to, &messages.AcceptReply{Tx: m.Tx, Ballot: m.Ballot, From: a.cfg.Node, OK: true, Promised: m.Ballot})
	})
}

// forgetBelow lets go of transactions below the coordinator's low-water
// mark, of the mark's incarnation only (persistence.ForgetAccepted says
// why that is safe and why earlier incarnations are kept). Memory only:
// the participant logs the marks it sees, and a restart drops the same
// entries from the log's fold.
// The held entries are scanned only when a coordinator's mark rises.
func (a *acceptor) forgetBelow(mark messages.TxID) {
	if old, ok := a.marks[mark.Node]; ok && !old.BelowInIncarnation(mark) && old.Incarnation >= mark.Incarnation {
		return
	}
	a.marks[mark.Node] = mark
	for tx := range a.held {
		if tx.BelowInIncarnation(mark) {
			delete(a.held, tx)
		}
	}
}
