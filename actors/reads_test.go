package actors

import (
	"testing"
	"time"

	"twopc/actors/actortest"
	"twopc/messages"
)

// Helpers of their own, so that these tests do not lean on another file's.

// readsPrepareYes prepares id (begun at testEpoch+begun) and makes its
// PREPARED durable: the participant votes yes.
func (r *participantRig) readsPrepareYes(t *testing.T, id messages.TxID, begun int64, ops ...messages.Op) {
	t.Helper()
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: id, Ops: ops, Participants: []int32{0, 1}, Begun: testEpoch + begun}, r.txn.PID)
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	if app.Records[0].Kind != messages.RecPrepared || app.Records[0].Tx != id {
		t.Fatalf("want PREPARED of %v, got %+v", id, app)
	}
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Tx != id || v.Kind != messages.VoteYes {
		t.Fatalf("want yes for %v, got %+v", id, v)
	}
}

// readsCommitStart delivers id's Commit and returns the COMMITTED append,
// not yet acknowledged: the transaction is committing here (its client may
// already have been told "committed": the coordinator answers once its own
// COMMIT record is durable).
func (r *participantRig) readsCommitStart(t *testing.T, id messages.TxID) func() {
	t.Helper()
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: id}, r.txn.PID)
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	if app.Records[0].Kind != messages.RecCommitted || app.Records[0].Tx != id {
		t.Fatalf("want COMMITTED of %v, got %+v", id, app)
	}
	return func() {
		t.Helper()
		r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
		if ack, _ := actortest.Expect[*messages.Ack](t, r.txn, wait); ack.Tx != id {
			t.Fatalf("want the ack of %v, got %+v", id, ack)
		}
	}
}

// The waiting read of issue 15, step by step. add +1 is prepared; a read
// arrives and waits for it. add +10 prepares after the read arrived and is
// decided commit (its client told "committed" — the coordinator's COMMIT is
// durable) while its COMMITTED is still being written here. add +100 begins
// after +10 returned, prepares and commits here. Then +1 commits.
//
// A read that showed +100 without +10 (101) would not be linearizable: +10
// finished before +100 began. The rule (actors/reads.go) answers from the
// value when the read arrived plus exactly the transactions it waited for:
// 0 + 1 = 1, placing the read after +1 and before +10 and +100, which both
// began after the read did.
func TestReadWaitingForAnAddIgnoresAddsPreparedAfterIt(t *testing.T) {
	r := newParticipantRig(t, map[string]int64{"a": 0}, nil)
	r.readsPrepareYes(t, tx(1), 10, messages.Add("a", 1))

	held := r.sys.Root.RequestFuture(r.pid, &messages.Read{Keys: []string{"a"}}, wait)
	actortest.Eventually(t, wait, func() string {
		if st := r.status(t); st.Reads != 1 {
			return "the read is not waiting for +1"
		}
		return ""
	})

	r.readsPrepareYes(t, tx(2), 20, messages.Add("a", 10))
	finish10 := r.readsCommitStart(t, tx(2)) // +10 returned "committed" to its client
	r.readsPrepareYes(t, tx(3), 30, messages.Add("a", 100))
	r.readsCommitStart(t, tx(3))() // +100 began after +10 returned, and is applied here

	r.readsCommitStart(t, tx(1))() // the read's only blocker commits
	rep := readReply(t, held)
	if rep.Err != "" || len(rep.Values) != 1 {
		t.Fatalf("read answered %+v", rep)
	}
	if got := rep.Values[0].Value; got != 1 {
		t.Fatalf("read answered a = %d, want 1 (the value at its arrival, 0, plus +1 it waited for); 101 shows +100 without +10, which finished before +100 began", got)
	}
	finish10()
	if got := r.read(t, "a"); got != 111 {
		t.Fatalf("after all three commits a = %d, want 111", got)
	}
}

// A waited-for transaction that aborts adds nothing; one that sets the key
// replaces the value the read started from. Adds prepared after the read
// arrived stay out of it either way.
func TestReadWaitingAppliesOnlyWhatItWaitedFor(t *testing.T) {
	r := newParticipantRig(t, map[string]int64{"a": 5, "b": 7}, nil)
	r.readsPrepareYes(t, tx(1), 10, messages.Add("a", 1))
	r.readsPrepareYes(t, tx(2), 20, messages.Set("b", 70))
	held := r.sys.Root.RequestFuture(r.pid, &messages.Read{Keys: []string{"a", "b"}}, wait)
	actortest.Eventually(t, wait, func() string {
		if st := r.status(t); st.Reads != 1 {
			return "the read is not waiting"
		}
		return ""
	})
	r.readsPrepareYes(t, tx(3), 30, messages.Add("a", 1000))
	r.readsCommitStart(t, tx(3))()
	r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(1)})
	actortest.Expect[*messages.Append](t, r.wal, wait) // lazy ABORTED
	r.readsCommitStart(t, tx(2))()
	rep := readReply(t, held)
	if rep.Err != "" || len(rep.Values) != 2 || rep.Values[0].Value != 5 || rep.Values[1].Value != 70 {
		t.Fatalf("read answered %+v, want a = 5 (+1 aborted, +1000 prepared after the read), b = 70", rep)
	}
	if got := r.read(t, "a"); got != 1005 {
		t.Fatalf("a = %d, want 1005", got)
	}
	_ = time.Second
}
