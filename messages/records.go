package messages

import "fmt"

// RecordKind is the kind of a write-ahead-log record.
type RecordKind uint8

const (
	// RecBoot marks a node start; its Incarnation makes transaction ids
	// unique across restarts.
	RecBoot RecordKind = iota + 1
	// RecPrepared: a participant promised to commit Ops if told to. Forced
	// before the participant votes yes.
	RecPrepared
	// RecCommitted: a participant applied a prepared transaction. Forced
	// before the participant acks, or a restart would leave it in doubt about
	// a transaction its coordinator has already forgotten.
	RecCommitted
	// RecAborted: a participant released a prepared transaction. Lazy: if it
	// is lost, the participant is in doubt after a restart and learns "abort"
	// from its coordinator (presumed abort).
	RecAborted
	// RecCommitDecision: a coordinator decided commit. Forced before any
	// Commit is sent; it makes the coordinator answer "commit" until RecEnd.
	RecCommitDecision
	// RecEnd: every participant acked the commit; the coordinator may forget
	// the transaction. Lazy.
	RecEnd
	// RecHeuristic: an operator forced a participant's decision on a
	// transaction it was in doubt about (Decision: DecisionCommit or
	// DecisionAbort). Forced before the decision is applied, and never
	// forgotten: a coordinator that decided otherwise is told so however
	// late its Commit arrives, or after a restart. Appended last, so the
	// numbering of the kinds before it (and the logs that hold them) stays.
	RecHeuristic
	// RecRefused: a participant that had not voted on Tx answered "abort"
	// for it (to a peer in doubt). Forced before the answer leaves, and
	// binding: a Prepare of Tx arriving later, even after a restart, gets
	// no. Kept until Tx's coordinator's low-water mark passes it (RecMark).
	RecRefused
	// RecReadOnly: a participant voted read-only on Tx. Forced before the
	// vote leaves: the coordinator may commit counting it, so the
	// participant must never later refuse Tx (as it would one it has no
	// trace of) while a peer may ask. Kept like RecRefused.
	RecReadOnly
	// RecMark: a participant will no longer vouch for transactions of the
	// coordinator Tx.Node below Tx: those of an earlier incarnation, and
	// those of incarnation Tx.Incarnation with a lower Seq. It forgets
	// their outcomes (COMMITTED, ABORTED, REFUSED, READ-ONLY) and answers
	// Prepares of them with no. Lazy: a lost mark only keeps more.
	RecMark
	// RecPromised: an acceptor (non-blocking commit) promised to accept
	// nothing below Ballot for Tx. Forced before the promise is sent: an
	// acceptor that forgot it could accept an older proposal afterwards and
	// let two different outcomes be chosen.
	RecPromised
	// RecAccepted: an acceptor accepted Decision for Tx in Ballot. Forced
	// before the acceptance is sent: the outcome is chosen once a majority
	// holds it durably.
	RecAccepted
	// The kinds after RecHeuristic are appended so that the numbering of
	// the older kinds (and the logs that hold them) stays.

	// RecReconciled: a participant compared its heuristic decision on Tx
	// (RecHeuristic) with the coordinator's decision and reported the
	// result — confirmed, damage, or that it cannot be told — so that,
	// restarted, it neither asks nor reports again. Forced, written after
	// the report (a crash in between reports once more). Kept as long as
	// the HEURISTIC record.
	RecReconciled
)

// LastRecordKind is the highest record kind this build knows.
const LastRecordKind = RecReconciled

func (k RecordKind) String() string {
	switch k {
	case RecBoot:
		return "BOOT"
	case RecPrepared:
		return "PREPARED"
	case RecCommitted:
		return "COMMITTED"
	case RecAborted:
		return "ABORTED"
	case RecCommitDecision:
		return "COMMIT"
	case RecEnd:
		return "END"
	case RecHeuristic:
		return "HEURISTIC"
	case RecRefused:
		return "REFUSED"
	case RecReadOnly:
		return "READ-ONLY"
	case RecMark:
		return "MARK"
	case RecPromised:
		return "PROMISED"
	case RecAccepted:
		return "ACCEPTED"
	case RecReconciled:
		return "RECONCILED"
	}
	return fmt.Sprintf("record(%d)", uint8(k))
}

// Record is one entry of a node's write-ahead log. Which fields are set
// depends on Kind.
type Record struct {
	Kind         RecordKind
	Tx           TxID
	Incarnation  uint32   // RecBoot
	Participants []int32  // RecPrepared, RecCommitDecision
	Ops          []Op     // RecPrepared
	Decision     Decision // RecHeuristic: the operator's decision (commit or abort); RecAccepted: the value accepted; DecisionUnknown for every other kind
	Ballot       Ballot   // RecPromised, RecAccepted
}

func (r Record) String() string {
	if r.Kind == RecBoot {
		return fmt.Sprintf("BOOT incarnation %d", r.Incarnation)
	}
	switch r.Kind {
	case RecHeuristic:
		return fmt.Sprintf("HEURISTIC %v %v", r.Decision, r.Tx)
	case RecPromised:
		return fmt.Sprintf("PROMISED %v ballot %d", r.Tx, r.Ballot)
	case RecAccepted:
		return fmt.Sprintf("ACCEPTED %v %v ballot %d", r.Decision, r.Tx, r.Ballot)
	}
	return fmt.Sprintf("%v %v", r.Kind, r.Tx)
}

// Append asks the persistence actor to write records. With Force the reply
// comes only after the records are on stable storage (fsync); without it the
// records ride along with the next forced batch. The reply, an Appended with
// the same ID, goes to the sender (if there is one).
type Append struct {
	ID      uint64
	Records []Record
	Force   bool
}

// Appended answers Append. Err is set when the write or fsync failed: the
// records must then be treated as not written.
type Appended struct {
	ID  uint64
	Err error
}

// DecisionLookup asks the persistence actor whether its log holds a commit
// decision for Tx that has not ended: the coordinator's source of truth when
// no txn actor is running for the transaction.
type DecisionLookup struct {
	Tx TxID
}

// DecisionLookupReply answers DecisionLookup. Participants is set when
// CommitPending.
type DecisionLookupReply struct {
	Tx            TxID
	CommitPending bool
	Participants  []int32
	// Err is set when the log has failed: whatever the memory says, a COMMIT
	// whose write failed may still be on disk, so no answer is safe until the
	// node restarts and replays it.
	Err error
}

// TakeSnapshot asks the persistence actor to write a snapshot now and delete
// the log it covers. Answered with SnapshotTaken.
type TakeSnapshot struct{}

// SnapshotTaken answers TakeSnapshot.
type SnapshotTaken struct {
	Err error
}

// StatsRequest asks the persistence actor for its counters; answered with
// LogStats.
type StatsRequest struct{}

// LogStats are the persistence actor's counters since start.
type LogStats struct {
	Appends      uint64 // Append requests served
	Records      uint64 // records written
	Fsyncs       uint64 // fsync calls on the log
	Batches      uint64 // writes (group commits)
	Snapshots    uint64 // snapshots written
	LogBytes     int64  // bytes in live log segments now
	LastSnapshot string // file name of the newest snapshot, "" if none
}
