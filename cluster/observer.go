package cluster

import (
	"errors"
	"fmt"
	"time"

	"twopc/messages"
)

// Observer is told what a node's metrics count on its hot paths (package
// twopc/metrics implements it; the rest is read when scraped). Each method
// must be quick — an atomic add, a histogram observation — as it runs on
// a caller's or a role's goroutine, and may run on several at once.
type Observer interface {
	// TransactionEnded: a Submit to this node's coordinator returned,
	// took after it was handed over; o is its outcome, or nil with err
	// (a *NoOutcomeError) when none reached the caller.
	TransactionEnded(o *messages.Outcome, err error, took time.Duration)
	// LogSynced: the log fsynced records records in took.
	LogSynced(took time.Duration, records int)
	// HeuristicLogged: an operator's heuristic decision d is durable here.
	HeuristicLogged(d messages.Decision)
	// RecoveryRound: a round of asking about an in-doubt transaction
	// ended with decision d, or DecisionUnknown when the next round began
	// without one (see actors.ParticipantConfig.Rounds).
	RecoveryRound(d messages.Decision)
}

// written is the persistence observer (persistence.Options.Written): the
// tracer's, and the heuristic decisions for the Observer. Nil when neither
// wants it, so the log calls nothing.
func (n *Node) written() func([]messages.Record, bool) {
	traced := n.tracer.written()
	obs := n.cfg.Observer
	if obs == nil {
		return traced
	}
	return func(recs []messages.Record, forced bool) {
		if traced != nil {
			traced(recs, forced)
		}
		for i := range recs {
			if recs[i].Kind == messages.RecHeuristic {
				obs.HeuristicLogged(recs[i].Decision)
			}
		}
	}
}

// synced is the log's fsync observer (persistence.Options.Synced).
func (n *Node) synced() func(time.Duration, int) {
	if n.cfg.Observer == nil {
		return nil
	}
	return n.cfg.Observer.LogSynced
}

// rounds is the participant's recovery-round observer.
func (n *Node) rounds() func(messages.Decision) {
	if n.cfg.Observer == nil {
		return nil
	}
	return n.cfg.Observer.RecoveryRound
}

// Ready says whether the node serves: nil from the end of Start (its log
// replayed, its roles recovered, its port open) until it stops, crashes or
// stops itself; otherwise why not, in one line.
func (n *Node) Ready() error {
	if n.cut.Load() {
		return errors.New("crashed (power cut)")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.failure != nil:
		return fmt.Errorf("stopped: its log failed: %v", n.failure)
	case n.stopped:
		return errors.New("stopped")
	case !n.started:
		return errors.New("recovering from its log")
	}
	return nil
}
