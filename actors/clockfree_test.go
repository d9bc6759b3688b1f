package actors

// Issue 11: no answer a participant gives depends on a clock. Refusals are
// durable before they are said, and a participant vouches from its log.

import (
	"fmt"
	"testing"
	"time"

	"twopc/actors/actortest"
	"twopc/messages"
)

// The clock-skew counterexample of issue 11, at the participant that
// committed: it committed T, its memory of that ran out, and a peer in
// doubt then asks about T, whose begin time (its coordinator's clock, 5 s
// ahead) looks recent. Before, it voted no and said "abort" about a
// transaction it had committed — the cluster ended with value [1, 1, 2, 1].
// Now nothing it says depends on the begin time: having let go of T, it
// no longer vouches for it and says unknown.
//
// This test uses only what main had, and fails there ("abort").
func TestClockSkewCommittedThenForgottenNeverAnswersAbort(t *testing.T) {
	r := buildParticipantRigWith(t, func(c *ParticipantConfig) {
		c.Timing, c.KV = shortMemory, map[string]int64{"a": 1}
	})
	begun := time.Now().Add(5 * time.Second).UnixNano() // the coordinator's clock is 5 s ahead
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(1), Ops: []messages.Op{messages.Add("a", 1)}, Participants: []int32{0, 1}, Begun: begun}, r.txn.PID)
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Kind != messages.VoteYes {
		t.Fatalf("vote %+v", v)
	}
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: tx(1)}, r.txn.PID)
	app, from = actortest.Expect[*messages.Append](t, r.wal, wait)
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	actortest.Expect[*messages.Ack](t, r.txn, wait)
	actortest.Eventually(t, wait, func() string {
		if st := r.status(t); st.Remembered != 0 {
			return fmt.Sprintf("still remembers %d outcomes", st.Remembered)
		}
		return ""
	})
	if d := r.peerAsks(t, tx(1), begun); d == messages.DecisionAbort {
		t.Fatalf("told a peer in doubt \"abort\" about %v, which this node committed (its coordinator's clock 5 s ahead)", tx(1))
	}
	if got := r.read(t, "a"); got != 2 {
		t.Fatalf("a = %d, want 2", got)
	}
}

// A refusal is durable before it is said: the forced REFUSED append comes
// first, nothing reaches the peer until it is acked, a Prepare arriving
// meanwhile is already refused, and a failed write answers nothing (the
// peer asks again). Making the refusal non-durable (answering before the
// append is acked) fails this test.
func TestRefusalIsDurableBeforeItIsAnswered(t *testing.T) {
	r := newParticipantRig(t, nil, nil)
	r.sys.Root.Send(r.pid, &messages.DecisionQuery{Tx: tx(7), From: 1})
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	if !app.Force || len(app.Records) != 1 || app.Records[0].Kind != messages.RecRefused || app.Records[0].Tx != tx(7) {
		t.Fatalf("append %+v, want a forced REFUSED of %v", app, tx(7))
	}
	actortest.ExpectNone(t, r.peer, 100*time.Millisecond) // not said before it is durable
	r.prepareAt(tx(7), 10, messages.Set("a", 1))
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Tx != tx(7) || v.Kind != messages.VoteNo {
		t.Fatalf("Prepare while the refusal is being logged: %+v, want no", v)
	}
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	if rep, _ := actortest.Expect[*messages.DecisionReply](t, r.peer, wait); rep.Tx != tx(7) || rep.Decision != messages.DecisionAbort {
		t.Fatalf("reply %+v, want abort", rep)
	}
	// Said once durable, then again at once: no second write.
	if d := r.peerAsks(t, tx(7), 0); d != messages.DecisionAbort {
		t.Fatalf("asked again: %v", d)
	}

	r.sys.Root.Send(r.pid, &messages.DecisionQuery{Tx: tx(8), From: 1})
	app, from = actortest.Expect[*messages.Append](t, r.wal, wait)
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID, Err: errDisk})
	actortest.ExpectNone(t, r.peer, 100*time.Millisecond) // the write failed: nothing said
	if d := r.peerAsksRefusing(t, tx(8), 0); d != messages.DecisionAbort {
		t.Fatalf("asked again after the failed write: %v", d)
	}
}

// A Prepare of a transaction below its coordinator's mark — settled there,
// or of an earlier incarnation once a later one has been heard from — gets
// no and prepares nothing; one at or above the mark is prepared as usual.
func TestPrepareBelowCoordinatorsMarkRefused(t *testing.T) {
	r := newParticipantRig(t, nil, nil)
	r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(10), Settled: 5})
	r.prepareAt(tx(4), 10, messages.Set("a", 1))
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Tx != tx(4) || v.Kind != messages.VoteNo {
		t.Fatalf("Prepare below the mark: %+v, want no", v)
	}
	r.prepareYes(t, tx(5), 10, messages.Set("a", 1)) // at the mark
	// A later incarnation of coordinator 0 speaks: all of incarnation 1 is over.
	later := messages.TxID{Node: 0, Incarnation: 2, Seq: 1}
	r.sys.Root.Send(r.pid, &messages.Abort{Tx: later, Settled: 1})
	r.prepareAt(tx(20), 10, messages.Set("b", 1))
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Tx != tx(20) || v.Kind != messages.VoteNo {
		t.Fatalf("Prepare of an earlier incarnation: %+v, want no", v)
	}
	// tx(5), prepared before, is still promised: a live record is never
	// forgotten, and its Commit is applied.
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: tx(5)}, r.txn.PID)
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	for app.Records[0].Kind == messages.RecMark {
		app, from = actortest.Expect[*messages.Append](t, r.wal, wait)
	}
	if app.Records[0].Kind != messages.RecCommitted {
		t.Fatalf("want COMMITTED, got %+v", app)
	}
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	actortest.Expect[*messages.Ack](t, r.txn, wait)
	if got := r.read(t, "a"); got != 1 {
		t.Fatalf("a = %d, want 1", got)
	}
}
