package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/go-hclog"
)

// Well-known actor names of a node's roles. A PID is (node address, name),
// so knowing a node's address is enough to reach its roles.
const (
	CoordinatorName = "coordinator"
	ParticipantName = "participant"
	PersistenceName = "persistence"
)

// Directory tells a role where the roles of any node are. The cluster maps
// node ids to network addresses; tests map them to probe actors.
type Directory interface {
	Coordinator(node int32) *actor.PID
	Participant(node int32) *actor.PID
}

// Timing holds the protocol's clocks. The zero value of a field means its
// default.
type Timing struct {
	// VoteTimeout bounds how long a txn actor waits for votes before it
	// aborts; also how long a Prepare may wait for locks and a read for
	// prepared transactions to be decided. All nodes should use the same.
	VoteTimeout time.Duration
	// ClockSkew is how far apart nodes' clocks may be. A Prepare older than
	// VoteTimeout+ClockSkew (by its Begun time) can no longer count, so a
	// participant ignores it: a late duplicate cannot prepare again a
	// transaction that finished here.
	ClockSkew time.Duration
	// ResendInterval is the first pause before Commit is re-sent to a
	// participant that has not acked; it doubles up to MaxResendInterval.
	ResendInterval    time.Duration
	MaxResendInterval time.Duration
	// InDoubtAfter is how long a prepared participant waits for a decision
	// before it starts asking (DecisionQuery); it asks again with doubling
	// pauses up to MaxQueryInterval.
	InDoubtAfter     time.Duration
	MaxQueryInterval time.Duration
	// RememberOutcomes is how long a participant remembers what it did with
	// a transaction it finished (committed, aborted, voted no or read-only).
	// It ignores late duplicate Prepares by it, and answers in-doubt peers
	// from it; a peer asking about a transaction begun within it that this
	// participant has never seen learns "abort" (it votes no on the spot).
	// Memory grows with the transaction rate times this; it is raised to at
	// least VoteTimeout + 2*ClockSkew.
	RememberOutcomes time.Duration
}

// Defaults used for zero fields of Timing.
var DefaultTiming = Timing{
	VoteTimeout:       2 * time.Second,
	ClockSkew:         time.Second,
	ResendInterval:    200 * time.Millisecond,
	MaxResendInterval: 5 * time.Second,
	InDoubtAfter:      3 * time.Second,
	MaxQueryInterval:  10 * time.Second,
	RememberOutcomes:  10 * time.Second,
}

// WithDefaults fills zero fields from DefaultTiming.
func (t Timing) WithDefaults() Timing {
	d := DefaultTiming
	if t.VoteTimeout > 0 {
		d.VoteTimeout = t.VoteTimeout
	}
	if t.ClockSkew > 0 {
		d.ClockSkew = t.ClockSkew
	}
	if t.ResendInterval > 0 {
		d.ResendInterval = t.ResendInterval
	}
	if t.MaxResendInterval > 0 {
		d.MaxResendInterval = t.MaxResendInterval
	}
	if t.InDoubtAfter > 0 {
		d.InDoubtAfter = t.InDoubtAfter
	}
	if t.MaxQueryInterval > 0 {
		d.MaxQueryInterval = t.MaxQueryInterval
	}
	if t.RememberOutcomes > 0 {
		d.RememberOutcomes = t.RememberOutcomes
	}
	// A late Prepare must still find the outcome it would otherwise redo.
	d.RememberOutcomes = max(d.RememberOutcomes, d.staleAfter()+d.ClockSkew)
	return d
}

func orNull(l hclog.Logger) hclog.Logger {
	if l == nil {
		return hclog.NewNullLogger()
	}
	return l
}

// staleAfter is how long after its Begun time a Prepare can still matter:
// past it, the coordinator has stopped counting votes.
func (t Timing) staleAfter() time.Duration { return t.VoteTimeout + t.ClockSkew }
