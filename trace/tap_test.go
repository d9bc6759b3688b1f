package trace

import (
	"strings"
	"testing"
	"time"
)

// A tap sees every event recorded while it is set — node events too, with
// the time Record stamped — and nothing once it is removed.
func TestSetTapSeesEventsWhileSet(t *testing.T) {
	r := NewRecorder(10)
	r.Record(send(0.1, 0, 1, tx1, "Prepare", "")) // before the tap: not seen
	var seen []Event
	r.SetTap(func(e Event) { seen = append(seen, e) })
	r.Record(send(0.2, 0, 2, tx1, "Prepare", ""))
	before := time.Now()
	r.NodeEvent(2, "crashed (power cut)")
	r.SetTap(nil)
	r.Record(recv(0.4, 1, 0, tx1, "Prepare", ""))
	if len(seen) != 2 {
		t.Fatalf("tap saw %d events, want 2: %v", len(seen), seen)
	}
	if seen[0].What != "Prepare" || seen[0].Peer != 2 {
		t.Errorf("first event seen: %v, want the Prepare to node 2", seen[0])
	}
	if seen[1].Kind != NodeEvent || seen[1].Node != 2 || seen[1].At.Before(before) {
		t.Errorf("second event seen: %+v, want node 2's crash stamped now", seen[1])
	}
	if n := len(r.Events(tx1)); n != 3 {
		t.Errorf("the recorder kept %d events of %v, want 3 (the tap takes nothing away)", n, tx1)
	}
}

// Summary is Render's first line without its "trace <tx>: " prefix.
func TestSummaryIsRendersFirstLine(t *testing.T) {
	r := NewRecorder(10)
	r.Record(send(0.1, 0, 1, tx1, "Prepare", ""))
	r.Record(logw(0.5, 0, tx1, "COMMIT", true))
	var b strings.Builder
	if err := r.Render(&b, tx1, 2); err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(b.String(), "\n")
	want := "trace " + tx1.String() + ": " + Summary(tx1, r.Events(tx1))
	if first != want {
		t.Errorf("Render's first line %q, want %q", first, want)
	}
	if !strings.HasPrefix(Summary(tx1, r.Events(tx1)), "committed; coordinator node 0, participants 1") {
		t.Errorf("Summary = %q", Summary(tx1, r.Events(tx1)))
	}
}
