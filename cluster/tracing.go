package cluster

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"twopc/actors"
	"twopc/messages"
	"twopc/trace"
)

// Tracing: a node given a Config.Tracer records, for the operator's `trace`
// command, every protocol message its roles send and receive, every record
// its log writes and every decision its coordinator takes. Messages are
// seen by protoactor middleware on the roles' props, log writes by the
// persistence observer, decisions by the step hook. Without a Tracer none
// of this is installed: the benchmarks' actors run exactly as before.
//
// A node whose power is cut records nothing more: whatever its actors still
// do in their last moments can reach neither the disk nor the network, so
// in a trace it must not seem to have happened.

// nodeTracer connects one start of a node to the Recorder.
type nodeTracer struct {
	rec   *trace.Recorder
	node  int32
	nodes map[string]int32 // member address → node id, to name a message's receiver
	cut   *atomic.Bool     // the node's power is cut
}

// newNodeTracer returns n's tracer, or nil if n has no Tracer.
func newNodeTracer(n *Node) *nodeTracer {
	if n.cfg.Tracer == nil {
		return nil
	}
	t := &nodeTracer{rec: n.cfg.Tracer, node: n.cfg.ID, nodes: make(map[string]int32, len(n.cfg.Members)), cut: &n.cut}
	for i, addr := range n.cfg.Members {
		t.nodes[addr] = int32(i)
	}
	return t
}

// record keeps e unless the node's power is cut. The time is taken before
// the cut is checked, so every event kept happened before the cut (and
// before the crash event PowerCut records once the cut is in place).
func (t *nodeTracer) record(e trace.Event) {
	e.At = time.Now()
	if t.cut.Load() {
		return
	}
	e.Node = t.node
	t.rec.Record(e)
}

// props installs the message middleware on a role's props; with no tracer
// it returns props untouched.
func (t *nodeTracer) props(props *actor.Props) *actor.Props {
	if t == nil {
		return props
	}
	// One forwarding check per actor: the coordinator forwards a Vote, an
	// Ack or a DecisionQuery to the transaction's txn actor, which records
	// the receive itself; both state fields are only touched on the actor's
	// own goroutine.
	st := &roleTrace{t: t}
	return props.Configure(actor.WithReceiverMiddleware(st.receiver), actor.WithSenderMiddleware(st.sender))
}

// txnProps is what the coordinator applies to each txn actor's props
// (actors.CoordinatorConfig.TxnProps); nil with no tracer.
func (t *nodeTracer) txnProps() func(*actor.Props) *actor.Props {
	if t == nil {
		return nil
	}
	return t.props
}

// roleTrace is the middleware of one role's actor.
type roleTrace struct {
	t         *nodeTracer
	current   *actor.MessageEnvelope // the message being received
	forwarded bool                   // ... has been forwarded by the handler
}

func (st *roleTrace) receiver(next actor.ReceiverFunc) actor.ReceiverFunc {
	return func(c actor.ReceiverContext, env *actor.MessageEnvelope) {
		tx, what, detail, from, ok := describe(env.Message)
		if !ok {
			next(c, env)
			return
		}
		// Stamped before the handler runs, recorded after it, unless the
		// handler only forwarded the message: the actor it went to records
		// the receive then.
		at := time.Now()
		cut := st.t.cut.Load()
		st.current, st.forwarded = env, false
		defer func() { // deferred: a handler that panics has still received the message
			forwarded := st.forwarded
			st.current, st.forwarded = nil, false
			if cut || forwarded {
				return
			}
			if from < 0 {
				from = st.t.nodeOf(env.Sender)
			}
			st.t.rec.Record(trace.Event{At: at, Node: st.t.node, Kind: trace.Receive, Peer: from, Tx: tx, What: what, Detail: detail})
		}()
		next(c, env)
	}
}

func (st *roleTrace) sender(next actor.SenderFunc) actor.SenderFunc {
	return func(c actor.SenderContext, target *actor.PID, env *actor.MessageEnvelope) {
		if st.current != nil && env == st.current {
			st.forwarded = true // ctx.Forward: not a message of its own
		} else if tx, what, detail, _, ok := describe(env.Message); ok {
			to := st.t.nodeOf(target)
			if isToClient(env.Message) {
				to = trace.PeerClient
			}
			// Recorded before it is sent, so the send precedes its receive.
			st.t.record(trace.Event{Kind: trace.Send, Peer: to, Tx: tx, What: what, Detail: detail})
		}
		next(c, target, env)
	}
}

// nodeOf names the node a PID lives on (-1 if none or not a member).
func (t *nodeTracer) nodeOf(pid *actor.PID) int32 {
	if pid == nil {
		return trace.NoPeer
	}
	if id, ok := t.nodes[pid.Address]; ok {
		return id
	}
	return trace.NoPeer
}

// isToClient: messages whose receiver is the client, not a node's role.
func isToClient(m interface{}) bool {
	switch m.(type) {
	case *messages.Outcome, *messages.Begun:
		return true
	}
	return false
}

// describe says what a protocol message means to its transaction's trace:
// which transaction, its name (with a vote's kind), a detail (a reason, a
// decision, an outcome), and who sent it if the message says (-1: the
// sender's address tells). Messages without a transaction (Begin, Read,
// status requests, timers, log replies) are not traced: ok is false.
func describe(m interface{}) (tx messages.TxID, what, detail string, from int32, ok bool) {
	switch m := m.(type) {
	case *messages.Prepare:
		return m.Tx, "Prepare", "", m.Tx.Node, true
	case *messages.Vote:
		return m.Tx, "Vote " + m.Kind.String(), m.Reason, m.From, true
	case *messages.Commit:
		return m.Tx, "Commit", "", m.From, true
	case *messages.Abort:
		return m.Tx, "Abort", m.Reason, m.From, true
	case *messages.Ack:
		if m.Heuristic {
			return m.Tx, "Ack", "heuristic damage", m.From, true
		}
		return m.Tx, "Ack", "", m.From, true
	case *messages.DecisionQuery:
		return m.Tx, "DecisionQuery", "", m.From, true
	case *messages.DecisionReply:
		return m.Tx, "DecisionReply", m.Decision.String(), m.From, true
	case *messages.Outcome:
		return m.Tx, "Outcome", outcomeText(m), m.Tx.Node, true
	case *messages.Begun:
		return m.Tx, "Begun", "", m.Tx.Node, true
	}
	return messages.TxID{}, "", "", trace.NoPeer, false
}

func outcomeText(o *messages.Outcome) string {
	switch {
	case o.Committed && o.Reason != "":
		return fmt.Sprintf("committed (%s)", o.Reason)
	case o.Committed:
		return "committed"
	case o.Unknown:
		return "unknown: " + o.Reason
	}
	return "aborted: " + o.Reason
}

// steps adds the recording of decisions to a node's step hook. The inner
// hook runs first: a crash-point test that cuts the power at the decision
// makes the decision die with the node, unrecorded.
func (t *nodeTracer) steps(inner actors.StepHook) actors.StepHook {
	if t == nil {
		return inner
	}
	return func(s actors.Step) {
		if inner != nil {
			inner(s)
		}
		switch s.Kind {
		case actors.StepCommitDecided:
			t.record(trace.Event{Kind: trace.Decision, Peer: trace.NoPeer, Tx: s.Tx, What: "commit"})
		case actors.StepAbortDecided:
			t.record(trace.Event{Kind: trace.Decision, Peer: trace.NoPeer, Tx: s.Tx, What: "abort", Detail: s.Reason})
		}
	}
}

// written is the persistence observer (persistence.Options.Written): one
// LogWrite per record of a transaction (BOOT has none).
func (t *nodeTracer) written() func([]messages.Record, bool) {
	if t == nil {
		return nil
	}
	return func(recs []messages.Record, forced bool) {
		for _, r := range recs {
			if !r.Tx.IsZero() {
				t.record(trace.Event{Kind: trace.LogWrite, Peer: trace.NoPeer, Tx: r.Tx, What: r.Kind.String(), Forced: forced})
			}
		}
	}
}

// started records a restart — the node's new incarnation is durable, its
// roles are about to recover — in the traces it falls in. A first start
// (incarnation 1) precedes every transaction and is not recorded.
func (t *nodeTracer) started(incarnation uint32) {
	if t != nil && incarnation > 1 {
		t.rec.NodeEvent(t.node, fmt.Sprintf("restarted (incarnation %d)", incarnation))
	}
}

// nodeEvent records something that happened to node i of a Local, if the
// Local traces.
func (l *Local) nodeEvent(e trace.Event) {
	if l.cfg.Tracer != nil {
		e.Kind = trace.NodeEvent
		l.cfg.Tracer.Record(e)
	}
}
