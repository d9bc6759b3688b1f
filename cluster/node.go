package cluster

import (
	"context"
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
	"twopc/bridge"
	"twopc/identity"
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
	Limits        bridge.Limits   // bounds on what a connection may send (zero fields: bridge's defaults)
	MaxBacklog    int             // messages queued at the roles before inbound batches wait (bridge.DefaultMaxBacklog)
	// BridgeReady, if set, is called with the node's bridge as soon as it
	// exists, before the node recovers its roles or serves: where a Local
	// applies the message faults and cuts it remembers.
	BridgeReady func(*bridge.Bridge)
	// Tracer, if set, records this node's part of every transaction's
	// history (messages, log writes, decisions) for the operator's trace
	// command; see tracing.go. Nil: no tracing, and no middleware at all.
	Tracer *trace.Recorder

	// Clock, if set, is this node's clock (time.Now otherwise). Nothing
	// the protocol decides depends on it; it paces waits and queries.
	Clock func() time.Time
	// Skew, if set, holds how far this node's clock is set off Clock (in
	// nanoseconds): the node reads it on every use of its clock, and
	// Node.SetSkew (the Admin service's skew) changes it. A Local keeps
	// one per node, so that a skew outlives the node's restarts. Nil: the
	// node keeps its own, at 0 when it starts.
	Skew *atomic.Int64

	// Listener, if set, is used instead of listening on Members[ID]: tests
	// reserve a free port this way.
	Listener net.Listener
	// Network, if set, is where the node listens (without Listener) and
	// dials its peers, instead of TCP: the simulation runs whole clusters
	// on an in-memory one (internal/memnet). Nil: TCP.
	Network Network
	// SyncLatency, if set, is waited before each fsync of the node's log
	// (persistence.Options.SyncLatency): the simulation's slow disk. Nil:
	// none.
	SyncLatency func() time.Duration

	// FailStopped, if set, is called once, on a goroutine of its own, after
	// the node stopped itself because its log failed (see
	// Node.FailStopped): where a Local marks the node down.
	FailStopped func(*Node)
	// TLS is this node's identity: its certificate must name node ID. With
	// it every connection, to peers and from clients, is mutual TLS 1.3,
	// and each is served as the identity its peer's certificate proves (a
	// member only as itself, a client or admin only as a client). Nil:
	// plaintext, anyone who reaches the port is believed (insecure).
	TLS *identity.Identity
	// ConnLimits bound the connections the node accepts.
	ConnLimits ConnLimits

	// Observer, if set, is told what the node's metrics count on its hot
	// paths (see Observer). Nil: nothing is told, and nothing is timed.
	Observer Observer

	// Protocol is the commit protocol (actors.DefaultProtocol when
	// unset). Every node of a cluster must run the same.
	Protocol actors.Protocol
}

// Validate names the first field of c that breaks its rule. Start calls it
// before anything else; zero optional fields are valid (they take their
// defaults).
func (c Config) Validate() error {
	if len(c.Members) == 0 {
		return errors.New("cluster: Members: member list is empty")
	}
	if c.ID < 0 || int(c.ID) >= len(c.Members) {
		return fmt.Errorf("cluster: ID = %d: not a member (Members are nodes 0-%d)", c.ID, len(c.Members)-1)
	}
	seen := make(map[string]int, len(c.Members))
	for i, addr := range c.Members {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("cluster: Members[%d] = %q: not host:port: %w", i, addr, err)
		}
		if j, dup := seen[addr]; dup {
			return fmt.Errorf("cluster: Members[%d] and Members[%d] are both %q: each node needs its own address", j, i, addr)
		}
		seen[addr] = i
	}
	if c.MaxBacklog < 0 {
		return fmt.Errorf("cluster: MaxBacklog = %d: must not be negative (0 takes bridge.DefaultMaxBacklog)", c.MaxBacklog)
	}
	if c.Protocol != "" {
		if _, err := actors.ParseProtocol(string(c.Protocol)); err != nil {
			return fmt.Errorf("config Protocol: %w", err)
		}
	}
	if err := c.Timing.Validate(); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	if c.TLS != nil && c.TLS.Peer != identity.Node(c.ID) {
		return fmt.Errorf("cluster: TLS: the certificate is %v's, but this is node %d", c.TLS.Peer, c.ID)
	}
	return nil
}

// Network is a network other than TCP for a node to listen and dial on
// (Config.Network); *memnet.Network is one.
type Network interface {
	Listen(addr string) (net.Listener, error)
	Dial(ctx context.Context, addr string) (net.Conn, error)
}

// DefaultDataDir is where nodes keep their logs unless told otherwise.
const DefaultDataDir = "./logs"

// Node is one member of a twopc cluster: an actor system with a coordinator,
// a participant, a persistence actor and a bridge, serving net/rpc for peers
// (service "Bridge") and clients (service "Client").
type Node struct {
	cfg     Config
	log     hclog.Logger
	sys     *actor.ActorSystem
	wal     *persistence.Log
	bridge  *bridge.Bridge
	backlog *bridge.Backlog
	lis     net.Listener
	lock    *os.File

	coordinator, participant, acceptor, persistencePID *actor.PID
	incarnation                                        uint32

	server  *connServer // peers' and clients' connections
	mu      sync.Mutex
	stopped bool

	cut     atomic.Bool // PowerCut was called: the node is dead to the world
	cutOnce sync.Once
	cutCh   chan struct{} // closed by PowerCut
	stopCh  chan struct{} // closed when Stop begins

	// Fail-stop (failstop.go). started and failure are guarded by mu.
	logErr      atomic.Pointer[error] // the first failure the log reported, stored at once
	started     bool                  // Start has finished: a log failure now stops the node
	failure     error                 // the log failure that stopped the node
	failStopped chan struct{}         // closed once that stop is complete

	tracer *nodeTracer // nil unless cfg.Tracer is set
}

// Now is the time by this node's clock (Config.Clock, set off by its skew).
func (n *Node) Now() time.Time { return n.cfg.Clock() }

// Skew is how far this node's clock is set off (SetSkew).
func (n *Node) Skew() time.Duration { return time.Duration(n.cfg.Skew.Load()) }

// SetSkew sets this node's clock d off (negative: behind), at once; 0
// clears it. A fault to inject: no decision of the protocol depends on a
// clock. It is kept across restarts only if whoever starts the node keeps
// Config.Skew (a Local does; a node process starts at 0 again).
func (n *Node) SetSkew(d time.Duration) error {
	if d > MaxSkew || d < -MaxSkew {
		return fmt.Errorf("node %d: skew %v is more than %v either way", n.cfg.ID, d, MaxSkew)
	}
	n.cfg.Skew.Store(int64(d))
	return nil
}

// MaxSkew bounds a clock skew: far beyond any clock fault worth injecting,
// short of durations that overflow a time.
const MaxSkew = 24 * time.Hour

// skewedClock is base (time.Now if nil) set off by skew, read on every use.
func skewedClock(base func() time.Time, skew *atomic.Int64) func() time.Time {
	if base == nil {
		base = time.Now
	}
	return func() time.Time {
		if d := skew.Load(); d != 0 {
			return base().Add(time.Duration(d))
		}
		return base()
	}
}

// Start recovers the node from its log and starts serving. The log is
// replayed completely before the node accepts any message.
func Start(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.DataDir == "" {
		cfg.DataDir = DefaultDataDir
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "twopc", Level: hclog.Info})
	}
	if cfg.Skew == nil {
		cfg.Skew = new(atomic.Int64)
	}
	cfg.Clock = skewedClock(cfg.Clock, cfg.Skew)
	n := &Node{cfg: cfg, log: cfg.Logger.Named(fmt.Sprintf("node-%d", cfg.ID)), cutCh: make(chan struct{}), stopCh: make(chan struct{}), failStopped: make(chan struct{})}
	n.tracer = newNodeTracer(n)
	n.cfg.Steps = n.tracer.steps(n.cfg.Steps) // decisions recorded (unchanged without a tracer)
	if err := n.start(); err != nil {
		n.teardown(false)
		return nil, err
	}
	if err := n.serving(); err != nil {
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
		listen := func(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }
		if n.cfg.Network != nil {
			listen = n.cfg.Network.Listen
		}
		lis, err := listen(addr)
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
	wal, err := persistence.Open(persistence.Options{Dir: dir, SnapshotEvery: n.cfg.SnapshotEvery, Logger: n.log.Named("wal"),
		Written: n.written(), Synced: n.synced(), Failed: n.logFailed, SyncLatency: n.cfg.SyncLatency})
	if err != nil {
		return fmt.Errorf("node %d: recovering from %s: %w", n.cfg.ID, dir, err)
	}
	n.wal = wal
	state := wal.State()

	n.sys = actor.NewActorSystem(ActorSystemLogging(n.log))
	// The roles' mailboxes are counted, and peers' batches wait while too
	// much is queued (bridge.Backlog): the network cannot grow them without
	// bound.
	n.backlog = bridge.NewBacklog(n.cfg.MaxBacklog)
	bcfg := bridge.Config{Self: n.cfg.ID, Members: n.cfg.Members, Logger: n.log.Named("bridge"), Limits: n.cfg.Limits, Backlog: n.backlog}
	if id := n.cfg.TLS; id != nil {
		bcfg.PeerTLS = id.NodeConfig
	}
	if n.cfg.Network != nil {
		bcfg.Dial = n.cfg.Network.Dial
	}
	n.bridge, err = bridge.New(n.sys, bcfg)
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
	// The acceptor before the roles that propose to it.
	n.acceptor, err = n.sys.Root.SpawnNamed(n.tracer.props(actors.NewAcceptorProps(actors.AcceptorConfig{
		Node: n.cfg.ID, Members: len(n.cfg.Members), Persistence: n.persistencePID,
		Logger: n.log.Named("acceptor"), Recovered: state.Acceptor, Steps: n.cfg.Steps,
	}).Configure(actor.WithMailbox(n.backlog.Mailbox()))), actors.AcceptorName)
	if err != nil {
		return fmt.Errorf("node %d: spawn acceptor: %w", n.cfg.ID, err)
	}
	// The coordinator first: a recovered participant asks coordinators about
	// its in-doubt transactions at once, this node's own among them.
	n.coordinator, err = n.sys.Root.SpawnNamed(n.tracer.props(actors.NewCoordinatorProps(actors.CoordinatorConfig{
		Node: n.cfg.ID, Members: len(n.cfg.Members), Incarnation: n.incarnation,
		Persistence: n.persistencePID, Directory: dirOf, Timing: n.cfg.Timing,
		Logger: n.log.Named("coordinator"), Steps: n.cfg.Steps, TxnProps: n.tracer.txnProps(), Clock: n.cfg.Clock,
		Protocol: n.cfg.Protocol,
	}).Configure(actor.WithMailbox(n.backlog.Mailbox()))), actors.CoordinatorName)
	if err != nil {
		return fmt.Errorf("node %d: spawn coordinator: %w", n.cfg.ID, err)
	}
	n.participant, err = n.sys.Root.SpawnNamed(n.tracer.props(actors.NewParticipantProps(actors.ParticipantConfig{
		Node: n.cfg.ID, Members: len(n.cfg.Members), Persistence: n.persistencePID, Directory: dirOf,
		Timing: n.cfg.Timing, Logger: n.log.Named("participant"), KV: state.KV, InDoubt: inDoubt,
		Heuristic: state.Heuristic, Reconciled: state.Reconciled, Notes: n.persistencePID,
		Reload: n.reloadParticipant, Steps: n.cfg.Steps, Fresh: n.incarnation == 1,
		Rounds:   n.rounds(),
		Outcomes: state.Outcomes, Marks: state.Marks, Clock: n.cfg.Clock, Protocol: n.cfg.Protocol,
	}).Configure(actor.WithMailbox(n.backlog.Mailbox()))), actors.ParticipantName)
	if err != nil {
		return fmt.Errorf("node %d: spawn participant: %w", n.cfg.ID, err)
	}
	// Only now, with both roles spawned, may re-driven commits reach this
	// node's participant.
	n.sys.Root.Send(n.coordinator, &actors.RedriveCommits{Pending: pending})
	if len(inDoubt) > 0 || len(pending) > 0 {
		n.log.Warn("recovered unfinished transactions", "in_doubt", len(inDoubt), "commits_to_redrive", len(pending))
	}

	handle, err := n.rpcServers()
	if err != nil {
		return fmt.Errorf("node %d: %w", n.cfg.ID, err)
	}
	opts := connOptions{Limits: n.cfg.ConnLimits, Members: len(n.cfg.Members), Self: n.cfg.ID, Log: n.log.Named("conns")}
	if n.cfg.TLS != nil {
		opts.TLS = n.cfg.TLS.ServerConfig()
	}
	n.server = serveConnsWith(n.lis, opts, handle)
	n.log.Info("node started", "addr", addr, "incarnation", n.incarnation, "keys", recoveredKeys, "dir", dir)
	return nil
}

// rpcServers makes the rpc services each kind of connection may call and
// returns the handler serving a connection as its peer's identity. With TLS
// there is one server per identity: node j's connections reach only a
// Bridge bound to j, clients' the Client service (and an Admin service
// that refuses every call, saying why), admins' the Client and Admin
// services, so a client certificate has no Bridge.Deliver to call at all.
// Without TLS every connection gets everything, as before.
func (n *Node) rpcServers() (func(identity.Peer, net.Conn), error) {
	client := func(srv *rpc.Server) error {
		if err := srv.RegisterName("Client", &clientService{n: n}); err != nil {
			return fmt.Errorf("register client service: %w", err)
		}
		return nil
	}
	admin := func(srv *rpc.Server, refused error) error {
		if err := srv.RegisterName("Admin", &adminService{n: n, refused: refused}); err != nil {
			return fmt.Errorf("register admin service: %w", err)
		}
		return nil
	}
	if n.cfg.TLS == nil {
		srv := rpc.NewServer()
		if err := n.bridge.Register(srv); err != nil {
			return nil, err
		}
		if err := client(srv); err != nil {
			return nil, err
		}
		if err := admin(srv, nil); err != nil {
			return nil, err
		}
		return func(_ identity.Peer, c net.Conn) { srv.ServeCodec(n.bridge.ServerCodec(c)) }, nil
	}
	peers := make([]*rpc.Server, len(n.cfg.Members))
	for j := range peers {
		if int32(j) == n.cfg.ID {
			continue
		}
		peers[j] = rpc.NewServer()
		if err := n.bridge.RegisterPeer(peers[j], int32(j)); err != nil {
			return nil, err
		}
	}
	clients := rpc.NewServer()
	if err := client(clients); err != nil {
		return nil, err
	}
	if err := admin(clients, errAdminOnly); err != nil {
		return nil, err
	}
	// Admins may do what clients may, and the operator's actions.
	admins := rpc.NewServer()
	if err := client(admins); err != nil {
		return nil, err
	}
	if err := admin(admins, nil); err != nil {
		return nil, err
	}
	return func(p identity.Peer, c net.Conn) {
		switch {
		case p.IsNode() && int(p.Node) < len(peers) && peers[p.Node] != nil:
			peers[p.Node].ServeCodec(n.bridge.PeerServerCodec(c, p.Node))
		case p.IsAdmin():
			admins.ServeCodec(n.bridge.ServerCodec(c))
		case p.MayUseClient():
			clients.ServeCodec(n.bridge.ServerCodec(c))
		default: // the connection server admits no one else; closing is the safe answer
			c.Close()
		}
	}, nil
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
	got, err := persistence.ReadFile(path) // never through a link (see persistence.PrepareDir)
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
	f, err := persistence.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, persistence.FilePerm)
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

// lockDir makes sure only one process uses a node's directory, after
// making sure the directory is private and holds only regular files.
func (n *Node) lockDir(dir string) error {
	if err := persistence.PrepareDir(dir, n.log); err != nil {
		return fmt.Errorf("node %d: %w", n.cfg.ID, err)
	}
	f, err := persistence.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, persistence.FilePerm)
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
		n.waitFailStop() // a node stopping itself: done once that is
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
func (n *Node) System() *actor.ActorSystem { return n.sys }
func (n *Node) Coordinator() *actor.PID    { return n.coordinator }
func (n *Node) Participant() *actor.PID    { return n.participant }
func (n *Node) Persistence() *actor.PID    { return n.persistencePID }
func (n *Node) Bridge() *bridge.Bridge     { return n.bridge }

// Protocol is the commit protocol this node runs.
func (n *Node) Protocol() actors.Protocol   { return n.cfg.Protocol.OrDefault() }
func (n *Node) LogStats() messages.LogStats { return n.wal.Stats() }

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

func (d *addressDirectory) Acceptor(node int32) *actor.PID {
	return actor.NewPID(d.addr(node), actors.AcceptorName)
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
