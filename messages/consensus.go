package messages

// The non-blocking commit protocol (see actors/acceptor.go and the README's
// "Failure model"): a transaction's outcome is not the coordinator's alone
// but chosen by a majority of a small set of acceptors, with the ballots of
// Paxos. The coordinator proposes commit in ballot 0, which every acceptor
// has implicitly promised it; anyone in doubt may take over with a higher
// ballot, learns whether commit may have been chosen, and finishes.

// Ballot numbers a proposal round for one transaction. Ballot 0 belongs to
// the transaction's coordinator (its only ballot without a promise round).
// Every higher ballot belongs to exactly one node, so two proposers never
// share one: node n owns n+1, n+1+members, n+1+2·members, …
type Ballot uint32

// Owner is the node that owns b: the coordinator of the transaction for
// ballot 0, else (b-1) mod members.
func (b Ballot) Owner(tx TxID, members int) int32 {
	if b == 0 {
		return tx.Node
	}
	return int32((uint32(b) - 1) % uint32(members))
}

// NextBallot is the lowest ballot owned by node that is above after.
func NextBallot(after Ballot, node int32, members int) Ballot {
	m := uint32(members)
	own := uint32(node) + 1 // node's first ballot
	if uint32(after) < own {
		return Ballot(own)
	}
	rounds := (uint32(after)-own)/m + 1
	return Ballot(own + rounds*m)
}

// Acceptors are the nodes whose majority chooses tx's outcome: its
// coordinator and the next two nodes. Any node computes the same set from
// the id alone, so a participant in doubt knows whom to ask without asking
// anyone. A cluster of fewer than three nodes has no majority that survives
// a crash: there the coordinator alone is the acceptor, and the protocol
// blocks on it exactly as 2PC does (with two acceptors, either crash would
// block every transaction, even one that touches only the other node).
func Acceptors(tx TxID, members int) []int32 {
	n := 3
	if members < 3 {
		n = 1
	}
	out := make([]int32, n)
	for i := range out {
		out[i] = int32((int(tx.Node) + i) % members)
	}
	return out
}

// Majority is how many of n acceptors choose a value.
func Majority(n int) int { return n/2 + 1 }

// PromiseRequest (Paxos phase 1a) asks an acceptor to promise to accept
// nothing below Ballot for Tx, and to say what it has accepted.
type PromiseRequest struct {
	Tx     TxID
	Ballot Ballot // > 0: ballot 0 needs no promise
	From   int32  // the proposer's node, Ballot's owner
}

// PromiseReply (phase 1b) answers a PromiseRequest. OK: the promise is
// durable, and Accepted (DecisionUnknown: nothing) is the value accepted in
// the highest ballot AcceptedBallot. Not OK: the acceptor has promised
// Promised, higher than the request's ballot.
type PromiseReply struct {
	Tx             TxID
	Ballot         Ballot
	From           int32
	OK             bool
	Promised       Ballot
	AcceptedBallot Ballot
	Accepted       Decision
}

// AcceptRequest (phase 2a) asks an acceptor to accept Decision for Tx in
// Ballot.
type AcceptRequest struct {
	Tx       TxID
	Ballot   Ballot
	From     int32
	Decision Decision // commit or abort
	// Settled: the coordinator's low-water mark, as in Prepare (ballot 0
	// only; 0 otherwise). Acceptors forget what they hold for transactions
	// of Tx's incarnation below it.
	Settled uint64
}

// AcceptReply (phase 2b) answers an AcceptRequest. OK: the acceptance is
// durable. Not OK: the acceptor has promised Promised, higher than Ballot.
type AcceptReply struct {
	Tx       TxID
	Ballot   Ballot
	From     int32
	OK       bool
	Promised Ballot
}

// Acceptance is what an acceptor has promised and accepted for one
// transaction. Accepted is DecisionUnknown while nothing is.
type Acceptance struct {
	Promised       Ballot
	AcceptedBallot Ballot
	Accepted       Decision
}
