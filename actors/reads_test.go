package actors

import (
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

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

func readsReply(t *testing.T, f *actor.Future) *messages.ReadReply {
	t.Helper()
	res, err := f.Result()
	if err != nil {
		t.Fatal(err)
	}
	return res.(*messages.ReadReply)
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
	rep := readsReply(t, held)
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
	rep := readsReply(t, held)
	if rep.Err != "" || len(rep.Values) != 2 || rep.Values[0].Value != 5 || rep.Values[1].Value != 70 {
		t.Fatalf("read answered %+v, want a = 5 (+1 aborted, +1000 prepared after the read), b = 70", rep)
	}
	if got := r.read(t, "a"); got != 1005 {
		t.Fatalf("a = %d, want 1005", got)
	}
}

// --- snapshot read locks ---

func readID(seq uint64) messages.ReadID { return messages.ReadID{Node: 1, Incarnation: 1, Seq: seq} }

// readLock sends a ReadLock begun at testEpoch+begun, answered to probe.
func (r *participantRig) readLock(id messages.ReadID, begun int64, to *actortest.Probe, keys ...string) {
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.ReadLock{Reader: id, Begun: testEpoch + begun, Keys: keys}, to.PID)
}

func (r *participantRig) release(t *testing.T, id messages.ReadID, to *actortest.Probe) bool {
	t.Helper()
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.ReadRelease{Reader: id}, to.PID)
	rel, _ := actortest.Expect[*messages.ReadReleased](t, to, wait)
	if rel.Reader != id || rel.From != 0 {
		t.Fatalf("release answered %+v", rel)
	}
	return rel.Held
}

// A read lock waits for an older holder, answers
// with its commit, keeps a younger writer out until the release, and the
// release says it held throughout.
func TestReadLockWaitsForOlderHolderAndHoldsYoungerWriterOff(t *testing.T) {
	r := newParticipantRig(t, map[string]int64{"a": 5}, nil)
	reader := actortest.NewProbe(t, r.sys, "reader")
	r.readsPrepareYes(t, tx(1), 10, messages.Add("a", 1))
	r.readLock(readID(1), 20, reader, "a", "b")
	actortest.ExpectNone(t, reader, 50*time.Millisecond) // waits for +1
	r.readsCommitStart(t, tx(1))()
	got, _ := actortest.Expect[*messages.ReadLocked](t, reader, wait)
	if got.Err != "" || got.Reader != readID(1) || len(got.Values) != 2 || got.Values[0].Value != 6 || got.Values[1].Value != 0 {
		t.Fatalf("read lock answered %+v, want a = 6, b = 0", got)
	}
	// A writer begun after the read waits for its release.
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(2), Ops: []messages.Op{messages.Set("b", 9)}, Participants: []int32{0, 1}, Begun: testEpoch + 30}, r.txn.PID)
	actortest.ExpectNone(t, r.wal, 50*time.Millisecond)
	if st := r.status(t); st.Waiting != 1 {
		t.Fatalf("want the younger writer waiting for the read: %+v", st)
	}
	if !r.release(t, readID(1), reader) {
		t.Fatal("release says the lock was not held throughout")
	}
	app, _ := actortest.Expect[*messages.Append](t, r.wal, wait)
	if app.Records[0].Kind != messages.RecPrepared || app.Records[0].Tx != tx(2) {
		t.Fatalf("want the writer prepared after the release, got %+v", app)
	}
	// A duplicate ReadLock after the release locks nothing.
	r.readLock(readID(1), 20, reader, "b")
	if got, _ := actortest.Expect[*messages.ReadLocked](t, reader, wait); got.Err == "" {
		t.Fatalf("a ReadLock after its release answered %+v", got)
	}
}

// A writer begun before the read breaks the read's lock instead of
// waiting (no wait from older to younger): the writer prepares at once and
// the release tells the reader its answer does not hold.
func TestOlderWriterBreaksReadLock(t *testing.T) {
	r := newParticipantRig(t, map[string]int64{"a": 5}, nil)
	reader := actortest.NewProbe(t, r.sys, "reader")
	r.readLock(readID(1), 20, reader, "a")
	if got, _ := actortest.Expect[*messages.ReadLocked](t, reader, wait); got.Err != "" || got.Values[0].Value != 5 {
		t.Fatalf("read lock answered %+v", got)
	}
	r.readsPrepareYes(t, tx(1), 10, messages.Add("a", 1)) // older: not held up
	if r.release(t, readID(1), reader) {
		t.Fatal("the release says held throughout, but an older writer broke the lock")
	}
}

// A read finding a key held by a transaction begun after it does not wait
// (that could close a cycle of waits across nodes): it is refused, locks
// nothing, and the reader retries.
func TestReadLockRefusedByYoungerHolder(t *testing.T) {
	r := newParticipantRig(t, map[string]int64{"a": 5}, nil)
	reader := actortest.NewProbe(t, r.sys, "reader")
	r.readsPrepareYes(t, tx(1), 30, messages.Add("a", 1))
	r.readLock(readID(1), 20, reader, "a")
	got, _ := actortest.Expect[*messages.ReadLocked](t, reader, wait)
	if got.Err == "" || len(got.Values) != 0 {
		t.Fatalf("read lock behind a younger holder answered %+v, want a refusal", got)
	}
	// It holds nothing: a younger writer is not held up.
	r.readsPrepareYes(t, tx(2), 40, messages.Add("a", 2))
	if r.release(t, readID(1), reader) {
		t.Fatal("a refused read lock reported held")
	}
}

// A read lock kept longer than a quarter of the vote timeout (its reader
// gone, or its release lost) is broken for a writer waiting for it, well
// before the writer's own wait would end in a no vote; the release, if it
// ever comes, says the lock was not held throughout.
func TestReadLockHeldTooLongIsBrokenForAWaitingWriter(t *testing.T) {
	r := buildParticipantRig(t, Timing{VoteTimeout: 2 * time.Second, InDoubtAfter: 40 * time.Millisecond, MaxQueryInterval: time.Hour}, map[string]int64{"a": 5}, nil)
	reader := actortest.NewProbe(t, r.sys, "reader")
	r.readLock(readID(1), 20, reader, "a")
	if got, _ := actortest.Expect[*messages.ReadLocked](t, reader, wait); got.Err != "" {
		t.Fatalf("read lock answered %+v", got)
	}
	// A younger writer waits for the read, which never releases.
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(2), Ops: []messages.Op{messages.Add("a", 1)}, Participants: []int32{0, 1}, Begun: testEpoch + 30}, r.txn.PID)
	app, _ := actortest.Expect[*messages.Append](t, r.wal, wait)
	if app.Records[0].Kind != messages.RecPrepared || app.Records[0].Tx != tx(2) {
		t.Fatalf("want the writer prepared once the stale read lock was broken, got %+v", app)
	}
	if len(r.txn.Seen()) != 0 {
		t.Fatalf("the writer voted before its PREPARED was durable: %+v", r.txn.Seen())
	}
	if r.release(t, readID(1), reader) {
		t.Fatal("the release says held throughout, but the lock was broken")
	}
}
