package actors

// A participant restarted (a crash, or its supervisor after a panic)
// rebuilds from its log and keeps every promise its predecessor made.

import (
	"fmt"
	"math"
	"testing"
	"time"

	"twopc/actors/actortest"
	"twopc/messages"
)

// recentCommits guards against a late duplicate Prepare of a transaction
// committed here (the first review's fix), but it lives only in memory: a
// restart (or 16,384 later commits) forgets it. The duplicate then prepares
// the transaction again (a second PREPARED in the log), and the Commit that
// follows — re-sent because the ack was lost, or the coordinator's "commit"
// to this node's own DecisionQuery while another participant has not acked —
// applies its ops a second time, in memory and in the log's fold.
//
// Fixed (issue 11, no clock): the participant remembers, from its log, what
// it did with every transaction its coordinator has not settled; the
// duplicate of one it committed gets its yes again and prepares nothing.
// (It used to be refused for having begun before the restart.)
func TestRestartRefusesDuplicatePrepareBegunBeforeIt(t *testing.T) {
	r := newRestartRig(t)
	prep := &messages.Prepare{Tx: tx(1), Ops: []messages.Op{messages.Add("a", 5)}, Participants: []int32{0, 1}, Begun: time.Now().UnixNano()}
	r.committed(t, prep)
	r.crash()
	if got := r.read(t, "a"); got != 5 {
		t.Fatalf("a = %d after restart", got)
	}
	r.sys.Root.RequestWithCustomSender(r.pid, prep, r.txn.PID) // the late duplicate
	r.expectNotPreparedAgain(t, tx(1))
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
// Fixed (issue 11): the duplicate finds the commit remembered (from the
// log), gets its yes again without a look at the locks, and the peer hears
// "commit". (It used to be refused for having begun before the restart,
// with a no vote that was not remembered.)
func TestRestartRefusalOfOldPrepareIsNotRememberedAsAbort(t *testing.T) {
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
	r.expectNotPreparedAgain(t, tx(1))
	r.sys.Root.Send(r.pid, &messages.DecisionQuery{Tx: tx(1), From: 1})
	if rep, _ := actortest.Expect[*messages.DecisionReply](t, r.peer, wait); rep.Decision == messages.DecisionAbort {
		t.Fatalf("peer told abort for %v, which this node committed", tx(1))
	}
}

// A restart while a transaction is prepared keeps the promise: the reads
// that arrive afterwards are still held back by it (read-your-writes across
// a participant restart), and its Commit is applied once.
func TestRestartKeepsReadsHeldByInDoubt(t *testing.T) {
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
// Fix (issue 11): no margin at all — the participant knows from its log that
// it committed T, so the duplicate gets its yes again and prepares nothing.
// (The check below used to be "no yes vote at all"; a yes for a transaction
// committed here is the answer it always gave, so it checks that nothing
// was prepared again.)
func TestRestartRefusesDuplicatePrepareWithinClockSkew(t *testing.T) {
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
			if st := r.status(t); st.Preparing > 0 || containsTx(st.InDoubt, tx(1)) {
				t.Errorf("a duplicate Prepare of a transaction committed before the restart was prepared again and voted yes")
			}
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
func TestRestartKeepsNoVoteForPeerWithinClockSkew(t *testing.T) {
	r := newRestartRig(t)                                      // no clock enters into it: no pause needed
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

// A participant restarted from its log while one of its Prepares waited for
// locks forgets the wait (it held nothing). A peer in doubt asking about
// that transaction is told "abort": its log shows it never voted on it (no
// PREPARED, no READ-ONLY), so it refuses it, durably, and its Prepare is
// refused afterwards. (Changed with issue 11: it used to say "unknown",
// as the transaction began before the restart.)
func TestRestartForgetsPrepareWaitingForLocks(t *testing.T) {
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
	if rep := nextOf[*messages.DecisionReply](t, r.peer); rep.Tx != tx(2) || rep.Decision != messages.DecisionAbort {
		t.Fatalf("reply %+v: a restarted participant did not refuse a transaction its log shows it never voted on", rep)
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

// FINDING. A read held back by a prepared transaction, at a participant
// that then fails (panics) and is restarted from its log by its
// supervisor, is never answered: the failed instance's waiters are dropped
// with it — the participant answers held reads on Stopping, but a restart
// delivers Restarting, which it ignores — and its successor knows nothing
// of them. The reader waits out its own timeout (Node.Read: 2 × VoteTimeout
// + 1 s) and gets "did not answer" instead of the value or the reasoned
// error a held read is promised within the vote timeout.
//
// Should: the held read is answered — re-checked by the successor, or
// failed at once with a reason ("participant restarted; retry").
// Fix: on *actor.Restarting, answer the waiting reads with an error (as on
// Stopping); or hand the waiting reads to the successor through the state
// shared across restarts (like appendSeq).
func TestRestartAnswersHeldReads(t *testing.T) {
	// Waits expire every 10 ms, a second after they began: without the
	// restart the read would be answered (an error naming tx 1) after a
	// second, as TestWaitsHeldReadExpiresWithAnError shows.
	r := newRestartRigTiming(t, Timing{VoteTimeout: time.Second, InDoubtAfter: 40 * time.Millisecond, MaxQueryInterval: time.Hour})
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(1), Ops: []messages.Op{messages.Add("a", 5)}, Participants: []int32{0, 1}, Begun: testEpoch + 10}, r.txn.PID)
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Kind != messages.VoteYes {
		t.Fatalf("vote %+v", v)
	}
	held := r.sys.Root.RequestFuture(r.pid, &messages.Read{Keys: []string{"a"}}, 5*time.Second)
	actortest.Eventually(t, wait, func() string {
		if st := r.status(t); st.Reads != 1 {
			return fmt.Sprintf("read not held back: %+v", st)
		}
		return ""
	})
	r.crash()
	if _, err := held.Result(); err != nil {
		t.Fatalf("read held when the participant failed and restarted was never answered: %v", err)
	}
}

// A participant actor restart (the default supervision for a root-level actor
// after a panic) must not forget what it committed or promised: it rebuilds
// itself from its log, not from the state it had at node start.
func TestRestartRebuildsParticipantFromItsLog(t *testing.T) {
	r := newRestartRig(t)
	r.committed(t, &messages.Prepare{Tx: tx(1), Ops: []messages.Op{messages.Add("a", 5)}})
	// Prepared and voted yes for tx 2.
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(2), Ops: []messages.Op{messages.Add("b", 7)}}, r.txn.PID)
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Kind != messages.VoteYes {
		t.Fatalf("vote %+v", v)
	}

	r.crash()

	if got := r.read(t, "a"); got != 5 {
		t.Errorf("a = %d after a participant restart, want 5 (committed)", got)
	}
	// tx 2 is still promised: its key is locked and its Commit is applied.
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(3), Ops: []messages.Op{messages.Set("b", 1)}, Begun: math.MaxInt64}, r.txn.PID)
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Tx != tx(3) || v.Kind != messages.VoteNo {
		t.Fatalf("key of a promised transaction not locked after restart: %+v", v)
	}
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: tx(2)}, r.txn.PID)
	actortest.Expect[*messages.Ack](t, r.txn, wait)
	if got := r.read(t, "b"); got != 7 {
		t.Fatalf("b = %d: a promised commit was acked but not applied", got)
	}
}
