package actors

import (
	"strings"
	"testing"
	"time"

	"twopc/actors/actortest"
	"twopc/messages"
)

func TestParticipantVotesYesOnlyAfterPreparedIsDurable(t *testing.T) {
	r := newParticipantRig(t, nil, nil)
	app, from := r.prepare(t, tx(1), messages.Add("a", 5))

	if !app.Force || len(app.Records) != 1 || app.Records[0].Kind != messages.RecPrepared || app.Records[0].Tx != tx(1) {
		t.Fatalf("want one forced PREPARED record for %v, got %+v", tx(1), app)
	}
	// Not yet durable: no vote may have left.
	actortest.ExpectNone(t, r.txn, 100*time.Millisecond)

	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait)
	if v.Kind != messages.VoteYes || v.Tx != tx(1) || v.From != 0 {
		t.Fatalf("want yes vote for %v from 0, got %+v", tx(1), v)
	}
}

func TestParticipantVotesNoWhenPreparedCannotBeLogged(t *testing.T) {
	r := newParticipantRig(t, nil, nil)
	app, from := r.prepare(t, tx(1), messages.Set("a", 5))
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID, Err: errDisk})
	v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait)
	if v.Kind != messages.VoteNo || !strings.Contains(v.Reason, "log write failed") {
		t.Fatalf("want no vote naming the log failure, got %+v", v)
	}
	// The lock was released: the same key can be prepared again.
	app2, _ := r.prepare(t, tx(2), messages.Set("a", 6))
	if app2.Records[0].Tx != tx(2) {
		t.Fatalf("second prepare logged %+v", app2)
	}
}

func TestParticipantOlderRequesterVotesNoAtOnce(t *testing.T) {
	r := newParticipantRig(t, nil, nil)
	// tx(2) holds a (its PREPARED is being logged), begun at time 200.
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(2), Ops: []messages.Op{messages.Set("a", 1)}, Begun: testEpoch + 200}, r.txn.PID)
	actortest.Expect[*messages.Append](t, r.wal, wait)

	// tx(1), begun earlier, must not wait for a younger holder: no at once.
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(1), Ops: []messages.Op{messages.Add("a", 1)}, Begun: testEpoch + 100}, r.txn.PID)
	v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait)
	if v.Tx != tx(1) || v.Kind != messages.VoteNo || !strings.Contains(v.Reason, "locked by transaction 0.1.2") {
		t.Fatalf("want immediate no for the older requester, got %+v", v)
	}
	actortest.ExpectNone(t, r.wal, 50*time.Millisecond) // nothing logged for the refused one
}

func TestParticipantYoungerRequesterWaitsForOlderHolder(t *testing.T) {
	r := newParticipantRig(t, nil, nil)
	app, from := r.prepare(t, tx(1), messages.Set("a", 1)) // Begun 0: oldest
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	actortest.Expect[*messages.Vote](t, r.txn, wait)

	// tx(2) is younger: it waits, holding nothing, and says nothing yet.
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(2), Ops: []messages.Op{messages.Set("a", 2)}, Begun: testEpoch + 50}, r.txn.PID)
	actortest.ExpectNone(t, r.txn, 100*time.Millisecond)
	if st := r.status(t); st.Waiting != 1 || st.LocksHeld != 1 {
		t.Fatalf("want one waiting prepare and one held key, got %+v", st)
	}
	// The holder aborts: the waiter gets the lock and logs its PREPARED.
	r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(1)})
	actortest.Expect[*messages.Append](t, r.wal, wait) // lazy ABORTED of tx(1)
	app2, from2 := actortest.Expect[*messages.Append](t, r.wal, wait)
	if app2.Records[0].Kind != messages.RecPrepared || app2.Records[0].Tx != tx(2) {
		t.Fatalf("want PREPARED of the waiter, got %+v", app2)
	}
	r.sys.Root.Send(from2, &messages.Appended{ID: app2.ID})
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Tx != tx(2) || v.Kind != messages.VoteYes {
		t.Fatalf("waiter's vote %+v", v)
	}
}

func TestParticipantWaitingPrepareDroppedOnAbort(t *testing.T) {
	r := newParticipantRig(t, nil, nil)
	r.prepared(t, tx(1), messages.Set("a", 1))
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(2), Ops: []messages.Op{messages.Set("a", 2)}, Begun: testEpoch + 50}, r.txn.PID)
	// Its coordinator gives up on tx(2) while it waits.
	r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(2)})
	if st := r.status(t); st.Waiting != 0 {
		t.Fatalf("aborted prepare still waiting: %+v", st)
	}
	r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(1)})
	actortest.Expect[*messages.Append](t, r.wal, wait)   // ABORTED of tx(1)
	actortest.ExpectNone(t, r.wal, 100*time.Millisecond) // tx(2) never prepared
	if st := r.status(t); st.LocksHeld != 0 {
		t.Fatalf("locks left: %+v", st)
	}
}

func TestParticipantFloorRefusesOverdraft(t *testing.T) {
	r := newParticipantRig(t, map[string]int64{"alice": 10}, nil)
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(1), Ops: []messages.Op{messages.AddFloor("alice", -11, 0)}}, r.txn.PID)
	v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait)
	if v.Kind != messages.VoteNo || !strings.Contains(v.Reason, "below its floor 0") {
		t.Fatalf("want no vote for the overdraft, got %+v", v)
	}
}

func TestParticipantCommitLogsThenAppliesThenAcks(t *testing.T) {
	r := newParticipantRig(t, map[string]int64{"a": 1}, nil)
	r.prepared(t, tx(1), messages.Add("a", 5))

	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: tx(1)}, r.txn.PID)
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	if !app.Force || app.Records[0].Kind != messages.RecCommitted {
		t.Fatalf("want forced COMMITTED, got %+v", app)
	}
	// Not durable yet: no ack. A read of the key waits: the client may
	// already have been told "committed", and must read its own write.
	actortest.ExpectNone(t, r.txn, 50*time.Millisecond)
	pending := r.sys.Root.RequestFuture(r.pid, &messages.Read{Keys: []string{"a"}}, wait)
	if res, err := r.sys.Root.RequestFuture(r.pid, &messages.Read{Keys: []string{"other"}}, wait).Result(); err != nil || res.(*messages.ReadReply).Values[0].Value != 0 {
		t.Fatalf("read of an unrelated key: %v %v", res, err) // not held back
	}
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	ack, _ := actortest.Expect[*messages.Ack](t, r.txn, wait)
	if ack.Tx != tx(1) {
		t.Fatalf("ack for %v", ack.Tx)
	}
	res, err := pending.Result()
	if err != nil {
		t.Fatal(err)
	}
	if got := res.(*messages.ReadReply).Values[0].Value; got != 6 {
		t.Fatalf("read held during commit answered %d, want 6", got)
	}
	// A duplicate Commit (the ack was lost) is acked again and changes nothing.
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: tx(1)}, r.txn.PID)
	actortest.Expect[*messages.Ack](t, r.txn, wait)
	actortest.ExpectNone(t, r.wal, 50*time.Millisecond)
	if got := r.read(t, "a"); got != 6 {
		t.Fatalf("duplicate commit applied twice: a = %d", got)
	}
}

func TestParticipantAbortReleasesAndRefusesLatePrepare(t *testing.T) {
	r := newParticipantRig(t, nil, nil)
	r.prepared(t, tx(1), messages.Set("a", 1))

	r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(1)})
	ab, _ := actortest.Expect[*messages.Append](t, r.wal, wait)
	if ab.Force || ab.Records[0].Kind != messages.RecAborted {
		t.Fatalf("want lazy ABORTED, got %+v", ab)
	}
	if got := r.read(t, "a"); got != 0 {
		t.Fatalf("aborted set applied: a = %d", got)
	}
	// A duplicated Prepare arriving after the Abort must not lock again.
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(1), Ops: []messages.Op{messages.Set("a", 1)}}, r.txn.PID)
	v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait)
	if v.Kind != messages.VoteNo {
		t.Fatalf("late prepare after abort: %+v", v)
	}
	if st := r.status(t); st.LocksHeld != 0 {
		t.Fatalf("%d locks held after abort", st.LocksHeld)
	}
}

func TestParticipantRecoveredInDoubtAsksCoordinator(t *testing.T) {
	rec := messages.Record{Kind: messages.RecPrepared, Tx: tx(7), Participants: []int32{0, 1}, Ops: []messages.Op{messages.Set("a", 9)}}
	r := newParticipantRig(t, map[string]int64{"a": 1}, []messages.Record{rec})
	q, _ := actortest.Expect[*messages.DecisionQuery](t, r.coord, wait)
	if q.Tx != tx(7) || q.From != 0 {
		t.Fatalf("query %+v", q)
	}
	if st := r.status(t); st.LocksHeld != 1 || len(st.InDoubt) != 1 {
		t.Fatalf("recovered transaction not re-locked: %+v", st)
	}
	// Still in doubt: a conflicting transaction is refused.
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(8), Ops: []messages.Op{messages.Set("a", 2)}}, r.txn.PID)
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Kind != messages.VoteNo {
		t.Fatalf("in-doubt key was not locked: %+v", v)
	}
	r.sys.Root.Send(r.pid, &messages.DecisionReply{Tx: tx(7), From: 0, Decision: messages.DecisionCommit})
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	if app.Records[0].Kind != messages.RecCommitted {
		t.Fatalf("want COMMITTED, got %+v", app)
	}
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	actortest.Expect[*messages.Ack](t, r.coord, wait)
	if got := r.read(t, "a"); got != 9 {
		t.Fatalf("a = %d after resolving commit, want 9", got)
	}
}

// A duplicate Prepare — while PREPARED is being logged, once prepared, and
// while COMMITTED is being logged — gets the same answer and logs nothing
// again: a second PREPARED after COMMITTED would leave the transaction in
// doubt in the log's fold for good. (The mutation run found only the
// randomized test catching this, and only with some seeds.)
func TestParticipantDuplicatePrepareLogsNothingAgain(t *testing.T) {
	r := newParticipantRig(t, map[string]int64{"a": 1}, nil)
	prep := &messages.Prepare{Tx: tx(1), Ops: []messages.Op{messages.Add("a", 5)}, Participants: []int32{0}}
	r.sys.Root.RequestWithCustomSender(r.pid, prep, r.txn.PID)
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)

	r.sys.Root.RequestWithCustomSender(r.pid, prep, r.txn.PID) // while preparing
	actortest.ExpectNone(t, r.wal, 50*time.Millisecond)
	actortest.ExpectNone(t, r.txn, 10*time.Millisecond) // no vote before PREPARED is durable
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Kind != messages.VoteYes {
		t.Fatalf("vote %+v", v)
	}

	r.sys.Root.RequestWithCustomSender(r.pid, prep, r.txn.PID) // once prepared
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Kind != messages.VoteYes {
		t.Fatalf("duplicate Prepare once prepared: vote %+v, want yes again", v)
	}
	actortest.ExpectNone(t, r.wal, 50*time.Millisecond)

	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: tx(1)}, r.txn.PID)
	app, from = actortest.Expect[*messages.Append](t, r.wal, wait)
	if app.Records[0].Kind != messages.RecCommitted {
		t.Fatalf("want COMMITTED, got %+v", app)
	}
	r.sys.Root.RequestWithCustomSender(r.pid, prep, r.txn.PID) // while committing
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Kind != messages.VoteYes {
		t.Fatalf("duplicate Prepare while committing: vote %+v, want yes again", v)
	}
	actortest.ExpectNone(t, r.wal, 50*time.Millisecond)
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	actortest.Expect[*messages.Ack](t, r.txn, wait)
	actortest.ExpectNone(t, r.txn, 50*time.Millisecond) // one ack
	if st := r.status(t); len(st.InDoubt) != 0 || st.Committing != 0 || st.LocksHeld != 0 {
		t.Fatalf("after commit: %+v", st)
	}
	if got := r.read(t, "a"); got != 6 {
		t.Fatalf("a = %d, want 6", got)
	}
}

// A duplicate Prepare of a transaction this participant voted read-only on
// is not recognised: tryPrepare consults recentAborts and recentCommits but
// not recentReadOnly, so the duplicate is prepared from scratch. If the key
// is meanwhile held by a younger transaction (or the floor no longer holds:
// a later `set` took the key below it), the duplicate votes NO, and vote()
// records the transaction in recentAborts. From then on this participant
// answers a peer's DecisionQuery with "abort" — for a transaction whose
// coordinator may well have committed it with this node's read-only vote.
//
// Interleaving: T (node 0 read-only check on a, node 1 yes) → coordinator
// logs COMMIT and crashes before Commit reaches node 1 → T2 (younger) locks
// a here → the bridge delivers a duplicate of T's Prepare here → node 1, in
// doubt, asks this node → "abort" → node 1 aborts a committed transaction.
//
// Rules broken: "Duplicates are harmless: a second Prepare gets the same
// vote" (README, Lost, duplicated...), and cooperative termination "one that
// ... voted read-only, cannot tell" — it must never say abort for a
// transaction that may have committed.
// (The end-to-end version, where node 1 really aborts a committed
// transaction, is among the cluster package's read-only tests.)
func TestParticipantDuplicatePrepareAfterReadOnlyVoteNeverSaysAbort(t *testing.T) {
	r := newParticipantRig(t, map[string]int64{"a": 5}, nil)
	check := []messages.Op{messages.AddFloor("a", 0, 0)} // "a >= 0": read-only
	r.prepareAt(tx(1), 10, check...)
	r.ackForced(t, messages.RecReadOnly, tx(1)) // durable before the vote (issue 11)
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Tx != tx(1) || v.Kind != messages.VoteReadOnly {
		t.Fatalf("want a read-only vote for %v, got %+v", tx(1), v)
	}
	// A younger transaction takes a exclusively and votes yes.
	r.prepareYes(t, tx(2), 20, messages.Set("a", 7))

	// The duplicate of T's Prepare (same id, same begin time, same ops).
	r.prepareAt(tx(1), 10, check...)
	if e, err := r.txn.Next(200 * time.Millisecond); err == nil {
		if v, ok := e.Msg.(*messages.Vote); ok && v.Kind == messages.VoteNo {
			t.Errorf("duplicate Prepare of a transaction voted read-only got a NO vote (%q); want the same vote again (read-only) or none", v.Reason)
		}
	}
	// What a peer in doubt about T now hears from this node.
	if d := r.peerAsks(t, tx(1), testEpoch+10); d == messages.DecisionAbort {
		t.Fatalf("read-only voter told a peer in doubt \"abort\" for %v, whose coordinator may have committed it", tx(1))
	}
}

// Abort arriving before its Prepare (reordered): nothing is locked or
// logged, and the Prepare that follows is refused; a peer asking is told
// abort, consistently.
func TestParticipantAbortBeforePrepareRefusesIt(t *testing.T) {
	r := newParticipantRig(t, nil, nil)
	r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(1), From: 0, Reason: "vote timeout"})
	r.prepareAt(tx(1), 10, messages.Set("a", 1))
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Kind != messages.VoteNo {
		t.Fatalf("Prepare after its Abort: %+v, want no", v)
	}
	actortest.ExpectNone(t, r.wal, 50*time.Millisecond)
	if d := r.peerAsks(t, tx(1), testEpoch+10); d != messages.DecisionAbort {
		t.Fatalf("peer told %v, want abort", d)
	}
	if st := r.status(t); st.LocksHeld != 0 || len(st.InDoubt) != 0 || st.Preparing != 0 {
		t.Fatalf("status %+v", st)
	}
}

// A Commit that overtakes the participant's own PREPARED (it cannot happen
// in a correct run, but a forged or misrouted one must not commit) is
// ignored; the yes vote follows the durable PREPARED, and the real Commit
// then commits once. A peer asking meanwhile hears "unknown", never abort.
func TestParticipantCommitWhilePreparingIgnoredThenCommitsOnce(t *testing.T) {
	r := newParticipantRig(t, map[string]int64{"a": 1}, nil)
	r.prepareAt(tx(1), 10, messages.Add("a", 4))
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: tx(1)}, r.txn.PID)
	actortest.ExpectNone(t, r.wal, 50*time.Millisecond) // no COMMITTED
	if d := r.peerAsks(t, tx(1), testEpoch+10); d != messages.DecisionUnknown {
		t.Fatalf("peer asking while PREPARED is being logged told %v, want unknown", d)
	}
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Kind != messages.VoteYes {
		t.Fatalf("vote %+v", v)
	}
	r.commit(t, tx(1))
	// A duplicate Commit after the commit: acked again, not applied again.
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: tx(1)}, r.txn.PID)
	actortest.Expect[*messages.Ack](t, r.txn, wait)
	actortest.ExpectNone(t, r.wal, 50*time.Millisecond)
	if got := r.read(t, "a"); got != 5 {
		t.Fatalf("a = %d, want 5", got)
	}
}

// Two Commits while COMMITTED is being logged: one COMMITTED record, one ack
// (the second Commit is absorbed), and a peer asking meanwhile hears
// "commit".
func TestParticipantDuplicateCommitWhileCommittingLogsOnce(t *testing.T) {
	r := newParticipantRig(t, nil, nil)
	r.prepareYes(t, tx(1), 10, messages.Add("a", 3))
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: tx(1)}, r.txn.PID)
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	if app.Records[0].Kind != messages.RecCommitted {
		t.Fatalf("want COMMITTED, got %+v", app)
	}
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: tx(1)}, r.txn.PID)
	r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(1), From: 0}) // conflicting: ignored
	if d := r.peerAsks(t, tx(1), testEpoch+10); d != messages.DecisionCommit {
		t.Fatalf("peer asking while COMMITTED is logged told %v, want commit", d)
	}
	actortest.ExpectNone(t, r.wal, 50*time.Millisecond)
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	actortest.Expect[*messages.Ack](t, r.txn, wait)
	actortest.ExpectNone(t, r.txn, 50*time.Millisecond)
	if got := r.read(t, "a"); got != 3 {
		t.Fatalf("a = %d, want 3", got)
	}
}

// A Commit for a transaction the participant does not know (committed and
// forgotten, its ack lost) is acked again and changes nothing.
func TestParticipantCommitForUnknownTxIsAcked(t *testing.T) {
	r := newParticipantRig(t, map[string]int64{"a": 3}, nil)
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: tx(9), From: 0}, r.txn.PID)
	ack, _ := actortest.Expect[*messages.Ack](t, r.txn, wait)
	if ack.Tx != tx(9) || ack.From != 0 {
		t.Fatalf("ack %+v", ack)
	}
	actortest.ExpectNone(t, r.wal, 50*time.Millisecond)
	if got := r.read(t, "a"); got != 3 {
		t.Fatalf("a = %d", got)
	}
}

// An Abort that overtakes the PREPARED write: no yes vote ever leaves, the
// locks are released once the write is done, and the late Prepare is refused.
func TestParticipantAbortWhilePreparingNeverVotesYes(t *testing.T) {
	r := newParticipantRig(t, nil, nil)
	app, from := r.prepare(t, tx(1), messages.Set("a", 1))
	r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(1), From: 0})
	if st := r.status(t); st.Preparing != 1 || st.LocksHeld != 1 {
		t.Fatalf("status while preparing %+v", st)
	}
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	ab, _ := actortest.Expect[*messages.Append](t, r.wal, wait)
	if ab.Force || ab.Records[0].Kind != messages.RecAborted || ab.Records[0].Tx != tx(1) {
		t.Fatalf("want lazy ABORTED, got %+v", ab)
	}
	actortest.ExpectNone(t, r.txn, 50*time.Millisecond)
	if st := r.status(t); st.LocksHeld != 0 || len(st.InDoubt) != 0 || st.Preparing != 0 {
		t.Fatalf("status after abort %+v", st)
	}
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(1), Ops: []messages.Op{messages.Set("a", 1)}}, r.txn.PID)
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Kind != messages.VoteNo {
		t.Fatalf("late prepare %+v", v)
	}
}

// A Prepare that arrives again after its transaction committed here (a
// duplicate delayed in the network, or a re-sent Prepare) must not prepare
// the transaction a second time: a re-sent Commit would then apply its ops
// twice (and so would the log's fold: PREPARED, COMMITTED, PREPARED,
// COMMITTED).
func TestParticipantLatePrepareAfterCommitIsNotPreparedAgain(t *testing.T) {
	r := newParticipantRig(t, nil, nil)
	prep := &messages.Prepare{Tx: tx(1), Ops: []messages.Op{messages.Add("a", 5)}, Participants: []int32{0}}
	r.sys.Root.RequestWithCustomSender(r.pid, prep, r.txn.PID)
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	actortest.Expect[*messages.Vote](t, r.txn, wait)
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: tx(1)}, r.txn.PID)
	app, from = actortest.Expect[*messages.Append](t, r.wal, wait)
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	actortest.Expect[*messages.Ack](t, r.txn, wait)
	if got := r.read(t, "a"); got != 5 {
		t.Fatalf("a = %d after commit", got)
	}

	// The late duplicate of the Prepare ...
	r.sys.Root.RequestWithCustomSender(r.pid, prep, r.txn.PID)
	e, err := r.wal.Next(200 * time.Millisecond)
	if err != nil {
		return // nothing logged: not prepared again
	}
	if a := e.Msg.(*messages.Append); a.Records[0].Kind == messages.RecPrepared {
		t.Errorf("PREPARED logged again for committed %v", tx(1))
		r.sys.Root.Send(e.Sender, &messages.Appended{ID: a.ID})
	}
	actortest.Expect[*messages.Vote](t, r.txn, wait)
	// ... then the Commit the txn actor re-sent before our ack reached it.
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: tx(1)}, r.txn.PID)
	if e, err := r.wal.Next(200 * time.Millisecond); err == nil {
		a := e.Msg.(*messages.Append)
		r.sys.Root.Send(e.Sender, &messages.Appended{ID: a.ID})
	}
	actortest.Expect[*messages.Ack](t, r.txn, wait)
	if got := r.read(t, "a"); got != 5 {
		t.Fatalf("a = %d: the commit was applied twice", got)
	}
}

// A participant that voted no knows the outcome is abort; a duplicate of the
// same Prepare must get no again, not a yes that holds locks for a
// transaction the coordinator already aborted (and will not tell this node:
// no-voters get no Abort), until the in-doubt query settles it.
func TestParticipantLatePrepareAfterNoVoteIsRefused(t *testing.T) {
	r := newParticipantRig(t, nil, nil)
	// The holder is younger than tx 2, so tx 2 is refused at once (no wait).
	holder := &messages.Prepare{Tx: tx(5), Ops: []messages.Op{messages.Set("a", 1)}, Participants: []int32{0}, Begun: testEpoch + 200}
	r.sys.Root.RequestWithCustomSender(r.pid, holder, r.txn.PID)
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	actortest.Expect[*messages.Vote](t, r.txn, wait)

	prep2 := &messages.Prepare{Tx: tx(2), Ops: []messages.Op{messages.Set("a", 2)}, Participants: []int32{0}, Begun: testEpoch + 100}
	r.sys.Root.RequestWithCustomSender(r.pid, prep2, r.txn.PID)
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Kind != messages.VoteNo || v.Tx != tx(2) {
		t.Fatalf("conflict: %+v", v)
	}
	r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(5)})
	actortest.Expect[*messages.Append](t, r.wal, wait) // ABORTED, lazy

	r.sys.Root.RequestWithCustomSender(r.pid, prep2, r.txn.PID) // the duplicate
	if e, err := r.wal.Next(200 * time.Millisecond); err == nil {
		t.Errorf("PREPARED logged for a transaction this node voted no on")
		r.sys.Root.Send(e.Sender, &messages.Appended{ID: e.Msg.(*messages.Append).ID})
	}
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Kind != messages.VoteNo {
		t.Errorf("duplicate prepare after a no vote: %+v", v)
	}
	if st := r.status(t); st.LocksHeld != 0 {
		t.Fatalf("locks held for a transaction that voted no: %+v", st)
	}
}

// standing settles the overlaps of what a participant remembers by one
// precedence, and every question is answered from it: a read-only voter
// sent an Abort (its vote was not counted) still says "read-only", never
// "abort"; a committed transaction followed by a conflicting Abort still
// says "commit"; a live record says what this node is doing now.
func TestParticipantStandingPrecedence(t *testing.T) {
	r := newInspectableRig(t, Timing{InDoubtAfter: time.Hour}, map[string]int64{"a": 5, "b": 1})
	kindOf := func(id messages.TxID) standingKind {
		t.Helper()
		return r.inspect(t, func(p *participant) interface{} { return p.standing(id).kind }).(standingKind)
	}
	if k := kindOf(tx(9)); k != standUnknown {
		t.Fatalf("never seen: %v", k)
	}

	// Read-only, then an Abort.
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(1), Ops: []messages.Op{messages.AddFloor("a", 0, 0)}, Participants: []int32{0, 1}, Begun: testEpoch + 1}, r.txn.PID)
	r.ackForced(t, messages.RecReadOnly, tx(1)) // durable before the vote (issue 11)
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Kind != messages.VoteReadOnly {
		t.Fatalf("vote %+v, want read-only", v)
	}
	r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(1)})
	if k := kindOf(tx(1)); k != standReadOnly {
		t.Fatalf("read-only then aborted: %v, want read-only", k)
	}
	if d := r.peerAsks(t, tx(1), testEpoch+1); d != messages.DecisionUnknown {
		t.Fatalf("peer told %v about a read-only vote, want unknown", d)
	}
	if a := askOutcome(t, r, tx(1)); a.Decision != messages.DecisionUnknown || !strings.Contains(a.Why, "read-only") {
		t.Fatalf("operator told %+v, want unknown (read-only)", a)
	}

	// Preparing, in doubt, committing, committed; then a conflicting Abort.
	app, from := r.prepare(t, tx(2), messages.Add("b", 1))
	if k := kindOf(tx(2)); k != standPreparing {
		t.Fatalf("PREPARED being logged: %v", k)
	}
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	actortest.Expect[*messages.Vote](t, r.txn, wait)
	if k := kindOf(tx(2)); k != standInDoubt {
		t.Fatalf("voted yes: %v", k)
	}
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: tx(2)}, r.txn.PID)
	co, coFrom := actortest.Expect[*messages.Append](t, r.wal, wait)
	if k := kindOf(tx(2)); k != standCommitting {
		t.Fatalf("COMMITTED being logged: %v", k)
	}
	r.sys.Root.Send(coFrom, &messages.Appended{ID: co.ID})
	actortest.Expect[*messages.Ack](t, r.txn, wait)
	r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(2)})
	if k := kindOf(tx(2)); k != standCommitted {
		t.Fatalf("committed, then a conflicting Abort: %v, want committed", k)
	}
	if d := r.peerAsks(t, tx(2), testEpoch+2); d != messages.DecisionCommit {
		t.Fatalf("peer told %v about a committed transaction, want commit", d)
	}
}
