package actors

import (
	"fmt"
	"time"
)

// Timing holds the protocol's clocks. A zero field means its default
// (DefaultTiming); WithDefaults fills those in and changes nothing else, and
// Validate refuses settings that contradict each other. Clocks never decide
// an outcome here: they bound how long a role waits and remembers.
type Timing struct {
	// VoteTimeout bounds how long a txn actor waits for votes before it
	// aborts; also how long a Prepare may wait for locks and a read for
	// prepared transactions to be decided. All nodes should use the same.
	// Default 2s.
	VoteTimeout time.Duration
	// ClockSkew is how far apart nodes' clocks are expected to be. It
	// decides nothing any more (issue 11: no answer depends on a clock);
	// it only enters the default of RememberOutcomes and its check in
	// Validate, kept so that existing settings stay valid. Default 1s.
	ClockSkew time.Duration
	// ResendInterval is the first pause before Commit is re-sent to a
	// participant that has not acked. Default 200ms.
	ResendInterval time.Duration
	// MaxResendInterval caps the Commit re-send pause, which doubles after
	// every re-send. Default 5s.
	MaxResendInterval time.Duration
	// InDoubtAfter is how long a prepared participant waits for a decision
	// before it starts asking (DecisionQuery); also the first pause between
	// its rounds of asking. Default 3s.
	InDoubtAfter time.Duration
	// MaxQueryInterval caps the pause between rounds of asking about a
	// transaction in doubt (or a heuristic decision not yet reconciled),
	// which doubles after every round. Default 10s.
	MaxQueryInterval time.Duration
	// RememberOutcomes bounds how long a participant remembers what it did
	// with a transaction it finished (committed, aborted, voted no or
	// read-only) when the transaction's coordinator has not said it may
	// forget it sooner (its low-water mark, see memory). Forgetting by age
	// raises the participant's mark for that coordinator past the
	// transaction, so it only turns answers into no (to a Prepare) and
	// "unknown" (to a peer in doubt) — never into "abort" for one it may
	// have committed. Memory grows with the transaction rate times this.
	// It must be at least VoteTimeout + 2*ClockSkew (see Validate), so that
	// a late duplicate Prepare is still answered from memory. Default 10s.
	RememberOutcomes time.Duration
}

// DefaultTiming holds the values used for zero fields of Timing.
var DefaultTiming = Timing{
	VoteTimeout:       2 * time.Second,
	ClockSkew:         time.Second,
	ResendInterval:    200 * time.Millisecond,
	MaxResendInterval: 5 * time.Second,
	InDoubtAfter:      3 * time.Second,
	MaxQueryInterval:  10 * time.Second,
	RememberOutcomes:  10 * time.Second,
}

// WithDefaults fills the zero fields from DefaultTiming. It never changes a
// field that was set: contradictory settings are for Validate to refuse,
// not for this to correct behind the caller's back.
func (t Timing) WithDefaults() Timing {
	d := DefaultTiming
	remember := t.RememberOutcomes
	for i, f := range t.fields() {
		if *f.val == 0 {
			*f.val = *d.fields()[i].val
		}
	}
	// An unset RememberOutcomes follows the clocks it must outlast, so
	// that setting only VoteTimeout or ClockSkew is never refused by the
	// rule in Validate. A value that was set is kept as it is.
	if remember == 0 {
		t.RememberOutcomes = max(t.RememberOutcomes, t.staleAfter()+t.ClockSkew)
	}
	return t
}

// Validate reports the first rule the timing (with defaults filled in)
// breaks, naming the field and the rule; nil if it is consistent.
func (t Timing) Validate() error {
	d := DefaultTiming
	for i, f := range t.fields() {
		if *f.val < 0 {
			//lint:ignore ST1005 the message starts with the field's Go name, Timing.<Field>
			return fmt.Errorf("Timing.%s (%v) must not be negative (zero means the default, %v)", f.name, *f.val, *d.fields()[i].val)
		}
	}
	e := t.WithDefaults()
	// A late duplicate of a Prepare still counts for staleAfter after it
	// began, by the coordinator's clock, which may be ClockSkew ahead of
	// this node's: the outcome it would otherwise redo must still be
	// remembered then.
	if need := e.staleAfter() + e.ClockSkew; e.RememberOutcomes < need {
		return fmt.Errorf("Timing.RememberOutcomes (%v) must be at least Timing.VoteTimeout + 2 × Timing.ClockSkew (%v + 2 × %v = %v): "+
			"a late duplicate Prepare must still find the outcome it would otherwise prepare again", e.RememberOutcomes, e.VoteTimeout, e.ClockSkew, need)
	}
	return nil
}

type timingField struct {
	name string
	val  *time.Duration
}

// fields lists t's fields by name, in declaration order, so that defaulting
// and the checks on every field cannot miss one.
func (t *Timing) fields() []timingField {
	return []timingField{
		{"VoteTimeout", &t.VoteTimeout},
		{"ClockSkew", &t.ClockSkew},
		{"ResendInterval", &t.ResendInterval},
		{"MaxResendInterval", &t.MaxResendInterval},
		{"InDoubtAfter", &t.InDoubtAfter},
		{"MaxQueryInterval", &t.MaxQueryInterval},
		{"RememberOutcomes", &t.RememberOutcomes},
	}
}

// staleAfter is how long after its Begun time a Prepare can still matter:
// past it, the coordinator has stopped counting votes.
func (t Timing) staleAfter() time.Duration { return t.VoteTimeout + t.ClockSkew }
