package cluster

// Review 5: the wire's fault injection, the forged-message checks, the
// power-cut path. Tests named TestReview5... that fail against the code as
// it stands document a bug (the comment says what should happen instead);
// the others pin behaviour nothing tested yet.

import (
	"encoding/gob"
	"errors"
	"io"
	"math"
	"net/rpc"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/go-hclog"

	"twopc/actors"
	"twopc/messages"
)

// --- helpers (prefixed r5 so they cannot clash with other files) ----------

// r5GateLogger wraps an hclog.Logger and, when the node named gateNode logs
// "node started" for incarnation gateInc, blocks the logging goroutine (the
// one running cluster.Start) until release is closed. It makes the window
// between a node serving and Start returning as wide as a slow machine
// could make it, without changing anything else.
type r5GateLogger struct {
	hclog.Logger
	g *r5Gate
}

type r5Gate struct {
	node    string // logger name suffix, e.g. "node-1"
	inc     uint32
	once    sync.Once
	reached chan struct{}
	release chan struct{}
}

func (l *r5GateLogger) Named(name string) hclog.Logger {
	return &r5GateLogger{Logger: l.Logger.Named(name), g: l.g}
}

func (l *r5GateLogger) ResetNamed(name string) hclog.Logger {
	return &r5GateLogger{Logger: l.Logger.ResetNamed(name), g: l.g}
}

func (l *r5GateLogger) With(args ...interface{}) hclog.Logger {
	return &r5GateLogger{Logger: l.Logger.With(args...), g: l.g}
}

func (l *r5GateLogger) Info(msg string, args ...interface{}) {
	if msg == "node started" && strings.HasSuffix(l.Name(), l.g.node) {
		for i := 0; i+1 < len(args); i += 2 {
			if args[i] == "incarnation" && args[i+1] == l.g.inc {
				l.g.once.Do(func() { close(l.g.reached) })
				<-l.g.release
			}
		}
	}
	l.Logger.Info(msg, args...)
}

// r5ReplyBoxID is the id protoactor's registry gives its k-th NextId (a
// copy of its base-64 encoding), so a test can name a Submit's reply box.
func r5ReplyBoxID(k uint64) string {
	const digits = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ~+"
	var buf [13]byte
	i := 13
	for k >= 64 {
		i--
		buf[i] = digits[k&0x3f]
		k >>= 6
	}
	i--
	buf[i] = digits[k]
	i--
	buf[i] = '$'
	return "submit" + string(buf[i:])
}

func r5Quiet() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Level: hclog.Off, Output: io.Discard})
}

// --- findings ----------------------------------------------------------------

// A Local remembers its faults so that "a restarted node keeps its faults
// and partitions" (README) and SetFaults acts on "the nodes up now and those
// started later". But Local.start applies them (applyFaults) only after
// cluster.Start has returned, and Start serves connections and runs
// recovery (re-driven Commits, in-doubt DecisionQueries) before that. In
// that window the restarted node's messages leave without the faults.
//
// Here node 1 drops everything it sends (Drop 1, node 0 none). Node 1 is
// crashed and restarted; while its Start is still finishing (held at its
// "node started" log line, as a slow scheduler could hold it), node 0 reads
// n1/x: node 1's ReadReply must be dropped, so the read must fail. It
// succeeds.
//
// Fix: hand the remembered faults and cuts to Start (e.g. a Config field
// applied right after NewBridge, before any role is spawned or the
// listener served), instead of applying them after Start returns.
func TestReview5RestartedNodeSendsBeforeRememberedFaults(t *testing.T) {
	g := &r5Gate{node: "node-1", inc: 2, reached: make(chan struct{}), release: make(chan struct{})}
	var released atomic.Bool
	release := func() {
		if released.CompareAndSwap(false, true) {
			close(g.release)
		}
	}
	defer release()
	l, err := StartLocal(LocalConfig{
		Nodes: 2, DataDir: t.TempDir(), Timing: actors.Timing{VoteTimeout: 500 * time.Millisecond},
		Logger: &r5GateLogger{Logger: r5Quiet(), g: g},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	if o, err := l.Node(0).Submit(messages.Set("n1/x", 5)); err != nil || !o.Committed {
		t.Fatalf("setup: %v %v", o, err)
	}
	if err := l.SetFaults(Faults{Drop: 1, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	if err := l.Node(0).Bridge().SetFaults(Faults{}); err != nil { // only node 1 drops
		t.Fatal(err)
	}
	if vals, err := l.Node(0).Read("n1/x"); err == nil {
		t.Fatalf("sanity: node 1 drops everything it sends, yet its read reply arrived: %v", vals)
	}

	if err := l.Crash(1); err != nil {
		t.Fatal(err)
	}
	restarted := make(chan error, 1)
	go func() { restarted <- l.RestartNode(1) }()
	select {
	case <-g.reached:
	case err := <-restarted:
		t.Fatalf("restart returned before its gate: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("restarted node 1 never logged that it started")
	}
	// Node 1 is serving now, with the same Local faults in force as before
	// the crash: Drop 1.
	var leaked []NodeValue
	for range 3 { // a request lost on node 0's reconnect would hide the leak: try again
		if vals, err := l.Node(0).Read("n1/x"); err == nil {
			leaked = vals
			break
		}
	}
	release()
	if err := <-restarted; err != nil {
		t.Fatal(err)
	}
	if leaked != nil {
		t.Errorf("restarted node 1 answered a read (%v) although Local.SetFaults(Drop: 1) is in force for it: its faults are applied only after Start returns, after it already serves and sends", leaked)
	}
	// Once Start has returned the faults are back.
	if vals, err := l.Node(0).Read("n1/x"); err == nil {
		t.Errorf("after the restart completed node 1 still answers: %v", vals)
	}
}

// The forged-message checks cover Prepare, Vote, Commit, Abort, Ack and
// DecisionQuery/Reply, but an Outcome is carried on the wire and checked
// for nothing. A client's Submit waits on a reply box registered under a
// sequential, guessable name ("submit$<n>") in the node's process registry,
// which the bridge delivers to like any actor. So a peer — here node 2,
// which is not even part of the transaction — can answer another node's
// client: the transaction below aborts at its vote timeout (node 1 is cut
// off), yet Submit returns "committed" for a transaction that never existed.
//
// Fix: refuse Outcome (and Begin) from peers — clients reach a coordinator
// through the Client rpc service, never through the bridge — or at least
// require Outcome.Tx.Node == the sending node and never deliver to
// Submit's reply boxes from the wire.
func TestReview5ForgedOutcomeAnswersAnotherNodesClient(t *testing.T) {
	l, err := StartLocal(LocalConfig{
		Nodes: 3, DataDir: t.TempDir(), Timing: actors.Timing{VoteTimeout: 3 * time.Second}, Logger: r5Quiet(),
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
	// wire type; a hostile build registers it with gob anyway (and so, in
	// this one process, the receiver can decode it: the bridge must refuse
	// it by type, not rely on gob).
	gob.Register(&messages.Outcome{})
	fake := messages.TxID{Node: 0, Incarnation: 1, Seq: 999}
	batch := &WireBatch{
		Cluster: clusterID(l.Members()), From: 2, FromAddr: l.Members()[2], To: 0,
		Session: time.Now().UnixNano(), Seq: 1,
	}
	for k := first; k < first+200; k++ {
		batch.Msgs = append(batch.Msgs, WireMsg{To: r5ReplyBoxID(k), Body: &messages.Outcome{Tx: fake, Committed: true}})
	}
	c, err := rpc.Dial("tcp", l.Members()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var ack WireAck
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

// The bridge actor is supervised: on a panic protoactor restarts it, and
// the code plans for that (epochs, Restarting → release, dials and calls of
// an old instance ignored). But the new instance starts every peer link at
// Seq 0 again while the Bridge's Session stays the same, and every peer
// remembers the highest Seq it delivered in that session: each batch of
// the new instance is refused as "late" until its Seq passes the old one,
// so everything sent in that stretch is lost — for a long-lived node,
// practically forever.
//
// Fix: give each bridge actor instance its own session (e.g. session =
// start time + epoch, or keep the per-peer Seq in the Bridge, not the
// actor, so a restart continues the sequence).
func TestReview5BridgeActorRestartKeepsLinkUsable(t *testing.T) {
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

// Node.Submit on a node whose power was cut refuses to answer ("a client of
// a crashed node learns nothing"), but Node.Read still answers from the
// dead node's participant: from the moment PowerCut returns "nothing [its
// actors] do can be seen from outside", yet a Go caller reads its state.
//
// Fix: have Node.Read (and ParticipantStatus / CoordinatorStatus if they
// are meant to be outside views) check n.cut first and fail with
// errNodeCrashed, as Submit does.
func TestReview5ReadOnPowerCutNodeAnswers(t *testing.T) {
	l := testCluster(t, 2, actors.Timing{VoteTimeout: 500 * time.Millisecond})
	n0 := l.Node(0)
	if o, err := n0.Submit(messages.Set("n0/x", 7)); err != nil || !o.Committed {
		t.Fatalf("setup: %v %v", o, err)
	}
	waitLocksFree(t, l) // the commit applied, so a read need not wait for it
	n0.PowerCut()
	defer func() { _ = l.Crash(0) }()
	vals, err := n0.Read("n0/x")
	if err == nil {
		t.Errorf("Read on a node whose power is cut answered %v; want an error (%v), as Submit gives", vals, errNodeCrashed)
	}
	if _, err := n0.Submit(messages.Set("n0/x", 8)); !errors.Is(err, errNodeCrashed) {
		t.Fatalf("Submit after the power cut: %v, want %v", err, errNodeCrashed)
	}
}

// cluster.Client has no deadline at all: Submit and Read are plain
// rpc.Call. A node that stops answering without closing the connection — a
// hung process, a partition between client and node, a SIGSTOPped node —
// blocks the caller for ever, although the node itself never makes a client
// wait more than 3 × VoteTimeout + 2 s (README: "a client waits at most ...
// for its outcome"; Submit: "An error means no outcome is known (e.g. the
// node went away mid-call)").
//
// The test gives the client four times that bound (30 s); it must return
// with an error by then.
//
// Fix: a per-call deadline in Client (Go + select on a timer, closing the
// connection on expiry), e.g. the node's own bound plus a margin, or a
// Client option.
func TestReview5ClientSubmitToSilentNodeReturns(t *testing.T) {
	mute := startMutePeer(t) // accepts and reads, never answers
	c, err := Dial(mute.addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetTimeout(100 * time.Millisecond) // DefaultClientTimeout is 15 s
	done := make(chan error, 1)
	go func() {
		_, err := c.Submit(messages.Add("n0/x", 1))
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "no answer within") {
			t.Fatalf("a node that never answered: err %v, want no answer within the timeout", err)
		}
	case <-time.After(30 * time.Second):
		c.Close() // unblocks the call
		<-done
		t.Fatalf("Client.Submit to a node that never answers was still waiting after 30 s (the node's own bound is %v)", 3*actors.DefaultTiming.VoteTimeout+2*time.Second)
	}
	c.Close()
}

// --- pinned behaviour ---------------------------------------------------------

// Drop, Duplicate and Reorder are honoured as probabilities: with Drop 0.3
// about 30% of 4,000 messages are lost (bounds are 6 standard deviations),
// and Duplicate 0.5 with Reorder 0.5 on what survives delivers each
// survivor once or twice, nothing else.
func TestReview5FaultProbabilitiesAreHonoured(t *testing.T) {
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
func TestReview5DelayedMessagesDieWithIsolation(t *testing.T) {
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

// drainAfter drops the first n envelopes already in ch and returns it.
func drainAfter(ch <-chan envelope, n int) <-chan envelope {
	for range n {
		<-ch
	}
	return ch
}

// A client whose node crashes mid-Submit gets an error (no outcome), not
// a hang and not an abort it would act on.
func TestReview5ClientOfCrashedNodeGetsError(t *testing.T) {
	l := testCluster(t, 2, actors.Timing{VoteTimeout: 5 * time.Second})
	if err := l.Partition(0, 1); err != nil {
		t.Fatal(err)
	}
	c := dial(t, l, 0)
	type result struct {
		o   *messages.Outcome
		err error
	}
	done := make(chan result, 1)
	go func() {
		o, err := c.Submit(messages.Add("n0/x", 1), messages.Add("n1/x", 1))
		done <- result{o, err}
	}()
	waitFor(t, "the transaction to be in flight", func() bool {
		st, err := l.Node(0).CoordinatorStatus()
		return err == nil && st.InFlight == 1
	})
	if err := l.Crash(0); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.err == nil {
			t.Fatalf("client of a crashed node got an outcome: %v", r.o)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("client of a crashed node still waiting")
	}
}

// After a crash and restart, a peer's batches to the new instance are
// accepted (new receiver, old sender session), and the restarted node's
// batches are accepted by the peer (new sender session): nothing is refused
// as late across a restart.
func TestReview5RestartNoBatchRefusedAsLate(t *testing.T) {
	l := testCluster(t, 2, actors.Timing{})
	c := dial(t, l, 0)
	mustCommit(t, c, messages.Add("n0/x", 1), messages.Add("n1/x", 1))
	if err := l.Crash(1); err != nil {
		t.Fatal(err)
	}
	if err := l.RestartNode(1); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		mustCommit(t, c, messages.Add("n0/x", 1), messages.Add("n1/x", 1))
		mustCommit(t, dial(t, l, 1), messages.Add("n0/x", 1), messages.Add("n1/x", 1))
	}
	for i := range 2 {
		if st := l.Node(i).Bridge().Stats(); st.RefusedBatches != 0 {
			t.Errorf("node %d refused %d batches", i, st.RefusedBatches)
		}
	}
}

// Isolate (and so PowerCut) is "as a power cut would: ... nothing is sent
// to or accepted from any peer from now on". It closes every client, and
// the call in flight then fails — and onDelivered, treating that as a
// broken connection, redials the peer: the isolated node opens a new TCP
// connection to it after Isolate returned (and, were the peer unreachable,
// would keep redialling with backoff until Stop). A powered-off machine
// opens no connections.
//
// Fix: in onDelivered (and flush/dial), do not redial when the link is
// down (a.linkDown(p) / a.fx.isolated); let Isolate cancel the dialers.
func TestReview5IsolatedNodeRedialsPeer(t *testing.T) {
	checkNoLeaks(t)
	peer := startMutePeer(t)
	lnA := listenLoopback(t)
	members := []string{lnA.Addr().String(), peer.addr}
	a := startNode(t, 0, members, lnA, func(c *BridgeConfig) { c.CallTimeout = time.Minute }, nil)
	faultSendVotes(a.sys, actor.NewPID(peer.addr, "recorder"), 0, 1, 1)
	waitFor(t, "the batch to be written to the peer", func() bool { return peer.accepts.Load() == 1 && peer.read.Load() > 0 })

	a.bridge.Isolate()
	deadline := time.Now().Add(500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if n := peer.accepts.Load(); n > 1 {
			t.Fatalf("the isolated node opened %d new connection(s) to its peer after Isolate returned (stats %+v)", n-1, a.bridge.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
