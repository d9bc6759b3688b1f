package cluster

import (
	"errors"
	"net"
	"net/rpc"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"twopc/actors"
	"twopc/actors/actortest"
	"twopc/bridge"
	"twopc/messages"
)

// A Submit whose coordinator dies after logging COMMIT has no outcome, but
// its error names the transaction: with the coordinator down nobody knows
// how it ends; once it is back, KnownOutcome says committed.
func TestSubmitNoOutcomeNamesTheTransaction(t *testing.T) {
	r := newOpRig(t, opTiming, nil)
	at, err := r.transferCrashingAt(r.armCrash(0, actors.StepCommitLogged, -1, nil))
	var ne *NoOutcomeError
	if !errors.As(err, &ne) || ne.Tx != at.Tx || ne.Node != 0 {
		t.Fatalf("Submit's error %v (%T), want a *NoOutcomeError for %v", err, err, at.Tx)
	}
	if !errors.Is(err, errNodeCrashed) || !strings.Contains(err.Error(), "node 0: no outcome for "+at.Tx.String()+": node crashed (") {
		t.Fatalf("error text %q", err)
	}
	r.wantKnown(at.Tx, messages.DecisionUnknown, "") // both participants in doubt, coordinator down

	if err := r.l.RestartNode(0); err != nil {
		t.Fatal(err)
	}
	actortest.Eventually(t, 10*time.Second, func() string {
		if d, _, _ := r.l.KnownOutcome(at.Tx); d != messages.DecisionCommit {
			return "outcome still " + d.String()
		}
		return ""
	})
	settled(t, r.l, 10*time.Second)
	r.wantValues(90, 110, "after the coordinator's restart")
	if _, _, err := r.l.KnownOutcome(messages.TxID{}); err == nil {
		t.Error("KnownOutcome of the zero id: no error")
	}
	if _, _, err := r.l.KnownOutcome(messages.TxID{Node: 3, Incarnation: 1, Seq: 1}); err == nil || !strings.Contains(err.Error(), "not a member") {
		t.Errorf("KnownOutcome of a non-member's id: %v", err)
	}
}

// Submit on a node whose power is cut returns at once with an error, never
// an outcome, and the transaction it would have run leaves nothing behind
// once the node restarts.
func TestSubmitAfterPowerCutGetsNoOutcome(t *testing.T) {
	r := newCrashRig(t)
	n := r.l.Node(0)
	n.PowerCut()
	if o, err := n.Submit(messages.Add("n1/r4-cut", 1), messages.Add("n2/r4-cut", 1)); err == nil {
		t.Fatalf("Submit after a power cut answered %v", o)
	}
	if err := r.l.Crash(0); err != nil {
		t.Fatal(err)
	}
	if err := r.l.RestartNode(0); err != nil {
		t.Fatal(err)
	}
	r.waitSettled()
	if v1, v2 := r.valueOf("n1/r4-cut"), r.valueOf("n2/r4-cut"); v1 != 0 || v2 != 0 {
		t.Fatalf("a transaction submitted to a dead node took effect: %d %d", v1, v2)
	}
}

// A Submit waits on a reply box with a guessable name in the node's
// process registry, which the bridge delivers to like any actor. A peer —
// here node 2, which is not even part of the transaction — must not be able
// to answer another node's client: Outcome is not a wire type (clients reach
// a coordinator through the Client rpc service, never through the bridge),
// so a forged "committed" for a transaction that aborts at its vote timeout
// (node 1 is cut off) never reaches the caller.
func TestPeerCannotAnswerAnotherNodesSubmit(t *testing.T) {
	l, err := StartLocal(LocalConfig{
		Nodes: 3, DataDir: t.TempDir(), Timing: actors.Timing{VoteTimeout: 3 * time.Second}, Logger: quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	n0 := l.Node(0)
	if err := l.Partition(0, 1); err != nil {
		t.Fatal(err)
	}
	first := atomic.LoadUint64(&n0.System().ProcessRegistry.SequenceID) + 1

	type result struct {
		o   *messages.Outcome
		err error
	}
	done := make(chan result, 1)
	go func() {
		o, err := n0.Submit(messages.Add("n0/x", 1), messages.Add("n1/x", 1))
		done <- result{o, err}
	}()
	waitFor(t, "the transaction to be in flight", func() bool {
		st, err := n0.CoordinatorStatus()
		return err == nil && st.InFlight == 1
	})

	// Node 2 (a member, at its own address, of this cluster) sends an
	// Outcome to each of the next reply-box names. Outcome is no longer a
	// wire type between peers, but the wire's encoding has a tag for it (it
	// is the Client service's reply), so the receiver can decode it: the
	// bridge must refuse it by type, not rely on the codec.
	fake := messages.TxID{Node: 0, Incarnation: 1, Seq: 999}
	batch := &bridge.Batch{
		Cluster: bridge.ClusterID(l.Members()), From: 2, FromAddr: l.Members()[2], To: 0,
		Session: time.Now().UnixNano(), Seq: 1,
	}
	for k := first; k < first+200; k++ {
		batch.Msgs = append(batch.Msgs, bridge.Msg{To: replyBoxID(k), Body: &messages.Outcome{Tx: fake, Committed: true}})
	}
	conn, err := net.Dial("tcp", l.Members()[0])
	if err != nil {
		t.Fatal(err)
	}
	c := rpc.NewClientWithCodec(bridge.NewClientCodec(conn, bridge.Limits{}))
	defer c.Close()
	var ack bridge.Ack
	if err := c.Call("Bridge.Deliver", batch, &ack); err != nil {
		t.Fatalf("deliver: %v", err)
	}
	if ack.Accepted != 0 {
		t.Errorf("the bridge accepted %d forged Outcomes", ack.Accepted)
	}

	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Submit never returned")
	}
	if r.err != nil {
		t.Fatalf("submit: %v", r.err)
	}
	if r.o.Committed || r.o.Tx == fake {
		t.Errorf("a peer's forged Outcome answered node 0's client: got %v (the real transaction aborts at its vote timeout; %d forged Outcomes accepted by the bridge)", r.o, ack.Accepted)
	}
}

// A Go caller of Node.Submit whose transaction is cut short by Node.Stop
// gets an error as soon as the node stops (stopCh), as PowerCut ends such
// waits through cutCh, instead of waiting out its client timeout.
func TestSubmitEndsWhenItsNodeStops(t *testing.T) {
	l, _ := hookedCluster(t, 2, actors.Timing{VoteTimeout: 3 * time.Second}) // clientTimeout 11 s
	if err := l.Partition(0, 1); err != nil {
		t.Fatal(err)
	}
	n0 := l.Node(0)
	type result struct {
		o   *messages.Outcome
		err error
	}
	submitted := make(chan result, 1)
	go func() {
		o, err := n0.Submit(messages.Set("n0/a", 1), messages.Set("n1/b", 1))
		submitted <- result{o, err}
	}()
	waitInFlight(t, n0, 1)
	if err := l.StopNode(0); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-submitted:
		if res.err == nil && !res.o.Unknown && res.o.Committed {
			t.Errorf("a transaction cut short by Stop reported committed: %v", res.o)
		}
	case <-time.After(2500 * time.Millisecond):
		t.Errorf("Node.Submit still waiting after its node stopped: it returns only at its client timeout")
		<-submitted
	}
}

// A key that is not valid UTF-8 is refused on submit and on read, through
// a node and through the client service, with the key quoted; nothing is
// logged or changed on any node.
func TestInvalidUTF8KeyRefused(t *testing.T) {
	l := testCluster(t, 2, actors.Timing{})
	c := dial(t, l, 0)
	mustCommit(t, c, messages.Set("n1/ab", 7))
	const bad = "n1/a\xffb"
	want := `key "n1/a\xffb": not valid UTF-8`
	records := func() [2]uint64 {
		return [2]uint64{l.Node(0).LogStats().Records, l.Node(1).LogStats().Records}
	}
	settled(t, l, 10*time.Second) // the first transaction's END is written after its client hears
	before := records()

	o, err := l.Node(0).Submit(messages.Set(bad, 1), messages.Set("n1/ab", 8))
	if err != nil || o.Committed || o.Reason != want {
		t.Fatalf("Node.Submit with %q: %v %v, want refused with %q", bad, outcomeString(o), err, want)
	}
	o, err = c.Submit(messages.Add(bad, 1))
	if err != nil || o.Committed || o.Reason != want {
		t.Fatalf("Client.Submit with %q: %v %v, want refused with %q", bad, outcomeString(o), err, want)
	}
	if _, err := l.Node(0).Read("n1/ab", bad); err == nil || err.Error() != want {
		t.Fatalf("Node.Read of %q: %v, want %q", bad, err, want)
	}
	if _, err := l.Node(1).ReadLocal(bad); err == nil || err.Error() != want {
		t.Fatalf("Node.ReadLocal of %q: %v, want %q", bad, err, want)
	}
	if _, err := c.Read(bad); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Client.Read of %q: %v, want an error containing %q", bad, err, want)
	}

	if after := records(); after != before {
		t.Fatalf("log records per node went from %v to %v: a refused key reached a log", before, after)
	}
	// U+FFFD is what a lenient decoder would have made of the bad byte.
	vals, err := l.Node(0).Read("n1/ab", "n1/a\uFFFDb")
	if err != nil || len(vals) != 2 || vals[0].Value != 7 || vals[1].Value != 0 {
		t.Fatalf("values after the refusals: %v %v, want n1/ab=7 and nothing else", vals, err)
	}
}
