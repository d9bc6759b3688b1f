package cluster

import (
	"errors"
	"fmt"
	"net"
	"net/rpc"
	"runtime"
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
func startNode(tb testing.TB, self int32, members []string, ln net.Listener, tune func(*BridgeConfig), ready func(*testNode)) *testNode {
	tb.Helper()
	sys := actor.NewActorSystem(ActorSystemLogging(hclog.NewNullLogger()))
	cfg := BridgeConfig{
		Self:    self,
		Members: members,
		Logger:  hclog.New(&hclog.LoggerOptions{Name: fmt.Sprintf("node%d.bridge", self), Level: hclog.Warn, Output: tbWriter{tb}}),
	}
	if tune != nil {
		tune(&cfg)
	}
	b, err := NewBridge(sys, cfg)
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
	n.server = serveConns(ln, func(c net.Conn) { srv.ServeConn(c) })
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
			if strings.Contains(g, "net/rpc.") || strings.Contains(g, "twopc/cluster.(*Bridge)") ||
				strings.Contains(g, "twopc/cluster.(*testNode)") {
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

// --- tests -----------------------------------------------------------------

func TestNewBridgeRejectsBadConfig(t *testing.T) {
	cases := []struct {
		name string
		cfg  BridgeConfig
		want string
	}{
		{"no members", BridgeConfig{}, "member list is empty"},
		{"self out of range", BridgeConfig{Self: 2, Members: []string{"127.0.0.1:1", "127.0.0.1:2"}}, "self node id 2"},
		{"bad address", BridgeConfig{Members: []string{"127.0.0.1:1", "nohostport"}}, `member 1 address "nohostport"`},
		{"duplicate", BridgeConfig{Members: []string{"127.0.0.1:1", "127.0.0.1:1"}}, "members 0 and 1 share"},
	}
	for _, c := range cases {
		sys := actor.NewActorSystem(ActorSystemLogging(nil))
		_, err := NewBridge(sys, c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: want an error containing %q, got %v", c.name, c.want, err)
		}
	}
}

func TestBridgeKeepsOrder(t *testing.T) {
	checkNoLeaks(t)
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	const n = 20_000
	got := spawnProbe(t, b.sys, "recorder", n+16)
	target := actor.NewPID(b.addr, "recorder")

	sendVotes(t, a.sys, target, n)

	for i := uint64(1); i <= n; i++ {
		e := receive(t, got, fmt.Sprintf("vote %d of %d", i, n))
		v, ok := e.msg.(*messages.Vote)
		if !ok {
			t.Fatalf("message %d: got %T, want *messages.Vote", i, e.msg)
		}
		if v.Tx.Seq != i {
			t.Fatalf("message %d: got seq %d (out of order, duplicated or lost)", i, v.Tx.Seq)
		}
	}
	select {
	case e := <-got:
		t.Fatalf("extra message after all %d: %#v", n, e.msg)
	case <-time.After(100 * time.Millisecond):
	}
	st := a.bridge.Stats()
	if st.SentMessages != n || st.DroppedMessages != 0 {
		t.Errorf("sender stats: sent %d dropped %d, want %d and 0", st.SentMessages, st.DroppedMessages, n)
	}
	if rs := b.bridge.Stats(); rs.ReceivedMessages != n || rs.ReceivedBatches != st.SentBatches {
		t.Errorf("receiver stats: %d messages in %d batches, sender says %d in %d", rs.ReceivedMessages, rs.ReceivedBatches, st.SentMessages, st.SentBatches)
	}
	t.Logf("%d messages in %d batches (%.0f per batch)", n, st.SentBatches, float64(n)/float64(st.SentBatches))
}

func TestBridgeRequestReply(t *testing.T) {
	checkNoLeaks(t)
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	spawnNamed(t, b.sys, "reader", func(ctx actor.Context) {
		if m, ok := ctx.Message().(*messages.Read); ok {
			vals := make([]messages.KeyValue, len(m.Keys))
			for i, k := range m.Keys {
				vals[i] = messages.KeyValue{Key: k, Value: int64(10 * (i + 1))}
			}
			ctx.Respond(&messages.ReadReply{From: 1, Values: vals})
		}
	})

	res, err := a.sys.Root.RequestFuture(actor.NewPID(b.addr, "reader"), &messages.Read{Keys: []string{"x", "y"}}, 2*time.Second).Result()
	if err != nil {
		t.Fatalf("remote RequestFuture: %v", err)
	}
	reply, ok := res.(*messages.ReadReply)
	if !ok {
		t.Fatalf("reply is %T, want *messages.ReadReply", res)
	}
	if reply.From != 1 || len(reply.Values) != 2 || reply.Values[0] != (messages.KeyValue{Key: "x", Value: 10}) || reply.Values[1] != (messages.KeyValue{Key: "y", Value: 20}) {
		t.Errorf("reply %+v, want From 1 and x=10 y=20", reply)
	}

	// The remote node's dead-letter answer travels back too, so a request to
	// a missing actor fails at once rather than at its timeout.
	_, err = a.sys.Root.RequestFuture(actor.NewPID(b.addr, "nobody"), &messages.Read{Keys: []string{"x"}}, 10*time.Second).Result()
	if !errors.Is(err, actor.ErrDeadLetter) {
		t.Errorf("request to a missing remote actor: got %v, want %v", err, actor.ErrDeadLetter)
	}
}

func TestBridgePreservesSender(t *testing.T) {
	checkNoLeaks(t)
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	seen := make(chan *actor.PID, 1)
	spawnNamed(t, b.sys, "participant", func(ctx actor.Context) {
		if m, ok := ctx.Message().(*messages.DecisionQuery); ok {
			seen <- ctx.Sender()
			ctx.Respond(&messages.DecisionReply{Tx: m.Tx, From: 1, Decision: messages.DecisionCommit})
		}
	})
	replies := make(chan *messages.DecisionReply, 1)
	tx := messages.TxID{Node: 0, Incarnation: 1, Seq: 5}
	// A child, so the sender id has the "parent/child" shape of a txn actor.
	spawnNamed(t, a.sys, "coordinator", func(ctx actor.Context) {
		if _, ok := ctx.Message().(*actor.Started); ok {
			ctx.SpawnNamed(actor.PropsFromFunc(func(ctx actor.Context) {
				switch m := ctx.Message().(type) {
				case *actor.Started:
					ctx.Request(actor.NewPID(b.addr, "participant"), &messages.DecisionQuery{Tx: tx, From: 0})
				case *messages.DecisionReply:
					replies <- m
				}
			}), tx.String())
		}
	})

	var sender *actor.PID
	select {
	case sender = <-seen:
	case <-time.After(30 * time.Second):
		t.Fatal("remote actor never got the query")
	}
	want := actor.NewPID(a.addr, "coordinator/"+tx.String())
	if sender == nil || sender.Address != want.Address || sender.Id != want.Id {
		t.Errorf("remote actor saw sender %v, want %v", sender, want)
	}
	select {
	case r := <-replies:
		if r.Tx != tx || r.Decision != messages.DecisionCommit {
			t.Errorf("reply %+v, want commit for %v", r, tx)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the reply never came back to the asking actor")
	}
}

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

func TestBridgePeerDownThenUp(t *testing.T) {
	checkNoLeaks(t)
	lnA := listenLoopback(t)
	addrB := reserveAddr(t)
	members := []string{lnA.Addr().String(), addrB}
	a := startNode(t, 0, members, lnA, nil, nil)
	pinger := spawnPinger(t, a.sys, actor.NewPID(addrB, "recorder"))

	const down = 50
	for i := uint64(1); i <= down; i++ {
		pokeOnce(t, a.sys, pinger, i)
	}
	t.Logf("while peer down: %+v", a.bridge.Stats())

	lnB, err := net.Listen("tcp", addrB)
	if err != nil {
		t.Fatalf("listen again on the reserved address %s: %v", addrB, err)
	}
	var got <-chan envelope
	startNode(t, 1, members, lnB, nil, func(n *testNode) { got = spawnProbe(t, n.sys, "recorder", 100_000) })

	// Keep sending until a message sent after the peer came up arrives: the
	// bridge must have redialled on its own.
	seq := uint64(down)
	var last uint64
	deadline := time.Now().Add(30 * time.Second)
	for last <= down {
		if time.Now().After(deadline) {
			t.Fatalf("no message sent after the peer came up arrived; stats %+v", a.bridge.Stats())
		}
		seq++
		pokeOnce(t, a.sys, pinger, seq)
		drain := time.After(20 * time.Millisecond)
	collect:
		for {
			select {
			case e := <-got:
				v := e.msg.(*messages.Vote)
				if v.Tx.Seq <= last {
					t.Fatalf("seq %d arrived after %d", v.Tx.Seq, last)
				}
				last = v.Tx.Seq
			case <-drain:
				break collect
			}
		}
	}
	st := a.bridge.Stats()
	if st.Connects == 0 {
		t.Errorf("stats show no connection: %+v", st)
	}
	t.Logf("after peer came up: sent up to seq %d, last arrived %d; stats %+v", seq, last, st)
}

func TestBridgeQueueDropsOldest(t *testing.T) {
	checkNoLeaks(t)
	lnA := listenLoopback(t)
	addrB := reserveAddr(t)
	members := []string{lnA.Addr().String(), addrB}
	const limit, sent = 10, 25
	a := startNode(t, 0, members, lnA, func(c *BridgeConfig) {
		c.QueueLimit = limit
		c.RedialMax = 100 * time.Millisecond
	}, nil)
	pinger := spawnPinger(t, a.sys, actor.NewPID(addrB, "recorder"))
	for i := uint64(1); i <= sent; i++ {
		pokeOnce(t, a.sys, pinger, i)
	}
	waitFor(t, "overflow drops", func() bool { return a.bridge.Stats().DroppedMessages == sent-limit })

	lnB, err := net.Listen("tcp", addrB)
	if err != nil {
		t.Fatalf("listen again on the reserved address %s: %v", addrB, err)
	}
	var got <-chan envelope
	startNode(t, 1, members, lnB, nil, func(n *testNode) { got = spawnProbe(t, n.sys, "recorder", 100) })
	for i := uint64(sent - limit + 1); i <= sent; i++ {
		if s := receive(t, got, fmt.Sprintf("queued vote %d", i)).msg.(*messages.Vote).Tx.Seq; s != i {
			t.Fatalf("got vote %d, want %d: the newest %d should arrive in order", s, i, limit)
		}
	}
	t.Logf("kept and delivered the newest %d of %d queued messages; stats %+v", limit, sent, a.bridge.Stats())
}

func TestBridgeDropsUndeliverable(t *testing.T) {
	checkNoLeaks(t)
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	got := spawnProbe(t, b.sys, "recorder", 16)
	target := actor.NewPID(b.addr, "recorder")
	type notOnTheWire struct{ X int }

	root := a.sys.Root
	root.Send(actor.NewPID("127.0.0.1:1", "recorder"), vote(1)) // not a member
	root.Send(target, &notOnTheWire{X: 1})                      // not gob-registered
	root.Send(target, (*messages.Vote)(nil))                    // gob cannot encode it
	root.Send(target, vote(2))
	if e := receive(t, got, "the valid vote"); e.msg.(*messages.Vote).Tx.Seq != 2 {
		t.Fatalf("got %#v, want vote 2", e.msg)
	}
	waitFor(t, "the sender's bridge to count the delivered batch", func() bool { return a.bridge.Stats().SentMessages == 1 })
	if st := a.bridge.Stats(); st.DroppedMessages != 3 || st.DroppedBatches != 0 {
		t.Errorf("stats %+v: want 3 dropped messages, no dropped batch", st)
	}
}

func TestBridgeRefusesBatches(t *testing.T) {
	checkNoLeaks(t)
	nodes := startCluster(t, 2)
	b := nodes[1]
	got := spawnProbe(t, b.sys, "recorder", 16)
	c, err := rpc.Dial("tcp", b.addr)
	if err != nil {
		t.Fatalf("dial node 1: %v", err)
	}
	defer c.Close()

	for _, from := range []int32{7, -1, 1} { // unknown, negative, the receiver itself
		var ack WireAck
		err := c.Call("Bridge.Deliver", &WireBatch{From: from, Msgs: []WireMsg{{To: "recorder", Body: vote(1)}}}, &ack)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("from node %d", from)) {
			t.Errorf("batch from node %d: want an error naming it, got %v", from, err)
		}
	}

	var ack WireAck
	batch := &WireBatch{Cluster: b.bridge.cluster, From: 0, FromAddr: nodes[0].addr, To: 1, Session: 1, Seq: 1, Msgs: []WireMsg{
		{To: "", Body: vote(1)},
		{To: "recorder", Body: nil},
		{To: "recorder", Body: vote(2), SenderID: "someone"},
	}}
	if err := c.Call("Bridge.Deliver", batch, &ack); err != nil {
		t.Fatalf("batch from node 0: %v", err)
	}
	if ack.Accepted != 1 {
		t.Errorf("accepted %d, want 1 (two malformed messages skipped)", ack.Accepted)
	}
	e := receive(t, got, "the well-formed message")
	if v := e.msg.(*messages.Vote); v.Tx.Seq != 2 {
		t.Errorf("got vote %d, want 2", v.Tx.Seq)
	}
	// A sender without an address lives on the sending node.
	if e.sender == nil || e.sender.Address != nodes[0].addr || e.sender.Id != "someone" {
		t.Errorf("sender %v, want %s/someone", e.sender, nodes[0].addr)
	}
	if st := b.bridge.Stats(); st.RefusedBatches != 3 || st.SkippedMessages != 2 || st.ReceivedMessages != 1 {
		t.Errorf("stats %+v: want 3 refused batches, 2 skipped, 1 received", st)
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

func TestBridgeCallDeadline(t *testing.T) {
	checkNoLeaks(t)
	mute := startMutePeer(t)
	lnA := listenLoopback(t)
	members := []string{lnA.Addr().String(), mute.addr}
	a := startNode(t, 0, members, lnA, func(c *BridgeConfig) { c.CallTimeout = 100 * time.Millisecond }, nil)

	pinger := spawnPinger(t, a.sys, actor.NewPID(mute.addr, "x"))
	pokeOnce(t, a.sys, pinger, 1)
	waitFor(t, "the unanswered batch to be dropped and the peer redialled", func() bool {
		st := a.bridge.Stats()
		return st.DroppedBatches >= 1 && st.Connects >= 2
	})
	pokeOnce(t, a.sys, pinger, 2) // still not blocked
	t.Logf("stats %+v", a.bridge.Stats())
}

func TestBridgeStopIsIdempotent(t *testing.T) {
	checkNoLeaks(t)
	nodes := startCluster(t, 2)
	a := nodes[0]
	a.bridge.Stop()
	a.bridge.Stop()
	// Sends after Stop are counted, not delivered, and must not panic.
	a.sys.Root.Send(actor.NewPID(nodes[1].addr, "recorder"), vote(1))
	if st := a.bridge.Stats(); st.DroppedMessages != 1 {
		t.Errorf("stats %+v: want the send after Stop counted as dropped", st)
	}
}

// --- benchmark -------------------------------------------------------------

func BenchmarkBridgeRoundTrip(b *testing.B) {
	nodes := startCluster(b, 2)
	spawnNamed(b, nodes[1].sys, "reader", func(ctx actor.Context) {
		if _, ok := ctx.Message().(*messages.Read); ok {
			ctx.Respond(&messages.ReadReply{From: 1, Values: []messages.KeyValue{{Key: "k", Value: 1}}})
		}
	})
	target := actor.NewPID(nodes[1].addr, "reader")
	root := nodes[0].sys.Root
	req := &messages.Read{Keys: []string{"k"}}
	if _, err := root.RequestFuture(target, req, 5*time.Second).Result(); err != nil {
		b.Fatalf("warm-up round trip: %v", err)
	}

	const callers = 64
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if _, err := root.RequestFuture(target, req, 10*time.Second).Result(); err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d round trips failed", n, b.N)
	}
	st := nodes[0].bridge.Stats()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "roundtrips/s")
	b.ReportMetric(float64(st.SentMessages)/float64(max(st.SentBatches, 1)), "msgs/batch")
}
