package web

import (
	"sync/atomic"
	"time"

	"twopc/cluster"
	"twopc/messages"
	"twopc/trace"
)

// tap hands what a source's nodes report to the Sink watching, if any.
// With none it costs one atomic load per report: the page collects nothing
// while no browser looks.
type tap struct {
	sink atomic.Pointer[sinkRef]
}

// sinkRef boxes a Sink, so that a Watch's stop clears only its own.
type sinkRef struct{ s Sink }

// watch makes s the sink until stop; a later watch replaces it.
func (t *tap) watch(s Sink) (stop func()) {
	ref := &sinkRef{s: s}
	t.sink.Store(ref)
	return func() { t.sink.CompareAndSwap(ref, nil) }
}

// event is a trace.Recorder's tap (SetTap).
func (t *tap) event(e trace.Event) {
	if r := t.sink.Load(); r != nil {
		r.s.Event(e)
	}
}

// watching reports whether a sink is set.
func (t *tap) watching() bool { return t.sink.Load() != nil }

// observer is a node's cluster.Observer: it passes everything to inner
// (the metrics' Recorder, or nil) and tells the sink, if one watches, of
// each transaction's end.
type observer struct {
	inner cluster.Observer
	node  int32
	t     *tap
}

var _ cluster.Observer = (*observer)(nil)

func (o *observer) TransactionEnded(out *messages.Outcome, err error, took time.Duration) {
	if o.inner != nil {
		o.inner.TransactionEnded(out, err, took)
	}
	if r := o.t.sink.Load(); r != nil {
		r.s.TxEnded(endOf(o.node, out, err, took))
	}
}

func (o *observer) LogSynced(took time.Duration, records int) {
	if o.inner != nil {
		o.inner.LogSynced(took, records)
	}
}

func (o *observer) HeuristicLogged(d messages.Decision) {
	if o.inner != nil {
		o.inner.HeuristicLogged(d)
	}
}

func (o *observer) RecoveryRound(d messages.Decision) {
	if o.inner != nil {
		o.inner.RecoveryRound(d)
	}
}
