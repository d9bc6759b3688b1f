package cluster

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"twopc/bridge"
	"twopc/trace"
)

// Message faults and partitions of an in-process cluster, for tests (and
// the REPL): the Local applies them to its nodes' bridges and remembers
// them, so that a node started again later gets them too — a restart must
// not heal a partition behind the test's back.

// localFaults is what a Local remembers. mu is held while the remembered
// state is applied, so a node starting concurrently with a change sees
// either the old state and then the change, or the new state.
type localFaults struct {
	mu     sync.Mutex
	faults []bridge.Faults // by node (nil: none anywhere yet); seeded per node when applied
	cuts   map[[2]int]bool // {a, b} with a < b
	nodes  []*Node         // the newest start of each node, down ones too (a stopped bridge ignores changes)
}

// applyFaults gives node i, just started, the remembered faults and cuts,
// and keeps it for later changes. (Its bridge got them already, before the
// node served anything: bridgeReady; this catches changes made meanwhile.)
func (l *Local) applyFaults(i int, n *Node) {
	f := &l.faults
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.nodes == nil {
		f.nodes = make([]*Node, len(l.members))
	}
	f.nodes[i] = n
	l.applyLocked(i, n.Bridge())
}

// bridgeReady gives node i's bridge the remembered faults and cuts as soon
// as it exists, before the node recovers or serves: a restarted node's
// first messages (re-driven commits, in-doubt questions) must meet them too.
func (l *Local) bridgeReady(i int, b *bridge.Bridge) {
	l.faults.mu.Lock()
	defer l.faults.mu.Unlock()
	l.applyLocked(i, b)
}

// applyLocked applies the remembered faults to b; l.faults.mu is held.
func (l *Local) applyLocked(i int, b *bridge.Bridge) {
	f := &l.faults
	if i < len(f.faults) && f.faults[i] != (bridge.Faults{}) {
		// Validated when it was set, so it cannot fail here.
		_ = b.SetFaults(seeded(f.faults[i], i))
	}
	for c := range f.cuts {
		if other, ok := otherEnd(c, i); ok {
			_ = b.Cut(int32(other)) // a member other than i: cannot fail
		}
	}
}

// seeded gives each node its own fault RNG seed, so the nodes do not all
// drop (or duplicate, ...) the same positions of their message streams.
func seeded(f bridge.Faults, node int) bridge.Faults {
	f.Seed += int64(node)
	return f
}

func otherEnd(c [2]int, i int) (int, bool) {
	switch i {
	case c[0]:
		return c[1], true
	case c[1]:
		return c[0], true
	}
	return 0, false
}

// SetFaults injects f on every node's outbound messages — the nodes up now
// and those started later — with seed f.Seed+i on node i. bridge.Faults{} stops
// injecting; partitions are left as they are.
func (l *Local) SetFaults(f bridge.Faults) error {
	if err := f.Validate(); err != nil {
		return err
	}
	lf := &l.faults
	lf.mu.Lock()
	defer lf.mu.Unlock()
	var errs []error
	for i := range l.members {
		if err := l.setFaultsLocked(i, f); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// SetNodeFaults injects f on node i's outbound messages only (with seed
// f.Seed+i), now and after its restarts; bridge.Faults{} stops injecting
// there. The other nodes keep theirs.
func (l *Local) SetNodeFaults(i int, f bridge.Faults) error {
	if i < 0 || i >= len(l.members) {
		return fmt.Errorf("unknown node %d (nodes are 0-%d)", i, len(l.members)-1)
	}
	if err := f.Validate(); err != nil {
		return err
	}
	lf := &l.faults
	lf.mu.Lock()
	defer lf.mu.Unlock()
	return l.setFaultsLocked(i, f)
}

// NodeFaults are the faults set for node i (SetFaults, SetNodeFaults), as
// they will be given to it again when it restarts.
func (l *Local) NodeFaults(i int) bridge.Faults {
	lf := &l.faults
	lf.mu.Lock()
	defer lf.mu.Unlock()
	if i < 0 || i >= len(lf.faults) {
		return bridge.Faults{}
	}
	return lf.faults[i]
}

// setFaultsLocked remembers f for node i and gives it to the node if it
// has started; l.faults.mu is held.
func (l *Local) setFaultsLocked(i int, f bridge.Faults) error {
	lf := &l.faults
	if lf.faults == nil {
		lf.faults = make([]bridge.Faults, len(l.members))
	}
	lf.faults[i] = f
	if i < len(lf.nodes) && lf.nodes[i] != nil {
		if err := lf.nodes[i].Bridge().SetFaults(seeded(f, i)); err != nil {
			return fmt.Errorf("node %d: %w", i, err)
		}
	}
	return nil
}

// Partition cuts the link between nodes a and b, both ways: nothing passes
// between them until Heal, also across restarts of either.
func (l *Local) Partition(a, b int) error {
	last := len(l.members) - 1
	switch {
	case a < 0 || a > last:
		return fmt.Errorf("partition %d-%d: unknown node %d (nodes are 0-%d)", a, b, a, last)
	case b < 0 || b > last:
		return fmt.Errorf("partition %d-%d: unknown node %d (nodes are 0-%d)", a, b, b, last)
	case a == b:
		return fmt.Errorf("partition %d-%d: a node cannot be cut off from itself", a, b)
	}
	lf := &l.faults
	lf.mu.Lock()
	defer lf.mu.Unlock()
	if lf.cuts == nil {
		lf.cuts = make(map[[2]int]bool)
	}
	lf.cuts[[2]int{min(a, b), max(a, b)}] = true
	l.nodeEvent(trace.Event{Node: int32(a), Peer: int32(b), What: fmt.Sprintf("partitioned from node %d", b)})
	var errs []error
	for _, end := range [][2]int{{a, b}, {b, a}} {
		if n := lf.nodes[end[0]]; n != nil {
			if err := n.Bridge().Cut(int32(end[1])); err != nil {
				errs = append(errs, fmt.Errorf("node %d: %w", end[0], err))
			}
		}
	}
	return errors.Join(errs...)
}

// Heal restores every link cut by Partition (or by a node's Bridge().Cut).
// A node's Isolate is for good and stays.
func (l *Local) Heal() {
	lf := &l.faults
	lf.mu.Lock()
	defer lf.mu.Unlock()
	for c := range lf.cuts {
		l.nodeEvent(trace.Event{Node: int32(c[0]), Peer: int32(c[1]), What: fmt.Sprintf("healed (link to node %d)", c[1])})
	}
	clear(lf.cuts)
	for _, n := range lf.nodes {
		if n != nil {
			n.Bridge().HealAll()
		}
	}
}

// Partitions lists the links cut by Partition, as {a, b} with a < b, in
// ascending order.
func (l *Local) Partitions() [][2]int {
	lf := &l.faults
	lf.mu.Lock()
	defer lf.mu.Unlock()
	out := make([][2]int, 0, len(lf.cuts))
	for c := range lf.cuts {
		out = append(out, c)
	}
	slices.SortFunc(out, func(x, y [2]int) int {
		if x[0] != y[0] {
			return x[0] - y[0]
		}
		return x[1] - y[1]
	})
	return out
}
