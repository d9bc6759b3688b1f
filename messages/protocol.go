package messages

import "fmt"

// Begin asks a coordinator to run a transaction. The coordinator answers the
// sender with an Outcome.
type Begin struct {
	Ops []Op
	// NotifyBegun asks the coordinator to send a Begun to the sender as soon
	// as it has named the transaction, before the Outcome. A client whose
	// coordinator dies before answering then still knows which transaction
	// to ask about (its participants settle it either way). Off by default,
	// so a plain requester gets exactly one answer.
	NotifyBegun bool
}

// Begun tells a client, ahead of the Outcome, which id its transaction got
// (only when Begin.NotifyBegun is set).
type Begun struct {
	Tx TxID
}

// Outcome is the client's answer: the transaction committed everywhere, or
// aborted everywhere, with the reason.
type Outcome struct {
	Tx        TxID
	Committed bool
	// Unknown: the coordinator cannot tell (its log failed while it was
	// logging the decision). The transaction still commits or aborts
	// everywhere; the coordinator's recovery settles which. Committed is
	// false then, but that is not an abort.
	Unknown bool
	Reason  string // why it aborted or is unknown, or a note on a commit
}

func (o *Outcome) String() string {
	if o.Committed {
		return "committed " + o.Tx.String()
	}
	if o.Unknown {
		return fmt.Sprintf("outcome of %s unknown: %s", o.Tx, o.Reason)
	}
	return fmt.Sprintf("aborted %s: %s", o.Tx, o.Reason)
}

// Prepare asks a participant to lock and check its operations and to promise,
// durably, that it can commit them.
type Prepare struct {
	Tx           TxID
	Ops          []Op    // this participant's operations only
	Participants []int32 // everyone asked, for cooperative termination
	// Begun is when the coordinator began the transaction (Unix ns). It
	// orders transactions by age for lock waits: a transaction may wait
	// only for an older one, so waits never form a cycle.
	Begun int64
	// Settled is the coordinator's low-water mark when it sent this: every
	// transaction of incarnation Tx.Incarnation of Tx.Node with a lower Seq
	// is decided and over at the coordinator (an abort decided, or a commit
	// every yes-voter acked). Participants forget their outcomes of those
	// and answer a Prepare of one with no (see the participant). 0: none.
	Settled uint64
}

// VoteKind is a participant's answer to Prepare.
type VoteKind uint8

const (
	VoteYes      VoteKind = iota + 1 // prepared: PREPARED is durable, locks are held
	VoteNo                           // refused; Reason says why; nothing is held
	VoteReadOnly                     // nothing to change here; locks already released, leave me out of phase two
)

func (v VoteKind) String() string {
	switch v {
	case VoteYes:
		return "yes"
	case VoteNo:
		return "no"
	case VoteReadOnly:
		return "read-only"
	}
	return fmt.Sprintf("vote(%d)", uint8(v))
}

// Vote is a participant's answer to Prepare, sent to the transaction's txn actor.
type Vote struct {
	Tx     TxID
	From   int32
	Kind   VoteKind
	Reason string
}

// Commit tells a prepared participant the decision is commit. Re-sent until acked.
type Commit struct {
	Tx   TxID
	From int32
	// Settled: as in Prepare.
	Settled uint64
}

// Abort tells a participant the decision is abort. Not acked (presumed abort).
type Abort struct {
	Tx     TxID
	From   int32
	Reason string
	// Settled: as in Prepare.
	Settled uint64
}

// Ack confirms a participant has durably applied a Commit — or, with
// Heuristic set, that it has heard the Commit but an operator's heuristic
// decision made it abort the transaction: the nodes disagree (heuristic
// damage), and re-sending the Commit cannot change that. Either way the
// coordinator stops re-sending.
type Ack struct {
	Tx        TxID
	From      int32
	Heuristic bool
}

// DecisionQuery asks what became of a transaction; a participant in doubt
// sends it to the coordinator (and, for cooperative termination, to the
// other participants). The answer is a DecisionReply sent to the asker's
// participant.
type DecisionQuery struct {
	Tx   TxID
	From int32
	// Begun is the transaction's begin time (Prepare.Begun) if the asker
	// knows it, else 0. For the logs only: no answer depends on it (a peer
	// vouches from what it logged, not from the time).
	Begun int64
}

// Decision is what a node knows of a transaction's outcome.
type Decision uint8

const (
	DecisionUnknown Decision = iota // this node cannot tell (e.g. it is in doubt too)
	DecisionCommit
	DecisionAbort
)

func (d Decision) String() string {
	switch d {
	case DecisionCommit:
		return "commit"
	case DecisionAbort:
		return "abort"
	}
	return "unknown"
}

// DecisionReply answers a DecisionQuery.
type DecisionReply struct {
	Tx       TxID
	From     int32
	Decision Decision
	// Presumed: an abort only because the coordinator's log holds no
	// COMMIT for it. Exact for a transaction still in doubt anywhere; but
	// one that committed and was acked by every participant (END) is
	// forgotten too, and answered so.
	Presumed bool
}

// Read asks a participant for the committed values of keys it owns.
type Read struct {
	Keys []string
}

// KeyValue is one key's committed value; a missing key reads 0.
type KeyValue struct {
	Key   string
	Value int64
}

// ReadReply answers Read, in the order of the keys asked. Err is set, and
// Values empty, when the read could not be answered (e.g. a key stayed held
// by an in-doubt transaction).
type ReadReply struct {
	From   int32
	Values []KeyValue
	Err    string
}
