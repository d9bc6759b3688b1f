package bridge

import (
	"net"
	"net/rpc"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"twopc/messages"
)

// A Bridge service bound to node 1 (what a connection authenticated as
// node 1 reaches) refuses a batch claiming node 2 whole, before any
// message is delivered, and delivers node 1's own with the sender named
// in each message's header.
func TestBoundServiceRefusesAnotherSender(t *testing.T) {
	checkNoLeaks(t)
	lns := make([]net.Listener, 3)
	members := make([]string, 3)
	for i := range lns {
		lns[i] = listenLoopback(t)
		members[i] = lns[i].Addr().String()
	}
	recv := startNode(t, 0, members, lns[0], nil, nil)
	type seen struct {
		from    int32
		bridged bool
		msg     interface{}
	}
	got := make(chan seen, 4)
	spawnNamed(t, recv.sys, "recorder", func(ctx actor.Context) {
		if _, sys := ctx.Message().(actor.SystemMessage); sys {
			return
		}
		switch ctx.Message().(type) {
		case *actor.Started, *actor.Stopping, *actor.Stopped:
			return
		}
		from, ok := SentBy(ctx.MessageHeader())
		got <- seen{from, ok, ctx.Message()}
	})

	bound := rpc.NewServer()
	if err := recv.bridge.RegisterPeer(bound, 1); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []int32{0, 3, -1} { // itself, and no member
		if err := recv.bridge.RegisterPeer(rpc.NewServer(), bad); err == nil {
			t.Errorf("RegisterPeer(%d) accepted", bad)
		}
	}
	ln := listenLoopback(t)
	srv := serveConns(ln, func(c net.Conn) { bound.ServeCodec(recv.bridge.ServerCodec(c)) })
	t.Cleanup(func() { srv.stop(); srv.wait() })
	c, err := dialCodec(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	batch := func(from int32, seq uint64, body interface{}) *Batch {
		return &Batch{Cluster: ClusterID(members), From: from, FromAddr: members[from], To: 0,
			Session: 1, Seq: seq, Msgs: []Msg{{To: "recorder", Body: body}}}
	}
	var ack Ack
	err = c.Call("Bridge.Deliver", batch(2, 1, &messages.Vote{Tx: messages.TxID{Node: 0, Incarnation: 1, Seq: 1}, From: 2, Kind: messages.VoteYes}), &ack)
	if err == nil || !strings.Contains(err.Error(), "the connection is node 1's, the batch claims node 2") {
		t.Fatalf("node 1's connection delivered a batch from node 2: err %v, accepted %d", err, ack.Accepted)
	}
	if st := recv.bridge.Stats(); st.ReceivedMessages != 0 || st.RefusedBatches != 1 {
		t.Errorf("after the impostor's batch: %+v", st)
	}
	own := &messages.Vote{Tx: messages.TxID{Node: 0, Incarnation: 1, Seq: 1}, From: 1, Kind: messages.VoteYes}
	if err := c.Call("Bridge.Deliver", batch(1, 1, own), &ack); err != nil || ack.Accepted != 1 {
		t.Fatalf("node 1's own batch: %v, accepted %d", err, ack.Accepted)
	}
	select {
	case s := <-got:
		if v, ok := s.msg.(*messages.Vote); !ok || v.From != 1 || !s.bridged || s.from != 1 {
			t.Errorf("delivered %+v: want the vote, its header naming node 1", s)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("node 1's vote never arrived")
	}
	// The impostor's vote, had it been delivered, would have come first
	// (one link's batches are delivered in order): the one that came is
	// node 1's, checked above.
}
