package actors

// Second review: the early client answer (reads held back at participants),
// lock waits, cooperative termination, participant restart from the log and
// coordinator bookkeeping. Tests of bugs are skipped with the reason; the
// others pin down behaviour verified by the review.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"twopc/actors/actortest"
	"twopc/messages"
	"twopc/persistence"
)

// newTimedParticipantRig is newParticipantRig with chosen clocks.
func newTimedParticipantRig(t *testing.T, timing Timing, kv map[string]int64) *participantRig {
	return buildParticipantRig(t, timing, kv, nil)
}

// prepareAt sends a Prepare begun at testEpoch+begun; it returns nothing: the
// caller expects what follows (an Append, a vote, or nothing).
func (r *participantRig) prepareAt(id messages.TxID, begun int64, ops ...messages.Op) {
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: id, Ops: ops, Participants: []int32{0, 1}, Begun: testEpoch + begun}, r.txn.PID)
}

// prepareYes prepares id and acknowledges its PREPARED: it votes yes.
func (r *participantRig) prepareYes(t *testing.T, id messages.TxID, begun int64, ops ...messages.Op) {
	t.Helper()
	r.prepareAt(id, begun, ops...)
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	if app.Records[0].Kind != messages.RecPrepared || app.Records[0].Tx != id {
		t.Fatalf("want PREPARED of %v, got %+v", id, app)
	}
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Tx != id || v.Kind != messages.VoteYes {
		t.Fatalf("want yes for %v, got %+v", id, v)
	}
}

// commit drives a prepared id through COMMITTED to its ack.
func (r *participantRig) commit(t *testing.T, id messages.TxID) {
	t.Helper()
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: id}, r.txn.PID)
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	if app.Records[0].Kind != messages.RecCommitted || app.Records[0].Tx != id {
		t.Fatalf("want COMMITTED of %v, got %+v", id, app)
	}
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	if ack, _ := actortest.Expect[*messages.Ack](t, r.txn, wait); ack.Tx != id {
		t.Fatalf("ack %+v", ack)
	}
}

func readReply(t *testing.T, f *actor.Future) *messages.ReadReply {
	t.Helper()
	res, err := f.Result()
	if err != nil {
		t.Fatal(err)
	}
	return res.(*messages.ReadReply)
}

// ---------------------------------------------------------------------------
// 1. early client answer: reads held back

// The client hears "committed" as soon as the COMMIT record is durable, so
// its read may reach a participant before the Commit does. The participant
// is then prepared (it voted yes before the decision): the read waits for
// the Commit and sees the write. A transaction prepared on the key after
// the read arrived does not hold it back any longer.
func TestReview2ReadArrivingBeforeCommitSeesTheWrite(t *testing.T) {
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
func TestReview2ReadHeldByTwoAnsweredAfterBoth(t *testing.T) {
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
func TestReview2HeldReadExpiresWithAnError(t *testing.T) {
	r := newTimedParticipantRig(t, Timing{VoteTimeout: 50 * time.Millisecond, InDoubtAfter: 40 * time.Millisecond, MaxQueryInterval: time.Hour}, map[string]int64{"a": 1})
	r.prepareYes(t, tx(1), 10, messages.Set("a", 9))
	rep := readReply(t, r.sys.Root.RequestFuture(r.pid, &messages.Read{Keys: []string{"a"}}, 5*time.Second))
	if rep.Err == "" || !strings.Contains(rep.Err, "0.1.1") || len(rep.Values) != 0 {
		t.Fatalf("read of a key held past the vote timeout answered %+v, want an error naming tx 0.1.1", rep)
	}
}

// ---------------------------------------------------------------------------
// 2. lock waits

// A Prepare may wait for a younger holder that is already committing (its
// outcome is settled and needs only the disk); it is then checked against
// the applied value.
func TestReview2WaitForCommittingHolderSeesAppliedValue(t *testing.T) {
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
func TestReview2FloorWaitAdmittedWhenIncrementCommits(t *testing.T) {
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
func TestReview2FloorWaitRefusedWhenIncrementAborts(t *testing.T) {
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
func TestReview2WaiterRecheckedOnEveryKey(t *testing.T) {
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
func TestReview2DuplicateOfWaitingPrepareVotesOnce(t *testing.T) {
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
func TestReview2ExpiredWaitVotesNoOnce(t *testing.T) {
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
func TestReview2OldestWaiterServedFirst(t *testing.T) {
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

// ---------------------------------------------------------------------------
// 3. cooperative termination

// What a participant tells a peer in doubt, state by state: unknown while it
// is preparing or prepared itself, commit once it is committing or
// committed.
func TestReview2PeerAnswersByState(t *testing.T) {
	r := newParticipantRig(t, nil, nil)
	ask := func(want messages.Decision) {
		t.Helper()
		r.sys.Root.Send(r.pid, &messages.DecisionQuery{Tx: tx(1), From: 1})
		if rep, _ := actortest.Expect[*messages.DecisionReply](t, r.peer, wait); rep.Tx != tx(1) || rep.Decision != want {
			t.Fatalf("reply %+v, want %v", rep, want)
		}
	}
	r.prepareAt(tx(1), 10, messages.Add("a", 1))
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	ask(messages.DecisionUnknown) // preparing
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	actortest.Expect[*messages.Vote](t, r.txn, wait)
	ask(messages.DecisionUnknown) // prepared: in doubt too
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: tx(1)}, r.txn.PID)
	app, from = actortest.Expect[*messages.Append](t, r.wal, wait)
	ask(messages.DecisionCommit) // committing
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	actortest.Expect[*messages.Ack](t, r.txn, wait)
	ask(messages.DecisionCommit) // committed, remembered
}

// A peer's question about a Prepare still waiting for locks: the waiter
// votes no (it may: it has not voted), answers abort, and never takes the
// locks afterwards.
func TestReview2PeerQueryRefusesWaitingPrepare(t *testing.T) {
	r := newParticipantRig(t, nil, nil)
	r.prepareYes(t, tx(1), 10, messages.Set("a", 1))
	r.prepareAt(tx(2), 20, messages.Set("a", 2))
	r.sys.Root.Send(r.pid, &messages.DecisionQuery{Tx: tx(2), From: 1})
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Tx != tx(2) || v.Kind != messages.VoteNo {
		t.Fatalf("vote %+v", v)
	}
	if rep, _ := actortest.Expect[*messages.DecisionReply](t, r.peer, wait); rep.Decision != messages.DecisionAbort {
		t.Fatalf("reply %+v", rep)
	}
	r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(1)})
	actortest.Expect[*messages.Append](t, r.wal, wait) // ABORTED of tx 1
	actortest.ExpectNone(t, r.wal, 50*time.Millisecond)
	actortest.ExpectNone(t, r.txn, 10*time.Millisecond)
	if st := r.status(t); st.Waiting != 0 || st.LocksHeld != 0 {
		t.Fatalf("status %+v", st)
	}
}

// ---------------------------------------------------------------------------
// 4. participant restart from the log

// restartRig is a participant over a real persistence actor, with Reload,
// so that a panic restarts it from its log.
type restartRig struct {
	sys              *actor.ActorSystem
	pid, wal         *actor.PID
	txn, coord, peer *actortest.Probe
}

func newRestartRig(t *testing.T) *restartRig {
	t.Helper()
	return newRestartRigTiming(t, Timing{InDoubtAfter: time.Hour})
}

func newRestartRigTiming(t *testing.T, timing Timing) *restartRig {
	t.Helper()
	sys := actortest.NewSystem(t)
	l, err := persistence.Open(persistence.Options{Dir: t.TempDir(), SnapshotEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	wal, err := sys.Root.SpawnNamed(persistence.Props(l), "wal")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sys.Root.PoisonFuture(wal).Wait() })
	r := &restartRig{sys: sys, wal: wal,
		txn: actortest.NewProbe(t, sys, "txn"), coord: actortest.NewProbe(t, sys, "coord"), peer: actortest.NewProbe(t, sys, "peer")}
	reload := func() (map[string]int64, []messages.Record, map[messages.TxID]bool, error) {
		res, err := sys.Root.RequestFuture(wal, &persistence.CurrentState{}, wait).Result()
		if err != nil {
			return nil, nil, nil, err
		}
		st := res.(*persistence.StateReply).State
		var inDoubt []messages.Record
		for _, rec := range st.InDoubt {
			inDoubt = append(inDoubt, rec)
		}
		return st.KV, inDoubt, st.Heuristic, nil
	}
	pid, err := sys.Root.SpawnNamed(NewParticipantProps(ParticipantConfig{
		Node: 0, Members: 1, Persistence: wal, Timing: timing,
		Directory: &actortest.Directory{
			Coordinators: map[int32]*actor.PID{0: r.coord.PID},
			Participants: map[int32]*actor.PID{1: r.peer.PID},
		},
		Reload: reload, Fresh: true, // a panic restarts it as a successor
	}), "participant")
	if err != nil {
		t.Fatal(err)
	}
	r.pid = pid
	t.Cleanup(func() { _ = sys.Root.StopFuture(pid).Wait() })
	return r
}

func (r *restartRig) read(t *testing.T, key string) int64 {
	t.Helper()
	res, err := r.sys.Root.RequestFuture(r.pid, &messages.Read{Keys: []string{key}}, wait).Result()
	if err != nil {
		t.Fatal(err)
	}
	return res.(*messages.ReadReply).Values[0].Value
}

// expectRefused: the Prepare of id just sent got a no vote and prepared
// nothing.
func (r *restartRig) expectRefused(t *testing.T, id messages.TxID) {
	t.Helper()
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Tx != id || v.Kind != messages.VoteNo {
		t.Fatalf("vote %+v, want no for %v", v, id)
	}
	if st := r.status(t); st.Preparing > 0 || containsTx(st.InDoubt, id) {
		t.Fatalf("refused transaction %v prepared: %+v", id, st)
	}
}

func (r *restartRig) status(t *testing.T) *ParticipantStatus {
	t.Helper()
	res, err := r.sys.Root.RequestFuture(r.pid, &ParticipantStatusRequest{}, wait).Result()
	if err != nil {
		t.Fatal(err)
	}
	return res.(*ParticipantStatus)
}

func (r *restartRig) crash() { r.sys.Root.Send(r.pid, (*messages.Read)(nil)) } // any panic in Receive

// committed runs prep through yes, Commit and ack.
func (r *restartRig) committed(t *testing.T, prep *messages.Prepare) {
	t.Helper()
	r.sys.Root.RequestWithCustomSender(r.pid, prep, r.txn.PID)
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Kind != messages.VoteYes {
		t.Fatalf("vote %+v", v)
	}
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: prep.Tx}, r.txn.PID)
	actortest.Expect[*messages.Ack](t, r.txn, wait)
}

// recentCommits guards against a late duplicate Prepare of a transaction
// committed here (the first review's fix), but it lives only in memory: a
// restart (or 16,384 later commits) forgets it. The duplicate then prepares
// the transaction again (a second PREPARED in the log), and the Commit that
// follows — re-sent because the ack was lost, or the coordinator's "commit"
// to this node's own DecisionQuery while another participant has not acked —
// applies its ops a second time, in memory and in the log's fold.
//
// Fixed: a Prepare begun before the participant's memory starts (its
// restart plus ClockSkew) is refused — a no vote, nothing prepared.
func TestReview2DuplicatePrepareAfterRestartAppliesTwice(t *testing.T) {
	r := newRestartRig(t)
	prep := &messages.Prepare{Tx: tx(1), Ops: []messages.Op{messages.Add("a", 5)}, Participants: []int32{0, 1}, Begun: time.Now().UnixNano()}
	r.committed(t, prep)
	r.crash()
	if got := r.read(t, "a"); got != 5 {
		t.Fatalf("a = %d after restart", got)
	}
	r.sys.Root.RequestWithCustomSender(r.pid, prep, r.txn.PID) // the late duplicate
	r.expectRefused(t, tx(1))
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: tx(1)}, r.txn.PID) // re-sent
	actortest.Expect[*messages.Ack](t, r.txn, wait)
	if got := r.read(t, "a"); got != 5 {
		t.Fatalf("a = %d: committed transaction %v applied twice", got, tx(1))
	}
}

// The same forgetting breaks cooperative termination: after the restart a
// duplicate Prepare of the committed transaction meets a conflict and votes
// no, which records it as aborted here; a peer in doubt about it (its
// Commit lost, the coordinator unreachable) is then told "abort" for a
// transaction this very node committed.
//
// Fixed: the duplicate, begun before the restart, is refused with a no vote
// that is not remembered: no false memory of an abort.
func TestReview2PeerToldAbortForCommittedTxAfterRestart(t *testing.T) {
	r := newRestartRig(t)
	prep := &messages.Prepare{Tx: tx(1), Ops: []messages.Op{messages.Set("a", 5)}, Participants: []int32{0, 1}, Begun: time.Now().UnixNano()}
	r.committed(t, prep)
	r.crash()
	// A younger transaction holds a now; the duplicate (older) would be refused.
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(2), Ops: []messages.Op{messages.Set("a", 6)}, Participants: []int32{0}, Begun: testEpoch + 20}, r.txn.PID)
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Kind != messages.VoteYes {
		t.Fatalf("vote %+v", v)
	}
	r.sys.Root.RequestWithCustomSender(r.pid, prep, r.txn.PID)
	r.expectRefused(t, tx(1))
	r.sys.Root.Send(r.pid, &messages.DecisionQuery{Tx: tx(1), From: 1})
	if rep, _ := actortest.Expect[*messages.DecisionReply](t, r.peer, wait); rep.Decision == messages.DecisionAbort {
		t.Fatalf("peer told abort for %v, which this node committed", tx(1))
	}
}

// A restart while a transaction is prepared keeps the promise: the reads
// that arrive afterwards are still held back by it (read-your-writes across
// a participant restart), and its Commit is applied once.
func TestReview2RestartKeepsReadsHeldByInDoubt(t *testing.T) {
	r := newRestartRig(t)
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(1), Ops: []messages.Op{messages.Add("a", 5)}, Participants: []int32{0, 1}, Begun: testEpoch + 10}, r.txn.PID)
	actortest.Expect[*messages.Vote](t, r.txn, wait)
	r.crash()
	// Recovered in doubt: asks its coordinator at once.
	if q, _ := actortest.Expect[*messages.DecisionQuery](t, r.coord, wait); q.Tx != tx(1) {
		t.Fatalf("query %+v", q)
	}
	held := r.sys.Root.RequestFuture(r.pid, &messages.Read{Keys: []string{"a"}}, wait)
	r.sys.Root.Send(r.pid, &messages.DecisionReply{Tx: tx(1), From: 0, Decision: messages.DecisionCommit})
	actortest.Expect[*messages.Ack](t, r.coord, wait)
	if rep := readReply(t, held); rep.Err != "" || rep.Values[0].Value != 5 {
		t.Fatalf("held read %+v, want a = 5", rep)
	}
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: tx(1)}, r.txn.PID) // re-sent
	actortest.Expect[*messages.Ack](t, r.txn, wait)
	if got := r.read(t, "a"); got != 5 {
		t.Fatalf("a = %d", got)
	}
}

// ---------------------------------------------------------------------------
// 5. coordinator bookkeeping

// A txn actor crashes after asking for its COMMIT record. Before the
// coordinator's own lookup (onChildCrashed) returns, a participant's
// DecisionQuery finds no running actor, reads the same durable COMMIT and
// spawns a successor. Once found: the client was parked on the crashed
// actor's record and never heard. Fixed: the successor inherits the waiting
// client, and the crash lookup answers it from the log.
func TestReview2CrashedTxnClientAnsweredWhenQueryRedriveWinsTheRace(t *testing.T) {
	r := newCoordRig(t, Timing{VoteTimeout: time.Hour, ResendInterval: time.Hour}, nil, nil)
	txnPID, id, _, _ := r.decidingCommit(t)            // COMMIT asked for, never answered
	r.sys.Root.Send(txnPID, (*messages.Appended)(nil)) // crash in the logging state

	crashLookup := expectLookup(t, r, id)
	// A participant in doubt asks; once the crashed actor is forgotten the
	// query makes its own lookup.
	var queryLookup *actor.PID
	for queryLookup == nil {
		r.sys.Root.Send(r.pid, &messages.DecisionQuery{Tx: id, From: 1})
		if e, err := r.wal.Next(100 * time.Millisecond); err == nil {
			if _, ok := e.Msg.(*messages.DecisionLookup); ok {
				queryLookup = e.Sender
			}
		}
	}
	r.sys.Root.Send(queryLookup, &messages.DecisionLookupReply{Tx: id, CommitPending: true, Participants: []int32{0, 1}})
	actortest.Expect[*messages.Commit](t, r.parts[0], wait) // the successor runs
	// It answers the client it inherited...
	out, _ := actortest.Expect[*messages.Outcome](t, r.client, wait)
	if !out.Committed || out.Tx != id {
		t.Fatalf("outcome %+v", out)
	}
	// ...and the crash lookup, answered last, does not answer it again.
	r.sys.Root.Send(crashLookup, &messages.DecisionLookupReply{Tx: id, CommitPending: true, Participants: []int32{0, 1}})
	if _, err := r.sys.Root.RequestFuture(r.pid, &CoordinatorStatusRequest{}, wait).Result(); err != nil {
		t.Fatal(err)
	}
	actortest.ExpectNone(t, r.client, 50*time.Millisecond)
}

// expectLookup waits for a DecisionLookup of id at the persistence probe and
// returns who to answer.
func expectLookup(t *testing.T, r *coordRig, id messages.TxID) *actor.PID {
	t.Helper()
	for {
		e, err := r.wal.Next(wait)
		if err != nil {
			t.Fatalf("waiting for DecisionLookup: %v", err)
		}
		if l, ok := e.Msg.(*messages.DecisionLookup); ok {
			if l.Tx != id {
				t.Fatalf("lookup %+v", l)
			}
			return e.Sender
		}
	}
}

// The common crash: the txn actor crashes after the client was told
// "committed"; the client is not answered again, and the successor ends
// the transaction.
func TestReview2CrashAfterAnswerNotAnsweredTwice(t *testing.T) {
	r := newCoordRig(t, Timing{VoteTimeout: time.Hour, ResendInterval: time.Hour}, nil, nil)
	txnPID, id, app, from := r.decidingCommit(t)
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	for _, n := range []int32{0, 1} {
		actortest.Expect[*messages.Commit](t, r.parts[n], wait)
	}
	if out, _ := actortest.Expect[*messages.Outcome](t, r.client, wait); !out.Committed {
		t.Fatalf("outcome %+v", out)
	}
	r.sys.Root.Send(txnPID, (*messages.Ack)(nil))
	r.sys.Root.Send(expectLookup(t, r, id), &messages.DecisionLookupReply{Tx: id, CommitPending: true, Participants: []int32{0, 1}})
	for _, n := range []int32{0, 1} {
		if c, _ := actortest.Expect[*messages.Commit](t, r.parts[n], wait); c.Tx != id {
			t.Fatalf("commit %+v", c)
		}
		r.sys.Root.Send(r.pid, &messages.Ack{Tx: id, From: n})
	}
	for {
		a, _ := actortest.Expect[*messages.Append](t, r.wal, wait)
		if a.Records[0].Kind == messages.RecEnd {
			break
		}
	}
	actortest.ExpectNone(t, r.client, 50*time.Millisecond)
	actortest.Eventually(t, wait, func() string {
		res, err := r.sys.Root.RequestFuture(r.pid, &CoordinatorStatusRequest{}, wait).Result()
		if err != nil {
			return err.Error()
		}
		if st := res.(*CoordinatorStatus); st.InFlight != 0 {
			return fmt.Sprintf("txn actors left: %+v", st)
		}
		return ""
	})
}
