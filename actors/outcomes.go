package actors

import (
	"time"

	"twopc/messages"
)

// outcomes is a set of transaction ids that forgets each id some time after
// it was added: memory stays bounded by the transaction rate times how long
// an id must be remembered, however long the node runs.
type outcomes struct {
	at    map[messages.TxID]time.Time
	queue []outcome // in the order added, so the oldest are at the front
	head  int
	peak  int // most ids held since the map was last rebuilt
}

type outcome struct {
	tx messages.TxID
	at time.Time
}

func newOutcomes() *outcomes { return &outcomes{at: make(map[messages.TxID]time.Time)} }

func (o *outcomes) add(tx messages.TxID, now time.Time) {
	if _, ok := o.at[tx]; ok {
		return
	}
	o.at[tx] = now
	o.queue = append(o.queue, outcome{tx: tx, at: now})
	o.peak = max(o.peak, len(o.at))
}

func (o *outcomes) has(tx messages.TxID) bool {
	_, ok := o.at[tx]
	return ok
}

// forgetBefore drops every id added before horizon.
func (o *outcomes) forgetBefore(horizon time.Time) {
	for o.head < len(o.queue) && o.queue[o.head].at.Before(horizon) {
		delete(o.at, o.queue[o.head].tx)
		o.queue[o.head] = outcome{}
		o.head++
	}
	// Reuse the slice once most of it is forgotten.
	if o.head > 1024 && o.head*2 > len(o.queue) {
		o.queue = append(o.queue[:0], o.queue[o.head:]...)
		o.head = 0
	}
	// A Go map keeps the room it grew to, and so would this one after a
	// burst: rebuild both once they hold a quarter of their peak.
	if o.peak > 4096 && len(o.at)*4 <= o.peak {
		at := make(map[messages.TxID]time.Time, len(o.at))
		for tx, t := range o.at {
			at[tx] = t
		}
		o.at, o.peak = at, len(at)
		o.queue = append([]outcome(nil), o.queue[o.head:]...)
		o.head = 0
	}
}

func (o *outcomes) len() int { return len(o.at) }
