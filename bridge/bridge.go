package bridge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/rpc"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/go-hclog"
)

// Defaults for the optional Config knobs.
const (
	DefaultQueueLimit  = 100_000
	DefaultBatchLimit  = 8_192
	DefaultCallTimeout = 5 * time.Second
	DefaultDialTimeout = 2 * time.Second
	DefaultRedialMin   = 50 * time.Millisecond
	DefaultRedialMax   = 2 * time.Second
)

// ActorName is the id of the bridge actor on every node.
const ActorName = "bridge"

// Config describes a node's place in the cluster. Only Self and Members
// are required; every other zero field takes its default (WithDefaults),
// and New refuses a config that breaks a rule (Validate).
type Config struct {
	Self    int32
	Members []string     // "host:port" of every node, indexed by node id (Members[Self] is this node)
	Logger  hclog.Logger // used as is (name it, e.g. "bridge", before passing); nil → null logger

	// QueueLimit caps the messages waiting for one peer; beyond it the oldest
	// are dropped, so a dead peer cannot grow memory without bound.
	QueueLimit int
	// BatchLimit caps the messages in one Deliver call, so a long queue drains
	// in several calls that each fit well within CallTimeout.
	BatchLimit int
	// CallTimeout bounds one Deliver call, including writing the request; on
	// expiry the connection is closed, the batch dropped and the peer redialled.
	CallTimeout time.Duration
	// DialTimeout bounds one connection attempt.
	DialTimeout time.Duration
	// RedialMin and RedialMax bound the exponential backoff between
	// connection attempts to an unreachable peer.
	RedialMin time.Duration
	RedialMax time.Duration
	// Limits bound what one inbound connection may make this node hold
	// (limits.go); zero fields take their defaults.
	Limits Limits
	// Backlog, if set, counts the node's roles' queued messages; inbound
	// batches wait while it is over its limit (see Backlog). Nil: no wait.
	Backlog *Backlog
	// PeerTLS, if set, gives the TLS settings to dial each peer with (they
	// must check the server is that node); nil dials plain TCP (insecure).
	PeerTLS func(peer int32) *tls.Config
	// Dial, if set, opens connections to peers instead of TCP (the
	// simulation's in-memory network); DialTimeout and PeerTLS still
	// apply. Nil: TCP.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
}

// WithDefaults returns c with each optional field left at zero set to its
// default (RedialMax: DefaultRedialMax, or RedialMin if that is longer).
// Fields set by the caller are kept as they are, for Validate to judge.
func (c Config) WithDefaults() Config {
	if c.QueueLimit == 0 {
		c.QueueLimit = DefaultQueueLimit
	}
	if c.BatchLimit == 0 {
		c.BatchLimit = DefaultBatchLimit
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = DefaultCallTimeout
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.RedialMin == 0 {
		c.RedialMin = DefaultRedialMin
	}
	if c.RedialMax == 0 {
		c.RedialMax = max(DefaultRedialMax, c.RedialMin)
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	c.Limits = c.Limits.WithDefaults()
	return c
}

// Validate names the first field that breaks its rule. It judges the
// config as given: call it after WithDefaults to allow zero optional fields.
func (c Config) Validate() error {
	if len(c.Members) == 0 {
		return errors.New("bridge: Members: member list is empty")
	}
	if c.Self < 0 || int(c.Self) >= len(c.Members) {
		return fmt.Errorf("bridge: Self: self node id %d is not a member (members are 0-%d)", c.Self, len(c.Members)-1)
	}
	seen := make(map[string]int, len(c.Members))
	for i, addr := range c.Members {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("bridge: Members: member %d address %q: %w", i, addr, err)
		}
		if j, dup := seen[addr]; dup {
			return fmt.Errorf("bridge: Members: members %d and %d share address %q", j, i, addr)
		}
		seen[addr] = i
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"QueueLimit", c.QueueLimit}, {"BatchLimit", c.BatchLimit}} {
		if f.v <= 0 {
			return fmt.Errorf("bridge: %s = %d: must be positive (0 takes the default)", f.name, f.v)
		}
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{{"CallTimeout", c.CallTimeout}, {"DialTimeout", c.DialTimeout}, {"RedialMin", c.RedialMin}, {"RedialMax", c.RedialMax}} {
		if f.v <= 0 {
			return fmt.Errorf("bridge: %s = %v: must be positive (0 takes the default)", f.name, f.v)
		}
	}
	if c.RedialMax < c.RedialMin {
		return fmt.Errorf("bridge: RedialMax = %v is shorter than RedialMin = %v: the backoff must be allowed to grow", c.RedialMax, c.RedialMin)
	}
	if err := c.Limits.Validate(); err != nil {
		return err
	}
	if c.BatchLimit > c.Limits.MaxMsgsPerBatch {
		return fmt.Errorf("bridge: BatchLimit = %d is more than Limits.MaxMsgsPerBatch = %d: peers would refuse full batches", c.BatchLimit, c.Limits.MaxMsgsPerBatch)
	}
	return nil
}

// Stats are the bridge's counters since New.
type Stats struct {
	SentMessages     uint64 // outbound messages a peer accepted
	SentBatches      uint64 // outbound Deliver calls that succeeded
	ReceivedMessages uint64 // inbound messages handed to local actors
	ReceivedBatches  uint64 // inbound batches accepted
	DroppedMessages  uint64 // outbound messages lost: failed calls, full queues, non-member addresses, types not on the wire, after Stop, injected faults and cuts
	DroppedBatches   uint64 // outbound Deliver calls that failed or were refused
	RefusedBatches   uint64 // inbound batches refused (sender not a peer, bridge stopped, link cut or node isolated)
	SkippedMessages  uint64 // inbound messages without a body or a target, or forged (see inbound.go)
	Connects         uint64 // connections opened to peers
}

// Bridge carries actor messages between nodes over net/rpc. Outbound, every
// PID whose address is another member's resolves to a process that hands the
// message to the bridge actor, which batches per peer. Inbound, the "Bridge"
// rpc service hands each message to the local actor it names.
type Bridge struct {
	sys     *actor.ActorSystem
	cfg     Config
	log     hclog.Logger
	self    string           // Members[Self]
	unbound string           // the registry's address before New; PIDs made earlier carry it
	index   map[string]int32 // member address → node id; read-only after New
	pid     *actor.PID

	ctx    context.Context // cancelled by Stop to end dialers
	cancel context.CancelFunc

	// stopMu orders Stop against goroutines that post to the bridge actor, so
	// nothing reaches its mailbox once it may be gone (a dead letter each).
	stopMu  sync.RWMutex
	stopped bool

	clientsMu     sync.Mutex
	clients       map[*rpc.Client]struct{} // every open client, so Stop can close them all
	clientsClosed bool

	wg       sync.WaitGroup // dialer and caller goroutines
	stopOnce sync.Once
	epoch    atomic.Uint64 // bridge actor incarnation; results from an older one are ignored

	sentMsgs, sentBatches       atomic.Uint64
	recvMsgs, recvBatches       atomic.Uint64
	droppedMsgs, droppedBatches atomic.Uint64
	refusedBatches, skippedMsgs atomic.Uint64
	connects                    atomic.Uint64
	unreachable                 []atomic.Bool // by node id: the last dial to it failed (set by its dialer)

	refusals *RefusalLog // inbound refusals, logged at a bounded rate

	cluster uint64 // ClusterID(Members)
	session int64  // this bridge's start; each bridge actor instance adds its epoch (its batches' session)

	// inbound is, per sending node, the newest batch delivered in each of
	// its recent sessions (a restarted peer starts a new one; clocks may
	// step back, so sessions are matched, not compared). The mutex also
	// makes delivering one peer's batches strictly one after another.
	inboundMu sync.Mutex
	inbound   map[int32][]linkPosition
	forged    map[forgedKey]bool // forged-message warnings given (guarded by inboundMu)
	// fromHeader is, per member, the header its inbound messages carry
	// (SenderHeader); impostors limits the log of batches refused for
	// claiming another sender than their connection's certificate.
	fromHeader []map[string]string
	impostors  LogEvery

	// The fault state is the bridge actor's (faults.go); inbound batches
	// see only the cuts it publishes in links.
	links      atomic.Pointer[linkView]   // nil until the first Cut or Isolate
	handover   atomic.Pointer[faultState] // what the last actor instance left
	refusedCut atomic.Uint64              // inbound messages refused by a cut or isolation
}

// sessionsKept bounds how many sessions of one peer are remembered.
const sessionsKept = 4

type linkPosition struct {
	session int64
	seq     uint64
}

// New must be called right after actor.NewActorSystem and before any
// other actor is spawned: PIDs record the registry's address when they are
// made, and only PIDs carrying Members[Self] can be answered from other nodes.
// It sets that address, routes every PID with another node's address through
// the bridge (addresses that are not members are dropped there, with a
// warning), and spawns the bridge actor (named "bridge").
func New(sys *actor.ActorSystem, cfg Config) (*Bridge, error) {
	if sys == nil {
		return nil, errors.New("bridge: actor system is nil")
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	index := make(map[string]int32, len(cfg.Members))
	for i, addr := range cfg.Members {
		index[addr] = int32(i)
	}
	cfg.Members = append([]string(nil), cfg.Members...) // the caller's slice may change later

	b := &Bridge{
		sys:     sys,
		cfg:     cfg,
		log:     cfg.Logger,
		self:    cfg.Members[cfg.Self],
		unbound: sys.ProcessRegistry.Address,
		index:   index,
		clients: make(map[*rpc.Client]struct{}),
		cluster: ClusterID(cfg.Members),
		session: time.Now().UnixNano(),
		inbound: make(map[int32][]linkPosition),

		fromHeader:  senderHeaders(len(cfg.Members)),
		unreachable: make([]atomic.Bool, len(cfg.Members)),
	}
	b.refusals = NewRefusalLog(cfg.Logger, DefaultRefusalInterval)
	b.ctx, b.cancel = context.WithCancel(context.Background())

	sys.ProcessRegistry.Address = b.self
	remote := &remoteProcess{b: b}
	// The registry asks resolvers only about addresses that are not its own,
	// so claiming all of them sends every non-local PID to the bridge, which
	// can then name a non-member address instead of leaving a bare dead letter.
	sys.ProcessRegistry.RegisterAddressResolver(func(*actor.PID) (actor.Process, bool) {
		return remote, true
	})

	pid, err := sys.Root.SpawnNamed(actor.PropsFromProducer(b.newActor), ActorName)
	if err != nil {
		b.cancel()
		return nil, fmt.Errorf("bridge: spawn %q actor: %w", ActorName, err)
	}
	b.pid = pid
	return b, nil
}

// Register adds the inbound "Bridge" service (method Deliver) to srv.
func (b *Bridge) Register(srv *rpc.Server) error {
	if srv == nil {
		return errors.New("bridge: rpc server is nil")
	}
	if err := srv.RegisterName("Bridge", &bridgeService{b: b, peer: unbound}); err != nil {
		return fmt.Errorf("bridge: register rpc service %q: %w", "Bridge", err)
	}
	return nil
}

// RegisterPeer adds the inbound "Bridge" service to srv, bound to one
// peer: srv serves only connections authenticated as that node, and a
// batch claiming any other sender is refused before its messages are
// looked at.
func (b *Bridge) RegisterPeer(srv *rpc.Server, peer int32) error {
	if srv == nil {
		return errors.New("bridge: rpc server is nil")
	}
	if peer < 0 || int(peer) >= len(b.cfg.Members) || peer == b.cfg.Self {
		return fmt.Errorf("bridge: node %d is not a peer (members are 0-%d, this is %d)", peer, len(b.cfg.Members)-1, b.cfg.Self)
	}
	if err := srv.RegisterName("Bridge", &bridgeService{b: b, peer: peer}); err != nil {
		return fmt.Errorf("bridge: register rpc service %q: %w", "Bridge", err)
	}
	return nil
}

// ServerCodec serves net/rpc on an accepted connection with the wire's
// framing and this node's Limits: use it as srv.ServeCodec(b.ServerCodec(c)).
func (b *Bridge) ServerCodec(c io.ReadWriteCloser) rpc.ServerCodec {
	return NewServerCodec(c, b.cfg.Limits, b.refusals)
}

// PeerServerCodec is ServerCodec for a connection whose certificate proves
// it is node peer's: a batch claiming another sender is refused as soon as
// its header is read, before any of its messages is decoded (the bound
// Deliver of RegisterPeer checks again).
func (b *Bridge) PeerServerCodec(c io.ReadWriteCloser, peer int32) rpc.ServerCodec {
	s := NewServerCodec(c, b.cfg.Limits, b.refusals).(*serverCodec)
	s.sender = &peer
	s.impostor = func(e *ImpostorError) error {
		e.Self = b.cfg.Self
		b.refusedBatches.Add(1)
		if ok, missed := b.impostors.Allow(); ok {
			b.log.Warn("refused a batch claiming another sender than the connection's certificate", "certificate", e.Conn, "claimed", e.Claimed, "refusals_not_logged", missed)
		}
		return e
	}
	return s
}

// Limits are the bounds this node enforces on its input.
func (b *Bridge) Limits() Limits { return b.cfg.Limits }

// PID is the bridge actor's PID.
func (b *Bridge) PID() *actor.PID { return b.pid }

// Stop poisons the bridge actor and waits for it, closes every peer
// connection and waits for the dialing and calling goroutines to end.
// Messages still queued are dropped. Safe to call more than once.
func (b *Bridge) Stop() {
	b.stopOnce.Do(func() {
		b.stopMu.Lock()
		b.stopped = true
		b.stopMu.Unlock()
		b.cancel()
		if err := b.sys.Root.PoisonFuture(b.pid).Wait(); err != nil {
			b.log.Warn("bridge actor did not stop in time", "error", err)
		}
		b.closeAllClients()
		b.wg.Wait()
	})
}

// Stats returns the bridge's counters.
func (b *Bridge) Stats() Stats {
	return Stats{
		SentMessages:     b.sentMsgs.Load(),
		SentBatches:      b.sentBatches.Load(),
		ReceivedMessages: b.recvMsgs.Load(),
		ReceivedBatches:  b.recvBatches.Load(),
		DroppedMessages:  b.droppedMsgs.Load(),
		DroppedBatches:   b.droppedBatches.Load(),
		RefusedBatches:   b.refusedBatches.Load(),
		SkippedMessages:  b.skippedMsgs.Load(),
		Connects:         b.connects.Load(),
	}
}

// post hands m to the bridge actor unless Stop has begun.
func (b *Bridge) post(m interface{}) bool {
	b.stopMu.RLock()
	defer b.stopMu.RUnlock()
	if b.stopped {
		return false
	}
	b.sys.Root.Send(b.pid, m)
	return true
}

func (b *Bridge) track(c *rpc.Client) bool {
	b.clientsMu.Lock()
	defer b.clientsMu.Unlock()
	if b.clientsClosed {
		return false
	}
	b.clients[c] = struct{}{}
	return true
}

func (b *Bridge) closeClient(c *rpc.Client) {
	b.clientsMu.Lock()
	delete(b.clients, c)
	b.clientsMu.Unlock()
	_ = c.Close() // ErrShutdown when the connection already failed: nothing to do
}

func (b *Bridge) closeAllClients() {
	b.clientsMu.Lock()
	b.clientsClosed = true
	open := make([]*rpc.Client, 0, len(b.clients))
	for c := range b.clients {
		open = append(open, c)
	}
	clear(b.clients)
	b.clientsMu.Unlock()
	for _, c := range open {
		_ = c.Close()
	}
}

func (b *Bridge) nextDelay(d time.Duration) time.Duration {
	if d <= 0 {
		return b.cfg.RedialMin
	}
	return min(2*d, b.cfg.RedialMax)
}

// dial connects to a peer off the bridge actor, retrying with exponential
// backoff until it succeeds or the bridge stops, then reports the client.
func (b *Bridge) dial(epoch uint64, peer int32, delay time.Duration) {
	addr := b.cfg.Members[peer]
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		failures := 0
		for {
			if delay > 0 {
				t := time.NewTimer(delay)
				select {
				case <-b.ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
			}
			delay = b.nextDelay(delay)
			conn, err := b.dialConn(peer, addr)
			if err != nil {
				if b.ctx.Err() != nil {
					return
				}
				failures++
				b.unreachable[peer].Store(true)
				if failures == 1 {
					b.log.Warn("peer unreachable, redialling with backoff", "peer", peer, "addr", addr, "error", err)
				} else {
					b.log.Debug("redial failed", "peer", peer, "addr", addr, "attempts", failures, "next_in", delay, "error", err)
				}
				continue
			}
			c := rpc.NewClientWithCodec(NewClientCodec(conn, b.cfg.Limits))
			if !b.track(c) {
				_ = c.Close()
				return
			}
			b.connects.Add(1)
			b.unreachable[peer].Store(false)
			if failures > 0 {
				b.log.Info("peer reachable again", "peer", peer, "addr", addr, "failed_attempts", failures)
			} else {
				b.log.Debug("connected to peer", "peer", peer, "addr", addr)
			}
			// If Stop has begun the report is discarded; Stop closes every
			// tracked client, this one included.
			b.post(&dialed{epoch: epoch, peer: peer, client: c, next: delay})
			return
		}
	}()
}

// dialConn opens a connection to peer: TLS when configured, where the
// timeout covers the handshake too, and the server must prove it is peer.
func (b *Bridge) dialConn(peer int32, addr string) (net.Conn, error) {
	if b.cfg.Dial != nil {
		return b.dialWith(peer, addr)
	}
	d := &net.Dialer{Timeout: b.cfg.DialTimeout}
	if b.cfg.PeerTLS == nil {
		return d.DialContext(b.ctx, "tcp", addr)
	}
	td := &tls.Dialer{NetDialer: d, Config: b.cfg.PeerTLS(peer)}
	return td.DialContext(b.ctx, "tcp", addr)
}

// dialWith is dialConn through Config.Dial.
func (b *Bridge) dialWith(peer int32, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(b.ctx, b.cfg.DialTimeout)
	defer cancel()
	conn, err := b.cfg.Dial(ctx, addr)
	if err != nil || b.cfg.PeerTLS == nil {
		return conn, err
	}
	tc := tls.Client(conn, b.cfg.PeerTLS(peer))
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return tc, nil
}

// call sends one batch off the bridge actor and reports how it went.
func (b *Bridge) call(epoch uint64, peer int32, c *rpc.Client, batch *Batch) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		// The deadline starts before Go because Go encodes and writes the
		// request on this goroutine, and a peer that stops reading blocks that
		// write; closing the client unblocks both the write and the wait.
		timer := time.AfterFunc(b.cfg.CallTimeout, func() { _ = c.Close() })
		var ack Ack
		call := c.Go("Bridge.Deliver", batch, &ack, make(chan *rpc.Call, 1))
		<-call.Done
		expired := !timer.Stop()
		err := call.Error
		if expired && err != nil {
			err = fmt.Errorf("no answer within %v: %w", b.cfg.CallTimeout, err)
		}
		d := &delivered{epoch: epoch, peer: peer, msgs: len(batch.Msgs), err: err, closed: expired}
		if !expired && errors.Is(err, rpc.ErrShutdown) {
			d.unsent = batch.Msgs
		}
		b.post(d)
	}()
}

// remoteProcess stands for every actor on other nodes; it runs on the
// sender's goroutine, so it only hands the message to the bridge actor.
type remoteProcess struct{ b *Bridge }

func (r *remoteProcess) SendUserMessage(pid *actor.PID, message interface{}) {
	_, msg, sender := actor.UnwrapEnvelope(message)
	if !r.b.post(&outbound{to: pid, msg: msg, sender: sender}) {
		r.b.droppedMsgs.Add(1)
	}
}

// System messages (Watch, Stop, ...) are not bridged: remote liveness is the
// protocol's business (timeouts, retries), not the actor runtime's.
func (r *remoteProcess) SendSystemMessage(pid *actor.PID, message interface{}) {
	r.b.log.Debug("system message to remote actor not bridged", "to", pid, "type", reflect.TypeOf(message))
}

func (r *remoteProcess) Stop(pid *actor.PID) {
	r.b.log.Debug("stop of remote actor not bridged", "to", pid)
}

// Messages the bridge actor receives.
type (
	outbound struct {
		to     *actor.PID
		msg    interface{}
		sender *actor.PID
	}
	dialed struct {
		epoch  uint64
		peer   int32
		client *rpc.Client
		next   time.Duration // backoff before the next dial, should this connection fail
	}
	delivered struct {
		epoch  uint64
		peer   int32
		msgs   int
		err    error
		closed bool // the deadline closed the client, even if the call got through
		// unsent is the batch when the client was already shut down (its
		// connection broke earlier, e.g. the peer restarted): net/rpc then
		// fails the call without writing it, so it is safe to send again.
		unsent []Msg
	}
)

// peerLink is the bridge actor's view of one peer.
type peerLink struct {
	id         int32
	addr       string
	queue      []Msg
	client     *rpc.Client
	dialing    bool
	inFlight   bool
	retryDelay time.Duration
	overflow   uint64 // oldest messages dropped from a full queue since last reported
	seq        uint64 // batches sent to this peer, for Batch.Seq
}

// At most this many distinct bad addresses and types are warned about; the
// rest go to the debug log, so a misbehaving sender cannot grow these sets.
const maxWarned = 64

type bridgeActor struct {
	b     *Bridge
	epoch uint64
	// session names this instance's batches: its sequence numbers start
	// again at 1, so a restarted bridge actor must not look like the same
	// session (its batches would be refused as late).
	session     int64
	peers       []*peerLink // by node id; nil at Self
	warnedAddrs map[string]bool
	warnedTypes map[reflect.Type]bool
	fx          actorFaults // the fault state this actor works with (faults.go)
	scratch     Encoder     // measures messages for fitting
}

func (b *Bridge) newActor() actor.Actor {
	a := &bridgeActor{
		b:           b,
		epoch:       b.epoch.Add(1),
		peers:       make([]*peerLink, len(b.cfg.Members)),
		warnedAddrs: make(map[string]bool),
		warnedTypes: make(map[reflect.Type]bool),
	}
	a.session = b.session + int64(a.epoch)
	for i, addr := range b.cfg.Members {
		if int32(i) != b.cfg.Self {
			a.peers[i] = &peerLink{id: int32(i), addr: addr}
		}
	}
	a.takeOver(b.handover.Load())
	return a
}

func (a *bridgeActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *outbound:
		a.enqueue(m)
	case *dialed:
		a.onDialed(m)
	case *delivered:
		a.onDelivered(m)
	case *faultControl:
		ctx.Respond(a.onControl(m))
	case *peersRequest:
		ctx.Respond(a.peerStates())
	case *delayedMsg:
		a.onDelayed(m)
	case *actor.Stopping, *actor.Restarting:
		a.release()
	}
}

// enqueue is the single path every outbound message takes to its peer's
// queue, so faults (drop, delay, duplicate, reorder, cuts) are injected here.
func (a *bridgeActor) enqueue(o *outbound) {
	b := a.b
	id, member := b.index[o.to.Address]
	if !member || id == b.cfg.Self {
		b.droppedMsgs.Add(1)
		a.warnAddress(o.to)
		return
	}
	if !wireable(o.msg) {
		b.droppedMsgs.Add(1)
		a.warnType(o.to, o.msg)
		return
	}
	w := Msg{To: o.to.Id, Body: o.msg}
	if s := o.sender; s != nil {
		w.SenderAddr, w.SenderID = s.Address, s.Id
		if w.SenderAddr == b.unbound { // spawned before New: answerable only here
			w.SenderAddr = b.self
		}
	}
	p := a.peers[id]
	if a.injecting() {
		a.inject(p, w)
		return
	}
	a.push(p, w)
	a.flush(p)
}

// push appends w to p's queue, dropping the oldest message when it is full.
func (a *bridgeActor) push(p *peerLink, w Msg) {
	b := a.b
	if len(p.queue) >= b.cfg.QueueLimit {
		p.queue[0] = Msg{} // let the body be collected
		p.queue = p.queue[1:]
		p.overflow++
		b.droppedMsgs.Add(1)
		if p.overflow == 1 {
			b.log.Warn("peer queue full, dropping oldest messages", "peer", p.id, "addr", p.addr, "limit", b.cfg.QueueLimit)
		}
	}
	p.queue = append(p.queue, w)
}

// flush starts the next Deliver call to p if none is in flight: one call at a
// time per peer, because net/rpc serves each call on its own goroutine and two
// in flight could overtake each other.
func (a *bridgeActor) flush(p *peerLink) {
	if p.inFlight || len(p.queue) == 0 || a.linkDown(p) {
		return
	}
	if p.client == nil {
		a.dial(p)
		return
	}
	n := a.fitting(p)
	if n == 0 {
		return // the queue held only messages too large for any frame
	}
	var msgs []Msg
	if len(p.queue) > n {
		msgs = append(make([]Msg, 0, n), p.queue[:n]...)
		clear(p.queue[:n])
		p.queue = p.queue[n:]
	} else {
		// The call goroutine owns the batch from here on; the next message
		// starts a fresh queue.
		msgs, p.queue = p.queue, nil
	}
	if p.overflow > 0 {
		a.b.log.Warn("dropped oldest messages while peer queue was full", "peer", p.id, "addr", p.addr, "dropped", p.overflow)
		p.overflow = 0
	}
	p.inFlight = true
	p.seq++
	a.b.call(a.epoch, p.id, p.client, &Batch{
		Cluster: a.b.cluster, From: a.b.cfg.Self, FromAddr: a.b.self, To: p.id,
		Session: a.session, Seq: p.seq, Msgs: msgs,
	})
}

// batchOverhead bounds a Deliver request's frame around its messages:
// the request header and the batch's fixed fields (FromAddr is added).
const batchOverhead = 128

// fitting is how many messages from the front of p's queue make one batch
// the peer accepts: at most BatchLimit, and all of them within MaxFrame
// once encoded. A message too large for any frame is dropped here, with a
// warning, rather than make the peer close the connection.
func (a *bridgeActor) fitting(p *peerLink) int {
	b := a.b
	room := b.cfg.Limits.MaxFrame - batchOverhead - len(b.self)
	n, size := 0, 0
	for n < len(p.queue) && n < b.cfg.BatchLimit {
		a.scratch.buf = a.scratch.buf[:0]
		encodeMsg(&a.scratch, &p.queue[n])
		m := len(a.scratch.buf)
		if m > room {
			b.droppedMsgs.Add(1)
			b.log.Warn("dropping a message larger than a frame may be", "peer", p.id, "type", fmt.Sprintf("%T", p.queue[n].Body), "bytes", m, "max_frame", b.cfg.Limits.MaxFrame)
			p.queue = append(p.queue[:n], p.queue[n+1:]...)
			continue
		}
		if size+m > room {
			break
		}
		size += m
		n++
	}
	if cap(a.scratch.buf) > keepBuffer {
		a.scratch.buf = nil
	}
	return n
}

func (a *bridgeActor) dial(p *peerLink) {
	if p.dialing || a.linkDown(p) {
		return // a cut (or isolated) link dials again once healed and used
	}
	p.dialing = true
	a.b.dial(a.epoch, p.id, p.retryDelay)
}

func (a *bridgeActor) onDialed(m *dialed) {
	if m.epoch != a.epoch { // dialled for an instance that has since restarted
		a.b.closeClient(m.client)
		return
	}
	p := a.peers[m.peer]
	p.dialing = false
	p.client = m.client
	p.retryDelay = m.next
	a.flush(p)
}

func (a *bridgeActor) onDelivered(m *delivered) {
	if m.epoch != a.epoch {
		return
	}
	b := a.b
	p := a.peers[m.peer]
	p.inFlight = false
	var refused rpc.ServerError
	switch {
	case m.unsent != nil:
		// Never written: put it back in front and send it on a new connection.
		b.log.Debug("connection to peer was closed, resending on a new one", "peer", p.id, "addr", p.addr, "msgs", len(m.unsent))
		p.queue = append(m.unsent, p.queue...)
		m.closed = true
	case m.err == nil:
		b.sentMsgs.Add(uint64(m.msgs))
		b.sentBatches.Add(1)
		p.retryDelay = 0
	case errors.As(m.err, &refused):
		// The peer answered, so the connection is sound; only this batch is lost.
		b.droppedMsgs.Add(uint64(m.msgs))
		b.droppedBatches.Add(1)
		// The peer's error text is its own: quoted, cut short and rate-limited.
		b.refusals.refuse("peer-refused-batch", "peer refused batch", "peer", p.id, "addr", p.addr, "dropped", m.msgs, "error", sanitizeN(m.err.Error(), 256))
	default:
		// Lost messages are the protocol's to recover (timeouts, retries);
		// the bridge only has to get the connection back.
		b.droppedMsgs.Add(uint64(m.msgs))
		b.droppedBatches.Add(1)
		b.log.Warn("call to peer failed, batch dropped", "peer", p.id, "addr", p.addr, "dropped", m.msgs, "error", m.err)
		m.closed = true
	}
	if m.closed && p.client != nil {
		b.closeClient(p.client)
		p.client = nil
		a.dial(p)
	}
	a.flush(p)
}

// release closes this instance's connections; queued messages are lost.
func (a *bridgeActor) release() {
	a.releaseFaults()
	for _, p := range a.peers {
		if p == nil {
			continue
		}
		if p.client != nil {
			a.b.closeClient(p.client)
			p.client = nil
		}
		if len(p.queue) > 0 {
			a.b.droppedMsgs.Add(uint64(len(p.queue)))
			a.b.log.Debug("dropping queued messages on stop", "peer", p.id, "addr", p.addr, "dropped", len(p.queue))
			p.queue = nil
		}
	}
}

func (a *bridgeActor) warnAddress(to *actor.PID) {
	if a.warnedAddrs[to.Address] || len(a.warnedAddrs) >= maxWarned {
		a.b.log.Debug("dropped message to non-member address", "addr", to.Address, "to", to.Id)
		return
	}
	a.warnedAddrs[to.Address] = true
	a.b.log.Warn("dropping messages to an address that is not a cluster member", "addr", to.Address, "to", to.Id, "members", a.b.cfg.Members)
}

func (a *bridgeActor) warnType(to *actor.PID, msg interface{}) {
	t := reflect.TypeOf(msg)
	if a.warnedTypes[t] || len(a.warnedTypes) >= maxWarned {
		a.b.log.Debug("dropped message of a type not carried on the wire", "type", t, "to", to)
		return
	}
	a.warnedTypes[t] = true
	if msg != nil && wireTypes[t] {
		a.b.log.Warn("dropping nil messages (no receiver could act on one)", "type", t, "to", to)
		return
	}
	a.b.log.Warn("dropping messages of a type not carried on the wire (add it to wireMessages in bridge/wire.go)", "type", t, "to", to)
}
