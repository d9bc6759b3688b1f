package cluster

// Review 5: the wire's fault injection, the forged-message checks, the
// power-cut path. Tests named TestReview5... that fail against the code as
// it stands document a bug (the comment says what should happen instead);
// the others pin behaviour nothing tested yet.

import (
	"encoding/gob"
	"errors"
	"io"
	"net/rpc"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"twopc/actors"
	"twopc/bridge"
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
// applied right after bridge.New, before any role is spawned or the
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
	if err := l.SetFaults(bridge.Faults{Drop: 1, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	if err := l.Node(0).Bridge().SetFaults(bridge.Faults{}); err != nil { // only node 1 drops
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
	batch := &bridge.Batch{
		Cluster: bridge.ClusterID(l.Members()), From: 2, FromAddr: l.Members()[2], To: 0,
		Session: time.Now().UnixNano(), Seq: 1,
	}
	for k := first; k < first+200; k++ {
		batch.Msgs = append(batch.Msgs, bridge.Msg{To: r5ReplyBoxID(k), Body: &messages.Outcome{Tx: fake, Committed: true}})
	}
	c, err := rpc.Dial("tcp", l.Members()[0])
	if err != nil {
		t.Fatal(err)
	}
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
