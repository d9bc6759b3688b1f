package cluster

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"twopc/actors"
	"twopc/actors/actortest"
	"twopc/messages"
)

// A node that stops answering without closing the connection — a hung
// process, a partition between client and node, a SIGSTOPped node — must
// not block a Client for ever: each call has a deadline (SetTimeout), and
// ends with an error ("no outcome is known") when it passes.
func TestClientSubmitToSilentNodeTimesOut(t *testing.T) {
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

// A client whose node crashes mid-Submit gets an error (no outcome), not
// a hang and not an abort it would act on.
func TestClientOfCrashedNodeGetsError(t *testing.T) {
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

// A Client outlives its node: killed (power cut) and started again, the
// node is dialled again, and a Submit made while it was down waits for it
// (the dial is retried with back-off) and commits once it is back.
func TestClientLivesThroughItsNodesRestart(t *testing.T) {
	// 2PC: its forced COMMIT makes the restarted coordinator drive the
	// first commit at once. (Under the non-blocking commit the coordinator
	// logs no COMMIT, and node 1 may hold n1/x in doubt until its own
	// recovery round, after InDoubtAfter: the next Submit could then be
	// refused, which is not what this test is about.)
	l := testClusterRunning(t, 2, actors.Timing{}, actors.TwoPC)
	c := dial(t, l, 0)
	mustCommit(t, c, messages.Add("n1/x", 1))
	if err := l.Crash(0); err != nil {
		t.Fatal(err)
	}
	waitConnEnded(t, c, 0)
	type result struct {
		o   *messages.Outcome
		err error
	}
	done := make(chan result, 1)
	go func() {
		o, err := c.Submit(messages.Add("n1/x", 1))
		done <- result{o, err}
	}()
	waitDialFailed(t, c, 0) // the Submit waits for node 0
	if err := l.RestartNode(0); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || !r.o.Committed {
		t.Fatalf("a Submit made while its node was down, after the restart: %v %v", r.o, r.err)
	}
	if r.o.Tx.Node != 0 || r.o.Tx.Incarnation != 2 {
		t.Fatalf("committed as %v, want coordinated by node 0 in its second incarnation", r.o.Tx)
	}
	mustCommit(t, c, messages.Add("n1/x", 1))
	if v := values(t, c, "n1/x")[1]; v != 3 {
		t.Fatalf("n1/x = %d after three adds of 1, each run once", v)
	}
}

// With its own node down, a Client of the whole cluster sends its reads
// and its Submits (not sent yet) to another member.
func TestClientFailsOverWhileItsNodeIsDown(t *testing.T) {
	l, c, _ := clientCluster(t, 3, actors.Timing{})
	mustCommit(t, c, messages.Set("n1/x", 5), messages.Set("n2/y", 6))
	if err := l.Crash(0); err != nil {
		t.Fatal(err)
	}
	waitConnEnded(t, c, 0)
	vals, err := c.Read("n1/x", "n2/y")
	if err != nil || len(vals) != 2 || vals[0].Value != 5 || vals[1].Value != 6 {
		t.Fatalf("read with node 0 down: %v %v", vals, err)
	}
	o, err := c.Submit(messages.Add("n1/x", 1), messages.Add("n2/y", 1))
	if err != nil || !o.Committed {
		t.Fatalf("submit with node 0 down: %v %v", o, err)
	}
	if o.Tx.Node == 0 {
		t.Fatalf("committed as %v: coordinated by node 0, which is down", o.Tx)
	}
	// Back, node 0 is the client's own again.
	if err := l.RestartNode(0); err != nil {
		t.Fatal(err)
	}
	actortest.Eventually(t, 20*time.Second, func() string {
		o, err := c.Submit(messages.Add("n1/x", 1))
		if err != nil || !o.Committed || o.Tx.Node != 0 {
			return fmt.Sprintf("after node 0's restart: %v %v, want committed via node 0", o, err)
		}
		return ""
	})
}

// A read in flight when its node dies is asked again of another member:
// reads change nothing, so asking twice is safe.
func TestClientReadInFlightFailsOver(t *testing.T) {
	l, c, _ := clientCluster(t, 3, actors.Timing{VoteTimeout: 20 * time.Second})
	mustCommit(t, c, messages.Set("n1/x", 7))
	waitLocksFree(t, l) // the commit is over at node 1 too
	// A transaction prepared on n1/x holds reads of it until it is decided.
	release := holdLock(t, l, 1, 1, messages.Set("n1/x", 8))
	type result struct {
		vals []NodeValue
		err  error
	}
	done := make(chan result, 1)
	go func() {
		vals, err := c.Read("n1/x")
		done <- result{vals, err}
	}()
	waitStatus(t, l, 1, "the read through node 0 waiting", func(s *actors.ParticipantStatus) bool { return s.Reads == 1 })
	if err := l.Crash(0); err != nil {
		t.Fatal(err)
	}
	// Asked again, of node 1 (or 2), it waits there as well.
	waitStatus(t, l, 1, "the read asked again waiting", func(s *actors.ParticipantStatus) bool { return s.Reads == 2 })
	release()
	r := <-done
	if r.err != nil || len(r.vals) != 1 || r.vals[0].Value != 7 {
		t.Fatalf("read whose node died in flight: %v %v, want n1/x = 7 from another member", r.vals, r.err)
	}
}

// A Submit in flight when its node dies is not sent again — it may have
// committed — even with other members at hand: the Client returns a
// *NoOutcomeError carrying the transaction's id, which the node named
// before it died, and no other node ever saw the transaction.
func TestClientNeverResubmitsAnInFlightTransaction(t *testing.T) {
	l, c, count := clientCluster(t, 2, actors.Timing{VoteTimeout: 5 * time.Second})
	if err := l.Partition(0, 1); err != nil {
		t.Fatal(err) // the transaction stays in flight, waiting for node 1's vote
	}
	type result struct {
		o   *messages.Outcome
		err error
	}
	done := make(chan result, 1)
	go func() {
		o, err := c.Submit(messages.Add("n0/x", 1), messages.Add("n1/x", 1))
		done <- result{o, err}
	}()
	var tx messages.TxID
	waitFor(t, "the client to hear its transaction's id", func() bool {
		p := c.Pending()
		if len(p) == 1 && !p[0].IsZero() {
			tx = p[0]
			return true
		}
		return false
	})
	if err := l.Crash(0); err != nil {
		t.Fatal(err)
	}
	r := <-done
	var no *NoOutcomeError
	if !errors.As(r.err, &no) {
		t.Fatalf("submit whose node died in flight: %v %v, want a *NoOutcomeError", r.o, r.err)
	}
	if no.Tx != tx || no.Node != 0 {
		t.Fatalf("no outcome for %v on node %d, want %v on node 0 (error: %v)", no.Tx, no.Node, tx, r.err)
	}
	if !strings.Contains(r.err.Error(), tx.String()) {
		t.Fatalf("error %q does not name the transaction %v", r.err, tx)
	}
	if n := count.ended[1].Load(); n != 0 {
		t.Fatalf("node 1 ran %d transactions: the Submit was sent again", n)
	}
	waitFor(t, "node 0's coordinator to count the transaction", func() bool { return count.ended[0].Load() == 1 })
	if p := c.Pending(); len(p) != 0 {
		t.Fatalf("pending after the Submit returned: %v", p)
	}
	// The client itself goes on, through node 1.
	l.Heal()
	o, err := c.Submit(messages.Add("n1/y", 1))
	if err != nil || !o.Committed || o.Tx.Node != 1 {
		t.Fatalf("next submit, node 0 down: %v %v, want committed via node 1", o, err)
	}
	if n := count.ended[1].Load(); n != 1 {
		t.Fatalf("node 1 ran %d transactions, want the one sent to it", n)
	}
}

// A Submit that reaches no node at all says so (ErrNotSent): nothing was
// begun, so it is safe to send again.
func TestClientSubmitReachingNoNodeIsNotSent(t *testing.T) {
	l := testCluster(t, 1, actors.Timing{})
	c := dial(t, l, 0)
	c.SetTimeout(300 * time.Millisecond) // how long it waits for the node
	if err := l.Crash(0); err != nil {
		t.Fatal(err)
	}
	waitConnEnded(t, c, 0)
	_, err := c.Submit(messages.Add("n0/x", 1))
	if !errors.Is(err, ErrNotSent) {
		t.Fatalf("submit with the only node down: %v, want ErrNotSent", err)
	}
	var no *NoOutcomeError
	if errors.As(err, &no) {
		t.Fatalf("submit never sent reported as no outcome: %v", err)
	}
}

// An answer that net/rpc delivered before the Client looked (a fast node,
// a busy client) is the call's answer: the Client's check that a call was
// sent must not swallow it (it once did, and the call then waited out its
// timeout for an answer it had already had).
func TestClientTakesAnAnswerThatCameAtOnce(t *testing.T) {
	peer := startMutePeer(t) // something to connect to; the codec answers
	c, err := Dial(peer.addr, withCodec(newInstantCodec))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetTimeout(10 * time.Second)
	vals, err := c.Read("k")
	if err != nil || len(vals) != 1 || vals[0].Value != 42 {
		t.Fatalf("read answered at once: %v %v", vals, err)
	}
	o, err := c.Submit(messages.Set("k", 1))
	if err != nil || !o.Committed {
		t.Fatalf("submit answered at once: %v %v", o, err)
	}
}
