package actors

import (
	"testing"
	"time"

	"twopc/messages"
)

// outcomes forgets ids after their time and gives back the room a burst
// took, so a participant's memory follows the current rate, not the peak.
func TestOutcomesForgetAndShrink(t *testing.T) {
	o := newOutcomes()
	t0 := time.Unix(1000, 0)
	for i := uint64(1); i <= 10000; i++ {
		o.add(messages.TxID{Node: 1, Incarnation: 1, Seq: i}, t0.Add(time.Duration(i)*time.Millisecond))
	}
	o.forgetBefore(t0.Add(9001 * time.Millisecond)) // keeps seq 9001..10000
	if o.len() != 1000 || o.has(messages.TxID{Node: 1, Incarnation: 1, Seq: 9000}) || !o.has(messages.TxID{Node: 1, Incarnation: 1, Seq: 9001}) {
		t.Fatalf("after forgetting: %d held", o.len())
	}
	if o.peak != 1000 || cap(o.queue) > 2000 || o.head != 0 {
		t.Fatalf("not shrunk after the burst: peak %d, queue cap %d, head %d", o.peak, cap(o.queue), o.head)
	}
	o.forgetBefore(t0.Add(time.Hour))
	if o.len() != 0 {
		t.Fatalf("%d held after everything expired", o.len())
	}
}
