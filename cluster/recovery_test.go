package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"twopc/actors"
	"twopc/messages"
)

// The coordinator loses power twice: once right after logging COMMIT, and
// again, after its restart, while re-driving that commit (Commit reached and
// was committed by one participant only). With snapshots every 2 records.
// After the second restart the transaction is committed everywhere, and the
// second incarnation's re-drive is not confused with the first.
func TestCoordinatorCrashesTwiceWhileRedriving(t *testing.T) {
	r := newCrashRigSnapshotting(t, 2, actors.TwoPC) // re-driving a logged COMMIT is 2PC's recovery
	a, b := "n1/r4-twice-a", "n2/r4-twice-b"
	if o, err := r.l.Node(0).Submit(messages.Set(a, 100), messages.Set(b, 100)); err != nil || !o.Committed {
		t.Fatalf("setup: %v %v", o, err)
	}
	r.waitSettled()
	inc0 := r.l.Node(0).Incarnation()

	c1 := r.armCrash(0, actors.StepCommitLogged, -1, nil)
	go r.l.Node(0).Submit(messages.AddFloor(a, -10, 0), messages.Add(b, 10))
	id := r.waitCrashed(c1).Tx
	if err := r.l.Crash(0); err != nil {
		t.Fatal(err)
	}
	// Armed before the restart: the re-drive starts inside Start.
	c2 := r.armCrash(0, actors.StepCommitSent, 1, func(s actors.Step) bool {
		return s.Node == 1 && s.Kind == actors.StepCommittedLogged
	})
	if err := r.l.RestartNode(0); err != nil {
		t.Fatal(err)
	}
	if s := r.waitCrashed(c2); s.Tx != id {
		t.Fatalf("second crash at %v, want the re-drive of %v", s, id)
	}
	if err := r.l.Crash(0); err != nil {
		t.Fatal(err)
	}
	if err := r.l.RestartNode(0); err != nil {
		t.Fatal(err)
	}
	if got := r.l.Node(0).Incarnation(); got != inc0+2 {
		t.Errorf("incarnation %d after two restarts, want %d", got, inc0+2)
	}
	r.waitSettled()
	if va, vb := r.valueOf(a), r.valueOf(b); va != 90 || vb != 110 {
		t.Fatalf("a = %d, b = %d after two coordinator crashes; want 90 and 110 (%v committed)", va, vb, id)
	}
}

// A COMMIT whose segment is deleted by later snapshots, with its
// participant down the whole time: the coordinator (restarted, so it
// answers from the snapshot alone) must still say "commit" to the recovered
// participant, never presumed abort.
func TestCommitOnlyInSnapshotAnsweredCommitAfterRestart(t *testing.T) {
	r := newCrashRigSnapshotting(t, 2, actors.TwoPC) // re-driving a logged COMMIT is 2PC's recovery
	a, b := "n1/r4-snap-a", "n2/r4-snap-b"
	if o, err := r.l.Node(0).Submit(messages.Set(a, 100), messages.Set(b, 100)); err != nil || !o.Committed {
		t.Fatalf("setup: %v %v", o, err)
	}
	r.waitSettled()

	// Node 2 loses power right after its yes vote was counted.
	c := r.armCrash(2, actors.StepVoted, -1, func(s actors.Step) bool {
		return s.Node == 0 && s.Kind == actors.StepVoteReceived && s.Peer == 2
	})
	done := make(chan *messages.Outcome, 1)
	go func() {
		o, _ := r.l.Node(0).Submit(messages.AddFloor(a, -10, 0), messages.Add(b, 10))
		done <- o
	}()
	id := r.waitCrashed(c).Tx
	if err := r.l.Crash(2); err != nil {
		t.Fatal(err)
	}
	if o := <-done; o == nil || !o.Committed {
		t.Fatalf("outcome %v, want committed (both voted yes)", o)
	}
	// Enough traffic on node 0 alone to snapshot several times and delete
	// the segment holding the COMMIT of id.
	for i := 0; i < 6; i++ {
		if o, err := r.l.Node(0).Submit(messages.Add(fmt.Sprintf("n0/r4-snap-%d", i), 1)); err != nil || !o.Committed {
			t.Fatalf("filler %d: %v %v", i, o, err)
		}
	}
	dir := filepath.Join(r.l.cfg.DataDir, "node-0")
	if _, err := os.Stat(filepath.Join(dir, "wal-0000000000000001.log")); err == nil {
		t.Fatalf("the first segment of node 0 is still there: no snapshot deleted it")
	}
	if err := r.l.Crash(0); err != nil {
		t.Fatal(err)
	}
	if err := r.l.RestartNode(0); err != nil {
		t.Fatal(err)
	}
	if err := r.l.RestartNode(2); err != nil {
		t.Fatal(err)
	}
	r.waitSettled()
	if va, vb := r.valueOf(a), r.valueOf(b); va != 90 || vb != 110 {
		t.Fatalf("a = %d, b = %d; want 90 and 110 (%v committed, its COMMIT only in a snapshot)", va, vb, id)
	}
}

// After a crash and restart, a peer's batches to the new instance are
// accepted (new receiver, old sender session), and the restarted node's
// batches are accepted by the peer (new sender session): nothing is refused
// as late across a restart.
func TestRestartNoBatchRefusedAsLate(t *testing.T) {
	l := testCluster(t, 2, actors.Timing{})
	c := dial(t, l, 0)
	mustCommit(t, c, messages.Add("n0/x", 1), messages.Add("n1/x", 1))
	if err := l.Crash(1); err != nil {
		t.Fatal(err)
	}
	if err := l.RestartNode(1); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		mustCommit(t, c, messages.Add("n0/x", 1), messages.Add("n1/x", 1))
		mustCommit(t, dial(t, l, 1), messages.Add("n0/x", 1), messages.Add("n1/x", 1))
	}
	for i := range 2 {
		if st := l.Node(i).Bridge().Stats(); st.RefusedBatches != 0 {
			t.Errorf("node %d refused %d batches", i, st.RefusedBatches)
		}
	}
}

// The coordinator loses power just after logging COMMIT, and so
// does a participant that voted yes; the coordinator comes back and
// re-drives the commit while that participant stays down for long (its
// Commits queue at the bridge, which keeps redialling). Once the
// participant is back it learns the commit, acks, and the coordinator writes
// END and forgets: no commit without END, nothing in doubt anywhere.
func TestRedrivenCommitEndsOnceALongDownParticipantReturns(t *testing.T) {
	l, hook := hookedClusterRunning(t, 3, termTiming, actors.TwoPC) // a re-driven COMMIT is 2PC's
	if o, err := l.Node(0).Submit(messages.Set("n1/x", 10), messages.Set("n2/y", 10)); err != nil || !o.Committed {
		t.Fatalf("setup: %v %v", o, err)
	}
	settledWithin(t, l, 10*time.Second, "setup")

	cut := make(chan struct{})
	var fired atomic.Bool
	f := func(s actors.Step) {
		if s.Node == 0 && s.Kind == actors.StepCommitLogged && fired.CompareAndSwap(false, true) {
			l.Node(2).PowerCut()
			l.Node(0).PowerCut()
			close(cut)
		}
	}
	hook.Store(&f)
	n0 := l.Node(0)
	submitted := make(chan struct{})
	go func() {
		defer close(submitted)
		_, _ = n0.Submit(messages.Add("n1/x", 1), messages.Add("n2/y", 1)) // its client dies with node 0
	}()
	select {
	case <-cut:
	case <-time.After(10 * time.Second):
		t.Fatal("the transaction never logged its commit decision")
	}
	hook.Store(nil)
	<-submitted
	for _, i := range []int{2, 0} {
		if err := l.Crash(i); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.RestartNode(0); err != nil {
		t.Fatal(err)
	}
	// Node 2 stays down for long: the re-driven commit keeps going.
	for range 10 {
		time.Sleep(termTiming.MaxResendInterval + 100*time.Millisecond)
		if cs, err := l.Node(0).CoordinatorStatus(); err != nil || cs.InFlight != 1 {
			t.Fatalf("coordinator while node 2 is down: %+v %v, want the re-driven commit in flight", cs, err)
		}
	}
	if err := l.RestartNode(2); err != nil {
		t.Fatal(err)
	}
	settledWithin(t, l, 10*time.Second, "after node 2 is back")
	if x, y := valueVia(t, l, 0, "n1/x"), valueVia(t, l, 0, "n2/y"); x != 11 || y != 11 {
		t.Fatalf("n1/x = %d, n2/y = %d, want 11 and 11", x, y)
	}
}
