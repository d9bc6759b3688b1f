package cluster

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/rpc"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/go-hclog"

	"twopc/actors"
	"twopc/messages"
)

// --- helpers -----------------------------------------------------------------

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

// --- the bridge --------------------------------------------------------------

func TestFaultControlsRejectBadInput(t *testing.T) {
	checkNoLeaks(t)
	nodes := startCluster(t, 2)
	b := nodes[0].bridge
	for _, c := range []struct {
		f    Faults
		want string
	}{
		{Faults{Drop: -0.1}, "fault Drop = -0.1"},
		{Faults{Duplicate: 1.5}, "fault Duplicate = 1.5"},
		{Faults{Delay: math.NaN()}, "fault Delay = NaN"},
		{Faults{Reorder: 2}, "fault Reorder = 2"},
		{Faults{Delay: 0.5, MaxDelay: -time.Second}, "fault MaxDelay = -1s"},
	} {
		if err := b.SetFaults(c.f); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("SetFaults(%+v): want an error containing %q, got %v", c.f, c.want, err)
		}
	}
	if got := b.Faults(); got != (Faults{}) {
		t.Errorf("refused settings took effect: %+v", got)
	}
	if err := b.SetFaults(Faults{Delay: 0.5, Seed: 7}); err != nil {
		t.Fatal(err)
	}
	if got := b.Faults(); got.MaxDelay != DefaultMaxDelay || got.Delay != 0.5 || got.Seed != 7 {
		t.Errorf("Faults() = %+v, want Delay 0.5, Seed 7 and the default MaxDelay %v", got, DefaultMaxDelay)
	}

	for _, c := range []struct {
		peer int32
		want string
	}{{0, "to itself"}, {2, "node 2: not a member"}, {-1, "node -1: not a member"}} {
		if err := b.Cut(c.peer); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Cut(%d): want an error containing %q, got %v", c.peer, c.want, err)
		}
		if err := b.Heal(c.peer); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Heal(%d): want an error containing %q, got %v", c.peer, c.want, err)
		}
	}
	if cut := b.CutPeers(); len(cut) != 0 {
		t.Errorf("CutPeers after refused cuts: %v", cut)
	}
	if err := b.Heal(1); err != nil { // healing a link that is not cut is fine
		t.Errorf("Heal of an uncut link: %v", err)
	}

	// The Local's controls check their arguments before touching any node.
	l := &Local{members: []string{"a:1", "b:1", "c:1"}}
	for _, c := range []struct {
		a, b int
		want string
	}{{0, 0, "cannot be cut off from itself"}, {3, 0, "unknown node 3"}, {1, -1, "unknown node -1"}} {
		if err := l.Partition(c.a, c.b); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Partition(%d, %d): want an error containing %q, got %v", c.a, c.b, c.want, err)
		}
	}
	if err := l.SetFaults(Faults{Drop: 2}); err == nil || !strings.Contains(err.Error(), "fault Drop = 2") {
		t.Errorf("Local.SetFaults with Drop 2: %v", err)
	}
	if p := l.Partitions(); len(p) != 0 {
		t.Errorf("Partitions after refused ones: %v", p)
	}
}

func TestFaultDropLosesEverything(t *testing.T) {
	checkNoLeaks(t)
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	got := spawnProbe(t, b.sys, "recorder", 256)
	target := actor.NewPID(b.addr, "recorder")
	if err := a.bridge.SetFaults(Faults{Drop: 1, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	const n = 100
	faultSendVotes(a.sys, target, 0, 1, n)
	waitFor(t, "every message to be dropped", func() bool { return a.bridge.FaultStats().Dropped == n })
	faultExpectNothing(t, got, 200*time.Millisecond, "a message arrived although every one is dropped")
	if st := a.bridge.Stats(); st.DroppedMessages != n || st.SentMessages != 0 {
		t.Errorf("stats %+v: want %d dropped, none sent", st, n)
	}

	// Faults{} stops injecting: the link works.
	if err := a.bridge.SetFaults(Faults{}); err != nil {
		t.Fatal(err)
	}
	faultSendVotes(a.sys, target, 0, n+1, 1)
	if s := faultReceiveSeqs(t, got, 1); s[0] != n+1 {
		t.Fatalf("after clearing the faults got vote %d, want %d", s[0], n+1)
	}
}

func TestFaultDuplicateSendsEachTwiceInOrder(t *testing.T) {
	checkNoLeaks(t)
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	const n = 200
	got := spawnProbe(t, b.sys, "recorder", 2*n+16)
	if err := a.bridge.SetFaults(Faults{Duplicate: 1, Seed: 2}); err != nil {
		t.Fatal(err)
	}
	faultSendVotes(a.sys, actor.NewPID(b.addr, "recorder"), 0, 1, n)
	seqs := faultReceiveSeqs(t, got, 2*n)
	for i, s := range seqs {
		if want := uint64(i/2 + 1); s != want {
			t.Fatalf("message %d is vote %d, want %d: each must arrive twice, in order (got %v...)", i, s, want, seqs[:min(i+4, len(seqs))])
		}
	}
	faultExpectNothing(t, got, 100*time.Millisecond, "a third copy")
	if fs := a.bridge.FaultStats(); fs.Duplicated != n {
		t.Errorf("fault stats %+v: want %d duplicated", fs, n)
	}
}

func TestFaultDelayLosesNothingButReorders(t *testing.T) {
	checkNoLeaks(t)
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	const n = 500
	got := spawnProbe(t, b.sys, "recorder", n+16)
	if err := a.bridge.SetFaults(Faults{Delay: 1, MaxDelay: 20 * time.Millisecond, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	faultSendVotes(a.sys, actor.NewPID(b.addr, "recorder"), 0, 1, n)
	seqs := faultReceiveSeqs(t, got, n)
	faultCheckPermutation(t, seqs)
	if slices.IsSorted(seqs) {
		t.Fatalf("%d messages, each held back for a random time, arrived in the order sent", n)
	}
	faultExpectNothing(t, got, 100*time.Millisecond, "an extra message")
	if fs := a.bridge.FaultStats(); fs.Delayed != n || fs.Dropped != 0 {
		t.Errorf("fault stats %+v: want %d delayed, none dropped", fs, n)
	}
}

func TestFaultReorderSwapsWithinABurst(t *testing.T) {
	checkNoLeaks(t)
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	const n = 1000
	got := spawnProbe(t, b.sys, "recorder", n+16)
	if err := a.bridge.SetFaults(Faults{Reorder: 1, Seed: 4}); err != nil {
		t.Fatal(err)
	}
	// The first message waits for the connection: the rest of the burst
	// queues behind it, so there is something to swap with.
	faultSendVotes(a.sys, actor.NewPID(b.addr, "recorder"), 0, 1, n)
	seqs := faultReceiveSeqs(t, got, n)
	faultCheckPermutation(t, seqs)
	if slices.IsSorted(seqs) {
		t.Fatal("a burst with Reorder 1 arrived in the order sent")
	}
	if fs := a.bridge.FaultStats(); fs.Reordered == 0 {
		t.Errorf("fault stats %+v: no swap counted", fs)
	}
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

func TestFaultCutAndHeal(t *testing.T) {
	checkNoLeaks(t)
	a, b, gotA, gotB, toA, toB := connectedPair(t)

	if err := a.bridge.Cut(1); err != nil {
		t.Fatal(err)
	}
	if cut := a.bridge.CutPeers(); !slices.Equal(cut, []int32{1}) {
		t.Fatalf("CutPeers = %v, want [1]", cut)
	}
	faultSendVotes(a.sys, toB, 0, 2, 5) // dropped at a
	faultSendVotes(b.sys, toA, 1, 2, 5) // sent by b, refused by a
	waitFor(t, "a to drop its 5 messages and refuse b's", func() bool {
		return a.bridge.FaultStats().CutOff == 10 && b.bridge.Stats().DroppedMessages == 5
	})
	faultExpectNothing(t, gotB, 200*time.Millisecond, "a message crossed the cut link a→b")
	faultExpectNothing(t, gotA, 0, "a message crossed the cut link b→a")
	if st := a.bridge.Stats(); st.RefusedBatches == 0 || st.ReceivedMessages != 1 {
		t.Errorf("a's stats %+v: want b's batches refused, only the first message received", st)
	}

	if err := a.bridge.Heal(1); err != nil {
		t.Fatal(err)
	}
	if cut := a.bridge.CutPeers(); len(cut) != 0 {
		t.Fatalf("CutPeers after Heal = %v", cut)
	}
	faultSendVotes(a.sys, toB, 0, 7, 1)
	faultSendVotes(b.sys, toA, 1, 7, 1)
	if s := faultReceiveSeqs(t, gotB, 1); s[0] != 7 {
		t.Errorf("b got vote %d after the heal, want 7 (the cut ones are lost)", s[0])
	}
	if s := faultReceiveSeqs(t, gotA, 1); s[0] != 7 {
		t.Errorf("a got vote %d after the heal, want 7 (the cut ones are lost)", s[0])
	}
}

// Messages queued for a peer before a cut never go out after it, even when
// the link is healed before the peer is reached.
func TestFaultCutDropsWhatIsQueued(t *testing.T) {
	checkNoLeaks(t)
	lnA := listenLoopback(t)
	addrB := reserveAddr(t)
	members := []string{lnA.Addr().String(), addrB}
	a := startNode(t, 0, members, lnA, func(c *BridgeConfig) { c.RedialMax = 50 * time.Millisecond }, nil)
	target := actor.NewPID(addrB, "recorder")
	faultSendVotes(a.sys, target, 0, 1, 10) // queued: b is down
	if err := a.bridge.Cut(1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the queued messages to be dropped", func() bool { return a.bridge.FaultStats().CutOff == 10 })
	if err := a.bridge.Heal(1); err != nil {
		t.Fatal(err)
	}

	lnB, err := net.Listen("tcp", addrB)
	if err != nil {
		t.Fatalf("listen again on the reserved address %s: %v", addrB, err)
	}
	var got <-chan envelope
	startNode(t, 1, members, lnB, nil, func(n *testNode) { got = spawnProbe(t, n.sys, "recorder", 64) })
	faultSendVotes(a.sys, target, 0, 11, 1)
	if s := faultReceiveSeqs(t, got, 1); s[0] != 11 {
		t.Fatalf("got vote %d first, want 11: a message queued before the cut went out after it", s[0])
	}
}

type isolateNow struct{ target *actor.PID }

func TestFaultIsolateIsImmediateAndForGood(t *testing.T) {
	checkNoLeaks(t)
	a, b, gotA, gotB, toA, toB := connectedPair(t)

	// An actor isolates its node and sends at once, as a crash point in a
	// protocol step would: what it sends after Isolate returns never leaves.
	done := make(chan struct{})
	spawnNamed(t, a.sys, "crasher", func(ctx actor.Context) {
		if m, ok := ctx.Message().(*isolateNow); ok {
			a.bridge.Isolate()
			ctx.Send(m.target, vote(2))
			close(done)
		}
	})
	a.sys.Root.Send(actor.NewPID(a.addr, "crasher"), &isolateNow{target: toB})
	<-done
	faultSendVotes(a.sys, toB, 0, 3, 1)
	faultSendVotes(b.sys, toA, 1, 2, 3)
	waitFor(t, "a to refuse b's batches", func() bool { return a.bridge.Stats().RefusedBatches > 0 })
	faultExpectNothing(t, gotB, 200*time.Millisecond, "a message left the isolated node")
	faultExpectNothing(t, gotA, 0, "a message reached the isolated node")

	a.bridge.HealAll()
	faultSendVotes(a.sys, toB, 0, 4, 1)
	faultSendVotes(b.sys, toA, 1, 5, 1)
	faultExpectNothing(t, gotB, 200*time.Millisecond, "HealAll undid Isolate (outbound)")
	faultExpectNothing(t, gotA, 0, "HealAll undid Isolate (inbound)")
	if fs := a.bridge.FaultStats(); fs.CutOff < 3 {
		t.Errorf("fault stats %+v: want at least the 3 outbound messages counted as cut off", fs)
	}
	a.bridge.Isolate() // again: harmless
}

// Isolate drops what is queued: a peer that comes up afterwards gets
// nothing the isolated node queued for it.
func TestFaultIsolateDropsWhatIsQueued(t *testing.T) {
	checkNoLeaks(t)
	lnA := listenLoopback(t)
	addrB := reserveAddr(t)
	members := []string{lnA.Addr().String(), addrB}
	a := startNode(t, 0, members, lnA, func(c *BridgeConfig) { c.RedialMax = 50 * time.Millisecond }, nil)
	faultSendVotes(a.sys, actor.NewPID(addrB, "recorder"), 0, 1, 10)
	a.bridge.Isolate()
	waitFor(t, "the queued messages to be dropped", func() bool { return a.bridge.FaultStats().CutOff == 10 })
	lnB, err := net.Listen("tcp", addrB)
	if err != nil {
		t.Fatalf("listen again on the reserved address %s: %v", addrB, err)
	}
	var got <-chan envelope
	startNode(t, 1, members, lnB, nil, func(n *testNode) { got = spawnProbe(t, n.sys, "recorder", 64) })
	faultExpectNothing(t, got, 300*time.Millisecond, "a message queued before Isolate went out")
}

// A peer speaks only for itself, and only a transaction's coordinator
// prepares, commits or aborts it: node 1 may not vote as node 2, nor
// prepare or commit node 2's or node 0's transactions.
func TestForgedMessagesAreRefused(t *testing.T) {
	checkNoLeaks(t)
	logger, logs := newBufferLogger(hclog.Warn)
	lns := make([]net.Listener, 3)
	members := make([]string, 3)
	for i := range lns {
		lns[i] = listenLoopback(t)
		members[i] = lns[i].Addr().String()
	}
	recv := startNode(t, 0, members, lns[0], func(c *BridgeConfig) {
		c.Logger = logger
	}, nil)
	got := spawnProbe(t, recv.sys, "recorder", 16)
	c, err := rpc.Dial("tcp", recv.addr)
	if err != nil {
		t.Fatalf("dial node 0: %v", err)
	}
	defer c.Close()

	tx := func(node int32, seq uint64) messages.TxID { return messages.TxID{Node: node, Incarnation: 1, Seq: seq} }
	forged := []interface{}{
		&messages.Vote{Tx: tx(0, 1), From: 2, Kind: messages.VoteYes},    // speaks for node 2
		&messages.Prepare{Tx: tx(2, 1)},                                  // node 2's transaction
		&messages.Commit{Tx: tx(0, 1), From: 1},                          // node 0's transaction
		&messages.Abort{Tx: tx(1, 1), From: 2},                           // its own transaction, as node 2
		&messages.Ack{Tx: tx(7, 1), From: 1},                             // a coordinator that is no member
		&messages.DecisionReply{Tx: tx(0, 1), From: 0},                   // speaks for the receiver
		&messages.DecisionQuery{Tx: tx(-1, 1), From: 1},                  // a negative coordinator
		&messages.Commit{Tx: tx(1, 1), From: 0},                          // its own transaction, as node 0
		&messages.Vote{Tx: tx(0, 1), From: 1, Kind: messages.VoteYes},    // the valid one: delivered
		&messages.Prepare{Tx: tx(1, 2), Participants: []int32{0, 1}},     // valid: delivered
		&messages.DecisionQuery{Tx: tx(2, 1), From: 1},                   // valid (asking about node 2's): delivered
		&messages.Abort{Tx: tx(1, 3), From: 1, Reason: "valid, its own"}, // valid: delivered
	}
	const valid = 4
	batch := func(seq uint64) *WireBatch {
		b := &WireBatch{Cluster: recv.bridge.cluster, From: 1, FromAddr: members[1], To: 0, Session: 1, Seq: seq}
		for _, m := range forged {
			b.Msgs = append(b.Msgs, WireMsg{To: "recorder", Body: m})
		}
		return b
	}
	var ack WireAck
	if err := c.Call("Bridge.Deliver", batch(1), &ack); err != nil {
		t.Fatalf("the batch itself is sound and must be accepted: %v", err)
	}
	if ack.Accepted != valid {
		t.Errorf("accepted %d, want %d", ack.Accepted, valid)
	}
	for i := len(forged) - valid; i < len(forged); i++ {
		e := receive(t, got, "a valid message")
		if fmt.Sprint(e.msg) != fmt.Sprint(forged[i]) {
			t.Errorf("got %#v, want the valid %#v", e.msg, forged[i])
		}
	}
	faultExpectNothing(t, got, 100*time.Millisecond, "a forged message was delivered")
	st := recv.bridge.Stats()
	if st.SkippedMessages != uint64(len(forged)-valid) || st.ReceivedMessages != valid || st.ReceivedBatches != 1 || st.RefusedBatches != 0 {
		t.Errorf("stats %+v: want %d skipped, %d received in 1 batch, none refused", st, len(forged)-valid, valid)
	}

	// Each kind of forgery is warned about once, with its reason; sending
	// the same again adds nothing to the log.
	warned := strings.Count(logs.String(), "refused a forged message")
	if warned != len(forged)-valid {
		t.Errorf("%d warnings for %d kinds of forgery:\n%s", warned, len(forged)-valid, logs.String())
	}
	for _, reason := range []string{
		"Vote claims to be from node 2, but node 1 sent it",
		"Prepare is for transaction 2.1.1, coordinated by node 2, but node 1 sent it",
		"coordinator node 7 is not a member",
	} {
		if !strings.Contains(logs.String(), reason) {
			t.Errorf("no warning says %q:\n%s", reason, logs.String())
		}
	}
	if err := c.Call("Bridge.Deliver", batch(2), &ack); err != nil {
		t.Fatal(err)
	}
	for range valid {
		receive(t, got, "a valid message, again")
	}
	if again := strings.Count(logs.String(), "refused a forged message"); again != warned {
		t.Errorf("the same forgeries again logged %d more warnings, want none", again-warned)
	}
	if st := recv.bridge.Stats(); st.SkippedMessages != 2*uint64(len(forged)-valid) {
		t.Errorf("stats %+v: want the second batch's forgeries counted too", st)
	}
}

// --- an in-process cluster -----------------------------------------------------

func TestFaultPartitionAbortsThenHealCommits(t *testing.T) {
	l := testCluster(t, 3, actors.Timing{VoteTimeout: time.Second})
	n0 := l.Node(0)
	mustCommit(t, dial(t, l, 0), messages.Add("n0/x", 1), messages.Add("n1/x", 1), messages.Add("n2/x", 1))

	if err := l.Partition(0, 1); err != nil {
		t.Fatal(err)
	}
	if p := l.Partitions(); len(p) != 1 || p[0] != [2]int{0, 1} {
		t.Fatalf("Partitions = %v, want [[0 1]]", p)
	}
	o, err := n0.Submit(messages.Add("n0/x", 1), messages.Add("n1/x", 1))
	if err != nil {
		t.Fatal(err)
	}
	if o.Committed || !strings.Contains(o.Reason, "vote timeout: no vote from node(s) 1") {
		t.Fatalf("a transaction across the partition: want a vote timeout naming node 1, got %v", o)
	}
	o, err = n0.Submit(messages.Add("n0/x", 1), messages.Add("n2/x", 1))
	if err != nil || !o.Committed {
		t.Fatalf("a transaction on the same side: want committed, got %v %v", o, err)
	}

	// A restart does not heal it.
	if err := l.StopNode(1); err != nil {
		t.Fatal(err)
	}
	if err := l.RestartNode(1); err != nil {
		t.Fatal(err)
	}
	if cut := l.Node(1).Bridge().CutPeers(); !slices.Equal(cut, []int32{0}) {
		t.Fatalf("restarted node 1 cut from %v, want [0]", cut)
	}

	l.Heal()
	if p := l.Partitions(); len(p) != 0 {
		t.Fatalf("Partitions after Heal = %v", p)
	}
	for i := 0; i < 3; i++ {
		if cut := l.Node(i).Bridge().CutPeers(); len(cut) != 0 {
			t.Fatalf("node %d still cut from %v after Heal", i, cut)
		}
	}
	o, err = n0.Submit(messages.Add("n0/x", 1), messages.Add("n1/x", 1))
	if err != nil || !o.Committed {
		t.Fatalf("after the heal: want committed, got %v %v", o, err)
	}
	waitLocksFree(t, l)
	c := dial(t, l, 2)
	for key, want := range map[string]int64{"n0/x": 3, "n1/x": 2, "n2/x": 2} {
		if got := values(t, c, key)[int32(key[1]-'0')]; got != want {
			t.Errorf("%s = %d, want %d (the aborted transaction must have left nothing)", key, got, want)
		}
	}
}

// Duplicate Prepare, Vote, Commit, Abort and Ack are harmless: with every
// message sent twice, and half of the copies held back so they arrive late
// and out of order, concurrent transfers keep the total, and every transfer
// a client saw committed is applied exactly once.
func TestFaultDuplicatesAreHarmless(t *testing.T) {
	l := testCluster(t, 3, actors.Timing{})
	const accounts, initial, transfers = 5, 100, 50
	acctA := func(i int) string { return fmt.Sprintf("n1/a%d", i) }
	acctB := func(i int) string { return fmt.Sprintf("n2/b%d", i) }
	var setup []messages.Op
	for i := range accounts {
		setup = append(setup, messages.Set(acctA(i), initial), messages.Set(acctB(i), initial))
	}
	if o, err := l.Node(0).Submit(setup...); err != nil || !o.Committed {
		t.Fatalf("setup: %v %v", o, err)
	}

	if err := l.SetFaults(Faults{Duplicate: 1, Delay: 0.5, MaxDelay: 20 * time.Millisecond, Seed: 42}); err != nil {
		t.Fatal(err)
	}
	var (
		wg         sync.WaitGroup
		mu         sync.Mutex
		net        = map[string]int64{} // expected change per account, from committed transfers
		committed  int
		aborted    []string
		unanswered []string
	)
	for i := range transfers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(i), 1))
			k := r.IntN(accounts)
			from, to := acctA(k), acctB(k)
			if r.IntN(2) == 0 {
				from, to = to, from
			}
			amount := int64(1 + r.IntN(100))
			o, err := l.Node(i%3).Submit(messages.AddFloor(from, -amount, 0), messages.Add(to, amount))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				unanswered = append(unanswered, err.Error())
			case o.Unknown:
				unanswered = append(unanswered, o.String())
			case o.Committed:
				committed++
				net[from] -= amount
				net[to] += amount
			default:
				aborted = append(aborted, o.Reason)
			}
		}()
	}
	wg.Wait()
	if err := l.SetFaults(Faults{}); err != nil {
		t.Fatal(err)
	}
	if len(unanswered) > 0 {
		t.Fatalf("%d transfers got no outcome (nothing is lost, so every one must): %v", len(unanswered), unanswered)
	}
	waitLocksFree(t, l)

	var total int64
	c := dial(t, l, 0)
	for i := range accounts {
		for _, key := range []string{acctA(i), acctB(i)} {
			got := values(t, c, key)[int32(key[1]-'0')]
			if got != initial+net[key] {
				t.Errorf("%s = %d, but the committed transfers add up to %d: a duplicate was applied twice, or a commit lost", key, got, initial+net[key])
			}
			if got < 0 {
				t.Errorf("%s = %d: below its floor", key, got)
			}
			total += got
		}
	}
	if total != 2*accounts*initial {
		t.Errorf("total %d, want %d", total, 2*accounts*initial)
	}
	if committed == 0 {
		t.Fatalf("no transfer committed; aborts: %v", aborted)
	}
	var dup, delayed uint64
	for i := range 3 {
		fs := l.Node(i).Bridge().FaultStats()
		dup += fs.Duplicated
		delayed += fs.Delayed
	}
	if dup == 0 || delayed == 0 {
		t.Errorf("no fault was injected: %d duplicated, %d delayed", dup, delayed)
	}
	t.Logf("%d committed, %d aborted; %d messages duplicated, %d copies delayed; first aborts: %q", committed, len(aborted), dup, delayed, aborted[:min(3, len(aborted))])
}
