package bridge

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"twopc/messages"
)

func TestNewRejectsBadConfig(t *testing.T) {
	two := []string{"127.0.0.1:1", "127.0.0.1:2"}
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no members", Config{}, "member list is empty"},
		{"self out of range", Config{Self: 2, Members: []string{"127.0.0.1:1", "127.0.0.1:2"}}, "self node id 2"},
		{"bad address", Config{Members: []string{"127.0.0.1:1", "nohostport"}}, `member 1 address "nohostport"`},
		{"duplicate", Config{Members: []string{"127.0.0.1:1", "127.0.0.1:1"}}, "members 0 and 1 share"},
		{"negative queue limit", Config{Members: two, QueueLimit: -1}, "QueueLimit = -1: must be positive"},
		{"negative batch limit", Config{Members: two, BatchLimit: -5}, "BatchLimit = -5: must be positive"},
		{"negative call timeout", Config{Members: two, CallTimeout: -time.Second}, "CallTimeout = -1s: must be positive"},
		{"negative dial timeout", Config{Members: two, DialTimeout: -time.Second}, "DialTimeout = -1s: must be positive"},
		{"negative redial min", Config{Members: two, RedialMin: -time.Second}, "RedialMin = -1s: must be positive"},
		{"redial max below min", Config{Members: two, RedialMin: time.Second, RedialMax: time.Millisecond}, "RedialMax = 1ms is shorter than RedialMin = 1s"},
	}
	for _, c := range cases {
		sys := actor.NewActorSystem(quietActors)
		_, err := New(sys, c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: want an error containing %q, got %v", c.name, c.want, err)
		}
	}
}

// WithDefaults fills only the fields left at zero; a RedialMin longer than
// DefaultRedialMax makes the default RedialMax that long, so the pair is
// valid without the caller choosing both.
func TestConfigWithDefaults(t *testing.T) {
	got := Config{Members: []string{"127.0.0.1:1"}, BatchLimit: 7}.WithDefaults()
	if got.QueueLimit != DefaultQueueLimit || got.BatchLimit != 7 || got.CallTimeout != DefaultCallTimeout ||
		got.DialTimeout != DefaultDialTimeout || got.RedialMin != DefaultRedialMin || got.RedialMax != DefaultRedialMax || got.Logger == nil {
		t.Errorf("WithDefaults() = %+v", got)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("defaults are invalid: %v", err)
	}
	long := Config{Members: []string{"127.0.0.1:1"}, RedialMin: time.Minute}.WithDefaults()
	if long.RedialMax != time.Minute {
		t.Errorf("RedialMin 1m: default RedialMax = %v, want 1m", long.RedialMax)
	}
	if err := long.Validate(); err != nil {
		t.Errorf("RedialMin 1m with the default RedialMax: %v", err)
	}
	if err := (Config{Members: []string{"127.0.0.1:1"}}).Validate(); err == nil || !strings.Contains(err.Error(), "QueueLimit = 0") {
		t.Errorf("Validate without WithDefaults: %v, want QueueLimit = 0 refused", err)
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
	a := startNode(t, 0, members, lnA, func(c *Config) {
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

func TestBridgeCallDeadline(t *testing.T) {
	checkNoLeaks(t)
	mute := startMutePeer(t)
	lnA := listenLoopback(t)
	members := []string{lnA.Addr().String(), mute.addr}
	a := startNode(t, 0, members, lnA, func(c *Config) { c.CallTimeout = 100 * time.Millisecond }, nil)

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

// The bridge actor is supervised: on a panic protoactor restarts it (epochs,
// Restarting → release, dials and calls of an old instance ignored). The new
// instance starts every peer link at Seq 1 again, and every peer remembers
// the highest Seq it delivered per session, so each instance has a session
// of its own: otherwise its batches would be refused as "late" until their
// Seq passed the old one's.
func TestBridgeActorRestartKeepsLinkUsable(t *testing.T) {
	checkNoLeaks(t)
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	got := spawnProbe(t, b.sys, "recorder", 64)
	target := actor.NewPID(b.addr, "recorder")
	for i := uint64(1); i <= 5; i++ { // several batches, one at a time
		faultSendVotes(a.sys, target, 0, i, 1)
		faultReceiveSeqs(t, got, 1)
	}
	// Make the bridge actor fail once (a nil target panics in enqueue),
	// as any bug in it would; its supervisor restarts it.
	epoch := a.bridge.epoch.Load()
	a.sys.Root.Send(a.bridge.PID(), &outbound{})
	waitFor(t, "the bridge actor to restart", func() bool { return a.bridge.epoch.Load() > epoch })

	faultSendVotes(a.sys, target, 0, 6, 1)
	waitFor(t, "vote 6 to arrive or its batch to be refused", func() bool {
		return len(got) > 0 || a.bridge.Stats().DroppedBatches > 0
	})
	if len(got) == 0 {
		t.Fatalf("after the bridge actor restarted, its first batch was refused by the peer as late (sender %+v, receiver %+v)", a.bridge.Stats(), b.bridge.Stats())
	}
	if s := faultReceiveSeqs(t, got, 1); s[0] != 6 {
		t.Fatalf("got vote %d, want 6", s[0])
	}
}

// TestBridgeResendsOnDeadConnection pins the one resend the bridge does: a
// connection the peer closed while idle fails the next call with
// rpc.ErrShutdown before anything is written, and that batch goes out again,
// once, on a new connection.
func TestBridgeResendsOnDeadConnection(t *testing.T) {
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

// TestBridgeSmallBatchLimitKeepsOrder pins that a queue drained in many
// BatchLimit-sized calls still arrives in order, each message once.
func TestBridgeSmallBatchLimitKeepsOrder(t *testing.T) {
	checkNoLeaks(t)
	lnA, lnB := listenLoopback(t), listenLoopback(t)
	members := []string{lnA.Addr().String(), lnB.Addr().String()}
	a := startNode(t, 0, members, lnA, func(c *Config) { c.BatchLimit = 3 }, nil)
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

// TestBridgeStopWithCallInFlight pins that Stop does not wait for a call
// to a peer that never answers (its deadline far away): closing the client
// ends the call, and no goroutine is left.
func TestBridgeStopWithCallInFlight(t *testing.T) {
	checkNoLeaks(t)
	mute := startMutePeer(t)
	lnA := listenLoopback(t)
	members := []string{lnA.Addr().String(), mute.addr}
	a := startNode(t, 0, members, lnA, func(c *Config) { c.CallTimeout = time.Hour }, nil)
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
