package cluster

// The Admin service: what an operator does to one running node, over the
// same authenticated wire as clients (rpcServers in node.go). Only a
// connection whose certificate is the admin's (twopc:admin) reaches the
// real service; a client's connection reaches one that refuses every call,
// naming the certificate it needs. Without TLS (insecure) every connection
// reaches it, as it reaches everything else.
//
// Each call is about this node only: its status, its in-doubt
// transactions, what it knows of an outcome, a heuristic decision on its
// participant, its part of a transaction's trace, its log level, its links
// and message faults, its clock's skew. Deciding across nodes (resolve,
// trace, partition) is the caller's: see AdminClient and Remote.
//
// Arguments and replies travel in the wire's checked encoding
// (bridge.WireValue), as the Client service's do: every count is checked
// against a limit and against the bytes left before anything is allocated.

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/go-hclog"

	"twopc/actors"
	"twopc/bridge"
	"twopc/messages"
	"twopc/trace"
)

// errAdminOnly answers every Admin call on a connection that is not the
// admin's: the operator's actions change what the cluster does.
var errAdminOnly = errors.New("refused: the Admin service is for the admin certificate (twopc:admin) only, and this connection presented a client certificate (twopc:client); dial with admin.crt/admin.key to act as the operator")

// adminService is the net/rpc face a node shows to its operator. With
// refused set it refuses every call with that error, before touching
// the node.
type adminService struct {
	n       *Node
	refused error
}

// Bounds on what one reply carries, well inside bridge.DefaultLimits'
// MaxFrame (1 MiB): a list longer than this is cut, and says so.
const (
	maxAdminReplyBytes = 512 << 10
	maxAdminDoubts     = 1 << 16 // in-doubt transactions listed in one reply
	maxAdminEvents     = trace.MaxEventsPerTx + 1024
	maxLevelName       = 16
)

// AdminNone is an Admin call's empty argument or reply.
type AdminNone struct{}

func (*AdminNone) EncodeWire(*bridge.Encoder) {}
func (*AdminNone) DecodeWire(*bridge.Decoder) {}

// NodeStatus is one node at a glance: what the prompt's `status` prints in
// its row, and what `wait settled` waits on.
type NodeStatus struct {
	Node        int32
	Members     int
	Addr        string
	Incarnation uint32
	// InFlight (coordinated here, not yet ended), LocksHeld and InDoubt;
	// -1 if the role did not answer (Errs says why).
	InFlight  int
	LocksHeld int
	InDoubt   int
	// Under way at the participant: Prepares being logged, COMMITTED
	// being logged, Prepares waiting for older lock holders.
	Preparing, Committing, Waiting int
	LogBytes                       int64
	LastSnapshot                   string // "" if none
	Skew                           time.Duration
	Cut                            []int32 // peers whose links are cut at this node's bridge
	LogLevel                       string  // trace, debug, info, warn, error
	Protocol                       string  // the commit protocol it runs: 2pc or nonblocking
	Errs                           []string
}

// Status is this node at a glance. A role that does not answer leaves its
// counts at -1 and says why in Errs.
func (n *Node) Status() *NodeStatus {
	st := &NodeStatus{
		Node: n.cfg.ID, Members: len(n.cfg.Members), Addr: n.Addr(), Incarnation: n.incarnation,
		InFlight: -1, LocksHeld: -1, InDoubt: -1, Skew: n.Skew(), LogLevel: levelName(n.log.GetLevel()),
		Protocol: string(n.cfg.Protocol.OrDefault()),
	}
	if cs, err := n.CoordinatorStatus(); err == nil {
		st.InFlight = cs.InFlight
	} else {
		st.Errs = append(st.Errs, err.Error())
	}
	if ps, err := n.ParticipantStatus(); err == nil {
		st.LocksHeld, st.InDoubt = ps.LocksHeld, len(ps.InDoubt)
		st.Preparing, st.Committing, st.Waiting = ps.Preparing, ps.Committing, ps.Waiting
	} else {
		st.Errs = append(st.Errs, err.Error())
	}
	ls := n.LogStats()
	st.LogBytes, st.LastSnapshot = ls.LogBytes, ls.LastSnapshot
	st.Cut = n.bridge.CutPeers()
	return st
}

// Settled: nothing in flight, locked, in doubt or under way, by this
// status; what is still going on otherwise.
func (st *NodeStatus) Settled() (bool, string) {
	switch {
	case len(st.Errs) > 0:
		return false, st.Errs[0] // names the node
	case st.InFlight > 0:
		return false, fmt.Sprintf("node %d coordinating %d", st.Node, st.InFlight)
	case st.LocksHeld > 0 || st.InDoubt > 0 || st.Preparing > 0 || st.Committing > 0 || st.Waiting > 0:
		return false, fmt.Sprintf("node %d with %d locks, %d in doubt", st.Node, st.LocksHeld, st.InDoubt)
	}
	return true, ""
}

func levelName(l hclog.Level) string {
	switch l {
	case hclog.Trace:
		return "trace"
	case hclog.Debug:
		return "debug"
	case hclog.Info:
		return "info"
	case hclog.Warn:
		return "warn"
	case hclog.Error:
		return "error"
	case hclog.Off:
		return "off"
	}
	return l.String()
}

// ParseLogLevel reads a log level as the prompt and the Admin service take
// it: trace, debug, info, warn or error.
func ParseLogLevel(s string) (hclog.Level, error) {
	switch s {
	case "trace", "debug", "info", "warn", "error":
		return hclog.LevelFromString(s), nil
	}
	return hclog.NoLevel, fmt.Errorf("unknown log level %q (want trace, debug, info, warn or error)", s)
}

func (st *NodeStatus) EncodeWire(e *bridge.Encoder) {
	e.Varint(int64(st.Node))
	e.Varint(int64(st.Members))
	e.String(st.Addr)
	e.Uvarint(uint64(st.Incarnation))
	for _, v := range []int{st.InFlight, st.LocksHeld, st.InDoubt, st.Preparing, st.Committing, st.Waiting} {
		e.Varint(int64(v))
	}
	e.Varint(st.LogBytes)
	e.String(st.LastSnapshot)
	e.Varint(int64(st.Skew))
	encodeNodes(e, st.Cut)
	e.String(st.LogLevel)
	e.String(st.Protocol)
	e.Strings(st.Errs)
}

func (st *NodeStatus) DecodeWire(d *bridge.Decoder) {
	st.Node, st.Members, st.Addr, st.Incarnation = d.Int32(), d.Int(), d.String(), d.Uint32()
	for _, v := range []*int{&st.InFlight, &st.LocksHeld, &st.InDoubt, &st.Preparing, &st.Committing, &st.Waiting} {
		*v = d.Int()
	}
	st.LogBytes, st.LastSnapshot, st.Skew = d.Varint(), d.String(), time.Duration(d.Varint())
	st.Cut = decodeNodes(d)
	st.LogLevel = d.String()
	st.Protocol = d.String()
	if n := d.Count("status errors", 8, 1); n > 0 {
		st.Errs = make([]string, n)
		for i := range st.Errs {
			st.Errs[i] = d.String()
		}
	}
}

// encodeNodes and decodeNodes carry a list of node ids, at most
// MaxParticipants of them (a cluster's size).
func encodeNodes(e *bridge.Encoder, ids []int32) {
	e.Count(len(ids))
	for _, id := range ids {
		e.Varint(int64(id))
	}
}

func decodeNodes(d *bridge.Decoder) []int32 {
	n := d.Count("node ids (MaxParticipants)", d.Limits().MaxParticipants, 1)
	if n == 0 {
		return nil
	}
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = d.Int32()
	}
	return ids
}

// NodeDoubts are the transactions one node is in doubt about. Age is
// measured by the node's own clock, so it needs no agreement between the
// operator's and the node's clocks.
type NodeDoubts struct {
	Doubts []NodeDoubt
	Total  int // in doubt on the node; more than len(Doubts) if the list was cut
}

// NodeDoubt is one of NodeDoubts.
type NodeDoubt struct {
	Tx           messages.TxID
	Age          time.Duration
	Participants []int32
	Asked        int
}

func (l *NodeDoubts) EncodeWire(e *bridge.Encoder) {
	e.Count(len(l.Doubts))
	for _, d := range l.Doubts {
		e.TxID(d.Tx)
		e.Varint(int64(d.Age))
		encodeNodes(e, d.Participants)
		e.Varint(int64(d.Asked))
	}
	e.Varint(int64(l.Total))
}

func (l *NodeDoubts) DecodeWire(d *bridge.Decoder) {
	// An entry is at least a tx id (3 bytes), an age, a count and a round.
	if n := d.Count("in-doubt transactions", maxAdminDoubts, 6); n > 0 {
		l.Doubts = make([]NodeDoubt, n)
		for i := range l.Doubts {
			l.Doubts[i] = NodeDoubt{Tx: d.TxID(), Age: time.Duration(d.Varint()), Participants: decodeNodes(d), Asked: d.Int()}
		}
	}
	l.Total = d.Int()
}

// Doubts lists the transactions this node's participant is in doubt
// about, with their age by this node's clock; at most maxAdminDoubts, and
// fewer if their participant lists would not fit in one reply.
func (n *Node) Doubts() (*NodeDoubts, error) {
	ps, err := n.ParticipantStatus()
	if err != nil {
		return nil, err
	}
	now := n.Now()
	out := &NodeDoubts{Total: len(ps.Doubts)}
	size := 0
	for _, d := range ps.Doubts {
		size += 32 + 5*len(d.Participants)
		if len(out.Doubts) == maxAdminDoubts || size > maxAdminReplyBytes {
			break
		}
		out.Doubts = append(out.Doubts, NodeDoubt{Tx: d.Tx, Age: now.Sub(d.Since), Participants: d.Participants, Asked: d.Asked})
	}
	return out, nil
}

// OutcomeArgs asks what this node knows of Tx: its coordinator's view
// (Coordinator) or its participant's.
type OutcomeArgs struct {
	Tx          messages.TxID
	Coordinator bool
}

func (a *OutcomeArgs) EncodeWire(e *bridge.Encoder) { e.TxID(a.Tx); e.Bool(a.Coordinator) }
func (a *OutcomeArgs) DecodeWire(d *bridge.Decoder) { a.Tx, a.Coordinator = d.TxID(), d.Bool() }

// OutcomeReply is actors.OutcomeAnswer on the wire.
type OutcomeReply struct{ actors.OutcomeAnswer }

func (r *OutcomeReply) EncodeWire(e *bridge.Encoder) {
	e.TxID(r.Tx)
	e.Varint(int64(r.From))
	e.Byte(byte(r.Decision))
	e.String(r.Why)
	e.Bool(r.Presumed)
}

func (r *OutcomeReply) DecodeWire(d *bridge.Decoder) {
	r.Tx, r.From = d.TxID(), d.Int32()
	switch dec := messages.Decision(d.Byte()); dec {
	case messages.DecisionUnknown, messages.DecisionCommit, messages.DecisionAbort:
		r.Decision = dec
	default:
		d.Fail(fmt.Errorf("decision %d is none of unknown, commit, abort", dec))
	}
	r.Why, r.Presumed = d.String(), d.Bool()
}

// ForceArgs is a heuristic decision for this node's participant.
type ForceArgs struct {
	Tx     messages.TxID
	Commit bool
}

func (a *ForceArgs) EncodeWire(e *bridge.Encoder) { e.TxID(a.Tx); e.Bool(a.Commit) }
func (a *ForceArgs) DecodeWire(d *bridge.Decoder) { a.Tx, a.Commit = d.TxID(), d.Bool() }

// ForceReply says whether the participant took it, and if not, why.
type ForceReply struct {
	Applied bool
	Refusal string
}

func (r *ForceReply) EncodeWire(e *bridge.Encoder) { e.Bool(r.Applied); e.String(r.Refusal) }
func (r *ForceReply) DecodeWire(d *bridge.Decoder) { r.Applied, r.Refusal = d.Bool(), d.String() }

// forceTimeout bounds a heuristic decision's wait for the participant.
const forceTimeout = 5 * time.Second

// sendForce tells this node's participant to take a heuristic decision;
// the answer is awaited with force.
func (n *Node) sendForce(tx messages.TxID, commit bool) (*pendingReply, error) {
	return n.request(n.participant, &actors.ForceDecision{Tx: tx, Commit: commit})
}

// awaitForce is the participant's answer to sendForce: applied, or the
// refusal (why not, naming the node).
func (n *Node) awaitForce(tx messages.TxID, r *pendingReply, deadline time.Time) (applied bool, refusal string) {
	id := n.cfg.ID
	ans, err := r.await(deadline)
	if _, dead := ans.(*actor.DeadLetterResponse); dead && err == nil {
		err = errors.New("its participant is not running")
	}
	if err != nil {
		return false, fmt.Sprintf("node %d: %v", id, err)
	}
	res, ok := ans.(*actors.ForceDecisionResult)
	switch {
	case !ok || res.Tx != tx || res.Node != id:
		return false, fmt.Sprintf("node %d: unexpected answer %T %+v", id, ans, ans)
	case !res.Applied:
		return false, res.Err
	}
	return true, ""
}

// ForceDecision is an operator's heuristic decision on tx for this node's
// participant alone, with none of Resolve's checks: applied, or why not.
func (n *Node) ForceDecision(tx messages.TxID, commit bool) (applied bool, refusal string) {
	r, err := n.sendForce(tx, commit)
	if err != nil {
		return false, err.Error()
	}
	return n.awaitForce(tx, r, time.Now().Add(forceTimeout))
}

// TraceArgs asks for this node's part of Tx's trace.
type TraceArgs struct{ Tx messages.TxID }

func (a *TraceArgs) EncodeWire(e *bridge.Encoder) { e.TxID(a.Tx) }
func (a *TraceArgs) DecodeWire(d *bridge.Decoder) { a.Tx = d.TxID() }

// TraceReply is a node's part of a trace: its events of the transaction
// and the node events around them, in time order.
type TraceReply struct {
	Events []trace.Event
	Cut    int // events left out to fit in one reply
}

func (r *TraceReply) EncodeWire(e *bridge.Encoder) {
	e.Count(len(r.Events))
	for _, ev := range r.Events {
		e.Varint(ev.At.UnixNano())
		e.Varint(int64(ev.Node))
		e.Byte(byte(ev.Kind))
		e.Varint(int64(ev.Peer))
		e.TxID(ev.Tx)
		e.String(ev.What)
		e.Bool(ev.Forced)
		e.String(ev.Detail)
	}
	e.Varint(int64(r.Cut))
}

func (r *TraceReply) DecodeWire(d *bridge.Decoder) {
	// An event is at least 10 bytes: time, node, kind, peer, tx (3), what,
	// forced, detail.
	if n := d.Count("trace events", maxAdminEvents, 10); n > 0 {
		r.Events = make([]trace.Event, n)
		for i := range r.Events {
			ev := trace.Event{At: time.Unix(0, d.Varint()), Node: d.Int32()}
			switch k := trace.Kind(d.Byte()); k {
			case trace.Send, trace.Receive, trace.LogWrite, trace.Decision, trace.NodeEvent, trace.Note:
				ev.Kind = k
			default:
				d.Fail(fmt.Errorf("trace event kind %d is unknown", k))
			}
			ev.Peer, ev.Tx, ev.What, ev.Forced, ev.Detail = d.Int32(), d.TxID(), d.String(), d.Bool(), d.String()
			r.Events[i] = ev
		}
	}
	r.Cut = d.Int()
}

// TraceOf is this node's part of tx's trace: the events its recorder kept
// that happened on this node (a Local's nodes share one recorder), cut to
// fit in one reply. An error if the node keeps no trace.
func (n *Node) TraceOf(tx messages.TxID) (*TraceReply, error) {
	if n.cfg.Tracer == nil {
		return nil, fmt.Errorf("node %d keeps no trace (it was started without a trace recorder)", n.cfg.ID)
	}
	out := &TraceReply{}
	size := 0
	for _, ev := range n.cfg.Tracer.Events(tx) {
		if ev.Node != n.cfg.ID {
			continue
		}
		size += 32 + len(ev.What) + len(ev.Detail)
		if len(out.Events) == maxAdminEvents || size > maxAdminReplyBytes {
			out.Cut++
			continue
		}
		out.Events = append(out.Events, ev)
	}
	return out, nil
}

// LevelArgs sets the node's log level, or with Level "" only asks it.
type LevelArgs struct{ Level string }

func (a *LevelArgs) EncodeWire(e *bridge.Encoder) { e.String(a.Level) }
func (a *LevelArgs) DecodeWire(d *bridge.Decoder) { a.Level = d.String() }

// LevelReply is the level in force after the call.
type LevelReply struct{ Level string }

func (r *LevelReply) EncodeWire(e *bridge.Encoder) { e.String(r.Level) }
func (r *LevelReply) DecodeWire(d *bridge.Decoder) { r.Level = d.String() }

// LinkArgs names the peers whose links a Partition cuts or a Heal
// restores (Heal with none: every link).
type LinkArgs struct{ Peers []int32 }

func (a *LinkArgs) EncodeWire(e *bridge.Encoder) { encodeNodes(e, a.Peers) }
func (a *LinkArgs) DecodeWire(d *bridge.Decoder) { a.Peers = decodeNodes(d) }

// LinkReply lists the peers whose links are cut after the call.
type LinkReply struct{ Cut []int32 }

func (r *LinkReply) EncodeWire(e *bridge.Encoder) { encodeNodes(e, r.Cut) }
func (r *LinkReply) DecodeWire(d *bridge.Decoder) { r.Cut = decodeNodes(d) }

// FaultArgs sets the message faults on this node's outbound messages
// (Set), or only asks what they are.
type FaultArgs struct {
	Set    bool
	Faults bridge.Faults
}

func (a *FaultArgs) EncodeWire(e *bridge.Encoder) { e.Bool(a.Set); encodeFaults(e, a.Faults) }
func (a *FaultArgs) DecodeWire(d *bridge.Decoder) { a.Set = d.Bool(); a.Faults = decodeFaults(d) }

// FaultReply is the faults in force after the call, and what they did.
type FaultReply struct {
	Faults bridge.Faults
	Stats  bridge.FaultStats
}

func (r *FaultReply) EncodeWire(e *bridge.Encoder) {
	encodeFaults(e, r.Faults)
	s := r.Stats
	for _, v := range []uint64{s.Dropped, s.Duplicated, s.Delayed, s.Reordered, s.CutOff} {
		e.Uvarint(v)
	}
}

func (r *FaultReply) DecodeWire(d *bridge.Decoder) {
	r.Faults = decodeFaults(d)
	s := &r.Stats
	for _, v := range []*uint64{&s.Dropped, &s.Duplicated, &s.Delayed, &s.Reordered, &s.CutOff} {
		*v = d.Uvarint()
	}
}

// Probabilities travel as their IEEE 754 bits; Faults.Validate refuses
// what is not one (NaN included) where they are used.
func encodeFaults(e *bridge.Encoder, f bridge.Faults) {
	for _, p := range []float64{f.Drop, f.Duplicate, f.Delay, f.Reorder} {
		e.Uvarint(math.Float64bits(p))
	}
	e.Varint(int64(f.MaxDelay))
	e.Varint(f.Seed)
}

func decodeFaults(d *bridge.Decoder) bridge.Faults {
	var f bridge.Faults
	for _, p := range []*float64{&f.Drop, &f.Duplicate, &f.Delay, &f.Reorder} {
		*p = math.Float64frombits(d.Uvarint())
	}
	f.MaxDelay, f.Seed = time.Duration(d.Varint()), d.Varint()
	return f
}

// SkewArgs sets the node's clock skew (Set), or only asks it.
type SkewArgs struct {
	Set  bool
	Skew time.Duration
}

func (a *SkewArgs) EncodeWire(e *bridge.Encoder) { e.Bool(a.Set); e.Varint(int64(a.Skew)) }
func (a *SkewArgs) DecodeWire(d *bridge.Decoder) { a.Set, a.Skew = d.Bool(), time.Duration(d.Varint()) }

// SkewReply is the skew in force after the call.
type SkewReply struct{ Skew time.Duration }

func (r *SkewReply) EncodeWire(e *bridge.Encoder) { e.Varint(int64(r.Skew)) }
func (r *SkewReply) DecodeWire(d *bridge.Decoder) { r.Skew = time.Duration(d.Varint()) }

// --- the service's methods ---------------------------------------------

// Status is the node at a glance.
func (s *adminService) Status(_ *AdminNone, out *NodeStatus) error {
	if s.refused != nil {
		return s.refused
	}
	*out = *s.n.Status()
	return nil
}

// InDoubt lists the transactions the node is in doubt about.
func (s *adminService) InDoubt(_ *AdminNone, out *NodeDoubts) error {
	if s.refused != nil {
		return s.refused
	}
	l, err := s.n.Doubts()
	if err != nil {
		return err
	}
	*out = *l
	return nil
}

// Outcome is what the node's coordinator or participant knows of a
// transaction; it changes nothing.
func (s *adminService) Outcome(args *OutcomeArgs, out *OutcomeReply) error {
	if s.refused != nil {
		return s.refused
	}
	if err := checkTxOf(args.Tx, len(s.n.cfg.Members)); err != nil {
		return err
	}
	role := s.n.participant
	if args.Coordinator {
		if args.Tx.Node != s.n.cfg.ID {
			return fmt.Errorf("transaction %v is coordinated by node %d, not by node %d", args.Tx, args.Tx.Node, s.n.cfg.ID)
		}
		role = s.n.coordinator
	}
	a, err := s.n.askOutcome(role, args.Tx)
	if err != nil {
		return err
	}
	out.OutcomeAnswer = *a
	return nil
}

// Force is a heuristic decision on the node's participant alone. The
// checks that make it safe to take span the cluster and are the caller's
// (Remote.Resolve); the participant refuses one for a transaction it is
// not in doubt about.
func (s *adminService) Force(args *ForceArgs, out *ForceReply) error {
	if s.refused != nil {
		return s.refused
	}
	if err := checkTxOf(args.Tx, len(s.n.cfg.Members)); err != nil {
		return err
	}
	out.Applied, out.Refusal = s.n.ForceDecision(args.Tx, args.Commit)
	return nil
}

// Trace is the node's part of a transaction's trace.
func (s *adminService) Trace(args *TraceArgs, out *TraceReply) error {
	if s.refused != nil {
		return s.refused
	}
	r, err := s.n.TraceOf(args.Tx)
	if err != nil {
		return err
	}
	*out = *r
	return nil
}

// LogLevel sets the node's log level (and, in one process, that of every
// logger sharing its root), or with none given says what it is.
func (s *adminService) LogLevel(args *LevelArgs, out *LevelReply) error {
	if s.refused != nil {
		return s.refused
	}
	if args.Level != "" {
		if len(args.Level) > maxLevelName {
			return fmt.Errorf("unknown log level of %d bytes (want trace, debug, info, warn or error)", len(args.Level))
		}
		l, err := ParseLogLevel(args.Level)
		if err != nil {
			return err
		}
		s.n.log.SetLevel(l)
	}
	out.Level = levelName(s.n.log.GetLevel())
	return nil
}

// Partition cuts this node's links to the peers given: nothing goes to
// them or is taken from them until Heal. Only this end: the caller cuts
// the other end at the peer. A node process forgets its cuts when it
// restarts (a new bridge).
func (s *adminService) Partition(args *LinkArgs, out *LinkReply) error {
	if s.refused != nil {
		return s.refused
	}
	if len(args.Peers) == 0 {
		return errors.New("partition: no peer given")
	}
	for _, p := range args.Peers {
		if err := s.n.bridge.Cut(p); err != nil {
			return err
		}
		s.n.nodeEvent(p, fmt.Sprintf("partitioned from node %d", p))
	}
	out.Cut = s.n.bridge.CutPeers()
	return nil
}

// Heal restores this node's links to the peers given, or every link.
func (s *adminService) Heal(args *LinkArgs, out *LinkReply) error {
	if s.refused != nil {
		return s.refused
	}
	was := s.n.bridge.CutPeers()
	if len(args.Peers) == 0 {
		s.n.bridge.HealAll()
	}
	for _, p := range args.Peers {
		if err := s.n.bridge.Heal(p); err != nil {
			return err
		}
	}
	out.Cut = s.n.bridge.CutPeers()
	for _, p := range was {
		if !slices.Contains(out.Cut, p) {
			s.n.nodeEvent(p, fmt.Sprintf("healed (link to node %d)", p))
		}
	}
	return nil
}

// Faults sets the message faults on the node's outbound messages
// (bridge.Faults{} stops them), or says what they are and what they did.
func (s *adminService) Faults(args *FaultArgs, out *FaultReply) error {
	if s.refused != nil {
		return s.refused
	}
	if args.Set {
		if err := s.n.bridge.SetFaults(args.Faults); err != nil {
			return err
		}
	}
	out.Faults, out.Stats = s.n.bridge.Faults(), s.n.bridge.FaultStats()
	return nil
}

// Skew sets the node's clock skew (SetSkew), or says what it is.
func (s *adminService) Skew(args *SkewArgs, out *SkewReply) error {
	if s.refused != nil {
		return s.refused
	}
	if args.Set {
		if err := s.n.SetSkew(args.Skew); err != nil {
			return err
		}
	}
	out.Skew = s.n.Skew()
	return nil
}

// ReadLocal reads keys as this node's own participant holds them: one
// replica of a key held everywhere, or a node's keys while others are down.
func (s *adminService) ReadLocal(args *ReadArgs, out *ReadResult) error {
	if s.refused != nil {
		return s.refused
	}
	kvs, err := s.n.ReadLocal(args.Keys...)
	if err != nil {
		return err
	}
	out.Values = make([]NodeValue, len(kvs))
	for i, kv := range kvs {
		out.Values[i] = NodeValue{Key: args.Keys[i], Node: s.n.cfg.ID, Value: kv.Value}
	}
	return nil
}

// SyncLog returns once everything the node's roles have logged is durable.
func (s *adminService) SyncLog(_ *AdminNone, _ *AdminNone) error {
	if s.refused != nil {
		return s.refused
	}
	return s.n.SyncLog()
}

// nodeEvent records a change to one of this node's links in its trace, as
// a Local records its partitions.
func (n *Node) nodeEvent(peer int32, what string) {
	if n.cfg.Tracer != nil {
		n.cfg.Tracer.Record(trace.Event{Kind: trace.NodeEvent, Node: n.cfg.ID, Peer: peer, What: what})
	}
}

// checkTxOf refuses an id no transaction of a cluster of members nodes can
// have.
func checkTxOf(tx messages.TxID, members int) error {
	switch {
	case tx.IsZero():
		return errors.New("no transaction id given")
	case tx.Node < 0 || int(tx.Node) >= members:
		return fmt.Errorf("transaction %v: node %d is not a member (nodes are 0-%d)", tx, tx.Node, members-1)
	case tx.Incarnation == 0 || tx.Seq == 0:
		return fmt.Errorf("transaction %v: no transaction has incarnation or sequence 0", tx)
	}
	return nil
}
