package cluster

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"twopc/actors"
	"twopc/actors/actortest"
	"twopc/messages"
)

// Resolve applies a heuristic decision while the transaction's coordinator
// is running and has already decided: every participant voted yes, the txn
// actor has decided commit and is logging COMMIT (held here at the
// commit-decided step, as a slow fsync would). KnownOutcome asks the
// coordinator, which answers "still collecting votes (or logging the
// decision)" — Unknown — and nobody else knows, so Resolve forces the abort
// on both participants. A moment later COMMIT is durable, the client is told
// "committed", and no node applied it.
//
// Nothing was blocked: the coordinator was up and would have finished by
// itself. A heuristic decision is for a transaction nobody can settle; an
// answer of "still deciding" from a running coordinator is a transient
// Unknown that Resolve must not take for "nobody knows" (a race between
// KnownOutcome and ForceDecision).
func TestReview7ResolveRefusedWhileTheCoordinatorIsRunningAndDeciding(t *testing.T) {
	var hold atomic.Pointer[func(actors.Step)]
	l, err := StartLocal(LocalConfig{
		Nodes: 3, DataDir: t.TempDir(), Timing: opTiming,
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Off}),
		Steps: func(s actors.Step) {
			if f := hold.Load(); f != nil {
				(*f)(s)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	x, y := "n1/r7-x", "n2/r7-y"
	if o, err := l.Node(0).Submit(messages.Set(x, 100), messages.Set(y, 100)); err != nil || !o.Committed {
		t.Fatalf("setup: %v %v", o, err)
	}
	settled(t, l, 10*time.Second)

	reached := make(chan messages.TxID, 1)
	release := make(chan struct{})
	var once atomic.Bool
	f := func(s actors.Step) {
		if s.Node == 0 && s.Kind == actors.StepCommitDecided && once.CompareAndSwap(false, true) {
			reached <- s.Tx
			<-release // COMMIT not yet appended: a slow log, as seen from outside
		}
	}
	hold.Store(&f)
	var released atomic.Bool
	releaseOnce := func() {
		if released.CompareAndSwap(false, true) {
			close(release)
		}
	}
	t.Cleanup(releaseOnce)

	outc := make(chan *messages.Outcome, 1)
	go func() {
		o, err := l.Node(0).Submit(messages.Add(x, -10), messages.Add(y, 10))
		if err != nil {
			t.Errorf("Submit: %v", err)
		}
		outc <- o
	}()
	var tx messages.TxID
	select {
	case tx = <-reached:
	case <-time.After(5 * time.Second):
		t.Fatal("the coordinator never decided")
	}
	actortest.Eventually(t, 5*time.Second, func() string {
		d, err := l.InDoubt()
		if err != nil {
			return err.Error()
		}
		if len(d) != 2 {
			return fmt.Sprintf("in doubt: %+v, want nodes 1 and 2 (both voted yes)", d)
		}
		return ""
	})

	res, rerr := l.Resolve(tx, false)
	releaseOnce()
	o := <-outc
	vals := r7Settled(t, l, x, y)
	if rerr == nil {
		t.Fatalf("Resolve(%v, abort) was applied on nodes %v while node 0's coordinator was up and had decided commit (it was logging COMMIT); then the client was told %+v, and x=%d y=%d: a committed transaction applied nowhere",
			tx, res.Nodes, o, vals[0].Value, vals[1].Value)
	}
	r7WantRunningRefusal(t, rerr)
	if !o.Committed || vals[0].Value != 90 || vals[1].Value != 110 {
		t.Fatalf("Resolve refused (%v), yet outcome %+v and x=%d y=%d", rerr, o, vals[0].Value, vals[1].Value)
	}
}

// The same race without any hook: the coordinator is up and collecting
// votes (node 2's Prepare is lost to a partition, so it will abort at its
// vote timeout); node 1 voted yes and is in doubt, not yet asking anyone
// (InDoubtAfter is longer than the vote timeout, as by default). KnownOutcome
// hears "still collecting votes" from the running coordinator, Resolve
// forces a commit on node 1, and a moment later the coordinator aborts: node
// 1 applied a transaction that aborted, though its coordinator never stopped
// running and nothing was blocked.
func TestReview7ResolveRefusedWhileTheCoordinatorIsCollectingVotes(t *testing.T) {
	timing := opTiming
	timing.VoteTimeout = time.Second
	timing.InDoubtAfter = 3 * time.Second // the default ratio: asks only after the vote timeout
	l, err := StartLocal(LocalConfig{
		Nodes: 3, DataDir: t.TempDir(), Timing: timing,
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Off}),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	x, y := "n1/r7c-x", "n2/r7c-y"
	if o, err := l.Node(0).Submit(messages.Set(x, 100), messages.Set(y, 100)); err != nil || !o.Committed {
		t.Fatalf("setup: %v %v", o, err)
	}
	settled(t, l, 10*time.Second)
	if err := l.Partition(0, 2); err != nil {
		t.Fatal(err)
	}

	outc := make(chan *messages.Outcome, 1)
	go func() {
		o, err := l.Node(0).Submit(messages.Add(x, -10), messages.Add(y, 10))
		if err != nil {
			t.Errorf("Submit: %v", err)
		}
		outc <- o
	}()
	var tx messages.TxID
	actortest.Eventually(t, 5*time.Second, func() string {
		d, err := l.InDoubt()
		if err != nil {
			return err.Error()
		}
		if len(d) != 1 || d[0].Node != 1 || !d[0].CoordinatorUp {
			return fmt.Sprintf("in doubt: %+v, want node 1 (coordinator up)", d)
		}
		tx = d[0].Tx
		return ""
	})

	res, rerr := l.Resolve(tx, true)
	o := <-outc
	l.Heal()
	vals := r7Settled(t, l, x, y)
	if rerr == nil {
		t.Fatalf("Resolve(%v, commit) was applied on nodes %v while node 0's coordinator was up and collecting votes; it then decided %+v, and x=%d y=%d: node 1 applied a transaction that aborted",
			tx, res.Nodes, o, vals[0].Value, vals[1].Value)
	}
	r7WantRunningRefusal(t, rerr)
	if o.Committed || vals[0].Value != 100 || vals[1].Value != 100 {
		t.Fatalf("Resolve refused (%v), yet outcome %+v and x=%d y=%d", rerr, o, vals[0].Value, vals[1].Value)
	}
}

// r7Settled waits until nothing is left in flight and reads x and y.
func r7Settled(t *testing.T, l *Local, x, y string) []NodeValue {
	t.Helper()
	settled(t, l, 10*time.Second)
	vals, err := l.Node(1).Read(x, y)
	if err != nil {
		t.Fatal(err)
	}
	return vals
}

// r7WantRunningRefusal: Resolve refused because node 0, the coordinator,
// runs.
func r7WantRunningRefusal(t *testing.T, rerr error) {
	t.Helper()
	var running *CoordinatorRunningError
	if !errors.As(rerr, &running) || running.Node != 0 {
		t.Fatalf("Resolve refused with %v, want a CoordinatorRunningError naming node 0", rerr)
	}
}
