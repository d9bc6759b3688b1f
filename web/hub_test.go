package web

import (
	"encoding/json"
	"testing"
	"time"

	"twopc/messages"
)

// waitClosed fails the test if ch is not closed within a generous bound.
func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("still waiting for %s", what)
	}
}

// A browser that stops reading is dropped once its few frames of buffer
// are full; the hub never waits for it, and a browser that reads goes on
// receiving.
func TestSlowBrowserIsDroppedNeverWaitedFor(t *testing.T) {
	src := &fakeSource{nodes: 3}
	h := newHub(src, Options{Tick: 100 * time.Millisecond, Buffer: 3})
	defer h.close()
	stuck, err := h.subscribe(true, "")
	if err != nil {
		t.Fatal(err)
	}
	if cap(stuck.ch) != 3 {
		t.Fatalf("a browser's buffer holds %d frames, want 3", cap(stuck.ch))
	}
	reader, err := h.subscribe(true, "")
	if err != nil {
		t.Fatal(err)
	}
	// The reader reads every frame as it comes.
	got := make(chan frameJSON, 100)
	go func() {
		for {
			select {
			case b := <-reader.ch:
				var f frameJSON
				if json.Unmarshal(b, &f) == nil {
					select {
					case got <- f:
					default:
					}
				}
			case <-reader.gone:
				close(got)
				return
			}
		}
	}()
	waitClosed(t, stuck.gone, "the stuck browser to be dropped")
	if !stuck.dropped {
		t.Error("dropped, but not marked as too slow")
	}
	if len(stuck.ch) > cap(stuck.ch) {
		t.Errorf("%d frames held for a stuck browser", len(stuck.ch))
	}
	// The reader still gets frames after the stuck one was dropped.
	for len(got) > 0 {
		<-got
	}
	for i := 0; i < 5; i++ {
		select {
		case _, ok := <-got:
			if !ok {
				t.Fatal("the reading browser was dropped too")
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the reading browser gets no frames")
		}
	}
	h.unsubscribe(reader) // ends the reading goroutine
	for range got {
	}
}

// Nothing is watched until a browser attaches, and nothing once the last
// one leaves: the loop ends and the source's sink is cleared.
func TestHubWatchesOnlyWhileABrowserIsAttached(t *testing.T) {
	src := &fakeSource{nodes: 2}
	h := newHub(src, Options{Tick: 100 * time.Millisecond})
	defer h.close()
	if src.watching() != nil || src.snaps != 0 {
		t.Fatal("the source is watched (or asked) with no browser attached")
	}
	a, _ := h.subscribe(true, "")
	b, _ := h.subscribe(true, "")
	if src.watching() == nil {
		t.Fatal("not watching with two browsers attached")
	}
	// The hello first, then frames.
	var hello frameJSON
	if err := json.Unmarshal(<-a.ch, &hello); err != nil || hello.Hello == nil || hello.Hello.Nodes != 2 {
		t.Fatalf("first frame: %+v %v", hello, err)
	}
	h.unsubscribe(a)
	if src.watching() == nil {
		t.Fatal("stopped watching while a browser is still attached")
	}
	h.unsubscribe(b)
	done := make(chan struct{})
	go func() { h.loops.Wait(); close(done) }()
	waitClosed(t, done, "the loop to end once no browser is attached")
	if src.watching() != nil {
		t.Error("still watching with no browser attached")
	}
	src.mu.Lock()
	asked := src.snaps
	src.mu.Unlock()
	// Reattaching starts it again, and the transactions ended meanwhile
	// were not collected.
	c, _ := h.subscribe(true, "")
	defer h.unsubscribe(c)
	if src.watching() == nil || src.watches != 2 {
		t.Errorf("reattached: watching %v, %d watches; want a second one", src.watching() != nil, src.watches)
	}
	if asked == 0 {
		t.Error("the source was never asked for a snapshot while watched")
	}
}

// A frame carries what the sink heard since the last one: the messages
// drawn, the transactions ended, and the seconds of the chart now over.
func TestHubFrameCarriesWhatTheSinkHeard(t *testing.T) {
	src := &fakeSource{nodes: 2}
	h := newHub(src, Options{Tick: 100 * time.Millisecond})
	defer h.close()
	s, _ := h.subscribe(true, "")
	defer h.unsubscribe(s)
	<-s.ch // the hello
	sink := src.watching()
	sink.TxEnded(TxEnd{Tx: messages.TxID{Node: 1, Incarnation: 1, Seq: 9}, Node: 1, Outcome: OutcomeCommitted, Took: 3 * time.Millisecond, At: time.Now()})
	var txs []txJSON
	var series []pointJSON
	deadline := time.After(30 * time.Second)
	for len(txs) == 0 || !hasCommit(series) {
		select {
		case b := <-s.ch:
			var f frameJSON
			if err := json.Unmarshal(b, &f); err != nil {
				t.Fatal(err)
			}
			txs = append(txs, f.Txs...)
			series = append(series, f.Series...)
			if len(f.Nodes) != 2 {
				t.Fatalf("a frame with %d cards, want 2", len(f.Nodes))
			}
		case <-deadline:
			t.Fatalf("after 30 s: transactions %+v, series %+v", txs, series)
		}
	}
	if len(txs) != 1 || txs[0].Tx != "1.1.9" || txs[0].Outcome != OutcomeCommitted || txs[0].Ms != 3 {
		t.Errorf("transactions in frames: %+v", txs)
	}
}

func hasCommit(ps []pointJSON) bool {
	for _, p := range ps {
		if p.Commits > 0 {
			return p.P50 != nil && *p.P50 > 0
		}
	}
	return false
}
