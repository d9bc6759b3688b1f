// Package web serves a live view of a twopc cluster as one page: a card per
// node, the messages moving between nodes, commits and aborts per second
// with their latency and the fault windows shaded, the recent transactions
// with each one's sequence diagram, and the transactions in doubt — and,
// where the cluster allows it, the operator's actions on it.
//
// Everything the page needs is embedded (static/): no build step, no CDN,
// no external font; it works offline. Live data reaches it over
// Server-Sent Events (/events), as coalesced frames at a few per second
// from bounded buffers: a browser that does not keep up is dropped (its
// page reconnects and starts again from a full frame), so a slow or stuck
// browser never slows a node. With no browser attached nothing is
// collected at all: the nodes pay one atomic load per traced event and per
// finished transaction.
//
// What the page shows comes from a Source. LocalSource is an in-process
// cluster (cluster.Local, as cmd/cluster runs it); NodeSource is the one
// node a cmd/node process runs. A source that asks a cluster's nodes over
// the admin wire plugs in the same way.
package web

import (
	"context"
	"errors"
	"time"

	"twopc/cluster"
	"twopc/messages"
	"twopc/trace"
)

// Source is what the page shows and acts on: one cluster, however it is
// reached. Its methods are called from the view's own goroutines, never
// from a node's.
type Source interface {
	// Info says what the source covers and which actions it takes.
	Info() Info
	// Snapshot is the cluster's state now: a card per node, the links
	// cut, the transactions in doubt. ctx bounds the asking; a node that
	// does not answer in time gets a card saying so, not an error.
	Snapshot(ctx context.Context) (*Snapshot, error)
	// Trace is tx's events in time order, as the prompt's `trace` draws
	// them; nil with no error if nothing of tx is kept.
	Trace(ctx context.Context, tx messages.TxID) ([]trace.Event, error)
	// Recent is up to n transactions that ended lately, oldest first, to
	// fill a page that has just opened.
	Recent(ctx context.Context, n int) ([]TxEnd, error)
	// Watch makes s the receiver of what happens from now on — every
	// traced event and every transaction's end — until stop is called.
	// One Sink at a time. s's methods are quick and never block, so the
	// nodes' own goroutines may call them; a source that learns of events
	// by asking (over the wire) calls them from its own goroutine, which
	// it starts here and ends in stop. A source with nothing to stream
	// returns a stop that does nothing: the page then has cards, the
	// in-doubt list and diagrams, without moving messages or rates.
	Watch(s Sink) (stop func())
	// Act carries out an operator's action and says what was done. An
	// *InputError is a mistake in the request; any other error is the
	// cluster's refusal, with why.
	Act(ctx context.Context, a Action) (string, error)
}

// Sink receives what happens in the cluster as it happens (Source.Watch).
type Sink interface {
	Event(e trace.Event)
	TxEnded(t TxEnd)
}

// Info describes a Source.
type Info struct {
	Title   string   // e.g. "in-process cluster of 4 nodes"
	Nodes   int      // members of the cluster
	Actions []string // the actions Act takes (ActionCrash, ...); none: the page only watches
	Note    string   // said on the page under the title ("" if nothing)
}

// The actions an operator can take from the page.
const (
	ActionCrash     = "crash"     // cut a node's power
	ActionRestart   = "restart"   // start a down node again from its log
	ActionPartition = "partition" // cut the link between two nodes
	ActionHeal      = "heal"      // restore every link
	ActionFaults    = "faults"    // inject message faults on every node (all zero: stop)
	ActionSkew      = "skew"      // set a node's clock off
	ActionResolve   = "resolve"   // a heuristic decision on a transaction in doubt
)

// Action is one request to act, as the page posts it (JSON).
type Action struct {
	Do   string `json:"do"`
	Node *int   `json:"node,omitempty"` // crash, restart, skew; partition's first end
	Peer *int   `json:"peer,omitempty"` // partition's second end
	// skew: a duration with its sign, e.g. "+5s", "-500ms", "0".
	Skew string `json:"skew,omitempty"`
	// faults: probabilities in [0, 1], and the longest delay ("" default).
	Drop     float64 `json:"drop,omitempty"`
	Dup      float64 `json:"dup,omitempty"`
	Delay    float64 `json:"delay,omitempty"`
	MaxDelay string  `json:"maxDelay,omitempty"`
	Reorder  float64 `json:"reorder,omitempty"`
	// resolve: the transaction and "commit" or "abort".
	Tx       string `json:"tx,omitempty"`
	Decision string `json:"decision,omitempty"`
}

// InputError is a request to act that is wrong in itself: a missing or bad
// field, an unknown action. Its text names what was wrong.
type InputError struct{ Msg string }

func (e *InputError) Error() string { return e.Msg }

func inputErrorf(msg string) error { return &InputError{Msg: msg} }

// errNoActions is Act's answer on a source that takes none.
var errNoActions = errors.New("this view only watches: act with the prompt")

// Snapshot is a cluster's state at one moment.
type Snapshot struct {
	Nodes      []NodeStatus
	Partitions [][2]int32 // links cut, {a, b} with a < b
	InDoubt    []InDoubt  // sorted by transaction, then node
	// InDoubtTotal counts every transaction in doubt; InDoubt may hold
	// fewer (MaxInDoubt).
	InDoubtTotal int
}

// MaxInDoubt bounds the in-doubt entries a Snapshot lists: after a crash
// under load thousands can be in doubt, and the page shows the oldest.
const MaxInDoubt = 100

// Node states on a card.
const (
	StateUp          = "up"
	StateDown        = "down"
	StatePartitioned = "partitioned" // up, with at least one link cut
	StateUnknown     = "unknown"     // not asked, or did not answer
)

// NodeStatus is one node's card.
type NodeStatus struct {
	ID          int32
	Addr        string
	State       string // StateUp, ...
	Why         string // what is known beyond the state: why down, from whose view
	Incarnation uint32
	// Counts; -1 where not known (down, or did not answer).
	InFlight int // transactions it coordinates, not yet ended
	Locks    int // keys its participant holds locked
	InDoubt  int // transactions its participant is in doubt about
	LogBytes int64
	// Records and Fsyncs count since the node started: the view takes
	// records per fsync over its own interval from them.
	Records, Fsyncs uint64
	// Protocol is the commit protocol the node runs, as its status names
	// it (see protocolOf).
	Protocol string
	Skew     time.Duration
	Faults   string  // message faults injected, e.g. "drop=0.1 delay=0.2:50ms"; "" none
	Cut      []int32 // peers whose link to it is cut
}

// InDoubt is a transaction a participant voted yes on and has no decision
// for.
type InDoubt struct {
	Tx            messages.TxID
	Node          int32 // the participant in doubt
	Since         time.Time
	Participants  []int32
	Asked         int // rounds of asking so far
	CoordinatorUp bool
	// Votes: each participant's vote as traced ("yes", "no", "read-only"),
	// or "?" where no trace of it is kept.
	Votes []Vote
}

// Vote is one participant's vote.
type Vote struct {
	Node int32  `json:"node"`
	Vote string `json:"vote"`
}

// Outcomes of a transaction, as the page filters them.
const (
	OutcomeCommitted = "committed"
	OutcomeAborted   = "aborted"
	OutcomeUnknown   = "unknown" // the coordinator could not say (it crashed, its log failed)
)

// TxEnd is a transaction that ended at its coordinator.
type TxEnd struct {
	Tx           messages.TxID // zero if the coordinator never named it
	Node         int32         // its coordinator
	Outcome      string        // OutcomeCommitted, ...
	Reason       string
	Took         time.Duration
	At           time.Time
	Participants []int32 // as traced; nil if not known
}

// endOf is the TxEnd of what a Submit to node returned (cluster.Observer's
// TransactionEnded).
func endOf(node int32, o *messages.Outcome, err error, took time.Duration) TxEnd {
	t := TxEnd{Node: node, Took: took, At: time.Now()}
	switch {
	case o == nil:
		t.Outcome = OutcomeUnknown
		if err != nil {
			t.Reason = err.Error()
		}
		var no *cluster.NoOutcomeError
		if errors.As(err, &no) {
			t.Tx = no.Tx
		}
	case o.Committed:
		t.Tx, t.Outcome, t.Reason = o.Tx, OutcomeCommitted, o.Reason
	case o.Unknown:
		t.Tx, t.Outcome, t.Reason = o.Tx, OutcomeUnknown, o.Reason
	default:
		t.Tx, t.Outcome, t.Reason = o.Tx, OutcomeAborted, o.Reason
	}
	return t
}
