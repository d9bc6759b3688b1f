package actors

import (
	"time"

	"twopc/messages"
)

// outcomeKind is what a participant did with a transaction it is no longer
// working on (see standing).
type outcomeKind uint8

const (
	outCommitted       outcomeKind = iota + 1 // committed here (COMMITTED durable)
	outAborted                                // voted no here: nothing durable binds it yet (see refuse)
	outAbortDecided                           // the decision is abort: told so by its coordinator or a peer
	outRefused                                // its REFUSED record is durable: binds this node to no
	outReadOnlyLogging                        // voted read-only once READ-ONLY is durable; being written
	outReadOnly                               // voted read-only (READ-ONLY durable)
)

// outcomes is a set of transaction ids, each with what this node did with
// it. It forgets an id when the participant says so (its coordinator's mark
// passed it) or some time after it was added; either way memory stays
// bounded, however long the node runs. Forgetting never changes an answer
// to one that contradicts it: the participant raises its mark past what it
// forgets (see participant.forget).
type outcomes struct {
	at    map[messages.TxID]held
	queue []outcome // in the order added, so the oldest are at the front
	head  int
	peak  int // most ids held since the map was last rebuilt
	// forgot, if set, is told of every id forgotten by age.
	forgot func(messages.TxID)
}

type held struct {
	at   time.Time
	kind outcomeKind
}

type outcome struct {
	tx messages.TxID
	at time.Time
}

func newOutcomes() *outcomes { return &outcomes{at: make(map[messages.TxID]held)} }

// add remembers tx with no particular kind (outAborted), unless it is held.
func (o *outcomes) add(tx messages.TxID, now time.Time) { o.put(tx, outAborted, now, false) }

// put remembers tx as kind; a held id keeps its place (and age) and takes
// the new kind only with replace.
func (o *outcomes) put(tx messages.TxID, kind outcomeKind, now time.Time, replace bool) {
	if h, ok := o.at[tx]; ok {
		if replace {
			h.kind = kind
			o.at[tx] = h
		}
		return
	}
	o.at[tx] = held{at: now, kind: kind}
	o.queue = append(o.queue, outcome{tx: tx, at: now})
	o.peak = max(o.peak, len(o.at))
}

func (o *outcomes) has(tx messages.TxID) bool {
	_, ok := o.at[tx]
	return ok
}

func (o *outcomes) kind(tx messages.TxID) (outcomeKind, bool) {
	h, ok := o.at[tx]
	return h.kind, ok
}

// drop forgets tx now; its queue entry goes when its time comes.
func (o *outcomes) drop(tx messages.TxID) { delete(o.at, tx) }

// forgetBefore drops every id added before horizon.
func (o *outcomes) forgetBefore(horizon time.Time) {
	for o.head < len(o.queue) && o.queue[o.head].at.Before(horizon) {
		q := o.queue[o.head]
		if h, ok := o.at[q.tx]; ok && h.at.Equal(q.at) {
			delete(o.at, q.tx)
			if o.forgot != nil {
				o.forgot(q.tx)
			}
		}
		o.queue[o.head] = outcome{}
		o.head++
	}
	// Reuse the slice once most of it is forgotten.
	if o.head > 1024 && o.head*2 > len(o.queue) {
		o.queue = append(o.queue[:0], o.queue[o.head:]...)
		o.head = 0
	}
	o.shrink()
}

// shrink: a Go map keeps the room it grew to, and so would this one after a
// burst: rebuild both once they hold a quarter of their peak.
func (o *outcomes) shrink() {
	if o.peak > 4096 && len(o.at)*4 <= o.peak {
		at := make(map[messages.TxID]held, len(o.at))
		queue := make([]outcome, 0, len(o.at))
		for _, q := range o.queue[o.head:] {
			if h, ok := o.at[q.tx]; ok && h.at.Equal(q.at) {
				at[q.tx] = h
				queue = append(queue, q)
			}
		}
		o.at, o.peak, o.queue, o.head = at, len(at), queue, 0
	}
}

func (o *outcomes) len() int { return len(o.at) }

// memory is what a participant knows of transactions it no longer works
// on: done holds what it did with each, and marks, per coordinator node,
// the transaction below which it vouches for nothing (messages.TxID.Below).
//
// A mark rises two ways. The coordinator says how far it has settled
// (Prepare, Commit and Abort carry its low-water mark), and this node
// forgets what it did with anything below: none of it can be asked about
// in a way that needs this node's answer (see coordinator.settled). Or an
// outcome is held longer than Timing.RememberOutcomes and forgotten, and
// the mark rises past it: memory stays bounded while a coordinator is
// idle. Either way, below the mark this node answers a Prepare with no and
// a peer in doubt with "unknown" — never "abort", so the clock that timed
// the forgetting decides nothing: it only turns answers into ones that are
// always safe. No is always safe for a transaction this node holds no live
// record of: its coordinator either still collects votes and may count a
// no, or has decided and ignores it.
type memory struct {
	done  *outcomes
	marks map[int32]messages.TxID
	// announced: the highest mark each coordinator announced; logged: the
	// ones already sent to the log (MARK, lazy). A mark raised by age
	// alone is not logged: after a restart the log's outcomes are simply
	// remembered again, which is as safe, and probes in tests see no
	// records nobody asked for.
	announced map[int32]messages.TxID
	logged    map[int32]messages.TxID
}

func newMemory(out map[messages.TxID]messages.RecordKind, marks map[int32]messages.TxID, now time.Time) *memory {
	m := &memory{done: newOutcomes(), marks: make(map[int32]messages.TxID),
		announced: make(map[int32]messages.TxID), logged: make(map[int32]messages.TxID)}
	for n, mk := range marks {
		m.marks[n], m.announced[n], m.logged[n] = mk, mk, mk
	}
	for tx, k := range out {
		kind := outAbortDecided // ABORTED: a prepared transaction told abort
		switch k {
		case messages.RecCommitted:
			kind = outCommitted
		case messages.RecRefused:
			kind = outRefused
		case messages.RecReadOnly:
			kind = outReadOnly
		}
		m.done.put(tx, kind, now, false)
	}
	m.done.forgot = func(tx messages.TxID) {
		m.raise(messages.TxID{Node: tx.Node, Incarnation: tx.Incarnation, Seq: tx.Seq + 1})
	}
	return m
}

// below: tx lies below its coordinator's mark here.
func (m *memory) below(tx messages.TxID) bool {
	mk, ok := m.marks[tx.Node]
	return ok && tx.Below(mk)
}

// observe takes the coordinator's low-water mark carried by a message about
// tx (0: none, as on a commit of an earlier incarnation re-driven).
func (m *memory) observe(tx messages.TxID, settled uint64) {
	if settled == 0 {
		return
	}
	mk := messages.TxID{Node: tx.Node, Incarnation: tx.Incarnation, Seq: settled}
	if old, ok := m.announced[mk.Node]; !ok || old.Below(mk) {
		m.announced[mk.Node] = mk
	}
	m.raise(mk)
}

// raise lifts the mark of mk's coordinator to mk; marks never fall.
func (m *memory) raise(mk messages.TxID) {
	if old, ok := m.marks[mk.Node]; !ok || old.Below(mk) {
		m.marks[mk.Node] = mk
	}
}

// note remembers what this node did with tx, unless it is below the mark.
// What is held already stays, except for the steps a transaction takes
// within one kind of answer: a no becomes a durable refusal, a read-only
// vote being logged becomes logged (or, if the write failed, a no).
// Committed and read-only are never overwritten by an abort: a peer must
// hear what this node's data says, and a read-only voter knows no outcome.
func (m *memory) note(tx messages.TxID, kind outcomeKind, now time.Time) {
	if m.below(tx) {
		return
	}
	old, ok := m.done.kind(tx)
	switch {
	case !ok:
		m.done.put(tx, kind, now, false)
	case old == outAborted && (kind == outRefused || kind == outAbortDecided),
		old == outReadOnlyLogging && (kind == outReadOnly || kind == outAborted):
		m.done.put(tx, kind, now, true)
	}
}

// forget drops what is below the marks and what is older than horizon
// (raising the marks past it), and returns the announced marks that rose
// since they were last logged.
func (m *memory) forget(horizon time.Time) []messages.TxID {
	m.done.forgetBefore(horizon)
	for tx := range m.done.at {
		if m.below(tx) {
			m.done.drop(tx)
		}
	}
	m.done.shrink()
	var risen []messages.TxID
	for n, mk := range m.announced {
		if old, ok := m.logged[n]; !ok || old.Below(mk) {
			m.logged[n] = mk
			risen = append(risen, mk)
		}
	}
	return risen
}
