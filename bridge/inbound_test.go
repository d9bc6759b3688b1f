package bridge

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/go-hclog"

	"twopc/messages"
)

// TestInboundRefusesBatchOvertakenAfterTimeout: after a call deadline the
// bridge counts the batch as dropped, closes the connection and sends the
// next batch on a new one. But the timed-out request may already sit in the
// network or in the peer's receive buffer; net/rpc serves each connection on
// its own goroutine, so the old batch can arrive after the new one. Batches
// carry a session and sequence number, so the receiver refuses the late one:
// a loss, which the protocol recovers from, instead of a reordering.
func TestInboundRefusesBatchOvertakenAfterTimeout(t *testing.T) {

	checkNoLeaks(t)
	lnA, lnB := listenLoopback(t), listenLoopback(t)
	proxy := startHoldProxy(t, lnB.Addr().String())
	members := []string{lnA.Addr().String(), proxy.ln.Addr().String()} // node 1 is reached through the proxy
	var got <-chan envelope
	startNode(t, 1, members, lnB, nil, func(n *testNode) { got = spawnProbe(t, n.sys, "recorder", 16) })
	a := startNode(t, 0, members, lnA, func(c *Config) { c.CallTimeout = 300 * time.Millisecond }, nil)
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

// TestInboundRefusesBatchFromAnotherCluster: a node of another cluster (a
// stale process, a second cluster whose member list overlaps after a port
// was reused) that calls itself node 0 must be refused: batches carry the
// cluster's id, the sender's address and the receiver's id.
func TestInboundRefusesBatchFromAnotherCluster(t *testing.T) {

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

// A peer speaks only for itself, and only a transaction's coordinator
// prepares, commits or aborts it: node 1 may not vote as node 2, nor
// prepare or commit node 2's or node 0's transactions.
func TestInboundRefusesForgedMessages(t *testing.T) {
	checkNoLeaks(t)
	logger, logs := newBufferLogger(hclog.Warn)
	lns := make([]net.Listener, 3)
	members := make([]string, 3)
	for i := range lns {
		lns[i] = listenLoopback(t)
		members[i] = lns[i].Addr().String()
	}
	recv := startNode(t, 0, members, lns[0], func(c *Config) {
		c.Logger = logger
	}, nil)
	got := spawnProbe(t, recv.sys, "recorder", 16)
	c, err := dialCodec(recv.addr)
	if err != nil {
		t.Fatalf("dial node 0: %v", err)
	}
	defer c.Close()

	tx := func(node int32, seq uint64) messages.TxID { return messages.TxID{Node: node, Incarnation: 1, Seq: seq} }
	forged := []interface{}{
		&messages.Vote{Tx: tx(0, 1), From: 2, Kind: messages.VoteYes},                                        // speaks for node 2
		&messages.Prepare{Tx: tx(2, 1)},                                                                      // node 2's transaction
		&messages.Commit{Tx: tx(0, 1), From: 1},                                                              // node 0's transaction
		&messages.Abort{Tx: tx(1, 1), From: 2},                                                               // its own transaction, as node 2
		&messages.Ack{Tx: tx(7, 1), From: 1},                                                                 // a coordinator that is no member
		&messages.DecisionReply{Tx: tx(0, 1), From: 0},                                                       // speaks for the receiver
		&messages.DecisionQuery{Tx: tx(-1, 1), From: 1},                                                      // a negative coordinator
		&messages.Commit{Tx: tx(1, 1), From: 0},                                                              // its own transaction, as node 0
		&messages.ReadLock{Reader: messages.ReadID{Node: 2, Incarnation: 1, Seq: 1}},                         // another node's read
		&messages.ReadRelease{Reader: messages.ReadID{Node: 0, Incarnation: 1, Seq: 1}},                      // the receiver's own read
		&messages.ReadLocked{From: 2},                                                                        // answers for node 2
		&messages.ReadReleased{From: 3},                                                                      // answers for node 3
		&messages.PromiseRequest{Tx: tx(0, 1), Ballot: 4, From: 1},                                           // ballot 4 is node 0's ((4-1) mod 3)
		&messages.AcceptRequest{Tx: tx(0, 1), Ballot: 0, From: 1, Decision: messages.DecisionCommit},         // ballot 0 is the coordinator's, node 0
		&messages.AcceptReply{Tx: tx(0, 1), Ballot: 2, From: 2, OK: true},                                    // answers for node 2
		&messages.Vote{Tx: tx(0, 1), From: 1, Kind: messages.VoteYes},                                        // the valid one: delivered
		&messages.Prepare{Tx: tx(1, 2), Participants: []int32{0, 1}},                                         // valid: delivered
		&messages.DecisionQuery{Tx: tx(2, 1), From: 1},                                                       // valid (asking about node 2's): delivered
		&messages.Abort{Tx: tx(1, 3), From: 1, Reason: "valid, its own"},                                     // valid: delivered
		&messages.ReadLock{Reader: messages.ReadID{Node: 1, Incarnation: 1, Seq: 1}, Keys: []string{"n0/a"}}, // valid, its own read
		&messages.PromiseRequest{Tx: tx(0, 1), Ballot: 5, From: 1},                                           // valid: ballot 5 is node 1's
		&messages.AcceptRequest{Tx: tx(1, 1), Ballot: 0, From: 1, Decision: messages.DecisionAbort},          // valid: its own transaction's ballot 0
	}
	const valid = 7
	batch := func(seq uint64) *Batch {
		b := &Batch{Cluster: recv.bridge.cluster, From: 1, FromAddr: members[1], To: 0, Session: 1, Seq: seq}
		for _, m := range forged {
			b.Msgs = append(b.Msgs, Msg{To: "recorder", Body: m})
		}
		return b
	}
	var ack Ack
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
		"ReadRelease.Reader.Node is node 0, but node 1 sent it",
		"ReadLocked.From is node 2, but node 1 sent it",
		"PromiseRequest for 0.1.1 in ballot 4, which is node 0's, but node 1 sent it",
		"AcceptRequest for 0.1.1 in ballot 0, which is node 0's, but node 1 sent it",
		"AcceptReply claims to be from node 2, but node 1 sent it",
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

func TestInboundRefusesBatches(t *testing.T) {
	checkNoLeaks(t)
	nodes := startCluster(t, 2)
	b := nodes[1]
	got := spawnProbe(t, b.sys, "recorder", 16)
	c, err := dialCodec(b.addr)
	if err != nil {
		t.Fatalf("dial node 1: %v", err)
	}
	defer c.Close()

	for _, from := range []int32{7, -1, 1} { // unknown, negative, the receiver itself
		var ack Ack
		err := c.Call("Bridge.Deliver", &Batch{From: from, Msgs: []Msg{{To: "recorder", Body: vote(1)}}}, &ack)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("from node %d", from)) {
			t.Errorf("batch from node %d: want an error naming it, got %v", from, err)
		}
	}

	var ack Ack
	batch := &Batch{Cluster: b.bridge.cluster, From: 0, FromAddr: nodes[0].addr, To: 1, Session: 1, Seq: 1, Msgs: []Msg{
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
