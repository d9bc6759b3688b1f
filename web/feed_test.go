package web

import (
	"slices"
	"testing"
	"time"

	"twopc/messages"
	"twopc/trace"
)

func txn(seq uint64) messages.TxID { return messages.TxID{Node: 0, Incarnation: 1, Seq: seq} }

// However many messages and transactions a frame's span sees, the feed
// keeps a bounded sample and counts the rest: memory and frame size do not
// grow with the cluster's speed.
func TestFeedStaysBoundedUnderAFlood(t *testing.T) {
	f := newFeed(4, 48, 32, 64, time.Minute)
	t0 := time.Now()
	const sends = 100_000
	for i := 0; i < sends; i++ {
		from, to := int32(i%4), int32((i+1)%4)
		f.Event(trace.Event{At: t0.Add(time.Duration(i) * time.Microsecond), Node: from, Kind: trace.Send, Peer: to, Tx: txn(uint64(i + 1)), What: "Prepare"})
		f.Event(trace.Event{At: t0, Node: from, Kind: trace.Send, Peer: from, Tx: txn(uint64(i + 1)), What: "Prepare"}) // to its own participant
		f.Event(trace.Event{At: t0, Node: from, Kind: trace.Receive, Peer: to, Tx: txn(uint64(i + 1)), What: "Prepare"})
	}
	for i := 0; i < 100; i++ {
		f.Event(trace.Event{At: t0, Node: 1, Kind: trace.NodeEvent, Peer: trace.NoPeer, What: "restarted (incarnation 2)"})
	}
	const ends = 10_000
	for i := 0; i < ends; i++ {
		f.TxEnded(TxEnd{Tx: txn(uint64(i + 1)), Node: 0, Outcome: OutcomeCommitted, Took: time.Millisecond, At: t0})
	}
	if len(f.open) > maxOpen {
		t.Errorf("%d open transactions remembered, more than %d", len(f.open), maxOpen)
	}
	d := f.drain()
	if len(d.msgs) != 48 || d.msgSeen != sends {
		t.Errorf("drawn %d of %d messages, want 48 of %d", len(d.msgs), d.msgSeen, sends)
	}
	total := 0
	for _, c := range d.links {
		total += c
	}
	if total != 2*sends {
		t.Errorf("links count %d messages, want %d (self-sends counted, not drawn)", total, 2*sends)
	}
	if !slices.IsSortedFunc(d.msgs, func(a, b msgSample) int { return a.At.Compare(b.At) }) {
		t.Error("the messages drawn are not in the order they were sent")
	}
	// A uniform sample: 48 draws all from the first half has odds 2^-48.
	if half := t0.Add(sends / 2 * time.Microsecond); !d.msgs[len(d.msgs)-1].At.After(half) {
		t.Errorf("every message drawn is from the first half of the frame: not a uniform sample")
	}
	if len(d.marks) != 32 || d.marksLost != 68 {
		t.Errorf("%d node events kept, %d counted lost; want 32 and 68", len(d.marks), d.marksLost)
	}
	if len(d.txs) != 64 || d.txsLost != ends-64 {
		t.Errorf("%d transactions kept, %d lost; want 64 and %d", len(d.txs), d.txsLost, ends-64)
	}
	if last := d.txs[len(d.txs)-1].Tx; last != txn(ends) {
		t.Errorf("the newest transaction kept is %v, want %v (the list shows what just happened)", last, txn(ends))
	}
	// Drained: the next frame starts empty.
	if d2 := f.drain(); len(d2.msgs)+len(d2.txs)+len(d2.marks)+d2.msgSeen != 0 {
		t.Errorf("a second drain still holds %d messages, %d transactions, %d marks", len(d2.msgs), len(d2.txs), len(d2.marks))
	}
}

// A transaction's end names the participants its Prepares went to, and
// the feed then forgets them.
func TestFeedParticipantsFromPrepares(t *testing.T) {
	f := newFeed(4, 48, 32, 64, time.Minute)
	tx := txn(7)
	for _, p := range []int32{3, 1, 0} {
		f.Event(trace.Event{At: time.Now(), Node: 0, Kind: trace.Send, Peer: p, Tx: tx, What: "Prepare"})
	}
	f.Event(trace.Event{At: time.Now(), Node: 1, Kind: trace.Send, Peer: 0, Tx: tx, What: "Vote yes"})
	f.TxEnded(TxEnd{Tx: tx, Node: 0, Outcome: OutcomeAborted, At: time.Now()})
	d := f.drain()
	if len(d.txs) != 1 || !slices.Equal(d.txs[0].Participants, []int32{0, 1, 3}) {
		t.Fatalf("ended: %+v, want participants 0 1 3", d.txs)
	}
	if len(f.open) != 0 {
		t.Errorf("%d transactions still remembered after their end", len(f.open))
	}
	if got := d.commits[0] + d.aborts[0]; got != 0 {
		t.Errorf("decisions counted without a Decision event: %d", got)
	}
}

// p50 and p99 of a second's transactions come from its histogram, within
// one bucket (25%) above the true value; counts by outcome are exact.
func TestFeedSecondQuantiles(t *testing.T) {
	f := newFeed(4, 48, 32, 64, time.Minute)
	at := time.Unix(1_700_000_000, 0)
	for i := 1; i <= 100; i++ {
		o := OutcomeCommitted
		if i%10 == 0 {
			o = OutcomeAborted
		}
		f.TxEnded(TxEnd{Tx: txn(uint64(i)), Outcome: o, Took: time.Duration(i) * time.Millisecond, At: at.Add(time.Duration(i) * time.Millisecond)})
	}
	f.TxEnded(TxEnd{Tx: txn(1000), Outcome: OutcomeUnknown, Took: 5 * time.Second, At: at.Add(time.Second)}) // the next second
	p := f.second(at.Unix())
	if p.Commits != 90 || p.Aborts != 10 || p.Unknowns != 0 {
		t.Errorf("second %d: %d commits, %d aborts, %d unknown; want 90, 10, 0", p.Sec, p.Commits, p.Aborts, p.Unknowns)
	}
	within := func(name string, got, want time.Duration) {
		if got < want || float64(got) > float64(want)*latGrowth {
			t.Errorf("%s = %v, want within [%v, %v]", name, got, want, time.Duration(float64(want)*latGrowth))
		}
	}
	within("p50", p.P50, 50*time.Millisecond)
	within("p99", p.P99, 99*time.Millisecond)
	if q := f.second(at.Unix() + 1); q.Unknowns != 1 || q.P50 < 5*time.Second {
		t.Errorf("the next second: %+v", q)
	}
	if q := f.second(at.Unix() + 2); q.Commits+q.Aborts+q.Unknowns != 0 || q.P50 != 0 {
		t.Errorf("a second with nothing: %+v", q)
	}
}
