package bridge

import (
	"math"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

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
	a := startNode(t, 0, members, lnA, func(c *Config) { c.RedialMax = 50 * time.Millisecond }, nil)
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
	a := startNode(t, 0, members, lnA, func(c *Config) { c.RedialMax = 50 * time.Millisecond }, nil)
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

// Drop, Duplicate and Reorder are honoured as probabilities: with Drop 0.3
// about 30% of 4,000 messages are lost (bounds are 6 standard deviations),
// and Duplicate 0.5 with Reorder 0.5 on what survives delivers each
// survivor once or twice, nothing else.
func TestFaultProbabilitiesAreHonoured(t *testing.T) {
	checkNoLeaks(t)
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	const n = 4000
	got := spawnProbe(t, b.sys, "recorder", 3*n)
	if err := a.bridge.SetFaults(Faults{Drop: 0.3, Duplicate: 0.5, Reorder: 0.5, Seed: 11}); err != nil {
		t.Fatal(err)
	}
	faultSendVotes(a.sys, actor.NewPID(b.addr, "recorder"), 0, 1, n)
	waitFor(t, "every message to be dealt with", func() bool {
		fs := a.bridge.FaultStats()
		st := a.bridge.Stats()
		return st.SentMessages == (n-fs.Dropped)+fs.Duplicated
	})
	fs := a.bridge.FaultStats()
	check := func(name string, count uint64, trials, p float64) {
		mean := trials * p
		sd := math.Sqrt(trials * p * (1 - p))
		if math.Abs(float64(count)-mean) > 6*sd {
			t.Errorf("%s: %d of %.0f, want about %.0f (p = %v)", name, count, trials, mean, p)
		}
	}
	check("dropped", fs.Dropped, n, 0.3)
	check("duplicated", fs.Duplicated, float64(n-fs.Dropped), 0.5)
	if fs.Reordered == 0 {
		t.Errorf("no reordering: %+v", fs)
	}
	counts := map[uint64]int{}
	total := int(n - fs.Dropped + fs.Duplicated)
	for _, s := range faultReceiveSeqs(t, got, total) {
		counts[s]++
	}
	faultExpectNothing(t, got, 100*time.Millisecond, "more messages than sent and duplicated")
	if len(counts) != int(n-fs.Dropped) {
		t.Errorf("%d distinct messages arrived, want %d", len(counts), n-fs.Dropped)
	}
	for s, c := range counts {
		if c > 2 || s < 1 || s > n {
			t.Fatalf("vote %d arrived %d times", s, c)
		}
	}
}

// Messages held back by Delay when the node is isolated never arrive, and
// their timers do not outlive the bridge (goleak and checkNoLeaks).
func TestFaultDelayedMessagesDieWithIsolation(t *testing.T) {
	checkNoLeaks(t)
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	got := spawnProbe(t, b.sys, "recorder", 256)
	if err := a.bridge.SetFaults(Faults{Delay: 1, MaxDelay: 300 * time.Millisecond, Seed: 5}); err != nil {
		t.Fatal(err)
	}
	faultSendVotes(a.sys, actor.NewPID(b.addr, "recorder"), 0, 1, 100)
	waitFor(t, "every message to be held", func() bool { return a.bridge.FaultStats().Delayed == 100 })
	a.bridge.Isolate()
	// Whatever was released before Isolate may have gone; nothing after.
	before := len(got)
	waitFor(t, "every held message to be released and dropped", func() bool {
		st := a.bridge.Stats()
		return st.SentMessages+a.bridge.FaultStats().CutOff >= 100
	})
	faultExpectNothing(t, drainAfter(got, before), 100*time.Millisecond, "a delayed message arrived after Isolate")
}

// Isolate (and so PowerCut) is "as a power cut would: ... nothing is sent
// to or accepted from any peer from now on". It closes every client, and
// the call in flight then fails; onDelivered must not treat that as a
// broken connection to redial: a powered-off machine opens no connections.
func TestFaultIsolatedNodeDoesNotRedial(t *testing.T) {
	checkNoLeaks(t)
	peer := startMutePeer(t)
	lnA := listenLoopback(t)
	members := []string{lnA.Addr().String(), peer.addr}
	a := startNode(t, 0, members, lnA, func(c *Config) { c.CallTimeout = time.Minute }, nil)
	faultSendVotes(a.sys, actor.NewPID(peer.addr, "recorder"), 0, 1, 1)
	waitFor(t, "the batch to be written to the peer", func() bool { return peer.accepts.Load() == 1 && peer.read.Load() > 0 })

	a.bridge.Isolate()
	// A message sent now meets the isolation: once it is counted dropped,
	// the bridge has had its chance to dial, and must not have.
	dropped := a.bridge.Stats().DroppedMessages
	faultSendVotes(a.sys, actor.NewPID(peer.addr, "recorder"), 0, 1, 1)
	waitFor(t, "the message sent while isolated to be dropped", func() bool { return a.bridge.Stats().DroppedMessages > dropped })
	if n := peer.accepts.Load(); n > 1 {
		t.Fatalf("the isolated node opened %d new connection(s) to its peer after Isolate returned (stats %+v)", n-1, a.bridge.Stats())
	}
}

// The bridge actor owns the fault state; a restarted instance (after a
// panic) takes over what its predecessor left: a restart neither heals a
// cut nor forgets the faults in force or what they did.
func TestFaultsSurviveBridgeActorRestart(t *testing.T) {
	checkNoLeaks(t)
	nodes := startCluster(t, 3)
	a := nodes[0]
	if err := a.bridge.SetFaults(Faults{Drop: 1, Seed: 9}); err != nil {
		t.Fatal(err)
	}
	faultSendVotes(a.sys, actor.NewPID(nodes[1].addr, "recorder"), 0, 1, 5)
	if err := a.bridge.Cut(2); err != nil {
		t.Fatal(err)
	}
	before := a.bridge.FaultStats()
	if before.Dropped != 5 {
		t.Fatalf("before the restart: %+v, want 5 dropped", before)
	}
	epoch := a.bridge.epoch.Load()
	a.sys.Root.Send(a.bridge.PID(), &outbound{}) // a nil target panics in enqueue
	waitFor(t, "the bridge actor to restart", func() bool { return a.bridge.epoch.Load() > epoch })

	if got := a.bridge.CutPeers(); !slices.Equal(got, []int32{2}) {
		t.Errorf("after the restart CutPeers = %v, want [2]", got)
	}
	if got := a.bridge.Faults(); got.Drop != 1 || got.Seed != 9 {
		t.Errorf("after the restart Faults = %+v, want Drop 1, Seed 9", got)
	}
	if got := a.bridge.FaultStats(); got != before {
		t.Errorf("after the restart FaultStats = %+v, want %+v", got, before)
	}
	// The inbound side still refuses the cut peer.
	var ack Ack
	err := a.bridge.deliver(&Batch{Cluster: a.bridge.cluster, From: 2, FromAddr: nodes[2].addr, To: 0, Session: 1, Seq: 1,
		Msgs: []Msg{{To: "recorder", Body: vote(1)}}}, &ack)
	if err == nil || !strings.Contains(err.Error(), "the link is cut") {
		t.Errorf("a batch from the cut peer after the restart: %v, want refused", err)
	}
}
