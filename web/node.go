package web

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"twopc/cluster"
	"twopc/messages"
	"twopc/trace"
)

// NodeSource is the one node a process runs (cmd/node) as the page sees
// it: that node's card, in-doubt transactions, traces and finished
// transactions. Of its peers it knows only what its own links say (up,
// unreachable, cut): their cards come from asking them, which a source
// over the admin wire does. It takes no action: the prompt does, with the
// admin certificate.
//
// Made before the node starts (its Observer goes into the node's Config),
// handed the node once started (Serve).
type NodeSource struct {
	id      int32
	members []string
	rec     *trace.Recorder // the node's Tracer, or nil
	tap     tap

	mu sync.Mutex
	n  *cluster.Node
}

var _ Source = (*NodeSource)(nil)

// NewNodeSource is the source of node id of a cluster whose members are
// members; rec is the node's Tracer (nil if it has none).
func NewNodeSource(id int32, members []string, rec *trace.Recorder) *NodeSource {
	return &NodeSource{id: id, members: append([]string(nil), members...), rec: rec}
}

// Observer wraps the node's observer (inner, e.g. the metrics'; nil for
// none): give it as cluster.Config.Observer.
func (s *NodeSource) Observer(inner cluster.Observer) cluster.Observer {
	return &observer{inner: inner, node: s.id, t: &s.tap}
}

// Serve hands over the node, once started.
func (s *NodeSource) Serve(n *cluster.Node) {
	s.mu.Lock()
	s.n = n
	s.mu.Unlock()
}

func (s *NodeSource) node() *cluster.Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// Info implements Source.
func (s *NodeSource) Info() Info {
	note := fmt.Sprintf("node %d's own view: the other nodes' cards show only whether node %d reaches them; act with the prompt (cmd/cluster --connect, admin certificate)", s.id, s.id)
	if s.rec == nil {
		note += "; this node keeps no traces: no messages drawn, no sequence diagrams"
	}
	return Info{Title: fmt.Sprintf("node %d of %d", s.id, len(s.members)), Nodes: len(s.members), Note: note}
}

// Snapshot implements Source.
func (s *NodeSource) Snapshot(ctx context.Context) (*Snapshot, error) {
	n := s.node()
	if n == nil {
		return nil, errors.New("the node is starting: it is recovering from its log")
	}
	snap := &Snapshot{Nodes: make([]NodeStatus, len(s.members))}
	for i, addr := range s.members {
		snap.Nodes[i] = NodeStatus{ID: int32(i), Addr: addr, State: StateUnknown, InFlight: -1, Locks: -1, InDoubt: -1,
			Why: fmt.Sprintf("not asked: this page asks node %d only", s.id)}
	}
	own, doubts := upCard(ctx, n, s.members[s.id])
	snap.Nodes[s.id] = own
	if own.State == StateDown {
		return snap, nil
	}
	reach := map[int32]bool{s.id: true}
	d := askTimeout
	if dl, ok := ctx.Deadline(); ok {
		d = max(0, min(d, time.Until(dl)))
	}
	if peers, err := n.Bridge().Peers(d); err == nil {
		for _, p := range peers {
			c := &snap.Nodes[p.Node]
			reach[p.Node] = p.Up
			if p.Up {
				c.Why = fmt.Sprintf("node %d's link to it is up (%d queued); not asked for more", s.id, p.Queued)
			} else {
				c.Why = fmt.Sprintf("node %d cannot reach it (cut, or its last connection attempt failed)", s.id)
			}
		}
	}
	for _, dt := range doubts {
		snap.InDoubt = append(snap.InDoubt, InDoubt{Tx: dt.Tx, Node: s.id, Since: dt.Since, Participants: dt.Participants,
			Asked: dt.Asked, CoordinatorUp: reach[dt.Tx.Node]})
	}
	for _, p := range own.Cut {
		snap.Partitions = append(snap.Partitions, [2]int32{min(s.id, p), max(s.id, p)})
	}
	sortDoubts(snap)
	for i := range snap.InDoubt {
		dt := &snap.InDoubt[i]
		dt.Votes = votesOf(s.rec, dt.Tx, dt.Participants)
	}
	return snap, nil
}

// Trace implements Source: this node's part of tx.
func (s *NodeSource) Trace(_ context.Context, tx messages.TxID) ([]trace.Event, error) {
	if s.rec == nil {
		return nil, errors.New("this node keeps no traces")
	}
	return s.rec.Events(tx), nil
}

// Recent implements Source: the transactions this node coordinated.
func (s *NodeSource) Recent(_ context.Context, n int) ([]TxEnd, error) {
	return recentFrom(s.rec, n), nil
}

// Watch implements Source.
func (s *NodeSource) Watch(sink Sink) (stop func()) {
	stopTap := s.tap.watch(sink)
	if s.rec != nil {
		s.rec.SetTap(s.tap.event)
	}
	return func() {
		stopTap()
		if s.rec != nil && !s.tap.watching() {
			s.rec.SetTap(nil)
		}
	}
}

// Act implements Source: a node's page only watches.
func (s *NodeSource) Act(context.Context, Action) (string, error) { return "", errNoActions }
