package actors

// Operator's requests: what an operator (the REPL, a test) may ask a role
// that the protocol itself never does. OutcomeQuery only looks; unlike a
// DecisionQuery it changes nothing, so asking can never decide a
// transaction. ForceDecision is the operator's heuristic decision on a
// transaction a participant is stuck in doubt about: it breaks the
// protocol's guarantee on purpose, and says so loudly.
//
// This file holds the requests and answers only; each role answers them in
// its own file: the coordinator in coordinator.go, the participant in
// participant.go (OutcomeQuery) and heuristic.go (ForceDecision).

import (
	"time"

	"twopc/messages"
)

// OutcomeQuery asks a coordinator or a participant what it knows of a
// transaction's outcome; answered (ctx.Respond) with an OutcomeAnswer. It
// has no side effect: unlike a DecisionQuery it never makes a participant
// vote no, never makes a coordinator decide abort or re-drive a commit.
type OutcomeQuery struct {
	Tx messages.TxID
}

// OutcomeAnswer answers an OutcomeQuery. Decision is DecisionCommit or
// DecisionAbort when the answering role knows, DecisionUnknown otherwise;
// Why says how it knows (or why it cannot tell).
type OutcomeAnswer struct {
	Tx       messages.TxID
	From     int32
	Decision messages.Decision
	Why      string
	// Presumed: a coordinator's abort only because its log holds no COMMIT
	// (presumed abort). Exact for a transaction still in doubt somewhere;
	// for one every participant acked, the COMMIT was forgotten at its END
	// and the transaction committed.
	Presumed bool
}

// ForceDecision makes a participant take a decision on a transaction it is
// in doubt about, without its coordinator: an operator's heuristic
// decision. Answered with a ForceDecisionResult.
type ForceDecision struct {
	Tx     messages.TxID
	Commit bool
}

// ForceDecisionResult answers a ForceDecision. Applied is false, with Err
// saying why, unless the transaction was in doubt (prepared) here.
type ForceDecisionResult struct {
	Tx      messages.TxID
	Node    int32
	Applied bool
	Err     string
}

// InDoubtTx is one transaction a participant has voted yes on and has no
// decision for, with what an operator needs to judge it.
type InDoubtTx struct {
	Tx           messages.TxID
	Since        time.Time // when PREPARED became durable, or when the node restarted in doubt about it
	Participants []int32   // every participant of the transaction (who could be asked)
	Asked        int       // DecisionQuery rounds sent so far
	Recovered    bool      // in doubt since before this participant (re)started
}
