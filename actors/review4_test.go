package actors

// Fourth review: crash recovery, in-doubt resolution and cooperative
// termination. Tests named ...Breach... fail against the code as reviewed
// (each comment gives the interleaving and the rule it breaks); the others
// pin down behaviour nobody had tested yet.

import (
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"twopc/actors/actortest"
	"twopc/messages"
)

// ---------------------------------------------------------------------------
// Findings

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
// transaction, is cluster.TestReview4BreachReadOnlyDuplicateAbortsCommittedTx.)
func TestReview4BreachDuplicatePrepareAfterReadOnlyVoteSaysAbort(t *testing.T) {
	r := newParticipantRig(t, map[string]int64{"a": 5}, nil)
	check := []messages.Op{messages.AddFloor("a", 0, 0)} // "a >= 0": read-only
	r.prepareAt(tx(1), 10, check...)
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

// stale() ignores a Prepare begun before the participant (re)started — but
// with no allowance for ClockSkew, unlike neverPrepared, which requires a
// transaction to begin a ClockSkew after startedAt before vouching for it.
// Begun is the coordinator's clock; startedAt the participant's. With the
// coordinator's clock ahead by less than ClockSkew (the stated assumption),
// a transaction that this participant committed *before* it restarted can
// carry a Begun later than the restarted participant's startedAt. Its late
// duplicate Prepare is then prepared again (recentCommits died with the old
// instance), and the re-sent Commit (its first ack was lost in the restart)
// applies it a second time — in memory and in the log's fold.
//
// Interleaving (coordinator clock +500 ms, ClockSkew 1 s): Prepare T → yes
// → Commit → COMMITTED, applied → participant fails and is restarted from
// its log → duplicate Prepare of T (Begun > startedAt) → PREPARED, yes →
// Commit re-sent → COMMITTED again → a applied twice.
//
// Rule broken: "A late duplicate of a Prepare never prepares a transaction
// twice ... This assumes the nodes' clocks agree within ClockSkew".
// Fix: treat a Prepare as stale when begun < startedAt + ClockSkew (the same
// margin neverPrepared uses).
func TestReview4BreachDuplicatePrepareAfterRestartWithinClockSkewAppliesTwice(t *testing.T) {
	r := newRestartRig(t)               // default ClockSkew: 1 s
	skewAhead := 500 * time.Millisecond // coordinator's clock ahead, within ClockSkew
	prep := &messages.Prepare{Tx: tx(1), Ops: []messages.Op{messages.Add("a", 5)}, Participants: []int32{0, 1},
		Begun: time.Now().Add(skewAhead).UnixNano()}
	r.committed(t, prep)
	r.crash() // restarted from its log, at once
	if got := r.read(t, "a"); got != 5 {
		t.Fatalf("a = %d after restart", got)
	}
	r.sys.Root.RequestWithCustomSender(r.pid, prep, r.txn.PID) // the late duplicate
	if e, err := r.txn.Next(200 * time.Millisecond); err == nil {
		if v, ok := e.Msg.(*messages.Vote); ok && v.Kind == messages.VoteYes {
			t.Errorf("a duplicate Prepare of a transaction committed before the restart was prepared again and voted yes")
		}
	}
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: tx(1)}, r.txn.PID) // re-sent
	actortest.Expect[*messages.Ack](t, r.txn, wait)
	if got := r.read(t, "a"); got != 5 {
		t.Fatalf("a = %d: committed transaction %v applied twice (coordinator clock %v ahead, ClockSkew 1s)", got, tx(1), skewAhead)
	}
}

// The same missing margin breaks cooperative termination. A peer in doubt
// asks about T, begun (coordinator's clock, 900 ms ahead) more than a
// ClockSkew after this participant started: neverPrepared holds, so it
// votes no on the spot and answers "abort" — the peer aborts. The
// participant then fails and is restarted; its memory of that no vote is
// gone, and T's Prepare, arriving now, is not stale (Begun > the new
// startedAt): it is prepared and voted yes. With the peer's earlier yes the
// coordinator commits T, which the peer has already aborted.
//
// Rule broken: "A participant that has not voted may vote no and so knows
// the outcome is abort" — that no must stick; and the clock assumption as
// above. Same fix as the previous test.
func TestReview4BreachNoVoteForPeerForgottenByRestartWithinClockSkew(t *testing.T) {
	r := newRestartRig(t) // default ClockSkew: 1 s
	time.Sleep(200 * time.Millisecond)
	begun := time.Now().Add(900 * time.Millisecond).UnixNano() // coordinator's clock 900 ms ahead
	r.sys.Root.Send(r.pid, &messages.DecisionQuery{Tx: tx(1), From: 1, Begun: begun})
	rep, _ := actortest.Expect[*messages.DecisionReply](t, r.peer, wait)
	if rep.Decision != messages.DecisionAbort {
		t.Fatalf("precondition: never-seen recent transaction answered %v, want abort", rep.Decision)
	}
	r.crash() // restarted from its log
	r.read(t, "a")
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(1), Ops: []messages.Op{messages.Add("a", 5)},
		Participants: []int32{0, 1}, Begun: begun}, r.txn.PID)
	if e, err := r.txn.Next(300 * time.Millisecond); err == nil {
		if v, ok := e.Msg.(*messages.Vote); ok && v.Kind == messages.VoteYes {
			t.Fatalf("voted yes on %v after telling a peer \"abort\" for it (restart within ClockSkew of its begin)", tx(1))
		}
	}
}

// ---------------------------------------------------------------------------
// Pinned behaviour

// Abort arriving before its Prepare (reordered): nothing is locked or
// logged, and the Prepare that follows is refused; a peer asking is told
// abort, consistently.
func TestReview4AbortBeforePrepareRefusesIt(t *testing.T) {
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
func TestReview4CommitWhilePreparingIgnoredThenCommitsOnce(t *testing.T) {
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
func TestReview4DuplicateCommitWhileCommittingLogsOnce(t *testing.T) {
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

// A participant restarted from its log while one of its Prepares waited for
// locks forgets the wait (it held nothing). A peer in doubt asking about
// that transaction is told "unknown", not "abort": the transaction began
// before the restart, so this node cannot vouch it never voted.
func TestReview4RestartWhilePrepareWaitsForLocks(t *testing.T) {
	r := newRestartRig(t)
	now := time.Now().UnixNano()
	// T1 (older) prepared, T2 (younger) waits for it.
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(1), Ops: []messages.Op{messages.Set("a", 1)}, Participants: []int32{0, 1}, Begun: now}, r.txn.PID)
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Kind != messages.VoteYes {
		t.Fatalf("vote %+v", v)
	}
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(2), Ops: []messages.Op{messages.Set("a", 2)}, Participants: []int32{0, 1}, Begun: now + 1}, r.txn.PID)
	actortest.ExpectNone(t, r.txn, 50*time.Millisecond) // waiting
	r.crash()
	// Recovered: T1 in doubt (asks at once), T2 forgotten.
	if q, _ := actortest.Expect[*messages.DecisionQuery](t, r.coord, wait); q.Tx != tx(1) {
		t.Fatalf("query %+v", q)
	}
	r.sys.Root.Send(r.pid, &messages.DecisionQuery{Tx: tx(2), From: 1, Begun: now + 1})
	// (The peer probe also gets T1's DecisionQuery: skipped.)
	if rep := nextOf[*messages.DecisionReply](t, r.peer); rep.Tx != tx(2) || rep.Decision == messages.DecisionAbort {
		// Abort would in fact be right here (T2 never voted), but this
		// node cannot know that after the restart; it must not guess.
		t.Fatalf("reply %+v: a restarted participant vouched for a transaction begun before it started", rep)
	}
	// T1's commit is applied once; T2's late duplicate Prepare is refused.
	r.sys.Root.Send(r.pid, &messages.DecisionReply{Tx: tx(1), From: 0, Decision: messages.DecisionCommit})
	actortest.Expect[*messages.Ack](t, r.coord, wait)
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(2), Ops: []messages.Op{messages.Set("a", 2)}, Participants: []int32{0, 1}, Begun: now + 1}, r.txn.PID)
	r.expectRefused(t, tx(2))
	if got := r.read(t, "a"); got != 1 {
		t.Fatalf("a = %d, want 1", got)
	}
}

// A coordinator asked about a transaction whose txn actor is collecting
// votes aborts it first and answers abort; a yes vote arriving after that is
// ignored (the txn actor has stopped), and a second query, now settled by
// the log, is answered abort too — never commit.
func TestReview4QueryDuringCollectingAbortsAndStaysAborted(t *testing.T) {
	r := newCoordRig(t, Timing{VoteTimeout: time.Hour}, nil, nil)
	txnPID := r.begin(t)
	id := r.parts[0].Seen()[0].Msg.(*messages.Prepare).Tx
	r.sys.Root.Send(txnPID, &messages.Vote{Tx: id, From: 0, Kind: messages.VoteYes})
	r.sys.Root.Send(r.pid, &messages.DecisionQuery{Tx: id, From: 0})
	if rep := nextOf[*messages.DecisionReply](t, r.parts[0]); rep.Decision != messages.DecisionAbort {
		t.Fatalf("reply %+v", rep)
	}
	if out, _ := actortest.Expect[*messages.Outcome](t, r.client, wait); out.Committed || out.Unknown {
		t.Fatalf("outcome %+v", out)
	}
	r.sys.Root.Send(txnPID, &messages.Vote{Tx: id, From: 1, Kind: messages.VoteYes})
	r.sys.Root.Send(r.pid, &messages.Vote{Tx: id, From: 1, Kind: messages.VoteYes})
	// Later queries are settled from the log (nothing pending): abort.
	var lookup *actor.PID
	for lookup == nil {
		r.sys.Root.Send(r.pid, &messages.DecisionQuery{Tx: id, From: 1})
		if e, err := r.wal.Next(100 * time.Millisecond); err == nil {
			if l, ok := e.Msg.(*messages.DecisionLookup); ok && l.Tx == id {
				lookup = e.Sender
			} else if a, ok := e.Msg.(*messages.Append); ok {
				t.Fatalf("coordinator logged %+v after aborting", a)
			}
		}
	}
	r.sys.Root.Send(lookup, &messages.DecisionLookupReply{Tx: id})
	if rep := nextOf[*messages.DecisionReply](t, r.parts[1]); rep.Tx != id || rep.Decision != messages.DecisionAbort {
		t.Fatalf("reply %+v after abort", rep)
	}
	for _, e := range append(r.parts[0].Seen(), r.parts[1].Seen()...) {
		if _, ok := e.Msg.(*messages.Commit); ok {
			t.Fatalf("Commit sent after abort: %+v", e.Msg)
		}
	}
}

// nextOf skips a probe's messages until one of type T arrives.
func nextOf[T any](t *testing.T, p *actortest.Probe) T {
	t.Helper()
	for {
		e, err := p.Next(wait)
		if err != nil {
			t.Fatalf("probe %s: %v", p.Name, err)
		}
		if m, ok := e.Msg.(T); ok {
			return m
		}
	}
}
