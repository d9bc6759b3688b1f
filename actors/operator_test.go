package actors

import (
	"strings"
	"testing"
	"time"

	"twopc/actors/actortest"
	"twopc/messages"
)

// A participant answers an OutcomeQuery from what it holds, in every state
// a transaction can be in here, and the question leaves no trace: unlike a
// DecisionQuery, asking about a transaction it never saw does not make it
// vote no, so that transaction still prepares afterwards.
func TestOperatorOutcomeQueryParticipantStates(t *testing.T) {
	r := newParticipantRig(t, nil, nil)

	// Never seen. (A DecisionQuery here, Begun recent, would remember an
	// abort and the Prepare below would get no.)
	wantOutcome(t, askOutcome(t, r, tx(1)), messages.DecisionUnknown, "no trace of it")
	r.quiet(t)
	app, from := r.prepare(t, tx(1), messages.Set("a", 1))
	if app.Records[0].Kind != messages.RecPrepared || app.Records[0].Tx != tx(1) {
		t.Fatalf("a transaction asked about still prepares: want its PREPARED, got %+v", app)
	}
	wantOutcome(t, askOutcome(t, r, tx(1)), messages.DecisionUnknown, "still preparing")
	r.quiet(t)
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Kind != messages.VoteYes {
		t.Fatalf("vote %+v", v)
	}
	wantOutcome(t, askOutcome(t, r, tx(1)), messages.DecisionUnknown, "in doubt here too")
	r.quiet(t)
	if st := r.status(t); len(st.Doubts) != 1 || st.Doubts[0].Tx != tx(1) || st.Doubts[0].Since.IsZero() ||
		len(st.Doubts[0].Participants) != 1 || st.Doubts[0].Recovered {
		t.Fatalf("status of one prepared transaction: %+v", st.Doubts)
	}

	// Committing (COMMITTED being logged), then committed.
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: tx(1)}, r.txn.PID)
	app, from = actortest.Expect[*messages.Append](t, r.wal, wait)
	wantOutcome(t, askOutcome(t, r, tx(1)), messages.DecisionCommit, "is committing it")
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	actortest.Expect[*messages.Ack](t, r.txn, wait)
	wantOutcome(t, askOutcome(t, r, tx(1)), messages.DecisionCommit, "committed it")

	// Aborted.
	r.prepared(t, tx(2), messages.Set("b", 1))
	r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(2)})
	actortest.Expect[*messages.Append](t, r.wal, wait) // lazy ABORTED
	wantOutcome(t, askOutcome(t, r, tx(2)), messages.DecisionAbort, "aborted it")

	// Voted read-only: it does not know how the others decided.
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(3), Ops: []messages.Op{messages.Add("c", 0)}, Participants: []int32{0}}, r.txn.PID)
	r.ackForced(t, messages.RecReadOnly, tx(3)) // durable before the vote (issue 11)
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Kind != messages.VoteReadOnly {
		t.Fatalf("vote %+v", v)
	}
	wantOutcome(t, askOutcome(t, r, tx(3)), messages.DecisionUnknown, "read-only")

	// Waiting for locks (tx(5), younger, waits for tx(4)): still waiting
	// after the question, where a DecisionQuery would have voted no.
	r.prepared(t, tx(4), messages.Set("d", 1))
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(5), Ops: []messages.Op{messages.Set("d", 2)}, Begun: testEpoch}, r.txn.PID)
	actortest.Eventually(t, wait, func() string {
		if st := r.status(t); st.Waiting != 1 {
			return "tx(5) not waiting yet"
		}
		return ""
	})
	wantOutcome(t, askOutcome(t, r, tx(5)), messages.DecisionUnknown, "has not voted yet")
	r.quiet(t)
	if st := r.status(t); st.Waiting != 1 {
		t.Fatalf("the question ended the wait: %+v", st)
	}
}

// A heuristic commit of an in-doubt transaction is logged (HEURISTIC,
// forced), then goes the way of a real Commit: COMMITTED forced, then
// applied, then acked to the coordinator. Anything not in doubt is refused,
// naming its state.
func TestOperatorForceCommit(t *testing.T) {
	r := newParticipantRig(t, map[string]int64{"a": 1}, nil)
	if fr := forceDecision(t, r, tx(1), true); fr.Applied || !strings.Contains(fr.Err, "not in doubt on node 0: unknown here") {
		t.Fatalf("never-seen transaction: %+v", fr)
	}
	app, from := r.prepare(t, tx(1), messages.Add("a", 5))
	if fr := forceDecision(t, r, tx(1), true); fr.Applied || !strings.Contains(fr.Err, "preparing") {
		t.Fatalf("transaction still preparing: %+v", fr)
	}
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	actortest.Expect[*messages.Vote](t, r.txn, wait)

	if fr := forceLogged(t, r, tx(1), true); !fr.Applied || fr.Err != "" {
		t.Fatalf("in-doubt transaction: %+v", fr)
	}
	app, from = actortest.Expect[*messages.Append](t, r.wal, wait)
	if !app.Force || app.Records[0].Kind != messages.RecCommitted || app.Records[0].Tx != tx(1) {
		t.Fatalf("want a forced COMMITTED, got %+v", app)
	}
	expectQueries(t, r.coord, tx(1))                      // reconciling the heuristic commit, ahead of its ack
	actortest.ExpectNone(t, r.coord, 30*time.Millisecond) // no ack before it is durable
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	if ack, _ := actortest.Expect[*messages.Ack](t, r.coord, wait); ack.Tx != tx(1) {
		t.Fatalf("ack %+v", ack)
	}
	res, err := r.sys.Root.RequestFuture(r.pid, &messages.Read{Keys: []string{"a"}}, wait).Result()
	if err != nil || res.(*messages.ReadReply).Values[0].Value != 6 {
		t.Fatalf("read after the heuristic commit: %v %v", res, err)
	}
	wantOutcome(t, askOutcome(t, r, tx(1)), messages.DecisionCommit, "heuristic")
	if fr := forceDecision(t, r, tx(1), false); fr.Applied || !strings.Contains(fr.Err, "not in doubt on node 0: committed") {
		t.Fatalf("committed transaction: %+v", fr)
	}
}

// A heuristic abort is logged (HEURISTIC, forced), then goes the way of a
// real Abort: locks released, ABORTED logged lazily; a Commit arriving
// afterwards is the disagreement the operator risked: it is answered with
// an Ack marked Heuristic (never a plain one).
func TestOperatorForceAbort(t *testing.T) {
	r := newParticipantRig(t, map[string]int64{"a": 1}, nil)
	r.prepared(t, tx(1), messages.Add("a", 5))
	if fr := forceLogged(t, r, tx(1), false); !fr.Applied {
		t.Fatalf("in-doubt transaction: %+v", fr)
	}
	app, _ := actortest.Expect[*messages.Append](t, r.wal, wait)
	if app.Force || app.Records[0].Kind != messages.RecAborted {
		t.Fatalf("want a lazy ABORTED, got %+v", app)
	}
	if st := r.status(t); st.LocksHeld != 0 || len(st.InDoubt) != 0 || len(st.Doubts) != 0 {
		t.Fatalf("after the heuristic abort: %+v", st)
	}
	wantOutcome(t, askOutcome(t, r, tx(1)), messages.DecisionAbort, "aborted it (by the operator's heuristic decision)")
	if fr := forceDecision(t, r, tx(1), true); fr.Applied || !strings.Contains(fr.Err, "not in doubt on node 0: aborted") {
		t.Fatalf("aborted transaction: %+v", fr)
	}
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: tx(1)}, r.txn.PID)
	if ack, _ := actortest.Expect[*messages.Ack](t, r.txn, wait); ack.Tx != tx(1) || ack.From != 0 || !ack.Heuristic {
		t.Fatalf("Commit after a heuristic abort: %+v, want an Ack marked Heuristic", ack)
	}
	actortest.ExpectNone(t, r.txn, 50*time.Millisecond)
}

// The coordinator answers from its log without acting on it: a pending
// COMMIT is reported, not re-driven; none is a presumed abort; ids it cannot
// vouch for are unknown, and those need no log lookup at all.
func TestOperatorOutcomeQueryCoordinatorFromLog(t *testing.T) {
	r := newCoordRig(t, Timing{VoteTimeout: time.Hour, ResendInterval: time.Hour}, nil, nil)
	older := messages.TxID{Node: 0, Incarnation: coordIncarnation - 1, Seq: 7}

	askCoordinator(t, r, older)
	r.answerLookup(t, older, true, []int32{0, 1})
	a, _ := actortest.Expect[*OutcomeAnswer](t, r.client, wait)
	if a.Decision != messages.DecisionCommit || a.Why != "COMMIT logged, not all acked" || a.Presumed {
		t.Fatalf("pending commit: %+v", a)
	}
	r.noTxnSpawned(t)

	askCoordinator(t, r, older)
	r.answerLookup(t, older, false, nil)
	a, _ = actortest.Expect[*OutcomeAnswer](t, r.client, wait)
	if a.Decision != messages.DecisionAbort || !strings.Contains(a.Why, "presumed abort") || !a.Presumed {
		t.Fatalf("no commit in the log: %+v", a)
	}
	r.noTxnSpawned(t)

	expectCoordAnswer(t, r, messages.TxID{Node: 1, Incarnation: 1, Seq: 1}, messages.DecisionUnknown, "coordinated by node 1")
	expectCoordAnswer(t, r, messages.TxID{Node: 0, Incarnation: coordIncarnation + 1, Seq: 1}, messages.DecisionUnknown, "later")
	expectCoordAnswer(t, r, messages.TxID{Node: 0, Incarnation: coordIncarnation, Seq: 1}, messages.DecisionUnknown, "not begun yet")
	actortest.ExpectNone(t, r.wal, 30*time.Millisecond) // none of those three looked at the log
	r.noTxnSpawned(t)
}

// A running transaction: unknown while its votes are being collected and
// its COMMIT logged (a crash then would still abort it), commit once the
// COMMIT is durable. The question neither decides it (a DecisionQuery to a
// collecting txn actor makes it abort) nor disturbs it.
func TestOperatorOutcomeQueryCoordinatorRunningTxn(t *testing.T) {
	r := newCoordRig(t, Timing{VoteTimeout: time.Hour, ResendInterval: time.Hour}, nil, nil)
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Begin{Ops: []messages.Op{messages.Set("n0/a", 1), messages.Set("n1/b", 2)}, NotifyBegun: true}, r.client.PID)
	begun, _ := actortest.Expect[*messages.Begun](t, r.client, wait)
	for _, p := range r.parts {
		actortest.Expect[*messages.Prepare](t, p, wait)
	}
	id := begun.Tx
	expectCoordAnswer(t, r, id, messages.DecisionUnknown, "still collecting votes")
	actortest.ExpectNone(t, r.wal, 30*time.Millisecond) // no lookup racing the txn actor's own log writes
	from := r.parts[0].Seen()[0].Sender
	for _, n := range []int32{0, 1} {
		r.sys.Root.Send(from, &messages.Vote{Tx: id, From: n, Kind: messages.VoteYes})
	}
	app, walFrom := actortest.Expect[*messages.Append](t, r.wal, wait)
	if app.Records[0].Kind != messages.RecCommitDecision {
		t.Fatalf("want the COMMIT append, got %+v", app)
	}
	expectCoordAnswer(t, r, id, messages.DecisionUnknown, "still collecting votes") // COMMIT not durable yet
	r.sys.Root.Send(walFrom, &messages.Appended{ID: app.ID})
	if o, _ := actortest.Expect[*messages.Outcome](t, r.client, wait); !o.Committed || o.Tx != id {
		t.Fatalf("outcome %v", o)
	}
	expectCoordAnswer(t, r, id, messages.DecisionCommit, "COMMIT logged, not all acked")
}
