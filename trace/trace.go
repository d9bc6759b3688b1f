// Package trace records what happened to each transaction — the messages
// between nodes, the log writes, the decision, and the crashes, restarts and
// partitions around it — and draws it as a text sequence diagram.
//
// It exists for the operator: a transaction that aborted, hung or was
// retried is explained by the order of a few dozen events spread over
// several nodes, which no single node's log shows. The cluster feeds a
// Recorder (cluster.Config.Tracer) only when one is given, so a cluster
// without one pays nothing.
package trace

import (
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"twopc/messages"
)

// Kind is what an Event is.
type Kind uint8

const (
	Send      Kind = iota + 1 // a message left Node for Peer
	Receive                   // a message from Peer reached Node
	LogWrite                  // Node's log wrote a record of the transaction
	Decision                  // Node (the coordinator) decided commit or abort
	NodeEvent                 // a node crashed, restarted, stopped, was cut off or healed
	Note                      // anything else worth a line (e.g. events not kept)
)

func (k Kind) String() string {
	switch k {
	case Send:
		return "send"
	case Receive:
		return "receive"
	case LogWrite:
		return "log"
	case Decision:
		return "decision"
	case NodeEvent:
		return "node"
	case Note:
		return "note"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Peers that are not nodes.
const (
	NoPeer     int32 = -1 // the event involves no other node
	PeerClient int32 = -2 // the other end is a client of the cluster (an Outcome's receiver)
)

// Event is one step of a transaction's history, or a node event.
type Event struct {
	At     time.Time
	Node   int32 // where it happened; -1 for a node event of the whole cluster
	Kind   Kind
	Peer   int32         // Send: the receiver; Receive: the sender; NoPeer if none, PeerClient for a client
	Tx     messages.TxID // zero for a NodeEvent
	What   string        // message ("Prepare", "Vote no"), record kind ("PREPARED"), decision ("commit"), or the node event's text
	Forced bool          // LogWrite: the append asked for fsync
	Detail string        // a vote's or abort's reason, a reply's decision, an outcome
}

// String is the event's description as Render prints it, e.g.
// "Vote no 2 → 0: balance too low" or "node 1 log PREPARED (forced)".
func (e Event) String() string {
	var s string
	switch e.Kind {
	case Send:
		s = fmt.Sprintf("%s %s → %s", e.What, nodeName(e.Node), nodeName(e.Peer))
	case Receive:
		s = fmt.Sprintf("%s %s → %s received", e.What, nodeName(e.Peer), nodeName(e.Node))
	case LogWrite:
		how := "lazy"
		if e.Forced {
			how = "forced"
		}
		s = fmt.Sprintf("node %d log %s (%s)", e.Node, e.What, how)
	case Decision:
		s = fmt.Sprintf("node %d decision: %s", e.Node, e.What)
	case NodeEvent:
		if e.Node < 0 {
			s = e.What
		} else {
			s = fmt.Sprintf("node %d %s", e.Node, e.What)
		}
	default:
		if e.Node < 0 {
			s = e.What
		} else {
			s = fmt.Sprintf("node %d: %s", e.Node, e.What)
		}
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

func nodeName(n int32) string {
	switch {
	case n == PeerClient:
		return "client"
	case n < 0:
		return "?"
	}
	return fmt.Sprint(n)
}

// DefaultMaxTxs is the number of transactions a Recorder keeps when
// NewRecorder is given less than one.
const DefaultMaxTxs = 1000

// MaxEventsPerTx bounds one transaction's events: a participant in doubt
// asks its coordinator again and again for as long as that is down, and
// one such transaction must not fill the memory. The first events are
// kept (they hold the story); the rest are counted.
const MaxEventsPerTx = 2000

// maxNodeEvents bounds the node events kept (oldest dropped first).
const maxNodeEvents = 1000

// Recorder keeps the events of the most recent transactions and the node
// events around them. It is safe for concurrent use: every node's actors
// record into it from their own goroutines.
type Recorder struct {
	maxTxs int

	mu         sync.Mutex
	txs        map[messages.TxID]*txEvents
	order      []messages.TxID // transactions by first event, oldest first
	nodeEvents []Event         // in recording order, at most maxNodeEvents

	tap atomic.Pointer[func(Event)] // SetTap's function; nil: none
}

type txEvents struct {
	events  []Event
	dropped int // events beyond MaxEventsPerTx, not kept
}

// NewRecorder returns a Recorder that keeps the events of the last maxTxs
// transactions (by first event; the oldest is evicted first) and the last
// node events. maxTxs < 1 means DefaultMaxTxs.
func NewRecorder(maxTxs int) *Recorder {
	if maxTxs < 1 {
		maxTxs = DefaultMaxTxs
	}
	return &Recorder{maxTxs: maxTxs, txs: make(map[messages.TxID]*txEvents)}
}

// Record keeps e: a NodeEvent among the node events, anything else under
// its transaction (events without one are dropped). A zero At means now.
func (r *Recorder) Record(e Event) {
	if e.At.IsZero() {
		e.At = time.Now()
	}
	if tap := r.tap.Load(); tap != nil {
		(*tap)(e)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.Kind == NodeEvent {
		if len(r.nodeEvents) >= maxNodeEvents {
			n := copy(r.nodeEvents, r.nodeEvents[1:])
			r.nodeEvents = r.nodeEvents[:n]
		}
		r.nodeEvents = append(r.nodeEvents, e)
		return
	}
	if e.Tx.IsZero() {
		return
	}
	te := r.txs[e.Tx]
	if te == nil {
		for len(r.order) >= r.maxTxs {
			delete(r.txs, r.order[0])
			r.order[0] = messages.TxID{}
			r.order = r.order[1:]
		}
		te = &txEvents{}
		r.txs[e.Tx] = te
		r.order = append(r.order, e.Tx)
	}
	if len(te.events) >= MaxEventsPerTx {
		te.dropped++
		return
	}
	te.events = append(te.events, e)
}

// SetTap has f called with every event recorded from now on (nil: none),
// for a live view of the cluster (package twopc/web). f runs on the
// recording goroutine — a role's, a log's — before the event is stored and
// outside the Recorder's lock, so it must be quick and must never block;
// it may see events Record then drops (no transaction). Without a tap,
// Record pays one atomic load for it.
func (r *Recorder) SetTap(f func(Event)) {
	if f == nil {
		r.tap.Store(nil)
		return
	}
	r.tap.Store(&f)
}

// NodeEvent records that something happened to a node, now: "crashed
// (power cut)", "restarted (incarnation 3)", "stopped". It shows in the
// trace of every transaction whose time span it falls in.
func (r *Recorder) NodeEvent(node int32, what string) {
	r.Record(Event{Node: node, Kind: NodeEvent, Peer: NoPeer, What: what})
}

// Events returns tx's events in time order, with the node events that fall
// between its first and its last event; nil if nothing of tx is kept. If
// events were dropped (MaxEventsPerTx), a final Note says how many.
func (r *Recorder) Events(tx messages.TxID) []Event {
	r.mu.Lock()
	te := r.txs[tx]
	if te == nil || len(te.events) == 0 {
		r.mu.Unlock()
		return nil
	}
	out := make([]Event, len(te.events), len(te.events)+4)
	copy(out, te.events)
	dropped := te.dropped
	first, last := out[0].At, out[0].At
	for _, e := range out[1:] {
		if e.At.Before(first) {
			first = e.At
		}
		if e.At.After(last) {
			last = e.At
		}
	}
	for _, e := range r.nodeEvents {
		if !e.At.Before(first) && !e.At.After(last) {
			out = append(out, e)
		}
	}
	r.mu.Unlock()
	// Events are stamped before they are recorded, so recording order may
	// differ slightly from time order; stable keeps ties as recorded.
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	if dropped > 0 {
		out = append(out, Event{At: last, Node: -1, Kind: Note, Peer: NoPeer, Tx: tx,
			What: fmt.Sprintf("%d later events not kept (at most %d per transaction)", dropped, MaxEventsPerTx)})
	}
	return out
}

// Transactions returns the ids of the transactions kept, oldest first.
func (r *Recorder) Transactions() []messages.TxID {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]messages.TxID(nil), r.order...)
}
