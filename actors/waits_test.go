package actors

// Waiting (waits.go): Prepares held back by older lock holders and reads
// held back by prepared transactions: when they are answered, and that
// the index of waiters stays small.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"twopc/actors/actortest"
	"twopc/messages"
)

// The client hears "committed" as soon as the COMMIT record is durable, so
// its read may reach a participant before the Commit does. The participant
// is then prepared (it voted yes before the decision): the read waits for
// the Commit and sees the write. A transaction prepared on the key after
// the read arrived does not hold it back any longer.
func TestWaitsReadArrivingBeforeCommitSeesTheWrite(t *testing.T) {
	r := newParticipantRig(t, map[string]int64{"a": 1}, nil)
	r.prepareYes(t, tx(1), 10, messages.Add("a", 5))

	held := r.sys.Root.RequestFuture(r.pid, &messages.Read{Keys: []string{"a"}}, wait)
	// A younger add shares the key (increment mode) and prepares after the
	// read arrived: the read does not wait for it.
	r.prepareYes(t, tx(2), 20, messages.Add("a", 100))
	if st := r.status(t); st.Reads != 1 {
		t.Fatalf("read not held back: %+v", st)
	}
	r.commit(t, tx(1))
	if rep := readReply(t, held); rep.Err != "" || rep.Values[0].Value != 6 {
		t.Fatalf("held read answered %+v, want a = 6 (tx 1 applied, tx 2 not)", rep)
	}
	if st := r.status(t); st.Reads != 0 {
		t.Fatalf("read still waiting: %+v", st)
	}
}

// A read held back by a transaction that then aborts is answered with the
// committed value; one held by several is answered only after the last.
func TestWaitsReadHeldByTwoAnsweredAfterBoth(t *testing.T) {
	r := newParticipantRig(t, map[string]int64{"a": 1}, nil)
	r.prepareYes(t, tx(1), 10, messages.Add("a", 5))
	r.prepareYes(t, tx(2), 20, messages.Add("a", 7))
	held := r.sys.Root.RequestFuture(r.pid, &messages.Read{Keys: []string{"a", "b"}}, wait)
	r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(1)})
	actortest.Expect[*messages.Append](t, r.wal, wait) // lazy ABORTED
	if st := r.status(t); st.Reads != 1 {
		t.Fatalf("read answered before its second blocker was decided: %+v", st)
	}
	r.commit(t, tx(2))
	rep := readReply(t, held)
	if rep.Err != "" || rep.Values[0].Value != 8 || rep.Values[1].Value != 0 {
		t.Fatalf("read %+v, want a = 8, b = 0", rep)
	}
}

// A read whose blocker stays undecided past the vote timeout fails with a
// reason; it never returns the value from before a commit the client may
// have been told about.
func TestWaitsHeldReadExpiresWithAnError(t *testing.T) {
	r := newTimedParticipantRig(t, Timing{VoteTimeout: 50 * time.Millisecond, InDoubtAfter: 40 * time.Millisecond, MaxQueryInterval: time.Hour}, map[string]int64{"a": 1})
	r.prepareYes(t, tx(1), 10, messages.Set("a", 9))
	rep := readReply(t, r.sys.Root.RequestFuture(r.pid, &messages.Read{Keys: []string{"a"}}, 5*time.Second))
	if rep.Err == "" || !strings.Contains(rep.Err, "0.1.1") || len(rep.Values) != 0 {
		t.Fatalf("read of a key held past the vote timeout answered %+v, want an error naming tx 0.1.1", rep)
	}
}

// A Prepare may wait for a younger holder that is already committing (its
// outcome is settled and needs only the disk); it is then checked against
// the applied value.
func TestWaitsPrepareWaitingForCommittingHolderSeesAppliedValue(t *testing.T) {
	r := newParticipantRig(t, map[string]int64{"a": 0}, nil)
	r.prepareYes(t, tx(2), 200, messages.Set("a", 10))
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: tx(2)}, r.txn.PID)
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait) // COMMITTED being written

	// tx 1 is older than the holder, but the holder is committing: wait.
	r.prepareAt(tx(1), 100, messages.AddFloor("a", -10, 0))
	actortest.ExpectNone(t, r.txn, 50*time.Millisecond)
	if st := r.status(t); st.Waiting != 1 {
		t.Fatalf("want the prepare waiting for the committing holder: %+v", st)
	}
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	actortest.Expect[*messages.Ack](t, r.txn, wait)
	// With a = 10 applied, a -10 floored at 0 holds.
	app, from = actortest.Expect[*messages.Append](t, r.wal, wait)
	if app.Records[0].Kind != messages.RecPrepared || app.Records[0].Tx != tx(1) {
		t.Fatalf("want PREPARED of the waiter, got %+v", app)
	}
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Tx != tx(1) || v.Kind != messages.VoteYes {
		t.Fatalf("waiter's vote %+v", v)
	}
}

// A floor that holds only if a pending older increment commits: the
// younger decrement waits for it, and is admitted when it commits ...
func TestWaitsFloorWaitAdmittedWhenIncrementCommits(t *testing.T) {
	r := newParticipantRig(t, nil, nil)
	r.prepareYes(t, tx(1), 10, messages.Add("a", 10))
	r.prepareAt(tx(2), 20, messages.AddFloor("a", -5, 0))
	actortest.ExpectNone(t, r.txn, 50*time.Millisecond)
	r.commit(t, tx(1))
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	if app.Records[0].Tx != tx(2) || app.Records[0].Kind != messages.RecPrepared {
		t.Fatalf("want PREPARED of tx 2, got %+v", app)
	}
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Kind != messages.VoteYes {
		t.Fatalf("vote %+v", v)
	}
}

// ... and refused (once) with the floor as the reason when it aborts.
func TestWaitsFloorWaitRefusedWhenIncrementAborts(t *testing.T) {
	r := newParticipantRig(t, nil, nil)
	r.prepareYes(t, tx(1), 10, messages.Add("a", 10))
	r.prepareAt(tx(2), 20, messages.AddFloor("a", -5, 0))
	actortest.ExpectNone(t, r.txn, 50*time.Millisecond)
	r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(1)})
	actortest.Expect[*messages.Append](t, r.wal, wait) // ABORTED of tx 1
	v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait)
	if v.Tx != tx(2) || v.Kind != messages.VoteNo || !strings.Contains(v.Reason, "below its floor 0") {
		t.Fatalf("want no for tx 2 naming the floor, got %+v", v)
	}
	actortest.ExpectNone(t, r.txn, 50*time.Millisecond)
	if st := r.status(t); st.Waiting != 0 || st.LocksHeld != 0 {
		t.Fatalf("status %+v", st)
	}
}

// A waiter freed on its first key re-checks everything: a younger holder
// that took its second key meanwhile makes it vote no, exactly once, and it
// takes no lock.
func TestWaitsWaiterRecheckedOnEveryKey(t *testing.T) {
	r := newParticipantRig(t, nil, nil)
	r.prepareYes(t, tx(1), 10, messages.Set("a", 1))
	r.prepareAt(tx(2), 20, messages.Set("a", 2), messages.Set("b", 2))
	actortest.ExpectNone(t, r.txn, 50*time.Millisecond)
	r.prepareYes(t, tx(3), 30, messages.Set("b", 3)) // younger than tx 2
	r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(1)})
	actortest.Expect[*messages.Append](t, r.wal, wait) // ABORTED of tx 1
	v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait)
	if v.Tx != tx(2) || v.Kind != messages.VoteNo || !strings.Contains(v.Reason, "key b") {
		t.Fatalf("want no for tx 2 on key b, got %+v", v)
	}
	actortest.ExpectNone(t, r.wal, 50*time.Millisecond)
	actortest.ExpectNone(t, r.txn, 10*time.Millisecond)
	if st := r.status(t); st.Waiting != 0 || st.LocksHeld != 1 {
		t.Fatalf("want only tx 3's lock on b: %+v", st)
	}
}

// A duplicate of a waiting Prepare neither votes nor waits twice: one vote,
// to the latest sender, when the wait ends.
func TestWaitsDuplicateOfWaitingPrepareVotesOnce(t *testing.T) {
	r := newParticipantRig(t, nil, nil)
	other := actortest.NewProbe(t, r.sys, "txn-again")
	r.prepareYes(t, tx(1), 10, messages.Set("a", 1))
	r.prepareAt(tx(2), 20, messages.Set("a", 2))
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(2), Ops: []messages.Op{messages.Set("a", 2)}, Begun: testEpoch + 20}, other.PID)
	if st := r.status(t); st.Waiting != 1 {
		t.Fatalf("status %+v", st)
	}
	r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(1)})
	actortest.Expect[*messages.Append](t, r.wal, wait) // ABORTED of tx 1
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	if v, _ := actortest.Expect[*messages.Vote](t, other, wait); v.Tx != tx(2) || v.Kind != messages.VoteYes {
		t.Fatalf("vote %+v", v)
	}
	actortest.ExpectNone(t, r.txn, 50*time.Millisecond)
	actortest.ExpectNone(t, other, 10*time.Millisecond)
	actortest.ExpectNone(t, r.wal, 10*time.Millisecond)
}

// A waiting Prepare that outlives the vote timeout votes no and is
// remembered as aborted: a duplicate is refused, and a later release of
// its blocker does not prepare it.
func TestWaitsExpiredWaitVotesNoOnce(t *testing.T) {
	r := newTimedParticipantRig(t, Timing{VoteTimeout: 50 * time.Millisecond, InDoubtAfter: 40 * time.Millisecond, MaxQueryInterval: time.Hour}, nil)
	r.prepareYes(t, tx(1), 10, messages.Set("a", 1))
	r.prepareAt(tx(2), 20, messages.Set("a", 2))
	v, _ := actortest.Expect[*messages.Vote](t, r.txn, 5*time.Second)
	if v.Tx != tx(2) || v.Kind != messages.VoteNo || !strings.Contains(v.Reason, "gave up waiting") {
		t.Fatalf("want expiry no for tx 2, got %+v", v)
	}
	r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(1)})
	for { // ABORTED of tx 1; in-doubt queries go to coord, not here
		app, _ := actortest.Expect[*messages.Append](t, r.wal, wait)
		if app.Records[0].Kind == messages.RecAborted {
			break
		}
	}
	actortest.ExpectNone(t, r.wal, 50*time.Millisecond)
	r.prepareAt(tx(2), 20, messages.Set("a", 2))
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Kind != messages.VoteNo {
		t.Fatalf("duplicate after expiry: %+v", v)
	}
}

// Waiters all younger than the holder: when it is released, the oldest
// waiter should get the key and the younger one keep waiting for it. The
// participant retries waiters in map order, so the younger one may win, and
// the older one is then refused because a younger transaction holds the key:
// an abort nobody needed (unfair, and it repeats under load).
func TestWaitsOldestWaiterServedFirst(t *testing.T) {
	for round := uint64(0); round < 40; round++ {
		r := newParticipantRig(t, nil, nil)
		r.prepareYes(t, tx(1), 10, messages.Set("a", 1))
		r.prepareAt(tx(2), 20, messages.Set("a", 2)) // the older waiter
		r.prepareAt(tx(3), 30, messages.Set("a", 3)) // the younger waiter
		if st := r.status(t); st.Waiting != 2 {
			t.Fatalf("status %+v", st)
		}
		r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(1)})
		actortest.Expect[*messages.Append](t, r.wal, wait) // ABORTED of tx 1
		app, _ := actortest.Expect[*messages.Append](t, r.wal, wait)
		if got := app.Records[0].Tx; got != tx(2) {
			v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait)
			t.Fatalf("round %d: %v (younger waiter) got the key first; the older waiter got %+v", round, got, v)
		}
		_ = r.sys.Root.StopFuture(r.pid).Wait()
	}
}

// FINDING. A transaction T1 is in doubt here (prepared, its coordinator down
// or cut off: it may stay so for as long as that lasts). Every younger
// transaction that writes T1's key waits for it (mayWait: T1 is older, not
// recovered), and each is then aborted by its own coordinator at the vote
// timeout — the Abort drops the waiter (done) before its own deadline,
// which starts later, when the Prepare arrived. waits.expired forgets done
// waiters in byBlocker only when some waiter expired in the same tick, and
// none does, so every aborted waiter (with its Prepare and ops) stays in
// byBlocker[T1] until T1 is decided: memory grows with the number of
// transactions that touch a hot key while one transaction on it is in
// doubt. waits.expired's own comment says it forgets every done waiter "so
// that a transaction in doubt for long does not collect them".
//
// Should: a waiter dropped by Abort (or by a peer's DecisionQuery) is gone
// from byBlocker by the next tick at the latest.
// Fix: in waits.expired, prune byBlocker whenever done waiters were found
// (not only when len(out) > 0) — or keep a count of done entries per
// blocker and compact the list when drop marks one done.
func TestWaitsAbortedWaitersDoNotPileUpBehindAnInDoubtHolder(t *testing.T) {
	// Ticks every 10 ms (InDoubtAfter/4); waits' own deadline far off, as it
	// is whenever the coordinator's Abort arrives first (the usual case).
	r := newInspectableRig(t, Timing{VoteTimeout: time.Hour, RememberOutcomes: 2 * time.Hour, InDoubtAfter: 40 * time.Millisecond, MaxQueryInterval: time.Hour}, nil)
	r.prepareYes(t, tx(1), 10, messages.Set("a", 1)) // in doubt from now on

	const waiters = 200
	for i := uint64(2); i < 2+waiters; i++ {
		r.prepareAt(tx(i), 10+int64(i), messages.Set("a", int64(i)))
		r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(i), Reason: "vote timeout"})
	}
	if st := r.status(t); st.Waiting != 0 || st.InDoubt == nil {
		t.Fatalf("setup: want tx 1 in doubt and no Prepare waiting, got %+v", st)
	}
	actortest.Eventually(t, 3*time.Second, func() string {
		if n := r.inspect(t, waitersIndexed).(int); n != 0 {
			return fmt.Sprintf("%d aborted waiters still indexed behind the in-doubt transaction (of %d aborted); they are kept until it is decided", n, waiters)
		}
		return ""
	})
}

// FINDING. "A wait lasts at most the vote timeout" and a held read fails
// with a reason after it (README, Locks). But waiters are only expired on
// the in-doubt query tick, every InDoubtAfter/4: with an InDoubtAfter that
// is large next to the VoteTimeout (cmd/node takes both as flags), a read
// held by an undecided transaction stays unanswered long past its vote
// timeout — Node.Read's own future (2×VoteTimeout + 1 s) gives up first
// with "did not answer", and the participant keeps the waiter.
//
// Should: the held read is answered with the reasoned error about one vote
// timeout after it arrived, whatever InDoubtAfter is.
// Fix: arm the tick at min(InDoubtAfter/4, VoteTimeout/2) (or arm a timer
// at the earliest waiter deadline when a waiter is added).
func TestWaitsHeldReadExpiresAtTheVoteTimeoutWhateverInDoubtAfter(t *testing.T) {
	r := newInspectableRig(t, Timing{VoteTimeout: 50 * time.Millisecond, InDoubtAfter: time.Hour, MaxQueryInterval: time.Hour}, map[string]int64{"a": 1})
	r.prepareYes(t, tx(1), 10, messages.Set("a", 9)) // undecided from now on
	f := r.sys.Root.RequestFuture(r.pid, &messages.Read{Keys: []string{"a"}}, 5*time.Second)
	res, err := f.Result()
	if err != nil {
		t.Fatalf("read held by an undecided transaction not answered (vote timeout 50ms, in-doubt tick 15m): %v", err)
	}
	if rep := res.(*messages.ReadReply); rep.Err == "" || !strings.Contains(rep.Err, "0.1.1") {
		t.Fatalf("held read answered %+v, want an error naming tx 0.1.1", rep)
	}
}

// FINDING (same cause). A Prepare waiting for an older holder gives up
// only on the tick, so with a long InDoubtAfter it waits past its vote
// timeout. If its coordinator's Abort was lost (a dropped message, a cut
// link), it waits until the holder is decided and then prepares — logs
// PREPARED, takes the locks and votes yes for a transaction that was
// aborted long ago — and holds those locks until it asks (InDoubtAfter
// later) and learns "abort".
//
// Should: the waiting Prepare votes no about one vote timeout after it
// arrived. Fix: as above.
func TestWaitsLockWaitEndsAtTheVoteTimeoutWhateverInDoubtAfter(t *testing.T) {
	r := newInspectableRig(t, Timing{VoteTimeout: 50 * time.Millisecond, InDoubtAfter: time.Hour, MaxQueryInterval: time.Hour}, nil)
	r.prepareYes(t, tx(1), 10, messages.Set("a", 1))
	r.prepareAt(tx(2), 20, messages.Set("a", 2)) // younger: waits
	e, err := r.txn.Next(5 * time.Second)
	if err != nil {
		t.Fatalf("waiting Prepare never gave up (vote timeout 50ms, in-doubt tick 15m): %v", err)
	}
	if v, ok := e.Msg.(*messages.Vote); !ok || v.Tx != tx(2) || v.Kind != messages.VoteNo {
		t.Fatalf("want a no vote for tx 2, got %T %+v", e.Msg, e.Msg)
	}
}

// PINNED. A waiter that does reach its deadline takes every done waiter
// with it: with a read expiring in the same tick, the index is cleaned.
func TestWaitsExpiryCleansTheWaitIndex(t *testing.T) {
	r := newInspectableRig(t, Timing{VoteTimeout: 50 * time.Millisecond, InDoubtAfter: 40 * time.Millisecond, MaxQueryInterval: time.Hour}, nil)
	r.prepareYes(t, tx(1), 10, messages.Set("a", 1))
	for i := uint64(2); i < 12; i++ {
		r.prepareAt(tx(i), 10+int64(i), messages.Set("a", int64(i)))
		r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(i)})
	}
	// A read held by tx 1 expires after the vote timeout with an error.
	rep := readReply(t, r.sys.Root.RequestFuture(r.pid, &messages.Read{Keys: []string{"a"}}, 5*time.Second))
	if rep.Err == "" {
		t.Fatalf("held read answered %+v, want an error", rep)
	}
	if n := r.inspect(t, waitersIndexed).(int); n != 0 {
		t.Fatalf("%d waiters still indexed after an expiry", n)
	}
	// Deciding the holder leaves nothing locked.
	r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(1)})
	actortest.Expect[*messages.Append](t, r.wal, wait) // lazy ABORTED
	if st := r.status(t); st.LocksHeld != 0 || len(st.InDoubt) != 0 || st.Waiting != 0 || st.Reads != 0 {
		t.Fatalf("left behind: %+v", st)
	}
}

// PINNED (the control for the finding above): on the same rig, without the
// restart, the held read is answered with the reasoned error after the
// vote timeout.
func TestWaitsHeldReadAnsweredWithoutARestart(t *testing.T) {
	r := newRestartRigTiming(t, Timing{VoteTimeout: time.Second, InDoubtAfter: 40 * time.Millisecond, MaxQueryInterval: time.Hour})
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(1), Ops: []messages.Op{messages.Add("a", 5)}, Participants: []int32{0, 1}, Begun: testEpoch + 10}, r.txn.PID)
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Kind != messages.VoteYes {
		t.Fatalf("vote %+v", v)
	}
	rep := readReply(t, r.sys.Root.RequestFuture(r.pid, &messages.Read{Keys: []string{"a"}}, 5*time.Second))
	if rep.Err == "" || !strings.Contains(rep.Err, "0.1.1") {
		t.Fatalf("held read answered %+v, want an error naming tx 0.1.1", rep)
	}
}
