package web

import (
	"sync"
	"testing"

	"twopc/messages"
	"twopc/trace"
)

// recordingSink counts what it is told.
type recordingSink struct {
	mu     sync.Mutex
	events int
	ends   []TxEnd
}

func (s *recordingSink) Event(trace.Event) {
	s.mu.Lock()
	s.events++
	s.mu.Unlock()
}

func (s *recordingSink) TxEnded(t TxEnd) {
	s.mu.Lock()
	s.ends = append(s.ends, t)
	s.mu.Unlock()
}

func (s *recordingSink) counts() (int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.events, len(s.ends)
}

// An in-process cluster's source tells a sink of every traced event and
// every transaction's end while it watches, and nothing before or after.
func TestLocalSourceTellsOnlyWhileWatched(t *testing.T) {
	r := newRig(t, Options{})
	submit := func() messages.TxID {
		t.Helper()
		o, err := r.client(t, 0).Submit(messages.Add(messages.EverywhereKey, 1))
		if err != nil || !o.Committed {
			t.Fatalf("submit: %+v %v", o, err)
		}
		r.settled(t, o.Tx)
		return o.Tx
	}
	if r.src.tap.watching() {
		t.Fatal("watched before anyone asked")
	}
	submit()
	sink := &recordingSink{}
	stop := r.src.Watch(sink)
	tx := submit()
	events, ends := sink.counts()
	traced := len(r.rec.Events(tx)) // all of them recorded while watched
	if events < traced || ends != 1 {
		t.Errorf("while watched: %d events and %d ends told, want at least the %d traced and 1", events, ends, traced)
	}
	if sink.ends[0].Tx != tx || sink.ends[0].Outcome != OutcomeCommitted || sink.ends[0].Node != 0 {
		t.Errorf("end told: %+v", sink.ends[0])
	}
	stop()
	if r.src.tap.watching() {
		t.Error("still watched after stop")
	}
	submit()
	if e, n := sink.counts(); e != events || n != ends {
		t.Errorf("after stop the sink was told %d more events and %d more ends", e-events, n-ends)
	}
}
