package cluster

// Attacks on a node's connections, each of which must fail: a stranger
// without a certificate, or with one from another cluster; a client
// certificate speaking as a node; a node's certificate speaking for another
// node; an answer from a node that was not asked; running a node out of
// descriptors or connection slots.

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/rpc"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/go-hclog"

	"twopc/actors"
	"twopc/bridge"
	"twopc/identity"
	"twopc/messages"
)

// With TLS, a client's and an admin's certificates submit and read; the
// nodes reach each other (the transaction touches all three).
func TestTLSClusterServesClientsAndAdmins(t *testing.T) {
	l, ca := tlsCluster(t, 3, ConnLimits{})
	for i, p := range []identity.Peer{identity.Client, identity.Admin} {
		c := dialAs(t, l, i, issue(t, ca, p))
		mustCommit(t, c, messages.Add(messages.EverywhereKey, 1))
		wantEverywhere(t, c, messages.EverywhereKey, 3, int64(i+1))
	}
}

// Plain TCP — a client without TLS, or a stranger calling the bridge —
// gets nothing: the handshake fails before any rpc is read.
func TestPlainTCPRefused(t *testing.T) {
	l, _ := tlsCluster(t, 2, ConnLimits{})
	c, err := Dial(l.Members()[0])
	if err != nil {
		t.Fatal(err) // TCP itself connects; what follows must fail
	}
	defer c.Close()
	if _, err := c.Submit(messages.Set("n0/x", 1)); err == nil {
		t.Fatal("a plaintext client submitted a transaction")
	}
	// Speaking the wire's own encoding, in plain TCP.
	conn, err := net.Dial("tcp", l.Members()[0])
	if err != nil {
		t.Fatal(err)
	}
	raw := rpc.NewClientWithCodec(bridge.NewClientCodec(conn, bridge.Limits{}))
	defer raw.Close()
	var ack bridge.Ack
	batch := &bridge.Batch{Cluster: bridge.ClusterID(l.Members()), From: 1, FromAddr: l.Members()[1], To: 0, Session: 1, Seq: 1}
	if err := raw.Call("Bridge.Deliver", batch, &ack); err == nil {
		t.Fatal("a plaintext stranger delivered a batch")
	}
	if st := l.Node(0).Bridge().Stats(); st.ReceivedBatches != 0 {
		t.Errorf("node 0 received %d batches from plaintext connections", st.ReceivedBatches)
	}
}

// A certificate of another cluster's CA — naming a client, or node 1 — is
// refused, even by a stranger that trusts the real CA.
func TestCertificateOfAnotherCARefused(t *testing.T) {
	l, ca := tlsCluster(t, 2, ConnLimits{})
	other, err := identity.NewCA("another cluster")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []identity.Peer{identity.Client, identity.Node(1)} {
		var hosts []string
		if p.IsNode() {
			hosts = []string{"127.0.0.1"}
		}
		stranger := issue(t, other, p, hosts...)
		cfg := stranger.ClientConfig()
		cfg.RootCAs = ca.Pool()
		conn, err := tls.Dial("tcp", l.Members()[0], cfg)
		if err != nil {
			continue // refused during the handshake: good
		}
		c := rpc.NewClientWithCodec(bridge.NewClientCodec(conn, bridge.Limits{}))
		var out messages.Outcome
		err = c.Call("Client.Submit", &SubmitArgs{Ops: []messages.Op{messages.Set("n0/x", 1)}}, &out)
		c.Close()
		if err == nil {
			t.Errorf("%v of another CA submitted a transaction", p)
		}
	}
	if v := valueVia(t, l, 0, "n0/x"); v != 0 {
		t.Errorf("n0/x = %d after strangers' attempts", v)
	}
}

// forgedCommitBatch is what an impostor speaking as node `as` sends node 0:
// a Prepare and a Commit of a transaction coordinated by `as`, setting
// n0/pwned, which node 0's forgery rules accept if the batch's sender is
// believed.
func forgedCommitBatch(l *Local, as int32) *bridge.Batch {
	tx := messages.TxID{Node: as, Incarnation: 1, Seq: 4242}
	return &bridge.Batch{
		Cluster: bridge.ClusterID(l.Members()), From: as, FromAddr: l.Members()[as], To: 0,
		Session: time.Now().UnixNano(), Seq: 1,
		Msgs: []bridge.Msg{
			{To: "participant", Body: &messages.Prepare{Tx: tx, Ops: []messages.Op{messages.Set("n0/pwned", 666)}, Participants: []int32{0}, Begun: time.Now().UnixNano()}},
			{To: "participant", Body: &messages.Commit{Tx: tx, From: as}},
		},
	}
}

// A client certificate cannot speak as a node: its connections have no
// Bridge service at all.
func TestClientCertificateCannotDeliver(t *testing.T) {
	l, ca := tlsCluster(t, 3, ConnLimits{})
	for _, p := range []identity.Peer{identity.Client, identity.Admin} {
		c := rpcAs(t, l, 0, issue(t, ca, p))
		var ack bridge.Ack
		err := c.Call("Bridge.Deliver", forgedCommitBatch(l, 1), &ack)
		if err == nil || !strings.Contains(err.Error(), "can't find service") {
			t.Errorf("%v called Bridge.Deliver: err %v, accepted %d", p, err, ack.Accepted)
		}
	}
	if st := l.Node(0).Bridge().Stats(); st.ReceivedBatches != 0 || st.ReceivedMessages != 0 {
		t.Errorf("node 0's bridge took %d batches (%d messages) from client connections", st.ReceivedBatches, st.ReceivedMessages)
	}
	if v := valueVia(t, l, 0, "n0/pwned"); v != 0 {
		t.Errorf("n0/pwned = %d: a client's forged commit took effect", v)
	}
}

// Node 1's certificate claiming to be node 2: refused whole, before any
// of its messages reaches an actor, and nothing changes. The same
// connection speaking as itself is accepted, so the refusal is the
// binding's, not a broken link's.
func TestNodeCertificateSpeakingForAnotherRefused(t *testing.T) {
	l, ca := tlsCluster(t, 3, ConnLimits{})
	impostor := rpcAs(t, l, 0, issue(t, ca, identity.Node(1), "127.0.0.1"))
	var ack bridge.Ack
	err := impostor.Call("Bridge.Deliver", forgedCommitBatch(l, 2), &ack)
	if err == nil || !strings.Contains(err.Error(), "the connection is node 1's, the batch claims node 2") {
		t.Fatalf("node 1's connection delivered node 2's batch: err %v, accepted %d", err, ack.Accepted)
	}
	st := l.Node(0).Bridge().Stats()
	if st.ReceivedMessages != 0 || st.RefusedBatches != 1 {
		t.Errorf("after the forged batch: %d messages received, %d batches refused; want 0 and 1", st.ReceivedMessages, st.RefusedBatches)
	}
	if v := valueVia(t, l, 0, "n0/pwned"); v != 0 {
		t.Errorf("n0/pwned = %d: node 1 committed a transaction in node 2's name", v)
	}
	own := &bridge.Batch{Cluster: bridge.ClusterID(l.Members()), From: 1, FromAddr: l.Members()[1], To: 0, Session: time.Now().UnixNano(), Seq: 1}
	if err := impostor.Call("Bridge.Deliver", own, &ack); err != nil {
		t.Fatalf("node 1 speaking as itself was refused: %v", err)
	}
	// The cluster works on.
	mustCommit(t, dialAs(t, l, 2, issue(t, ca, identity.Client)), messages.Add(messages.EverywhereKey, 1))
}

// A reply box keeps an answer that crossed the wire only from the node
// the request went to; its own node's actors are trusted. And reply
// addresses are not guessable: each carries a random part.
func TestReplyFromANodeNotAskedIgnored(t *testing.T) {
	from := func(node int32, m interface{}) interface{} {
		return &actor.MessageEnvelope{Header: map[string]string{bridge.SenderHeader: fmt.Sprint(node)}, Message: m}
	}
	box := &replyBox{ch: make(chan interface{}, 1), asked: 1}
	forged := &messages.ReadReply{From: 1, Values: []messages.KeyValue{{Key: "n1/a", Value: 666}}}
	box.SendUserMessage(nil, from(2, forged))
	select {
	case m := <-box.ch:
		t.Fatalf("node 2's reply %v was taken as node 1's", m)
	default:
	}
	if box.ignored.Load() != 1 {
		t.Errorf("%d replies ignored, want 1", box.ignored.Load())
	}
	real := &messages.ReadReply{From: 1, Values: []messages.KeyValue{{Key: "n1/a", Value: 5}}}
	box.SendUserMessage(nil, from(1, real))
	if m := <-box.ch; m != real {
		t.Fatalf("node 1's reply not kept: got %v", m)
	}
	local := &replyBox{ch: make(chan interface{}, 1), asked: 0}
	local.SendUserMessage(nil, &messages.Outcome{Committed: true}) // from this node's coordinator
	if len(local.ch) != 1 {
		t.Error("a local answer was ignored")
	}

	// Over a real cluster: a Read from node 0 of a key on node 1 works,
	// and reply ids differ beyond the registry's counter.
	l := testCluster(t, 2, actors.Timing{})
	n0 := l.Node(0)
	ids := map[string]bool{}
	for range 3 {
		r, err := n0.request(n0.participant, &messages.Read{Keys: []string{"n0/a"}})
		if err != nil {
			t.Fatal(err)
		}
		if r.box.asked != 0 {
			t.Errorf("a request to node 0's participant expects node %d", r.box.asked)
		}
		if _, err := r.await(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		i := strings.LastIndex(r.pid.Id, "-")
		if i < 0 || len(r.pid.Id)-i-1 < 16 {
			t.Fatalf("reply id %q has no random part", r.pid.Id)
		}
		ids[r.pid.Id[i+1:]] = true
	}
	if len(ids) != 3 {
		t.Errorf("random parts repeat: %v", ids)
	}
	if vals, err := n0.Read("n1/a"); err != nil || len(vals) != 1 || vals[0].Node != 1 {
		t.Errorf("read of node 1's key: %v, %v", vals, err)
	}
}

// Beyond MaxConns, a client's connection is refused; members (which do not
// count against it) still connect, and a transaction across all of them
// commits.
func TestConnectionCapRefusesTheExtraMembersStillConnect(t *testing.T) {
	l, ca := tlsCluster(t, 3, ConnLimits{MaxConns: 2})
	client := issue(t, ca, identity.Client)
	held := []*Client{dialAs(t, l, 0, client), dialAs(t, l, 0, client)}
	for _, c := range held {
		if _, err := c.Read("n0/x"); err != nil {
			t.Fatal(err)
		}
	}
	extra := dialAs(t, l, 0, client)
	if _, err := extra.Read("n0/x"); err == nil {
		t.Fatal("a third client connection was served with MaxConns 2")
	}
	// No member has dialled node 0 yet; the transaction makes them.
	mustCommit(t, dialAs(t, l, 1, client), messages.Add(messages.EverywhereKey, 1))
	wantEverywhere(t, held[0], messages.EverywhereKey, 3, 1)
	// A slot freed is a slot to take.
	held[1].Close()
	waitFor(t, "a client slot to free", func() bool {
		c, err := Dial(l.Members()[0], WithTLS(client.ClientConfig()))
		if err != nil {
			return false
		}
		defer c.Close()
		_, err = c.Read("n0/x")
		return err == nil
	})
}

// Strangers holding handshakes open cannot keep anyone out: beyond
// MaxHandshakes the oldest is closed, so a client still gets in.
func TestSilentStrangersDoNotStarveClients(t *testing.T) {
	l, ca := tlsCluster(t, 1, ConnLimits{MaxHandshakes: 2})
	var strangers []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", l.Members()[0])
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		strangers = append(strangers, c)
	}
	// The first stranger is pushed out by the third.
	if _, err := strangers[0].Read(make([]byte, 1)); err == nil {
		t.Fatal("the oldest stranger's connection stayed open")
	}
	c := dialAs(t, l, 0, issue(t, ca, identity.Client))
	if _, err := c.Read("n0/x"); err != nil {
		t.Fatalf("a client was kept out by silent strangers: %v", err)
	}
}

// A stranger that never finishes its handshake is closed after
// HandshakeTimeout; an idle connection after IdleTimeout — and members'
// idle links, closed the same way, come back when used.
func TestHandshakeAndIdleTimeouts(t *testing.T) {
	l, ca := tlsCluster(t, 3, ConnLimits{HandshakeTimeout: 200 * time.Millisecond, IdleTimeout: 300 * time.Millisecond})
	stranger, err := net.Dial("tcp", l.Members()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	if _, err := stranger.Read(make([]byte, 1)); err == nil {
		t.Fatal("a silent stranger's connection was not closed")
	}
	client := issue(t, ca, identity.Client)
	c := dialAs(t, l, 0, client)
	mustCommit(t, c, messages.Add(messages.EverywhereKey, 1)) // members' links are up
	idle, err := tls.Dial("tcp", l.Members()[0], client.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if _, err := idle.Read(make([]byte, 1)); err == nil {
		t.Fatal("an idle connection was not closed")
	}
	// By now the links made for the first transaction have idled as long:
	// a new transaction over them still commits.
	mustCommit(t, dialAs(t, l, 1, client), messages.Add(messages.EverywhereKey, 1))
	wantEverywhere(t, dialAs(t, l, 2, client), messages.EverywhereKey, 3, 2)
}

// emfileListener fails its first n Accepts as a process out of file
// descriptors does, then accepts for real.
type emfileListener struct {
	net.Listener
	left   atomic.Int32
	failed chan struct{} // closed after the last failure
	once   sync.Once
}

func (l *emfileListener) Accept() (net.Conn, error) {
	if l.left.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	l.once.Do(func() { close(l.failed) })
	return l.Listener.Accept()
}

// The accept loop outlives running out of descriptors: it backs off, logs
// once per interval, and accepts again.
func TestAcceptLoopSurvivesEMFILE(t *testing.T) {
	ln := &emfileListener{Listener: listenLoopback(t), failed: make(chan struct{})}
	ln.left.Store(6)
	var buf syncBuffer
	log := hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Info})
	served := make(chan struct{}, 1)
	s := serveConnsWith(ln, connOptions{Log: log}, func(_ identity.Peer, c net.Conn) {
		served <- struct{}{}
		io.Copy(io.Discard, c)
	})
	defer func() { s.stop(); s.wait() }()
	c, err := net.Dial("tcp", ln.Addr().String()) // queued in the backlog while Accept fails
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-served:
	case <-time.After(30 * time.Second):
		t.Fatal("no connection served after EMFILE: the accept loop gave up")
	}
	<-ln.failed
	logged := strings.Count(buf.String(), "accept failed")
	if logged != 1 || !strings.Contains(buf.String(), "out_of_descriptors=true") {
		t.Errorf("6 failed accepts logged %d times (want once per interval):\n%s", logged, buf.String())
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A Client whose connection has ended (the node closes connections idle
// past IdleTimeout) dials again on its next call: net/rpc refused that call
// without sending it, so even a Submit is safe to send on the new one.
func TestClientDialsAgainAfterItsConnectionEnded(t *testing.T) {
	l, ca := tlsCluster(t, 2, ConnLimits{})
	c := dialAs(t, l, 0, issue(t, ca, identity.Client))
	mustCommit(t, c, messages.Set("n1/x", 1))
	c.mu.Lock()
	ended := c.slots[0].conn.rpc
	c.mu.Unlock()
	ended.Close() // as net/rpc marks a connection whose peer closed it
	mustCommit(t, c, messages.Add("n1/x", 1))
	if v := values(t, c, "n1/x")[1]; v != 2 {
		t.Errorf("n1/x = %d, want 2: the Submit after the reconnect ran %d times", v, v-1)
	}
	c.Close()
	if _, err := c.Read("n1/x"); err == nil {
		t.Error("a closed Client dialled again")
	}
}

// Hundreds of silent connections — more than MaxHandshakes — hold no more
// than MaxHandshakes slots, and a client is served among them.
func TestManySilentConnectionsLeaveTheNodeServing(t *testing.T) {
	l, ca := tlsCluster(t, 1, ConnLimits{})
	var silent []net.Conn
	defer func() {
		for _, c := range silent {
			c.Close()
		}
	}()
	for range 300 {
		c, err := net.Dial("tcp", l.Members()[0])
		if err != nil {
			t.Fatal(err)
		}
		silent = append(silent, c)
	}
	c := dialAs(t, l, 0, issue(t, ca, identity.Client))
	if _, err := c.Read("n0/x"); err != nil {
		t.Fatalf("a client among 300 silent connections: %v", err)
	}
	s := l.Node(0).server
	s.mu.Lock()
	pending := len(s.pending)
	s.mu.Unlock()
	if pending > DefaultMaxHandshakes {
		t.Errorf("%d connections handshaking, above the cap of %d", pending, DefaultMaxHandshakes)
	}
	// The oldest silent connections were closed to make room.
	if _, err := silent[0].Read(make([]byte, 1)); err == nil {
		t.Error("the first silent connection is still open")
	}
}
