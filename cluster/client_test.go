package cluster

import (
	"strings"
	"testing"
	"time"

	"twopc/actors"
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
