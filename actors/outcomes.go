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
}

func (o *outcomes) len() int { return len(o.at) }
