package actors

import (
	"fmt"

	"twopc/messages"
)

// StepKind names a point of the protocol at which a role reports a Step.
// The points are the ones where a crash leaves a different situation to
// recover from, so they are where the crash-point tests crash a node.
type StepKind uint8

const (
	// Participant steps.
	StepPrepareReceived StepKind = iota + 1 // locks taken, PREPARED not yet logged
	StepPreparedLogged                      // PREPARED durable, vote not yet sent
	StepVoted                               // vote sent (Vote in the step)
	StepCommitReceived                      // Commit arrived, COMMITTED not yet logged
	StepCommittedLogged                     // COMMITTED durable and applied, ack not yet sent

	// Coordinator (txn actor) steps.
	StepPrepareSent   // Prepare sent to Peer
	StepVoteReceived  // vote of Peer counted
	StepCommitDecided // every vote is yes, COMMIT not yet logged
	StepCommitLogged  // COMMIT durable, no Commit sent yet
	StepCommitSent    // Commit sent to Peer (first sending, not re-sends)
	StepAckReceived   // ack of Peer counted
	StepAllAcked      // every participant acked, END not yet logged

	// Added later, kept last so the numbers above do not change.
	StepAbortDecided // the txn actor decided abort (Reason in the step); Abort not yet sent

	// Non-blocking commit. There StepCommitDecided is "every vote is yes,
	// no AcceptRequest sent yet" and StepCommitLogged is "commit chosen: a
	// majority of the acceptors logged it; the client not yet told, no
	// Commit sent" — the same places in the protocol as in 2PC.
	StepAcceptSent      // txn actor: ballot-0 AcceptRequest sent to acceptor Peer
	StepPromisedLogged  // acceptor: PROMISED durable, PromiseReply not yet sent (Peer: the proposer)
	StepAcceptedLogged  // acceptor: ACCEPTED durable, AcceptReply not yet sent (Peer: the proposer)
	StepRecoveryStarted // a proposer in doubt (participant, or txn actor whose ballot 0 was overtaken) sent PromiseRequests
	StepRecoveryChosen  // that proposer's value was chosen (Reason: which); not yet applied or passed on
)

var stepNames = map[StepKind]string{
	StepPrepareReceived: "prepare received",
	StepPreparedLogged:  "PREPARED logged",
	StepVoted:           "voted",
	StepCommitReceived:  "commit received",
	StepCommittedLogged: "COMMITTED logged",
	StepPrepareSent:     "prepare sent",
	StepVoteReceived:    "vote received",
	StepCommitDecided:   "commit decided",
	StepCommitLogged:    "COMMIT logged",
	StepCommitSent:      "commit sent",
	StepAckReceived:     "ack received",
	StepAllAcked:        "all acked",
	StepAbortDecided:    "abort decided",
	StepAcceptSent:      "accept sent",
	StepPromisedLogged:  "PROMISED logged",
	StepAcceptedLogged:  "ACCEPTED logged",
	StepRecoveryStarted: "recovery started",
	StepRecoveryChosen:  "recovery chosen",
}

func (k StepKind) String() string {
	if s, ok := stepNames[k]; ok {
		return s
	}
	return fmt.Sprintf("step(%d)", uint8(k))
}

// Step is one protocol step of one transaction at one node.
type Step struct {
	Node int32 // where it happened
	Kind StepKind
	Tx   messages.TxID
	Peer int32             // the other node, for steps that involve one (-1 otherwise)
	Vote messages.VoteKind // StepVoted, StepVoteReceived
	// Reason is why, for StepAbortDecided: a transaction's trace shows the
	// abort decision with it, as the client's Outcome does.
	Reason string
}

func (s Step) String() string {
	if s.Peer >= 0 {
		return fmt.Sprintf("node %d: %s %v (peer %d)", s.Node, s.Kind, s.Tx, s.Peer)
	}
	return fmt.Sprintf("node %d: %s %v", s.Node, s.Kind, s.Tx)
}

// StepHook is called synchronously, on the role's own goroutine, at every
// step, before the role goes on to the next one. Crash-point tests use it to
// cut a node's power at an exact point of the protocol: whatever the role
// does after the hook returns then reaches neither the disk nor the network.
// It must be quick and must not send to the role that called it and wait for
// an answer. Nil means no hook (the usual case).
type StepHook func(Step)

func (h StepHook) report(node int32, kind StepKind, tx messages.TxID, peer int32, vote messages.VoteKind) {
	if h != nil {
		h(Step{Node: node, Kind: kind, Tx: tx, Peer: peer, Vote: vote})
	}
}

// reportReason is report for a step that carries a reason (StepAbortDecided).
func (h StepHook) reportReason(node int32, kind StepKind, tx messages.TxID, reason string) {
	if h != nil {
		h(Step{Node: node, Kind: kind, Tx: tx, Peer: -1, Reason: reason})
	}
}
