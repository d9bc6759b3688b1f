package cluster

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"twopc/actors"
	"twopc/actors/actortest"
	"twopc/messages"
)

// End to end: a committed transaction must not be aborted on one
// participant through a duplicate Prepare at a read-only voter (a unit test in actors/ pins the
// participant's side of it).
//
// Interleaving:
//  1. T = {node 1: x >= 0 (add 0, floor 0) — read-only; node 2: y += 10},
//     coordinated by node 0. Node 1 votes read-only, node 2 yes.
//  2. Node 0 logs COMMIT (the client's "committed" is due) and loses power
//     before any Commit leaves. Node 2 is in doubt.
//  3. T2 (via node 3) sets x = -5 and commits; node 1 is free to, it holds
//     nothing for T.
//  4. A duplicate of T's Prepare reaches node 1 (the bridge's Duplicate
//     fault sends a second copy, delayed on its own; injected here locally
//     so that it lands at step 4). Prepared from scratch, its floor check
//     would fail and node 1 would remember T as aborted; it must answer
//     read-only again, without touching locks.
//  5. Node 2, asking its peers, must not hear "abort" from node 1 ("a peer
//     that voted read-only cannot tell").
//  6. Node 0 restarts, finds COMMIT without END and re-drives: y gets its 10.
//
// The rule at stake: atomicity — a transaction whose COMMIT is durable is
// applied on every yes-voter.
func TestDuplicatePrepareAtReadOnlyVoterKeepsCommit(t *testing.T) {
	r := newCrashRig(t)
	x, y := "n1/r4-x", "n2/r4-y"
	if o, err := r.l.Node(0).Submit(messages.Set(x, 5), messages.Set(y, 100)); err != nil || !o.Committed {
		t.Fatalf("setup: %v %v", o, err)
	}
	r.waitSettled()

	c := r.armCrash(0, actors.StepCommitLogged, -1, nil)
	begun := time.Now().UnixNano()                                         // T's Prepare carries a begin time a moment later
	go r.l.Node(0).Submit(messages.AddFloor(x, 0, 0), messages.Add(y, 10)) // its client dies with node 0
	at := r.waitCrashed(c)
	id := at.Tx
	if err := r.l.Crash(0); err != nil {
		t.Fatal(err)
	}

	if o, err := r.l.Node(3).Submit(messages.Set(x, -5)); err != nil || !o.Committed {
		t.Fatalf("T2: %v %v", o, err)
	}
	n1 := r.l.Node(1)
	n1.System().Root.Send(n1.Participant(), &messages.Prepare{
		Tx: id, Ops: []messages.Op{messages.AddFloor(x, 0, 0)}, Participants: []int32{1, 2}, Begun: begun,
	})

	// Give node 2 three more rounds of asking its peers while node 0 is
	// down: its in-doubt entry counts them. (Settling is fine too; the check
	// below catches a false abort.)
	asked := func() (int, bool) {
		ps, err := r.l.Node(2).ParticipantStatus()
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ps.Doubts {
			if d.Tx == id {
				return d.Asked, true
			}
		}
		return 0, false
	}
	before, _ := asked()
	actortest.Eventually(t, 10*time.Second, func() string {
		if n, inDoubt := asked(); inDoubt && n < before+3 {
			return fmt.Sprintf("node 2 has asked about %v %d times since node 1's Prepare, want 3", id, n-before)
		}
		return ""
	})

	if err := r.l.RestartNode(0); err != nil {
		t.Fatal(err)
	}
	actortest.Eventually(t, 10*time.Second, func() string {
		if got := r.valueOf(y); got != 110 {
			return fmt.Sprintf("%s = %d, want 110: %v has a durable COMMIT on node 0 but its yes-voter node 2 aborted it (told \"abort\" by read-only voter node 1)", y, got, id)
		}
		return ""
	})
	r.waitSettled()
}

// The Commit of a transaction is lost in a partition between the
// coordinator and a participant that voted yes (and has no peer to ask:
// the coordinator's own node is the other participant, cut off too). The
// participant stays in doubt, locks held, for as long as the partition
// lasts — many Commit re-sends and queries, all at their capped pauses —
// and the coordinator keeps the transaction. Once healed, the participant
// settles, the coordinator writes END and forgets.
func TestInDoubtAcrossAPartitionSettlesAfterHeal(t *testing.T) {
	l, hook := hookedClusterRunning(t, 3, termTiming, actors.TwoPC) // 2PC blocks across the partition
	if o, err := l.Node(0).Submit(messages.Set("n0/x", 1), messages.Set("n1/y", 1)); err != nil || !o.Committed {
		t.Fatalf("setup: %v %v", o, err)
	}
	settledWithin(t, l, 10*time.Second, "setup")

	var fired atomic.Bool
	f := func(s actors.Step) {
		if s.Node == 0 && s.Kind == actors.StepCommitLogged && fired.CompareAndSwap(false, true) {
			if err := l.Partition(0, 1); err != nil {
				t.Error(err)
			}
		}
	}
	hook.Store(&f)
	o, err := l.Node(0).Submit(messages.Add("n0/x", 1), messages.Add("n1/y", 1))
	if err != nil || !o.Committed {
		t.Fatalf("want committed (the decision is durable before the cut takes effect), got %v %v", o, err)
	}
	hook.Store(nil)
	// Long, next to every clock: node 1 asks ten more times (each query
	// counted in its in-doubt entry, each lost to the partition) and stays
	// in doubt holding its lock all along.
	before := -1
	actortest.Eventually(t, 30*time.Second, func() string {
		st, err := l.Node(1).ParticipantStatus()
		if err != nil || len(st.Doubts) != 1 || st.LocksHeld != 1 {
			t.Fatalf("node 1 during the partition: %+v %v, want one transaction in doubt holding n1/y", st, err)
		}
		if before < 0 {
			before = st.Doubts[0].Asked
		}
		if n := st.Doubts[0].Asked - before; n < 10 {
			return fmt.Sprintf("node 1 asked %d more times, want 10", n)
		}
		return ""
	})
	if cs, _ := l.Node(0).CoordinatorStatus(); cs.InFlight != 1 {
		t.Fatalf("coordinator during the partition: %+v, want the transaction still driven", cs)
	}
	l.Heal()
	settledWithin(t, l, 5*time.Second, "after heal")
	if x, y := valueVia(t, l, 0, "n0/x"), valueVia(t, l, 0, "n1/y"); x != 2 || y != 2 {
		t.Fatalf("after heal n0/x = %d, n1/y = %d, want 2 and 2", x, y)
	}
}
