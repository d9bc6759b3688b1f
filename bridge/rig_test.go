package bridge

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/rpc"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/go-hclog"

	"twopc/actors/actortest"
	"twopc/messages"
)

// Every test must leave nothing running: bridges, connections and timers are stopped by their owners.
func TestMain(m *testing.M) { actortest.VerifyNoLeaks(m) }

// quietActors keeps the actor systems' own chatter out of the test output.
var quietActors = actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(slog.DiscardHandler) })

// connServer serves connections (a test node's rpc server, a mute peer)
// and, unlike rpc.Server.Accept, keeps the connections it accepted, so stop can close
// them and wait can wait for their goroutines (as a node does).
type connServer struct {
	ln     net.Listener
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func serveConns(ln net.Listener, handle func(net.Conn)) *connServer {
	s := &connServer{ln: ln, conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			if s.closed {
				s.mu.Unlock()
				c.Close()
				return
			}
			s.conns[c] = struct{}{}
			s.wg.Add(1)
			s.mu.Unlock()
			go func() {
				defer s.wg.Done()
				handle(c)
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			}()
		}
	}()
	return s
}

func (s *connServer) stop() {
	s.ln.Close()
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
}

func (s *connServer) wait() { s.wg.Wait() }

// --- harness ---------------------------------------------------------------

// testNode is one node of a loopback cluster: an actor system, its bridge and
// an rpc server on a listener the test owns.
type testNode struct {
	id     int32
	addr   string
	sys    *actor.ActorSystem
	bridge *Bridge
	ln     net.Listener
	srv    *rpc.Server

	server *connServer
}

// tbWriter sends the bridge's warnings to the test log, shown on failure or -v.
type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func listenLoopback(tb testing.TB) net.Listener {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen on a free loopback port: %v", err)
	}
	return ln
}

// reserveAddr returns a loopback address nothing listens on (yet).
func reserveAddr(tb testing.TB) string {
	ln := listenLoopback(tb)
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// startNode brings up node self of members on ln; tune may adjust the config,
// and ready may spawn actors before the node accepts connections.
func startNode(tb testing.TB, self int32, members []string, ln net.Listener, tune func(*Config), ready func(*testNode)) *testNode {
	tb.Helper()
	sys := actor.NewActorSystem(quietActors)
	cfg := Config{
		Self:    self,
		Members: members,
		Logger:  hclog.New(&hclog.LoggerOptions{Name: fmt.Sprintf("node%d.bridge", self), Level: hclog.Warn, Output: tbWriter{tb}}),
	}
	if tune != nil {
		tune(&cfg)
	}
	b, err := New(sys, cfg)
	if err != nil {
		tb.Fatalf("node %d: %v", self, err)
	}
	srv := rpc.NewServer()
	if err := b.Register(srv); err != nil {
		tb.Fatalf("node %d: %v", self, err)
	}
	n := &testNode{id: self, addr: members[self], sys: sys, bridge: b, ln: ln, srv: srv}
	if ready != nil {
		ready(n)
	}
	n.server = serveConns(ln, func(c net.Conn) { srv.ServeCodec(b.ServerCodec(c)) })
	tb.Cleanup(n.close)
	return n
}

func (n *testNode) close() {
	n.server.stop()
	n.bridge.Stop()
	n.server.wait()
}

// sendVotes has an actor on sys send votes 1..n to target, one after
// another from one sender, so that their order is the order sent.
func sendVotes(t *testing.T, sys *actor.ActorSystem, target *actor.PID, n uint64) {
	t.Helper()
	type start struct{}
	sender := spawnNamed(t, sys, "sender", func(ctx actor.Context) {
		if _, ok := ctx.Message().(*start); ok {
			for i := uint64(1); i <= n; i++ {
				ctx.Send(target, vote(i))
			}
		}
	})
	sys.Root.Send(sender, &start{})
}

// startCluster starts n nodes on free loopback ports.
func startCluster(tb testing.TB, n int) []*testNode {
	tb.Helper()
	lns := make([]net.Listener, n)
	members := make([]string, n)
	for i := range lns {
		lns[i] = listenLoopback(tb)
		members[i] = lns[i].Addr().String()
	}
	nodes := make([]*testNode, n)
	for i := range nodes {
		nodes[i] = startNode(tb, int32(i), members, lns[i], nil, nil)
	}
	return nodes
}

type envelope struct {
	msg    interface{}
	sender *actor.PID
}

// spawnProbe spawns an actor named name that forwards every message and its
// sender to the returned channel.
func spawnProbe(tb testing.TB, sys *actor.ActorSystem, name string, capacity int) <-chan envelope {
	tb.Helper()
	ch := make(chan envelope, capacity)
	pid, err := sys.Root.SpawnNamed(actor.PropsFromFunc(func(ctx actor.Context) {
		switch ctx.Message().(type) {
		case *actor.Started, *actor.Stopping, *actor.Stopped, *actor.Restarting:
			return
		}
		select {
		case ch <- envelope{msg: ctx.Message(), sender: ctx.Sender()}:
		default: // never block the mailbox; the test sees the gap
		}
	}), name)
	if err != nil {
		tb.Fatalf("spawn probe %q: %v", name, err)
	}
	tb.Cleanup(func() { _ = sys.Root.StopFuture(pid).Wait() })
	return ch
}

func spawnNamed(tb testing.TB, sys *actor.ActorSystem, name string, f actor.ReceiveFunc) *actor.PID {
	tb.Helper()
	pid, err := sys.Root.SpawnNamed(actor.PropsFromFunc(f), name)
	if err != nil {
		tb.Fatalf("spawn %q: %v", name, err)
	}
	tb.Cleanup(func() { _ = sys.Root.StopFuture(pid).Wait() })
	return pid
}

func receive(tb testing.TB, ch <-chan envelope, what string) envelope {
	tb.Helper()
	select {
	case e := <-ch:
		return e
	case <-time.After(30 * time.Second):
		tb.Fatalf("timed out waiting for %s", what)
	}
	return envelope{}
}

func vote(seq uint64) *messages.Vote {
	return &messages.Vote{Tx: messages.TxID{Node: 0, Incarnation: 1, Seq: seq}, Kind: messages.VoteYes}
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	actortest.Eventually(tb, 20*time.Second, func() string {
		if cond() {
			return ""
		}
		return what
	})
}

// checkNoLeaks must be called before the nodes start: its cleanup runs after
// theirs and fails the test if bridge or net/rpc goroutines outlive them.
func checkNoLeaks(tb testing.TB) {
	count := func() (int, string) {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		n := 0
		var leaked []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "net/rpc.") || strings.Contains(g, "twopc/bridge.(*Bridge)") ||
				strings.Contains(g, "twopc/bridge.(*testNode)") {
				n++
				leaked = append(leaked, g)
			}
		}
		return n, strings.Join(leaked, "\n\n")
	}
	before, _ := count()
	tb.Cleanup(func() {
		actortest.Eventually(tb, 5*time.Second, func() string {
			if n, stacks := count(); n > before {
				return fmt.Sprintf("%d goroutines left running after cleanup:\n%s", n-before, stacks)
			}
			return ""
		})
	})
}

// faultSendVotes sends votes first..first+n-1 to target from the test
// goroutine: the root context hands each to the bridge before returning, so
// they reach the bridge in the order sent.
func faultSendVotes(sys *actor.ActorSystem, target *actor.PID, from int32, first, n uint64) {
	for i := first; i < first+n; i++ {
		v := vote(i)
		v.From = from
		sys.Root.Send(target, v)
	}
}

// faultExpectNothing fails if anything arrives on ch within d: the only way
// to see that a message is never delivered.
func faultExpectNothing(t *testing.T, ch <-chan envelope, d time.Duration, what string) {
	t.Helper()
	select {
	case e := <-ch:
		t.Fatalf("%s: got %#v", what, e.msg)
	case <-time.After(d):
	}
}

// faultReceiveSeqs receives n votes and returns their sequence numbers in
// the order they arrived.
func faultReceiveSeqs(t *testing.T, ch <-chan envelope, n int) []uint64 {
	t.Helper()
	seqs := make([]uint64, 0, n)
	for len(seqs) < n {
		e := receive(t, ch, fmt.Sprintf("message %d of %d", len(seqs)+1, n))
		v, ok := e.msg.(*messages.Vote)
		if !ok {
			t.Fatalf("got %T, want *messages.Vote", e.msg)
		}
		seqs = append(seqs, v.Tx.Seq)
	}
	return seqs
}

// faultCheckPermutation fails unless seqs holds 1..len(seqs) once each.
func faultCheckPermutation(t *testing.T, seqs []uint64) {
	t.Helper()
	sorted := slices.Clone(seqs)
	slices.Sort(sorted)
	for i, s := range sorted {
		if s != uint64(i+1) {
			t.Fatalf("arrived %v...: seq %d missing or duplicated (none may be lost or repeated)", sorted[:min(len(sorted), 20)], i+1)
		}
	}
}

// holdProxy forwards TCP connections to target, except the first one: it
// reads everything the client writes on it and forwards those bytes only
// when release is closed. It stands for a network path or a stalled server
// that delays one connection's bytes past the client's call deadline.
type holdProxy struct {
	ln      net.Listener
	target  string
	release chan struct{}
	held    chan struct{} // closed once the first connection's client has closed it
	done    chan struct{}

	mu       sync.Mutex
	conns    []net.Conn
	accepted int
	closed   bool
	wg       sync.WaitGroup
}

func startHoldProxy(tb testing.TB, target string) *holdProxy {
	p := &holdProxy{ln: listenLoopback(tb), target: target,
		release: make(chan struct{}), held: make(chan struct{}), done: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(p.close)
	return p
}

func (p *holdProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns = append(p.conns, c)
	return true
}

func (p *holdProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			return
		}
		p.mu.Lock()
		p.accepted++
		first := p.accepted == 1
		p.wg.Add(1)
		p.mu.Unlock()
		go p.handle(c, first)
	}
}

func (p *holdProxy) handle(c net.Conn, first bool) {
	defer p.wg.Done()
	if first {
		data, _ := io.ReadAll(c) // until the client gives up and closes
		close(p.held)
		select {
		case <-p.release:
		case <-p.done:
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil || !p.track(up) {
			return
		}
		_, _ = up.Write(data)
		_, _ = io.Copy(io.Discard, up)
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil || !p.track(up) {
		c.Close()
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		_, _ = io.Copy(up, c)
		up.Close()
	}()
	_, _ = io.Copy(c, up)
	c.Close()
}

func (p *holdProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.mu.Unlock()
	close(p.done)
	for _, c := range conns {
		c.Close()
	}
	p.wg.Wait()
}

// rpcClientInputs counts net/rpc client reader goroutines.
func rpcClientInputs() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "net/rpc.(*Client).input")
}

// drainAfter drops the first n envelopes already in ch and returns it.
func drainAfter(ch <-chan envelope, n int) <-chan envelope {
	for range n {
		<-ch
	}
	return ch
}

// poke asks a pinger for a pong with the same seq.
type poke struct{ seq uint64 }
type pong struct{ seq uint64 }

// spawnPinger spawns an actor that, for each poke, sends a vote to target and
// answers the poke: if the remote send blocked, pokes would time out.
func spawnPinger(tb testing.TB, sys *actor.ActorSystem, target *actor.PID) *actor.PID {
	return spawnNamed(tb, sys, "pinger", func(ctx actor.Context) {
		if m, ok := ctx.Message().(*poke); ok {
			ctx.Send(target, vote(m.seq))
			ctx.Respond(&pong{seq: m.seq})
		}
	})
}

func pokeOnce(tb testing.TB, sys *actor.ActorSystem, pinger *actor.PID, seq uint64) {
	tb.Helper()
	res, err := sys.Root.RequestFuture(pinger, &poke{seq: seq}, 5*time.Second).Result()
	if err != nil {
		tb.Fatalf("poke %d: %v (a remote send blocked the sending actor?)", seq, err)
	}
	if p, ok := res.(*pong); !ok || p.seq != seq {
		tb.Fatalf("poke %d: got %#v", seq, res)
	}
}

// mutePeer is a peer that accepts connections and reads everything sent
// to it, but never answers. accepts counts the connections it took, read
// the bytes it got.
type mutePeer struct {
	addr    string
	accepts atomic.Int64
	read    atomic.Int64
}

func startMutePeer(t *testing.T) *mutePeer {
	t.Helper()
	ln := listenLoopback(t)
	p := &mutePeer{addr: ln.Addr().String()}
	srv := serveConns(ln, func(c net.Conn) {
		p.accepts.Add(1)
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			p.read.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	t.Cleanup(func() { srv.stop(); srv.wait() })
	return p
}

// connectedPair starts two nodes with a recorder each, and checks that the
// link works both ways (so both are connected) before the test cuts it.
func connectedPair(t *testing.T) (a, b *testNode, gotA, gotB <-chan envelope, toA, toB *actor.PID) {
	t.Helper()
	nodes := startCluster(t, 2)
	a, b = nodes[0], nodes[1]
	gotA = spawnProbe(t, a.sys, "recorder", 64)
	gotB = spawnProbe(t, b.sys, "recorder", 64)
	toA, toB = actor.NewPID(a.addr, "recorder"), actor.NewPID(b.addr, "recorder")
	faultSendVotes(a.sys, toB, 0, 1, 1)
	faultSendVotes(b.sys, toA, 1, 1, 1)
	faultReceiveSeqs(t, gotB, 1)
	faultReceiveSeqs(t, gotA, 1)
	return a, b, gotA, gotB, toA, toB
}

// newBufferLogger logs at level into a buffer the test can read.
func newBufferLogger(level hclog.Level) (hclog.Logger, *actortest.Buffer) {
	buf := &actortest.Buffer{}
	return hclog.New(&hclog.LoggerOptions{Name: "test", Level: level, Output: buf}), buf
}

// dialCodec connects to a node as a peer or client does: net/rpc over the
// wire's codec with the default limits.
func dialCodec(addr string) (*rpc.Client, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return rpc.NewClientWithCodec(NewClientCodec(conn, Limits{})), nil
}
