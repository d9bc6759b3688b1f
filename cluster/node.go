package cluster

import (
	"errors"
	"fmt"
	"net"
	"net/rpc"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/go-hclog"

	"twopc/actors"
	"twopc/messages"
	"twopc/persistence"
	"twopc/trace"
)

// Config describes one node. Zero values of optional fields mean sensible
// defaults.
type Config struct {
	ID      int32    // this node's id: its index in Members
	Members []string // "host:port" of every node, indexed by node id
	DataDir string   // parent directory of all nodes' data; this node uses DataDir/node-<ID> (default ./logs)

	Timing        actors.Timing   // protocol clocks (actors.DefaultTiming)
	SnapshotEvery int             // log records between snapshots (persistence.DefaultSnapshotEvery)
	Logger        hclog.Logger    // default: INFO to stderr, named node-<ID>
	Steps         actors.StepHook // told of every protocol step; for tests (nil: none)
	// BridgeReady, if set, is called with the node's bridge as soon as it
	// exists, before the node recovers its roles or serves: where a Local
	// applies the message faults and cuts it remembers.
	BridgeReady func(*Bridge)
	// Tracer, if set, records this node's part of every transaction's
	// history (messages, log writes, decisions) for the operator's trace
	// command; see tracing.go. Nil: no tracing, and no middleware at all.
	Tracer *trace.Recorder

	// Listener, if set, is used instead of listening on Members[ID]: tests
	// reserve a free port this way.
	Listener net.Listener
}

// DefaultDataDir is where nodes keep their logs unless told otherwise.
const DefaultDataDir = "./logs"

// Node is one member of a twopc cluster: an actor system with a coordinator,
// a participant, a persistence actor and a bridge, serving net/rpc for peers
// (service "Bridge") and clients (service "Client").
type Node struct {
	cfg    Config
	log    hclog.Logger
	sys    *actor.ActorSystem
	wal    *persistence.Log
	bridge *Bridge
	lis    net.Listener
	lock   *os.File

	coordinator, participant, persistencePID *actor.PID
	incarnation                              uint32

	server  *connServer // peers' and clients' connections
	mu      sync.Mutex
	stopped bool

	cut     atomic.Bool // PowerCut was called: the node is dead to the world
	cutOnce sync.Once
	cutCh   chan struct{} // closed by PowerCut
	stopCh  chan struct{} // closed when Stop begins

	preparesAfter time.Time // see PreparesAfter

	tracer *nodeTracer // nil unless cfg.Tracer is set
}

// PreparesAfter is when a restarted node starts voting on transactions
// begun by a coordinator with the same clock: until then its participant
// refuses them, since a predecessor may have voted on them (its memory of
// that is gone). Zero for a node's first start.
func (n *Node) PreparesAfter() time.Time { return n.preparesAfter }

// waitPreparesAfter sleeps until PreparesAfter.
func (n *Node) waitPreparesAfter() {
	if d := time.Until(n.preparesAfter); d > 0 {
		time.Sleep(d + time.Millisecond)
	}
}

// Start recovers the node from its log and starts serving. The log is
// replayed completely before the node accepts any message.
func Start(cfg Config) (*Node, error) {
	if int(cfg.ID) < 0 || int(cfg.ID) >= len(cfg.Members) {
		return nil, fmt.Errorf("node %d: not a member (members are 0-%d)", cfg.ID, len(cfg.Members)-1)
	}
	if cfg.DataDir == "" {
		cfg.DataDir = DefaultDataDir
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "twopc", Level: hclog.Info})
	}
	n := &Node{cfg: cfg, log: cfg.Logger.Named(fmt.Sprintf("node-%d", cfg.ID)), cutCh: make(chan struct{}), stopCh: make(chan struct{})}
	n.tracer = newNodeTracer(n)
	n.cfg.Steps = n.tracer.steps(n.cfg.Steps) // decisions recorded (unchanged without a tracer)
	if err := n.start(); err != nil {
		n.teardown(false)
		return nil, err
	}
	return n, nil
}

func (n *Node) start() error {
	addr := n.cfg.Members[n.cfg.ID]
	// Listen before touching the disk: a second start of the same node
	// fails here, on the port, without disturbing the running one's files.
	n.lis = n.cfg.Listener
	if n.lis == nil {
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			return listenError(n.cfg.ID, addr, err)
		}
		n.lis = lis
	}

	dir := filepath.Join(n.cfg.DataDir, fmt.Sprintf("node-%d", n.cfg.ID))
	if err := n.lockDir(dir); err != nil {
		return err
	}
	if err := n.checkMembership(dir); err != nil {
		return err
	}
	wal, err := persistence.Open(persistence.Options{Dir: dir, SnapshotEvery: n.cfg.SnapshotEvery, Logger: n.log.Named("wal"), Written: n.tracer.written()})
	if err != nil {
		return fmt.Errorf("node %d: recovering from %s: %w", n.cfg.ID, dir, err)
	}
	n.wal = wal
	state := wal.State()

	n.sys = actor.NewActorSystem(ActorSystemLogging(n.log))
	n.bridge, err = NewBridge(n.sys, BridgeConfig{Self: n.cfg.ID, Members: n.cfg.Members, Logger: n.log.Named("bridge")})
	if err != nil {
		return fmt.Errorf("node %d: %w", n.cfg.ID, err)
	}
	if n.cfg.BridgeReady != nil {
		n.cfg.BridgeReady(n.bridge)
	}
	n.persistencePID, err = n.sys.Root.SpawnNamed(persistence.Props(wal), actors.PersistenceName)
	if err != nil {
		return fmt.Errorf("node %d: spawn persistence actor: %w", n.cfg.ID, err)
	}

	// A new incarnation, durable before any transaction id uses it.
	n.incarnation = state.Incarnation + 1
	res, err := n.sys.Root.RequestFuture(n.persistencePID, &messages.Append{
		Records: []messages.Record{{Kind: messages.RecBoot, Incarnation: n.incarnation}}, Force: true,
	}, 10*time.Second).Result()
	if err == nil {
		if a, ok := res.(*messages.Appended); ok && a.Err != nil {
			err = a.Err
		}
	}
	if err != nil {
		return fmt.Errorf("node %d: logging start: %w", n.cfg.ID, err)
	}
	n.tracer.started(n.incarnation)

	// The participant takes state.KV (and state.Heuristic) over once
	// spawned: count it before.
	recoveredKeys := len(state.KV)
	dirOf := &addressDirectory{members: n.cfg.Members}
	var inDoubt []messages.Record
	for _, r := range state.InDoubt {
		inDoubt = append(inDoubt, r)
	}
	var pending []actors.PendingCommit
	for tx, parts := range state.Pending {
		pending = append(pending, actors.PendingCommit{Tx: tx, Participants: parts})
	}
	// The coordinator first: a recovered participant asks coordinators about
	// its in-doubt transactions at once, this node's own among them.
	n.coordinator, err = n.sys.Root.SpawnNamed(n.tracer.props(actors.NewCoordinatorProps(actors.CoordinatorConfig{
		Node: n.cfg.ID, Members: len(n.cfg.Members), Incarnation: n.incarnation,
		Persistence: n.persistencePID, Directory: dirOf, Timing: n.cfg.Timing,
		Logger: n.log.Named("coordinator"), Steps: n.cfg.Steps, TxnProps: n.tracer.txnProps(),
	})), actors.CoordinatorName)
	if err != nil {
		return fmt.Errorf("node %d: spawn coordinator: %w", n.cfg.ID, err)
	}
	n.participant, err = n.sys.Root.SpawnNamed(n.tracer.props(actors.NewParticipantProps(actors.ParticipantConfig{
		Node: n.cfg.ID, Members: len(n.cfg.Members), Persistence: n.persistencePID, Directory: dirOf,
		Timing: n.cfg.Timing, Logger: n.log.Named("participant"), KV: state.KV, InDoubt: inDoubt,
		Heuristic: state.Heuristic, Reload: n.reloadParticipant, Steps: n.cfg.Steps, Fresh: n.incarnation == 1,
	})), actors.ParticipantName)
	if err != nil {
		return fmt.Errorf("node %d: spawn participant: %w", n.cfg.ID, err)
	}
	if n.incarnation > 1 {
		// A restarted participant refuses Prepares begun before its memory
		// starts (see actors.ParticipantConfig.Fresh).
		n.preparesAfter = time.Now().Add(n.cfg.Timing.WithDefaults().ClockSkew)
		n.log.Info("restarted: refusing transactions begun before the clock skew has passed", "until", n.preparesAfter.Format(time.RFC3339Nano))
	}
	// Only now, with both roles spawned, may re-driven commits reach this
	// node's participant.
	n.sys.Root.Send(n.coordinator, &actors.RedriveCommits{Pending: pending})
	if len(inDoubt) > 0 || len(pending) > 0 {
		n.log.Warn("recovered unfinished transactions", "in_doubt", len(inDoubt), "commits_to_redrive", len(pending))
	}

	srv := rpc.NewServer()
	if err := n.bridge.Register(srv); err != nil {
		return fmt.Errorf("node %d: %w", n.cfg.ID, err)
	}
	if err := srv.RegisterName("Client", &clientService{n: n}); err != nil {
		return fmt.Errorf("node %d: register client service: %w", n.cfg.ID, err)
	}
	n.server = serveConns(n.lis, func(c net.Conn) { srv.ServeConn(c) })
	n.log.Info("node started", "addr", addr, "incarnation", n.incarnation, "keys", recoveredKeys, "dir", dir)
	return nil
}

// reloadParticipant gives a participant that failed and is being restarted
// the state its log holds now. It runs on the participant's goroutine and
// waits for the persistence actor, which never waits for the participant.
func (n *Node) reloadParticipant() (map[string]int64, []messages.Record, map[messages.TxID]bool, error) {
	res, err := n.sys.Root.RequestFuture(n.persistencePID, &persistence.CurrentState{}, 30*time.Second).Result()
	if err != nil {
		return nil, nil, nil, err
	}
	r, ok := res.(*persistence.StateReply)
	if !ok {
		return nil, nil, nil, fmt.Errorf("unexpected answer %T", res)
	}
	if r.Err != nil {
		return nil, nil, nil, r.Err
	}
	var inDoubt []messages.Record
	for _, rec := range r.State.InDoubt {
		inDoubt = append(inDoubt, rec)
	}
	return r.State.KV, inDoubt, r.State.Heuristic, nil
}

// membershipFile records which cluster a node's data belongs to. Keys are
// placed by a hash over the members, so the same data under another
// cluster size would be looked for on the wrong nodes.
const membershipFile = "CLUSTER"

// checkMembership refuses a directory written by a cluster of another size
// (or by another node), and records the membership on first start.
func (n *Node) checkMembership(dir string) error {
	want := fmt.Sprintf("node %d of %d\n", n.cfg.ID, len(n.cfg.Members))
	path := filepath.Join(dir, membershipFile)
	got, err := os.ReadFile(path)
	switch {
	case err == nil:
		if string(got) != want {
			return fmt.Errorf("node %d: %s holds the data of %q, but this is %q: changing the cluster's size is not supported (use another --data-dir, or make clean to start afresh)",
				n.cfg.ID, dir, strings.TrimSpace(string(got)), strings.TrimSpace(want))
		}
		return nil
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("node %d: %w", n.cfg.ID, err)
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err == nil {
		_, err = f.WriteString(want)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("node %d: recording membership in %s: %w", n.cfg.ID, path, err)
	}
	return nil
}

// lockDir makes sure only one process uses a node's directory.
func (n *Node) lockDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("node %d: %w", n.cfg.ID, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("node %d: %w", n.cfg.ID, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return fmt.Errorf("node %d: %s is in use by another process: %w", n.cfg.ID, dir, err)
	}
	n.lock = f
	return nil
}

// Stop shuts the node down cleanly: no new connections, roles stopped,
// pending log appends flushed, the log closed. Safe to call twice.
func (n *Node) Stop() error {
	n.mu.Lock()
	if n.stopped {
		n.mu.Unlock()
		return nil
	}
	n.stopped = true
	n.mu.Unlock()
	// Callers still waiting (a Submit whose transaction is still collecting
	// votes, a held read) are told now: the stopping roles will not answer,
	// and net/rpc's connections close only once their calls return.
	close(n.stopCh)
	n.teardown(false)
	n.log.Info("node stopped")
	return nil
}

// teardown stops everything the node runs. After a crash (power already
// cut) the roles are stopped at once instead of finishing their mailboxes:
// whatever they would still do could not leave the node anyway.
func (n *Node) teardown(crashed bool) {
	// No new calls: listener and accepted connections closed first.
	if n.server != nil {
		n.server.stop()
	} else if n.lis != nil {
		n.lis.Close()
	}
	if n.sys != nil {
		for _, pid := range []*actor.PID{n.coordinator, n.participant} {
			if pid == nil {
				continue
			}
			if crashed {
				_ = n.sys.Root.StopFuture(pid).Wait()
			} else {
				_ = n.sys.Root.PoisonFuture(pid).Wait()
			}
		}
		if n.bridge != nil {
			n.bridge.Stop()
		}
		if n.persistencePID != nil {
			// The persistence actor flushes what is queued and closes the log.
			_ = n.sys.Root.PoisonFuture(n.persistencePID).Wait()
		}
		n.sys.Shutdown()
	}
	if n.wal != nil {
		_ = n.wal.Close()
	}
	if n.server != nil {
		n.server.wait()
	}
	if n.lock != nil {
		n.lock.Close()
	}
}

// ID is the node's id; Addr its address.
func (n *Node) ID() int32           { return n.cfg.ID }
func (n *Node) Addr() string        { return n.cfg.Members[n.cfg.ID] }
func (n *Node) Members() int        { return len(n.cfg.Members) }
func (n *Node) Incarnation() uint32 { return n.incarnation }

// System is the node's actor system; Coordinator, Participant and
// Persistence are its roles.
func (n *Node) System() *actor.ActorSystem  { return n.sys }
func (n *Node) Coordinator() *actor.PID     { return n.coordinator }
func (n *Node) Participant() *actor.PID     { return n.participant }
func (n *Node) Persistence() *actor.PID     { return n.persistencePID }
func (n *Node) Bridge() *Bridge             { return n.bridge }
func (n *Node) LogStats() messages.LogStats { return n.wal.Stats() }

// clientTimeout bounds a client's wait for an outcome: the vote timeout plus
// the ack wait, with room to spare.
func (n *Node) clientTimeout() time.Duration {
	return 3*n.cfg.Timing.WithDefaults().VoteTimeout + 2*time.Second
}

// Submit runs a transaction coordinated by this node and returns its outcome.
// When no outcome comes (timeout, crash, stop, no coordinator) the error is a
// *NoOutcomeError naming the transaction if the coordinator named it.
func (n *Node) Submit(ops ...messages.Op) (*messages.Outcome, error) {
	r, err := n.request(n.coordinator, &messages.Begin{Ops: ops, NotifyBegun: true})
	if err != nil {
		return nil, err
	}
	res, err := r.await(time.Now().Add(n.clientTimeout()))
	if err != nil {
		return nil, &NoOutcomeError{Node: n.cfg.ID, Tx: r.box.begunTx(), Err: err}
	}
	switch o := res.(type) {
	case *messages.Outcome:
		return o, nil
	case *actor.DeadLetterResponse:
		return nil, &NoOutcomeError{Node: n.cfg.ID, Tx: r.box.begunTx(), Err: errors.New("the coordinator is not running")}
	default:
		return nil, fmt.Errorf("node %d: unexpected answer %T", n.cfg.ID, res)
	}
}

// errNodeStopping is what callers waiting on a node that stops are told.
var errNodeStopping = errors.New("node stopping")

// pendingReply is a request sent with a reply box as its sender.
type pendingReply struct {
	n   *Node
	box *replyBox
	pid *actor.PID
}

// request sends msg to target with a fresh reply box as the sender. Reply
// boxes rather than Futures: a wait must also end when the node crashes or
// stops (its dead roles will never answer), and a Future cannot be
// selected on.
func (n *Node) request(target *actor.PID, msg interface{}) (*pendingReply, error) {
	box := &replyBox{ch: make(chan interface{}, 1)}
	pid, ok := n.sys.ProcessRegistry.Add(box, "reply"+n.sys.ProcessRegistry.NextId())
	if !ok {
		return nil, fmt.Errorf("node %d: cannot register a reply address", n.cfg.ID)
	}
	n.sys.Root.RequestWithCustomSender(target, msg, pid)
	return &pendingReply{n: n, box: box, pid: pid}, nil
}

// await waits for the answer until deadline, or until the node crashes or
// stops, and frees the reply box.
func (r *pendingReply) await(deadline time.Time) (interface{}, error) {
	defer r.n.sys.ProcessRegistry.Remove(r.pid)
	wait := time.Until(deadline)
	timeout := time.NewTimer(wait)
	defer timeout.Stop()
	var res interface{}
	select {
	case res = <-r.box.ch:
	case <-r.n.cutCh:
	case <-r.n.stopCh:
		return nil, errNodeStopping
	case <-timeout.C:
		return nil, fmt.Errorf("no answer within %v", wait.Round(time.Millisecond))
	}
	if r.n.cut.Load() {
		// Whatever the dead node's actors answered after the cut, a caller
		// of a crashed node learns nothing.
		return nil, errNodeCrashed
	}
	return res, nil
}

// replyBox is a one-shot reply address that a Go caller can select on. It
// keeps the first message and drops any other. A Begun (Submit's early
// notice of its transaction id) is kept apart, in begun, and is not the
// answer.
type replyBox struct {
	ch    chan interface{}
	begun txNote
}

func (r *replyBox) SendUserMessage(_ *actor.PID, m interface{}) {
	_, msg, _ := actor.UnwrapEnvelope(m)
	if b, ok := msg.(*messages.Begun); ok {
		r.begun.set(b.Tx)
		return
	}
	select {
	case r.ch <- msg:
	default:
	}
}
func (r *replyBox) SendSystemMessage(*actor.PID, interface{}) {}
func (r *replyBox) Stop(*actor.PID)                           {}

// Read returns the committed value of each key from the node(s) that own
// it: one entry per key, or per node for a key held everywhere ("value").
// Keys on several nodes are read as one snapshot (SnapshotRead); keys of
// one node are one snapshot of it (see actors/reads.go), each key
// linearizable.
func (n *Node) Read(keys ...string) ([]NodeValue, error) {
	if n.cut.Load() {
		return nil, fmt.Errorf("node %d: %w", n.cfg.ID, errNodeCrashed)
	}
	if len(keys) == 0 {
		return nil, errors.New("read: no keys given")
	}
	if ownedBySeveral(keys, len(n.cfg.Members)) {
		return n.SnapshotRead(keys...) // one moment on every node (snapshot.go)
	}
	members := len(n.cfg.Members)
	owners := make([][]int32, len(keys))
	perNode := make([][]string, members) // each owner is asked once, for all its keys
	for i, k := range keys {
		own, err := messages.Owners(k, members)
		if err != nil {
			return nil, err
		}
		owners[i] = own
		for _, o := range own {
			perNode[o] = append(perNode[o], k)
		}
	}
	// The owners are asked at once.
	deadline := time.Now().Add(n.readTimeout())
	pending := make([]*pendingReply, members)
	defer func() { // boxes not awaited (after an error) are freed too
		for _, r := range pending {
			if r != nil {
				n.sys.ProcessRegistry.Remove(r.pid)
			}
		}
	}()
	for o, ks := range perNode {
		if len(ks) > 0 {
			r, err := n.request(actor.NewPID(n.cfg.Members[o], actors.ParticipantName), &messages.Read{Keys: ks})
			if err != nil {
				return nil, err
			}
			pending[o] = r
		}
	}
	got := make([][]messages.KeyValue, members)
	for o, r := range pending {
		if r == nil {
			continue
		}
		res, err := r.await(deadline)
		pending[o] = nil
		if got[o], err = readValues(int32(o), perNode[o], res, err); err != nil {
			return nil, err
		}
	}
	// One entry per key per owner, in the order the keys were asked.
	var out []NodeValue
	next := make([]int, members)
	for i, k := range keys {
		for _, o := range owners[i] {
			out = append(out, NodeValue{Key: k, Node: o, Value: got[o][next[o]].Value})
			next[o]++
		}
	}
	return out, nil
}

// readValues checks owner's answer to a Read of keys (res, or err if none
// came) and returns its values, in the order asked.
func readValues(owner int32, keys []string, res interface{}, err error) ([]messages.KeyValue, error) {
	what := strings.Join(keys, " ")
	if err != nil {
		return nil, fmt.Errorf("read %s: node %d did not answer: %w", what, owner, err)
	}
	if _, dead := res.(*actor.DeadLetterResponse); dead {
		return nil, fmt.Errorf("read %s: node %d did not answer: its participant is not running", what, owner)
	}
	rr, ok := res.(*messages.ReadReply)
	if ok && rr.From != owner {
		// A reply address can be guessed; only the owner asked may answer.
		return nil, fmt.Errorf("read %s: answer from node %d, not from node %d that was asked", what, rr.From, owner)
	}
	if ok && rr.Err != "" {
		return nil, fmt.Errorf("read %s: %s", what, rr.Err)
	}
	if !ok || len(rr.Values) != len(keys) {
		return nil, fmt.Errorf("read %s: node %d: unexpected answer %T", what, owner, res)
	}
	return rr.Values, nil
}

// readTimeout bounds a read: one held by transactions prepared on its keys
// waits up to the vote timeout for them to be decided.
func (n *Node) readTimeout() time.Duration {
	return 2*n.cfg.Timing.WithDefaults().VoteTimeout + time.Second
}

// NodeValue is a key's committed value as one node holds it.
type NodeValue struct {
	Key   string
	Node  int32
	Value int64
}

// addressDirectory finds a node's roles by its address.
type addressDirectory struct {
	members []string
}

func (d *addressDirectory) Coordinator(node int32) *actor.PID {
	return actor.NewPID(d.addr(node), actors.CoordinatorName)
}

func (d *addressDirectory) Participant(node int32) *actor.PID {
	return actor.NewPID(d.addr(node), actors.ParticipantName)
}

func (d *addressDirectory) addr(node int32) string {
	if node < 0 || int(node) >= len(d.members) {
		return "nonmember:" + fmt.Sprint(node) // the bridge drops it with a warning
	}
	return d.members[node]
}

// listenError says which node could not take which port, and the likely why.
func listenError(node int32, addr string, err error) error {
	return fmt.Errorf("node %d: cannot listen on %s (is another node using port %s?): %w", node, addr, portOf(addr), err)
}

func portOf(addr string) string {
	if _, port, err := net.SplitHostPort(addr); err == nil {
		return port
	}
	return addr
}

// ParticipantStatus asks this node's participant for its state at a glance.
func (n *Node) ParticipantStatus() (*actors.ParticipantStatus, error) {
	res, err := n.sys.Root.RequestFuture(n.participant, &actors.ParticipantStatusRequest{}, 5*time.Second).Result()
	if err != nil {
		return nil, fmt.Errorf("node %d: participant status: %w", n.cfg.ID, err)
	}
	return res.(*actors.ParticipantStatus), nil
}

// readLocal reads a key from this node's own participant.
func (n *Node) readLocal(key string) (int64, error) {
	res, err := n.sys.Root.RequestFuture(n.participant, &messages.Read{Keys: []string{key}}, 5*time.Second).Result()
	if err != nil {
		return 0, err
	}
	return res.(*messages.ReadReply).Values[0].Value, nil
}

// CoordinatorStatus asks this node's coordinator for its state at a glance.
func (n *Node) CoordinatorStatus() (*actors.CoordinatorStatus, error) {
	res, err := n.sys.Root.RequestFuture(n.coordinator, &actors.CoordinatorStatusRequest{}, 5*time.Second).Result()
	if err != nil {
		return nil, fmt.Errorf("node %d: coordinator status: %w", n.cfg.ID, err)
	}
	return res.(*actors.CoordinatorStatus), nil
}
