package cluster

import (
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"twopc/messages"
)

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

// TestReview3TimedOutBatchOvertakenByNextOne: after a call deadline the
// bridge counts the batch as dropped, closes the connection and sends the
// next batch on a new one. But the timed-out request may already sit in the
// network or in the peer's receive buffer; net/rpc serves each connection on
// its own goroutine, so the old batch can arrive after the new one. Batches
// carry a session and sequence number, so the receiver refuses the late one:
// a loss, which the protocol recovers from, instead of a reordering.
func TestReview3TimedOutBatchOvertakenByNextOne(t *testing.T) {

	checkNoLeaks(t)
	lnA, lnB := listenLoopback(t), listenLoopback(t)
	proxy := startHoldProxy(t, lnB.Addr().String())
	members := []string{lnA.Addr().String(), proxy.ln.Addr().String()} // node 1 is reached through the proxy
	var got <-chan envelope
	startNode(t, 1, members, lnB, nil, func(n *testNode) { got = spawnProbe(t, n.sys, "recorder", 16) })
	a := startNode(t, 0, members, lnA, func(c *BridgeConfig) { c.CallTimeout = 300 * time.Millisecond }, nil)
	pinger := spawnPinger(t, a.sys, actor.NewPID(members[1], "recorder"))

	pokeOnce(t, a.sys, pinger, 1)
	waitFor(t, "the first call to time out", func() bool { return a.bridge.Stats().DroppedBatches == 1 })
	<-proxy.held
	pokeOnce(t, a.sys, pinger, 2)
	first := receive(t, got, "the first message to arrive").msg.(*messages.Vote).Tx.Seq
	close(proxy.release) // the delayed bytes of the first call reach the peer
	if first == 2 {
		select {
		case e := <-got:
			t.Fatalf("vote %d arrived after vote 2 although it was sent first (and the sender counted it dropped: %+v)",
				e.msg.(*messages.Vote).Tx.Seq, a.bridge.Stats())
		case <-time.After(5 * time.Second):
		}
	}
}

// TestReview3BatchFromAnotherClusterRefused: a node of another cluster (a
// stale process, a second cluster whose member list overlaps after a port
// was reused) that calls itself node 0 must be refused: batches carry the
// cluster's id, the sender's address and the receiver's id.
func TestReview3BatchFromAnotherClusterRefused(t *testing.T) {

	checkNoLeaks(t)
	nodes := startCluster(t, 2)
	got := spawnProbe(t, nodes[1].sys, "recorder", 4)
	lnX := listenLoopback(t)
	x := startNode(t, 0, []string{lnX.Addr().String(), nodes[1].addr}, lnX, nil, nil)
	x.sys.Root.Send(actor.NewPID(nodes[1].addr, "recorder"), vote(1))
	waitFor(t, "the stray batch to be answered", func() bool {
		st := x.bridge.Stats()
		return st.SentBatches+st.DroppedBatches > 0
	})
	if st := nodes[1].bridge.Stats(); st.ReceivedMessages != 0 || st.RefusedBatches != 1 {
		e := receive(t, got, "the stray message")
		t.Fatalf("node 1 accepted %#v from %s, which is not in its cluster %v; stats %+v",
			e.msg, lnX.Addr(), []string{nodes[0].addr, nodes[1].addr}, st)
	}
}

// rpcClientInputs counts net/rpc client reader goroutines.
func rpcClientInputs() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "net/rpc.(*Client).input")
}

// TestReview3ResendOnDeadConnection pins the one resend the bridge does: a
// connection the peer closed while idle fails the next call with
// rpc.ErrShutdown before anything is written, and that batch goes out again,
// once, on a new connection.
func TestReview3ResendOnDeadConnection(t *testing.T) {
	checkNoLeaks(t)
	lnA, lnB := listenLoopback(t), listenLoopback(t)
	addrB := lnB.Addr().String()
	members := []string{lnA.Addr().String(), addrB}
	a := startNode(t, 0, members, lnA, nil, nil)
	var got1 <-chan envelope
	b1 := startNode(t, 1, members, lnB, nil, func(n *testNode) { got1 = spawnProbe(t, n.sys, "recorder", 4) })
	pinger := spawnPinger(t, a.sys, actor.NewPID(addrB, "recorder"))
	pokeOnce(t, a.sys, pinger, 1)
	receive(t, got1, "vote 1")
	waitFor(t, "vote 1 counted sent", func() bool { return a.bridge.Stats().SentBatches == 1 })

	b1.close()
	waitFor(t, "node 0's rpc client to see the connection closed", func() bool { return rpcClientInputs() == 0 })
	lnB2, err := net.Listen("tcp", addrB)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addrB, err)
	}
	var got2 <-chan envelope
	b2 := startNode(t, 1, members, lnB2, nil, func(n *testNode) { got2 = spawnProbe(t, n.sys, "recorder", 4) })

	pokeOnce(t, a.sys, pinger, 2)
	if s := receive(t, got2, "vote 2").msg.(*messages.Vote).Tx.Seq; s != 2 {
		t.Fatalf("got vote %d, want 2", s)
	}
	waitFor(t, "vote 2 counted sent", func() bool { return a.bridge.Stats().SentMessages == 2 })
	if st := a.bridge.Stats(); st.DroppedMessages != 0 || st.DroppedBatches != 0 || st.Connects != 2 {
		t.Fatalf("sender stats %+v: want nothing dropped and two connections", st)
	}
	if st := b2.bridge.Stats(); st.ReceivedMessages != 1 {
		t.Fatalf("receiver got %d messages, want 1 (no duplicate)", st.ReceivedMessages)
	}
	select {
	case e := <-got2:
		t.Fatalf("extra message %#v", e.msg)
	case <-time.After(100 * time.Millisecond):
	}
}

// TestReview3SmallBatchLimitKeepsOrder pins that a queue drained in many
// BatchLimit-sized calls still arrives in order, each message once.
func TestReview3SmallBatchLimitKeepsOrder(t *testing.T) {
	checkNoLeaks(t)
	lnA, lnB := listenLoopback(t), listenLoopback(t)
	members := []string{lnA.Addr().String(), lnB.Addr().String()}
	a := startNode(t, 0, members, lnA, func(c *BridgeConfig) { c.BatchLimit = 3 }, nil)
	var got <-chan envelope
	startNode(t, 1, members, lnB, nil, func(n *testNode) { got = spawnProbe(t, n.sys, "recorder", 1000) })
	target := actor.NewPID(members[1], "recorder")
	const n = 300
	sendVotes(t, a.sys, target, n)
	for i := uint64(1); i <= n; i++ {
		if s := receive(t, got, fmt.Sprintf("vote %d", i)).msg.(*messages.Vote).Tx.Seq; s != i {
			t.Fatalf("got vote %d, want %d", s, i)
		}
	}
	waitFor(t, "all counted sent", func() bool { return a.bridge.Stats().SentMessages == n })
	if st := a.bridge.Stats(); st.SentBatches < n/3 {
		t.Fatalf("stats %+v: %d batches for %d messages with a limit of 3", st, st.SentBatches, n)
	}
}

// TestReview3StopWithCallInFlight pins that Stop does not wait for a call
// to a peer that never answers (its deadline far away): closing the client
// ends the call, and no goroutine is left.
func TestReview3StopWithCallInFlight(t *testing.T) {
	checkNoLeaks(t)
	mute := startMutePeer(t)
	lnA := listenLoopback(t)
	members := []string{lnA.Addr().String(), mute.addr}
	a := startNode(t, 0, members, lnA, func(c *BridgeConfig) { c.CallTimeout = time.Hour }, nil)
	a.sys.Root.Send(actor.NewPID(members[1], "x"), vote(1))
	waitFor(t, "the request to reach the mute peer", func() bool { return mute.read.Load() > 0 })

	stopped := make(chan struct{})
	go func() {
		a.bridge.Stop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("Stop is stuck behind a call in flight")
	}
	a.sys.Root.Send(actor.NewPID(members[1], "x"), vote(2))
	if st := a.bridge.Stats(); st.SentMessages != 0 || st.DroppedMessages < 1 {
		t.Fatalf("stats %+v", st)
	}
}
