package web

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"twopc/actors"
	"twopc/bridge"
	"twopc/cluster"
	"twopc/messages"
	"twopc/trace"
)

// LocalSource is an in-process cluster (cluster.Local) as the page sees
// it: every node's card, the traces its Recorder keeps, and every action.
//
// Made before the cluster starts, so that its Observers go into the
// LocalConfig; Attach hands it the cluster once started:
//
//	src := web.NewLocalSource(nodes, rec) // rec: the LocalConfig's Tracer, or nil
//	l, err := cluster.StartLocal(cluster.LocalConfig{..., Tracer: rec, Observers: src.Observers(metricsObservers)})
//	src.Attach(l)
type LocalSource struct {
	nodes int
	rec   *trace.Recorder // nil: no messages drawn and no diagrams
	tap   tap

	mu sync.Mutex
	l  *cluster.Local // nil until Attach
}

var _ Source = (*LocalSource)(nil)

// MaxSkew bounds the skew action, as the prompt's skew command does.
const MaxSkew = 24 * time.Hour

// NewLocalSource is the source of an in-process cluster of nodes nodes
// whose Tracer is rec (nil if it has none).
func NewLocalSource(nodes int, rec *trace.Recorder) *LocalSource {
	return &LocalSource{nodes: nodes, rec: rec}
}

// Observers wraps the cluster's observers (inner, e.g. the metrics'; nil
// for none) so that the page hears of every transaction's end: give it as
// cluster.LocalConfig.Observers.
func (s *LocalSource) Observers(inner func(id int32) cluster.Observer) func(id int32) cluster.Observer {
	return func(id int32) cluster.Observer {
		var in cluster.Observer
		if inner != nil {
			in = inner(id)
		}
		return &observer{inner: in, node: id, t: &s.tap}
	}
}

// Attach hands over the cluster, once started.
func (s *LocalSource) Attach(l *cluster.Local) {
	s.mu.Lock()
	s.l = l
	s.mu.Unlock()
}

func (s *LocalSource) local() (*cluster.Local, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.l == nil {
		return nil, errors.New("the cluster is starting: its nodes are recovering from their logs")
	}
	return s.l, nil
}

// Info implements Source.
func (s *LocalSource) Info() Info {
	i := Info{
		Title: fmt.Sprintf("in-process cluster of %d nodes", s.nodes), Nodes: s.nodes,
		Actions: []string{ActionCrash, ActionRestart, ActionPartition, ActionHeal, ActionFaults, ActionSkew, ActionResolve},
	}
	if s.rec == nil {
		i.Note = "this cluster keeps no traces: no messages drawn, no sequence diagrams"
	}
	return i
}

// Snapshot implements Source.
func (s *LocalSource) Snapshot(ctx context.Context) (*Snapshot, error) {
	l, err := s.local()
	if err != nil {
		return nil, err
	}
	members := l.Members()
	snap := &Snapshot{}
	for i, addr := range members {
		var c NodeStatus
		var doubts []InDoubt
		if n := l.Up(i); n == nil {
			c = NodeStatus{ID: int32(i), Addr: addr, State: StateDown, InFlight: -1, Locks: -1, InDoubt: -1, Why: downWhy(l, i)}
		} else {
			var ds []actors.InDoubtTx
			c, ds = upCard(ctx, n, addr)
			for _, d := range ds {
				doubts = append(doubts, InDoubt{Tx: d.Tx, Node: int32(i), Since: d.Since, Participants: d.Participants,
					Asked: d.Asked, CoordinatorUp: l.Up(int(d.Tx.Node)) != nil})
			}
		}
		c.Skew = l.Skew(i) // kept while the node is down, too
		snap.Nodes = append(snap.Nodes, c)
		snap.InDoubt = append(snap.InDoubt, doubts...)
	}
	for _, p := range l.Partitions() {
		snap.Partitions = append(snap.Partitions, [2]int32{int32(p[0]), int32(p[1])})
	}
	sortDoubts(snap)
	for i := range snap.InDoubt {
		d := &snap.InDoubt[i]
		d.Votes = votesOf(s.rec, d.Tx, d.Participants)
	}
	return snap, nil
}

// downWhy says why node i of l is not up.
func downWhy(l *cluster.Local, i int) string {
	if n := l.Node(i); n != nil {
		if err := n.Ready(); err != nil {
			return err.Error()
		}
	}
	return "not running (crashed or stopped): restart it"
}

// Trace implements Source.
func (s *LocalSource) Trace(_ context.Context, tx messages.TxID) ([]trace.Event, error) {
	if s.rec == nil {
		return nil, errors.New("this cluster keeps no traces")
	}
	return s.rec.Events(tx), nil
}

// Recent implements Source.
func (s *LocalSource) Recent(_ context.Context, n int) ([]TxEnd, error) {
	return recentFrom(s.rec, n), nil
}

// Watch implements Source: the Recorder's tap and the observers feed s.
func (s *LocalSource) Watch(sink Sink) (stop func()) {
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

// Act implements Source: what the prompt's crash, restart, partition,
// heal, skew and resolve commands do, and the faults Local.SetFaults
// injects.
func (s *LocalSource) Act(_ context.Context, a Action) (string, error) {
	l, err := s.local()
	if err != nil {
		return "", err
	}
	node := func(p *int, what string) (int, error) {
		switch {
		case p == nil:
			return 0, inputErrorf(fmt.Sprintf("%s: no node given", what))
		case *p < 0 || *p >= s.nodes:
			return 0, inputErrorf(fmt.Sprintf("%s: unknown node %d (nodes are 0-%d)", what, *p, s.nodes-1))
		}
		return *p, nil
	}
	switch a.Do {
	case ActionCrash:
		i, err := node(a.Node, a.Do)
		if err != nil {
			return "", err
		}
		if l.Up(i) == nil {
			return "", fmt.Errorf("node %d is already down", i)
		}
		l.Disarm(i) // a crash armed at a step is replaced by this one
		if err := l.Crash(i); err != nil {
			return "", err
		}
		return fmt.Sprintf("node %d crashed (power cut: log writes not yet synced are lost)", i), nil
	case ActionRestart:
		i, err := node(a.Node, a.Do)
		if err != nil {
			return "", err
		}
		l.WaitCrashed(i)
		if l.Node(i) != nil {
			return "", fmt.Errorf("node %d is up (crash it first)", i)
		}
		if err := l.RestartNode(i); err != nil {
			return "", err
		}
		n := l.Node(i)
		if n == nil {
			return "", fmt.Errorf("node %d did not come up", i)
		}
		return fmt.Sprintf("node %d restarted (incarnation %d)", i, n.Incarnation()), nil
	case ActionPartition:
		i, err := node(a.Node, a.Do)
		if err != nil {
			return "", err
		}
		j, err := node(a.Peer, a.Do+" (peer)")
		if err != nil {
			return "", err
		}
		if i == j {
			return "", inputErrorf(fmt.Sprintf("partition: cannot cut node %d off from itself", i))
		}
		if err := l.Partition(i, j); err != nil {
			return "", err
		}
		return fmt.Sprintf("partitioned node %d from node %d", i, j), nil
	case ActionHeal:
		l.Heal()
		return "healed: every link restored", nil
	case ActionFaults:
		f, err := a.faults()
		if err != nil {
			return "", err
		}
		if err := l.SetFaults(f); err != nil {
			return "", err
		}
		if t := faultsText(f); t != "" {
			return "faults on every node: " + t, nil
		}
		return "faults off: no message is dropped, duplicated, delayed or reordered", nil
	case ActionSkew:
		i, err := node(a.Node, a.Do)
		if err != nil {
			return "", err
		}
		d, err := a.skew()
		if err != nil {
			return "", err
		}
		if err := l.SetSkew(i, d); err != nil {
			return "", err
		}
		if d == 0 {
			return fmt.Sprintf("node %d clock skew cleared", i), nil
		}
		return fmt.Sprintf("node %d clock skew %s", i, skewText(d)), nil
	case ActionResolve:
		tx, commit, err := a.resolution(s.nodes)
		if err != nil {
			return "", err
		}
		res, err := l.Resolve(tx, commit)
		if err != nil {
			return "", err
		}
		return resolvedText(res), nil
	}
	return "", unknownAction(a.Do)
}

func unknownAction(do string) error {
	if do == "" {
		return inputErrorf("no action given (do: crash, restart, partition, heal, faults, skew or resolve)")
	}
	return inputErrorf(fmt.Sprintf("unknown action %q (do: crash, restart, partition, heal, faults, skew or resolve)", do))
}

// faults reads a faults action.
func (a Action) faults() (bridge.Faults, error) {
	f := bridge.Faults{Drop: a.Drop, Duplicate: a.Dup, Delay: a.Delay, Reorder: a.Reorder, Seed: time.Now().UnixNano()}
	if a.MaxDelay != "" {
		d, err := time.ParseDuration(a.MaxDelay)
		if err != nil {
			return f, inputErrorf(fmt.Sprintf("faults: maxDelay %q is not a duration (e.g. 50ms)", a.MaxDelay))
		}
		f.MaxDelay = d
	}
	if err := f.Validate(); err != nil {
		return f, inputErrorf("faults: " + err.Error())
	}
	return f, nil
}

// skew reads a skew action's duration.
func (a Action) skew() (time.Duration, error) {
	if a.Skew == "" {
		return 0, inputErrorf("skew: no skew given (e.g. +5s, -500ms, 0)")
	}
	d, err := time.ParseDuration(a.Skew)
	if err != nil {
		return 0, inputErrorf(fmt.Sprintf("skew %q is not a duration (e.g. +5s, -500ms, 0)", a.Skew))
	}
	if d > MaxSkew || d < -MaxSkew {
		return 0, inputErrorf(fmt.Sprintf("skew %v is more than %v either way", d, MaxSkew))
	}
	return d, nil
}

// resolution reads a resolve action.
func (a Action) resolution(nodes int) (messages.TxID, bool, error) {
	if a.Tx == "" {
		return messages.TxID{}, false, inputErrorf("resolve: no transaction given (tx: node.incarnation.seq)")
	}
	tx, err := messages.ParseTxID(a.Tx)
	if err != nil {
		return tx, false, inputErrorf(fmt.Sprintf("resolve: %q is not a transaction id (node.incarnation.seq)", a.Tx))
	}
	if nodes > 0 && (tx.Node < 0 || int(tx.Node) >= nodes) {
		return tx, false, inputErrorf(fmt.Sprintf("resolve: transaction %v names node %d, which does not exist (nodes are 0-%d)", tx, tx.Node, nodes-1))
	}
	switch a.Decision {
	case "commit":
		return tx, true, nil
	case "abort":
		return tx, false, nil
	}
	return tx, false, inputErrorf(fmt.Sprintf("resolve %v: decision must be commit or abort, got %q", tx, a.Decision))
}

// resolvedText says what a heuristic decision did, as the prompt does.
func resolvedText(res *cluster.Resolution) string {
	decision := "abort"
	if res.Commit {
		decision = "commit"
	}
	nodes := make([]string, len(res.Nodes))
	for i, n := range res.Nodes {
		nodes[i] = fmt.Sprint(n)
	}
	s := fmt.Sprintf("resolved %v: heuristic %s on node %s (the coordinator's decision was unknown; if it decided otherwise, the nodes now disagree)",
		res.Tx, decision, strings.Join(nodes, ", "))
	if len(res.Refused) > 0 {
		s += "; not applied: " + strings.Join(res.Refused, "; ")
	}
	return s
}

// skewText shows a skew with its sign: +5s, -5s, 0.
func skewText(d time.Duration) string {
	switch {
	case d > 0:
		return "+" + d.String()
	case d == 0:
		return "0"
	}
	return d.String()
}
