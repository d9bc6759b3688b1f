package cluster

import (
	"math/rand"
	"net"
	"net/rpc"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"twopc/bridge"
	"twopc/identity"
	"twopc/internal/bank"
	"twopc/messages"
)

// Forged Commits, Aborts and Votes sprayed at every node while a bank runs
// change nothing: a stranger without a certificate is refused at the
// handshake, and a member's certificate (node 1's) can speak neither as
// another node nor for transactions it does not coordinate. The bank's
// invariant holds and its total never reads wrong. (On main before mutual
// TLS, such sprays from a plain TCP connection applied transfers on one
// side only.)
func TestForgedSpraysDuringABankRunChangeNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("runs transfers for a while")
	}
	l, ca := tlsCluster(t, 4, ConnLimits{})
	c := localBank{l}
	b := bank.New(bank.Config{Nodes: 4, AccountsPerNode: 3})
	if err := b.Setup(c); err != nil {
		t.Fatal(err)
	}
	members := l.Members()
	cluster := bridge.ClusterID(members)
	impostor := issue(t, ca, identity.Node(1), "127.0.0.1")

	// One connection per target node, holding node 1's certificate.
	targets := []int{0, 2, 3}
	conns := make([]*rpc.Client, len(targets))
	for i, node := range targets {
		conns[i] = rpcAs(t, l, node, impostor)
	}
	var stop atomic.Bool
	var sprayed, strangers atomic.Int64
	var wg sync.WaitGroup
	for i, node := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(node)))
			session := time.Now().UnixNano()
			for seq := uint64(1); !stop.Load(); seq++ {
				// Transaction ids are easy to guess: node.incarnation.seq.
				coord := int32(targets[rng.Intn(len(targets))])
				tx := messages.TxID{Node: coord, Incarnation: 1, Seq: uint64(1 + rng.Intn(400))}
				var msgs []bridge.Msg
				for _, body := range []any{
					&messages.Commit{Tx: tx, From: 1},                                           // only tx's coordinator may commit it
					&messages.Abort{Tx: tx, From: 1, Reason: "forged"},                          // nor abort it
					&messages.Vote{Tx: tx, From: 2, Kind: messages.VoteYes},                     // speaks for node 2
					&messages.Ack{Tx: tx, From: 3},                                              // speaks for node 3
					&messages.DecisionReply{Tx: tx, From: 0, Decision: messages.DecisionCommit}, // for node 0
				} {
					msgs = append(msgs, bridge.Msg{To: "participant", Body: body})
				}
				var ack bridge.Ack
				// As node 1, then claiming to be node 2 (refused whole).
				for _, from := range []int32{1, 2} {
					batch := &bridge.Batch{Cluster: cluster, From: from, FromAddr: members[from], To: int32(node), Session: session, Seq: seq, Msgs: msgs}
					if err := conns[i].Call("Bridge.Deliver", batch, &ack); err == nil && ack.Accepted > 0 {
						t.Errorf("node %d accepted %d forged messages (batch as node %d)", node, ack.Accepted, from)
					}
				}
				sprayed.Add(int64(2 * len(msgs)))
				// A stranger with no certificate at all.
				if conn, err := net.DialTimeout("tcp", members[node], time.Second); err == nil {
					_ = conn.SetDeadline(time.Now().Add(time.Second))
					_, _ = conn.Write([]byte("\x00\x00\x00\x10forged commit!!!"))
					_, _ = conn.Read(make([]byte, 1))
					conn.Close()
					strangers.Add(1)
				}
			}
		}()
	}

	readers := startTotalReaders(t, b, c, 1)
	var work sync.WaitGroup
	for w := range 4 {
		work.Add(1)
		go func() {
			defer work.Done()
			rng := rand.New(rand.NewSource(int64(100 + w)))
			for range 60 {
				b.Run(c, b.Transfer(rng, rng.Intn(4)))
			}
		}()
	}
	work.Wait()
	stop.Store(true)
	wg.Wait()
	good, _ := readers.finish(t, "total during the spray")
	settled(t, l, 10*time.Second)
	if err := b.Check(c); err != nil {
		t.Fatalf("bank after %d forged messages: %v", sprayed.Load(), err)
	}
	committed, aborted, unknown := b.Counts()
	if committed == 0 {
		t.Fatalf("no transfer committed during the spray (%d aborted, %d unknown)", aborted, unknown)
	}
	var refused, skipped uint64
	for _, node := range targets {
		st := l.Node(node).Bridge().Stats()
		refused += st.RefusedBatches
		skipped += st.SkippedMessages
	}
	if refused == 0 || skipped == 0 {
		t.Errorf("the nodes refused %d batches and skipped %d messages: the spray never reached them", refused, skipped)
	}
	t.Logf("%d forged messages and %d stranger connections during %d committed, %d aborted, %d unknown transfers; %d right totals read; %d batches refused, %d messages skipped",
		sprayed.Load(), strangers.Load(), committed, aborted, unknown, good, refused, skipped)
}
