package cluster

// A node's request plumbing: a Go caller (Submit, Read, ReadLocal, the
// operator's questions) sends one of the node's roles a message with a
// reply box as its sender and waits for the answer, or for the node to
// crash or stop.

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"twopc/actors"
	"twopc/bridge"
	"twopc/messages"
)

// NoOutcomeError is Submit's error when no outcome reached the caller: the
// wait timed out, the node crashed or stopped, or its coordinator was not
// running. The transaction itself is not lost: if the coordinator named it
// (Tx is not zero), its participants settle it — commit or abort, the same
// everywhere — and Local.KnownOutcome can tell which, later.
type NoOutcomeError struct {
	Node int32         // the node the transaction was submitted to; -1 if a Client could not tell which
	Tx   messages.TxID // zero if the coordinator never named it (as far as the caller heard)
	Err  error         // why there is no outcome (e.g. errNodeCrashed, "no answer within 5s")
}

func (e *NoOutcomeError) Error() string {
	tx := ""
	if !e.Tx.IsZero() {
		tx = " for " + e.Tx.String()
	}
	node := fmt.Sprintf("node %d: ", e.Node)
	if e.Node < 0 {
		node = "" // a Client that never learnt which node it reached
	}
	return fmt.Sprintf("%sno outcome%s: %v (the transaction may still commit or abort; its participants settle it)", node, tx, e.Err)
}

func (e *NoOutcomeError) Unwrap() error { return e.Err }

// errNodeStopping is what callers waiting on a node that stops are told.
var errNodeStopping = errors.New("node stopping")

// Submit runs a transaction coordinated by this node and returns its outcome.
// When no outcome comes (timeout, crash, stop, no coordinator) the error is a
// *NoOutcomeError naming the transaction if the coordinator named it.
func (n *Node) Submit(ops ...messages.Op) (*messages.Outcome, error) { return n.submit(ops, nil) }

// submit is Submit, calling named (if not nil) with the transaction's id
// as soon as the coordinator names it, ahead of the outcome: the Client
// service passes the id on, so a client whose node dies mid-call still
// knows which transaction to ask about. named runs on the coordinator's
// goroutine and must not block.
func (n *Node) submit(ops []messages.Op, named func(messages.TxID)) (*messages.Outcome, error) {
	if err := messages.CheckOpCount(len(ops), n.cfg.Limits.WithDefaults().MaxOpsPerTx); err != nil {
		return nil, fmt.Errorf("node %d: %w", n.cfg.ID, err)
	}
	r, err := n.requestNamed(n.coordinator, &messages.Begin{Ops: ops, NotifyBegun: true}, named)
	if err != nil {
		return nil, err
	}
	if obs := n.cfg.Observer; obs != nil {
		start := time.Now()
		o, err := n.outcome(r)
		obs.TransactionEnded(o, err, time.Since(start))
		return o, err
	}
	return n.outcome(r)
}

// outcome waits for a submitted transaction's outcome.
func (n *Node) outcome(r *pendingReply) (*messages.Outcome, error) {
	res, err := r.await(time.Now().Add(n.clientTimeout()))
	if err != nil {
		return nil, &NoOutcomeError{Node: n.cfg.ID, Tx: r.box.begunTx(), Err: err}
	}
	switch o := res.(type) {
	case *messages.Outcome:
		return o, nil
	case *actor.DeadLetterResponse:
		return nil, &NoOutcomeError{Node: n.cfg.ID, Tx: r.box.begunTx(), Err: errors.New("the coordinator is not running")}
	default:
		return nil, fmt.Errorf("node %d: unexpected answer %T", n.cfg.ID, res)
	}
}

// clientTimeout bounds a client's wait for an outcome: the vote timeout plus
// the ack wait, with room to spare.
func (n *Node) clientTimeout() time.Duration {
	return 3*n.cfg.Timing.WithDefaults().VoteTimeout + 2*time.Second
}

// Read returns the committed value of each key from the node(s) that own
// it: one entry per key, or per node for a key held everywhere ("value").
// Keys on several nodes are read as one snapshot (SnapshotRead); keys of
// one node are one snapshot of it (see actors/reads.go), each key
// linearizable.
func (n *Node) Read(keys ...string) ([]NodeValue, error) {
	if n.cut.Load() {
		return nil, fmt.Errorf("node %d: %w", n.cfg.ID, errNodeCrashed)
	}
	if len(keys) == 0 {
		return nil, errors.New("read: no keys given")
	}
	if limit := n.cfg.Limits.WithDefaults().MaxKeysPerRead; len(keys) > limit {
		return nil, fmt.Errorf("read: %d keys: more than the limit of %d per read (MaxKeysPerRead)", len(keys), limit)
	}
	if ownedBySeveral(keys, len(n.cfg.Members)) {
		return n.SnapshotRead(keys...) // one moment on every node (snapshot.go)
	}
	members := len(n.cfg.Members)
	owners := make([][]int32, len(keys))
	perNode := make([][]string, members) // each owner is asked once, for all its keys
	for i, k := range keys {
		own, err := messages.Owners(k, members)
		if err != nil {
			return nil, err
		}
		owners[i] = own
		for _, o := range own {
			perNode[o] = append(perNode[o], k)
		}
	}
	// The owners are asked at once.
	deadline := time.Now().Add(n.readTimeout())
	pending := make([]*pendingReply, members)
	defer func() { // boxes not awaited (after an error) are freed too
		for _, r := range pending {
			if r != nil {
				n.sys.ProcessRegistry.Remove(r.pid)
			}
		}
	}()
	for o, ks := range perNode {
		if len(ks) > 0 {
			r, err := n.request(actor.NewPID(n.cfg.Members[o], actors.ParticipantName), &messages.Read{Keys: ks})
			if err != nil {
				return nil, err
			}
			pending[o] = r
		}
	}
	got := make([][]messages.KeyValue, members)
	for o, r := range pending {
		if r == nil {
			continue
		}
		res, err := r.await(deadline)
		pending[o] = nil
		if got[o], err = readValues(int32(o), perNode[o], res, err); err != nil {
			return nil, err
		}
	}
	// One entry per key per owner, in the order the keys were asked.
	var out []NodeValue
	next := make([]int, members)
	for i, k := range keys {
		for _, o := range owners[i] {
			out = append(out, NodeValue{Key: k, Node: o, Value: got[o][next[o]].Value})
			next[o]++
		}
	}
	return out, nil
}

// ReadLocal returns the committed values of keys as this node's own
// participant holds them, in the order asked: for looking at one replica of
// a key held everywhere ("value"), or at a node's state while others are
// down. Each key must be owned by this node. Like Read it may wait for
// transactions prepared on the keys to be decided, and it ends when the
// node crashes or stops.
func (n *Node) ReadLocal(keys ...string) ([]messages.KeyValue, error) {
	if n.cut.Load() {
		return nil, fmt.Errorf("node %d: %w", n.cfg.ID, errNodeCrashed)
	}
	if len(keys) == 0 {
		return nil, errors.New("read: no keys given")
	}
	for _, k := range keys {
		own, err := messages.Owners(k, len(n.cfg.Members))
		if err != nil {
			return nil, err
		}
		if !slices.Contains(own, n.cfg.ID) {
			return nil, fmt.Errorf("read %s on node %d: the key is owned by %s, not by this node", k, n.cfg.ID, nodeList(own))
		}
	}
	res, err := n.await(n.participant, &messages.Read{Keys: keys}, n.readTimeout())
	return readValues(n.cfg.ID, keys, res, err)
}

// readLocal reads a key from this node's own participant.
func (n *Node) readLocal(key string) (int64, error) {
	res, err := n.sys.Root.RequestFuture(n.participant, &messages.Read{Keys: []string{key}}, 5*time.Second).Result()
	if err != nil {
		return 0, err
	}
	return res.(*messages.ReadReply).Values[0].Value, nil
}

// readValues checks owner's answer to a Read of keys (res, or err if none
// came) and returns its values, in the order asked.
func readValues(owner int32, keys []string, res interface{}, err error) ([]messages.KeyValue, error) {
	what := strings.Join(keys, " ")
	if err != nil {
		return nil, fmt.Errorf("read %s: node %d did not answer: %w", what, owner, err)
	}
	if _, dead := res.(*actor.DeadLetterResponse); dead {
		return nil, fmt.Errorf("read %s: node %d did not answer: its participant is not running", what, owner)
	}
	rr, ok := res.(*messages.ReadReply)
	if ok && rr.From != owner {
		// A reply address can be guessed; only the owner asked may answer.
		return nil, fmt.Errorf("read %s: answer from node %d, not from node %d that was asked", what, rr.From, owner)
	}
	if ok && rr.Err != "" {
		return nil, fmt.Errorf("read %s: %s", what, rr.Err)
	}
	if !ok || len(rr.Values) != len(keys) {
		return nil, fmt.Errorf("read %s: node %d: unexpected answer %T", what, owner, res)
	}
	return rr.Values, nil
}

// readTimeout bounds a read: one held by transactions prepared on its keys
// waits up to the vote timeout for them to be decided.
func (n *Node) readTimeout() time.Duration {
	return 2*n.cfg.Timing.WithDefaults().VoteTimeout + time.Second
}

// NodeValue is a key's committed value as one node holds it.
type NodeValue struct {
	Key   string
	Node  int32
	Value int64
}

func nodeList(ids []int32) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = fmt.Sprint(id)
	}
	if len(ids) == 1 {
		return "node " + s[0]
	}
	return "nodes " + strings.Join(s, ",")
}

// request sends msg to target with a fresh reply box as the sender. Reply
// boxes rather than Futures: a wait must also end when the node crashes or
// stops (its dead roles will never answer), and a Future cannot be
// selected on.
func (n *Node) request(target *actor.PID, msg interface{}) (*pendingReply, error) {
	return n.requestNamed(target, msg, nil)
}

// requestNamed is request, with named called on the Begun that answers a
// Begin with NotifyBegun (see submit).
func (n *Node) requestNamed(target *actor.PID, msg interface{}, named func(messages.TxID)) (*pendingReply, error) {
	box := &replyBox{ch: make(chan interface{}, 1), asked: n.cfg.ID, named: named}
	for i, addr := range n.cfg.Members {
		if addr == target.Address {
			box.asked = int32(i)
		}
	}
	// A reply address another node could guess would let it answer in the
	// place of the node asked (the box checks the sender too): a random
	// part makes it unguessable.
	var nonce [12]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("node %d: reply address: %w", n.cfg.ID, err)
	}
	pid, ok := n.sys.ProcessRegistry.Add(box, "reply"+n.sys.ProcessRegistry.NextId()+"-"+hex.EncodeToString(nonce[:]))
	if !ok {
		return nil, fmt.Errorf("node %d: cannot register a reply address", n.cfg.ID)
	}
	n.sys.Root.RequestWithCustomSender(target, msg, pid)
	return &pendingReply{n: n, box: box, pid: pid}, nil
}

// pendingReply is a request sent with a reply box as its sender.
type pendingReply struct {
	n   *Node
	box *replyBox
	pid *actor.PID
}

// await waits for the answer until deadline, or until the node crashes or
// stops, and frees the reply box.
func (r *pendingReply) await(deadline time.Time) (interface{}, error) {
	defer r.n.sys.ProcessRegistry.Remove(r.pid)
	wait := time.Until(deadline)
	timeout := time.NewTimer(wait)
	defer timeout.Stop()
	var res interface{}
	select {
	case res = <-r.box.ch:
	case <-r.n.cutCh:
	case <-r.n.stopCh:
		return nil, errNodeStopping
	case <-timeout.C:
		return nil, fmt.Errorf("no answer within %v", wait.Round(time.Millisecond))
	}
	if r.n.cut.Load() {
		// Whatever the dead node's actors answered after the cut, a caller
		// of a crashed node learns nothing.
		return nil, errNodeCrashed
	}
	return res, nil
}

// await sends msg to one of this node's roles and waits up to d for the
// answer, or until the node crashes or stops.
func (n *Node) await(target *actor.PID, msg interface{}, d time.Duration) (interface{}, error) {
	if n.cut.Load() {
		return nil, errNodeCrashed
	}
	r, err := n.request(target, msg)
	if err != nil {
		return nil, err
	}
	return r.await(time.Now().Add(d))
}

// ask is await, with its errors naming the node and a dead role an error.
func (n *Node) ask(target *actor.PID, msg interface{}, d time.Duration) (interface{}, error) {
	res, err := n.await(target, msg, d)
	if err != nil {
		return nil, fmt.Errorf("node %d: %w", n.cfg.ID, err)
	}
	if _, dead := res.(*actor.DeadLetterResponse); dead {
		return nil, fmt.Errorf("node %d: its %s is not running", n.cfg.ID, target.Id)
	}
	return res, nil
}

// replyBox is a one-shot reply address that a Go caller can select on. It
// keeps the first message and drops any other. A Begun (Submit's early
// notice of its transaction id) is kept apart, in begun, and is not the
// answer.
type replyBox struct {
	ch    chan interface{}
	begun txNote
	// asked is the node the request went to. An answer that came over the
	// wire is kept only if that node sent it (the bridge names the sender
	// its connection proves); what this node's own actors send is trusted.
	asked   int32
	ignored atomic.Uint64       // answers from a node not asked
	named   func(messages.TxID) // told the Begun's id, if set (see submit)
}

func (r *replyBox) SendUserMessage(_ *actor.PID, m interface{}) {
	hdr, msg, _ := actor.UnwrapEnvelope(m)
	if from, bridged := bridge.SentBy(hdr); bridged && from != r.asked {
		r.ignored.Add(1)
		return
	}
	if b, ok := msg.(*messages.Begun); ok {
		r.begun.set(b.Tx)
		if r.named != nil {
			r.named(b.Tx)
		}
		return
	}
	select {
	case r.ch <- msg:
	default:
	}
}

func (r *replyBox) SendSystemMessage(*actor.PID, interface{}) {}

func (r *replyBox) Stop(*actor.PID) {}

// begunTx is the id the coordinator announced for this request, or zero.
func (r *replyBox) begunTx() messages.TxID { return r.begun.get() }

// txNote holds the id a Begun announced. The box is written on the
// coordinator's goroutine and read by Submit's caller after its wait ended
// (also when the wait ended by a crash, with no happens-before from the
// coordinator), hence the lock.
type txNote struct {
	mu sync.Mutex
	tx messages.TxID
}

func (n *txNote) set(tx messages.TxID) {
	n.mu.Lock()
	n.tx = tx
	n.mu.Unlock()
}

func (n *txNote) get() messages.TxID {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.tx
}

// SyncLog returns once every record this node's roles have handed its log
// so far is durable: an empty forced append queues behind them, and group
// commit syncs them with it. Lazy records (END, an abort's) are otherwise
// written with a later batch; the prompt's `wait settled` uses this so
// that what it reports settled is also on disk and in the trace.
func (n *Node) SyncLog() error {
	res, err := n.ask(n.persistencePID, &messages.Append{Force: true}, 10*time.Second)
	if err != nil {
		return err
	}
	if a, ok := res.(*messages.Appended); ok && a.Err != nil {
		return fmt.Errorf("node %d: %w", n.cfg.ID, a.Err)
	}
	return nil
}
