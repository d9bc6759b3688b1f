package cluster

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"twopc/actors"
	"twopc/bridge"
	"twopc/identity"
	"twopc/trace"
)

// LocalConfig describes a cluster whose nodes all run in this process.
type LocalConfig struct {
	Nodes         int
	BasePort      int    // node i listens on 127.0.0.1:BasePort+i; 0 picks free ports
	DataDir       string // default ./logs
	Timing        actors.Timing
	SnapshotEvery int
	Logger        hclog.Logger
	Steps         actors.StepHook // every node's protocol steps (crash-point tests)
	// CrashAtSteps lets CrashAt arm crashes at protocol steps: every
	// node's steps then go through the Local (an atomic load each while
	// nothing is armed). Without it CrashAt is refused.
	CrashAtSteps bool
	// Tracer, if set, records every node's part of each transaction, and
	// the crashes, restarts, stops and partitions around them, for the
	// operator's trace command (see Config.Tracer). Nil: no tracing.
	Tracer *trace.Recorder
	// TLS, if set, gives node i its identity (Config.TLS): the nodes then
	// talk mutual TLS, and clients need a certificate of the same cluster.
	// Nil: plaintext.
	TLS func(node int32) (*identity.Identity, error)
	// ConnLimits bound each node's connections (Config.ConnLimits).
	ConnLimits ConnLimits
	// Observers, if set, gives each node its Observer (Config.Observer),
	// called again with the same id when the node restarts. Nil: none.
	Observers func(id int32) Observer
	// Protocol is every node's commit protocol (Config.Protocol).
	Protocol actors.Protocol
	// Network, if set, carries the nodes' connections instead of TCP
	// (Config.Network): node i is then "node-i:<BasePort+i>" on it, with
	// BasePort 7000 if 0. Nil: TCP on 127.0.0.1.
	Network Network
	// SyncLatency, if set, gives node i the wait before each fsync of its
	// log (Config.SyncLatency), called again when it restarts. Nil: none.
	SyncLatency func(node int32) func() time.Duration
}

// Local is a cluster of in-process nodes: the four-node demo, the
// benchmarks and the tests use it. A node can be stopped and started again
// on the same address and data directory.
type Local struct {
	cfg     LocalConfig
	members []string

	mu       sync.Mutex
	nodes    []*Node // nil while a node is down
	starting []bool  // RestartNode is bringing the node up: its coordinator may already be re-driving commits

	resolveMu sync.Mutex // one operator's heuristic decision at a time (Resolve)

	faults localFaults // faults and partitions, given again to a restarted node

	crashes crashes // armed at a step (CrashAt, crashat.go)

	// skews: how far each node's clock is set off the machine's (SetSkew),
	// in nanoseconds; read by the node's clock on every use, and kept
	// across its restarts.
	skews []atomic.Int64
}

// SetSkew sets node i's clock d off the machine's clock (negative: behind),
// at once and across its restarts; 0 clears it. A fault to inject: no
// decision of the protocol depends on a clock.
func (l *Local) SetSkew(i int, d time.Duration) error {
	if i < 0 || i >= len(l.skews) {
		return fmt.Errorf("unknown node %d (nodes are 0-%d)", i, len(l.skews)-1)
	}
	if d > MaxSkew || d < -MaxSkew {
		return fmt.Errorf("node %d: skew %v is more than %v either way", i, d, MaxSkew)
	}
	l.skews[i].Store(int64(d))
	return nil
}

// Skew is node i's clock skew (SetSkew); 0 for an unknown node.
func (l *Local) Skew(i int) time.Duration {
	if i < 0 || i >= len(l.skews) {
		return 0
	}
	return time.Duration(l.skews[i].Load())
}

// memnetBasePort numbers the nodes' addresses on a LocalConfig.Network
// without a BasePort; only names there, never a TCP port.
const memnetBasePort = 7000

// StartLocal starts every node. With BasePort 0 it reserves free ports
// first, so tests never collide with each other or with a running demo.
func StartLocal(cfg LocalConfig) (*Local, error) {
	if cfg.Nodes < 1 {
		return nil, fmt.Errorf("cluster needs at least one node, got %d", cfg.Nodes)
	}
	l := &Local{cfg: cfg, nodes: make([]*Node, cfg.Nodes), starting: make([]bool, cfg.Nodes), skews: make([]atomic.Int64, cfg.Nodes)}
	listeners := make([]net.Listener, cfg.Nodes)
	for i := range listeners {
		addr := "127.0.0.1:0"
		if cfg.BasePort > 0 {
			addr = fmt.Sprintf("127.0.0.1:%d", cfg.BasePort+i)
		}
		listen := func(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }
		if cfg.Network != nil {
			addr = fmt.Sprintf("node-%d:%d", i, cmp.Or(cfg.BasePort, memnetBasePort)+i)
			listen = cfg.Network.Listen
		}
		lis, err := listen(addr)
		if err != nil {
			for _, p := range listeners[:i] {
				p.Close()
			}
			return nil, listenError(int32(i), addr, err)
		}
		listeners[i] = lis
		l.members = append(l.members, lis.Addr().String())
	}
	for i := range listeners {
		if err := l.start(i, listeners[i]); err != nil {
			for _, p := range listeners[i+1:] {
				p.Close()
			}
			l.Stop()
			return nil, err
		}
	}
	for i := range listeners {
		l.awaitRecovered(i)
	}
	return l, nil
}

func (l *Local) start(i int, lis net.Listener) error {
	var id *identity.Identity
	if l.cfg.TLS != nil {
		var err error
		if id, err = l.cfg.TLS(int32(i)); err != nil {
			if lis != nil {
				lis.Close()
			}
			return fmt.Errorf("node %d: %w", i, err)
		}
	}
	n, err := Start(Config{
		TLS: id, ConnLimits: l.cfg.ConnLimits,
		ID: int32(i), Members: l.members, DataDir: l.cfg.DataDir, Timing: l.cfg.Timing,
		SnapshotEvery: l.cfg.SnapshotEvery, Logger: l.cfg.Logger, Listener: lis, Network: l.cfg.Network, SyncLatency: l.syncLatency(i), Steps: l.stepHook(), Tracer: l.cfg.Tracer,
		Skew:        &l.skews[i], // the node's clock reads it: kept across its restarts
		BridgeReady: func(b *bridge.Bridge) { l.bridgeReady(i, b) },
		FailStopped: func(n *Node) { l.failStopped(i, n) }, Observer: l.observer(i),
		Protocol: l.cfg.Protocol,
	})
	if err != nil {
		return err
	}
	l.applyFaults(i, n)
	l.mu.Lock()
	if n.Failure() != nil {
		// Its log failed already: it is stopping itself, and its
		// FailStopped found nothing to take down (or will).
		l.mu.Unlock()
		<-n.FailStopped()
		return fmt.Errorf("node %d stopped at once: %w", i, n.Failure())
	}
	l.nodes[i] = n
	l.mu.Unlock()
	return nil
}

// syncLatency is node i's wait before each fsync, or nil.
func (l *Local) syncLatency(i int) func() time.Duration {
	if l.cfg.SyncLatency == nil {
		return nil
	}
	return l.cfg.SyncLatency(int32(i))
}

// observer is node i's Observer, or nil.
func (l *Local) observer(i int) Observer {
	if l.cfg.Observers == nil {
		return nil
	}
	return l.cfg.Observers(int32(i))
}

// Members are the nodes' addresses, indexed by node id.
func (l *Local) Members() []string { return append([]string(nil), l.members...) }

// Protocol is the commit protocol every node runs.
func (l *Local) Protocol() actors.Protocol { return l.cfg.Protocol.OrDefault() }

// Node returns node i, or nil while it is down.
func (l *Local) Node(i int) *Node {
	l.mu.Lock()
	defer l.mu.Unlock()
	if i < 0 || i >= len(l.nodes) {
		return nil
	}
	return l.nodes[i]
}

// StopNode stops node i cleanly.
func (l *Local) StopNode(i int) error {
	n, err := l.takeDown(i)
	if err != nil {
		return err
	}
	err = n.Stop()
	l.nodeEvent(trace.Event{Node: int32(i), Peer: trace.NoPeer, What: "stopped (clean shutdown)"})
	return err
}

// takeDown marks node i down and returns it, for the caller to stop.
func (l *Local) takeDown(i int) (*Node, error) {
	if i < 0 || i >= len(l.nodes) {
		return nil, fmt.Errorf("unknown node %d (nodes are 0-%d)", i, len(l.nodes)-1)
	}
	l.mu.Lock()
	n := l.nodes[i]
	l.nodes[i] = nil
	l.mu.Unlock()
	if n == nil {
		return nil, fmt.Errorf("node %d is already down", i)
	}
	return n, nil
}

// RestartNode starts node i again on its address; it recovers from its log.
func (l *Local) RestartNode(i int) error {
	if i < 0 || i >= len(l.nodes) {
		return fmt.Errorf("unknown node %d (nodes are 0-%d)", i, len(l.nodes)-1)
	}
	l.WaitCrashed(i) // a crash at a step may still be taking it down
	l.mu.Lock()
	if l.nodes[i] != nil || l.starting[i] {
		l.mu.Unlock()
		return fmt.Errorf("node %d is already up", i)
	}
	l.starting[i] = true
	l.mu.Unlock()
	err := l.start(i, nil)
	l.mu.Lock()
	l.starting[i] = false
	l.mu.Unlock()
	if err == nil {
		l.awaitRecovered(i)
	}
	return err
}

// awaitRecovered waits, at most the vote timeout, until node i has settled
// the transactions it recovered in doubt whose coordinators are up and
// reachable: it asks them at once, and the answer is a round trip away. So
// the cluster is usable as soon as a restart returns, rather than refusing
// the next transactions on those keys. Nothing is decided by this wait; it
// only spares callers a race (a restarted node used to sleep out a window
// measured by the clock, which hid it).
func (l *Local) awaitRecovered(i int) {
	deadline := time.Now().Add(l.cfg.Timing.WithDefaults().VoteTimeout)
	for time.Now().Before(deadline) {
		n := l.Node(i)
		if n == nil {
			return
		}
		ps, err := n.ParticipantStatus()
		if err != nil {
			return
		}
		waiting := false
		for _, d := range ps.Doubts {
			c := int(d.Tx.Node)
			if d.Recovered && l.Node(c) != nil && !l.cut(i, c) {
				waiting = true
				break
			}
		}
		if !waiting {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// cut: the link between nodes a and b is partitioned.
func (l *Local) cut(a, b int) bool {
	for _, p := range l.Partitions() {
		if (p[0] == a && p[1] == b) || (p[0] == b && p[1] == a) {
			return true
		}
	}
	return false
}

// Stop stops every node that is up.
func (l *Local) Stop() error {
	l.stopCrashes()
	var errs []error
	for i := range l.nodes {
		if l.Node(i) != nil {
			errs = append(errs, l.StopNode(i))
		}
	}
	return errors.Join(errs...)
}

// Up returns node i if it is running: started, its power not cut (a node
// whose power was cut stays in the Local until Crash tears it down), and
// not stopping itself after a log failure (it leaves the Local once
// stopped, for `restart` to bring it back).
func (l *Local) Up(i int) *Node {
	if n := l.Node(i); n != nil && !n.Crashed() && n.Failure() == nil {
		return n
	}
	return nil
}
