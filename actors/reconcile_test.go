package actors

// Reconciling heuristic decisions (heuristic.go): a participant holding one
// asks the transaction's coordinator — only it — until it says commit or
// abort, then logs the agreement (WARN) or the damage (ERROR) and stops
// asking. Nothing else changes.

import (
	"strings"
	"testing"

	"twopc/actors/actortest"
	"twopc/messages"
)

// The operator committed tx(1) here; its coordinator aborted it (presumed
// abort: it sends nothing). Asked, it says abort: the damage is logged at
// ERROR, the asking stops, and nothing is undone or written.
func TestReconcileForcedCommitCoordinatorAborted(t *testing.T) {
	r, buf := newReconcileRig(t, nil)
	r.prepared(t, tx(1), messages.Add("a", 5))
	if fr := forceLogged(t, r, tx(1), true); !fr.Applied {
		t.Fatalf("force: %+v", fr)
	}
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	if app.Records[0].Kind != messages.RecCommitted {
		t.Fatalf("want the forced COMMITTED, got %+v", app)
	}
	// Asked at once, before the forced commit's ack.
	q, _ := actortest.Expect[*messages.DecisionQuery](t, r.coord, wait)
	if q.Tx != tx(1) || q.From != 0 {
		t.Fatalf("query %+v", q)
	}
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	if st := r.status(t); st.Unreconciled != 1 {
		t.Fatalf("status after the heuristic commit: %+v, want 1 unreconciled", st)
	}

	r.reply(tx(1), 0, messages.DecisionAbort)
	waitForLine(t, buf, damageLine(messages.DecisionAbort, messages.DecisionCommit, tx(1)))
	if !strings.Contains(buf.String(), "[ERROR]") {
		t.Fatalf("damage not at ERROR:\n%s", buf.String())
	}
	noMoreQueries(t, r, tx(1))
	for _, e := range r.wal.Seen()[2:] { // after PREPARED, HEURISTIC: COMMITTED only
		if a := e.Msg.(*messages.Append); a.Records[0].Kind != messages.RecCommitted {
			t.Fatalf("a record written for the reconciliation: %+v", a)
		}
	}
	if v := r.readValue(t, "a"); v != 6 {
		t.Fatalf("a = %d, want 6 (the operator's commit stays)", v)
	}
	wantOutcome(t, askOutcome(t, r, tx(1)), messages.DecisionCommit, "committed it (by the operator's heuristic decision)")
	if strings.Contains(buf.String(), "confirmed") {
		t.Fatalf("a disagreement logged as confirmed:\n%s", buf.String())
	}
}

// The operator aborted tx(1) here, and so did its coordinator: confirmed at
// WARN, no damage, no more asking.
func TestReconcileForcedAbortConfirmed(t *testing.T) {
	r, buf := newReconcileRig(t, nil)
	r.prepared(t, tx(1), messages.Add("a", 5))
	if fr := forceLogged(t, r, tx(1), false); !fr.Applied {
		t.Fatalf("force: %+v", fr)
	}
	expectQueries(t, r.coord, tx(1))
	r.reply(tx(1), 0, messages.DecisionAbort)
	waitForLine(t, buf, confirmedLine(messages.DecisionAbort, tx(1)))
	if !strings.Contains(buf.String(), "[WARN]") || strings.Contains(buf.String(), "HEURISTIC DAMAGE") {
		t.Fatalf("want the confirmation at WARN and no damage:\n%s", buf.String())
	}
	noMoreQueries(t, r, tx(1))
	// A late duplicate answer says nothing again.
	r.reply(tx(1), 0, messages.DecisionAbort)
	r.status(t)
	if n := strings.Count(buf.String(), "confirmed"); n != 1 {
		t.Fatalf("%d confirmations, want 1:\n%s", n, buf.String())
	}
	if v := r.readValue(t, "a"); v != 1 {
		t.Fatalf("a = %d, want 1", v)
	}
}

// A coordinator that cannot tell (unknown) is asked again, with pauses
// that grow; its later commit confirms the operator's commit.
func TestReconcileUnknownAskedAgain(t *testing.T) {
	r, buf := newReconcileRig(t, nil)
	r.prepared(t, tx(1), messages.Add("a", 5))
	if fr := forceLogged(t, r, tx(1), true); !fr.Applied {
		t.Fatalf("force: %+v", fr)
	}
	expectQueries(t, r.coord, tx(1))
	r.reply(tx(1), 0, messages.DecisionUnknown)
	expectQueries(t, r.coord, tx(1))
	r.reply(tx(1), 0, messages.DecisionUnknown)
	expectQueries(t, r.coord, tx(1))
	if st := r.status(t); st.Unreconciled != 1 {
		t.Fatalf("reconciled by an unknown: %+v", st)
	}
	if strings.Contains(buf.String(), "confirmed") || strings.Contains(buf.String(), "DAMAGE") {
		t.Fatalf("an unknown answer logged a result:\n%s", buf.String())
	}
	r.reply(tx(1), 0, messages.DecisionCommit)
	waitForLine(t, buf, confirmedLine(messages.DecisionCommit, tx(1)))
	noMoreQueries(t, r, tx(1))
}

// A peer's DecisionReply about a heuristically decided transaction changes
// nothing: no damage logged from it, not reconciled, nothing sent or
// written; only the coordinator's answer counts. Peers are never asked.
func TestReconcileIgnoresPeerReplies(t *testing.T) {
	r, buf := newReconcileRig(t, func(c *ParticipantConfig) { c.Members = 2 })
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(1), Ops: []messages.Op{messages.Add("n0/a", 5)}, Participants: []int32{0, 1}}, r.txn.PID)
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Kind != messages.VoteYes {
		t.Fatalf("vote %+v", v)
	}
	if fr := forceLogged(t, r, tx(1), false); !fr.Applied {
		t.Fatalf("force: %+v", fr)
	}
	actortest.Expect[*messages.Append](t, r.wal, wait) // the lazy ABORTED
	expectQueries(t, r.coord, tx(1))
	r.reply(tx(1), 1, messages.DecisionCommit)
	r.reply(tx(1), 1, messages.DecisionAbort)
	expectQueries(t, r.coord, tx(1)) // still asking the coordinator
	if st := r.status(t); st.Unreconciled != 1 {
		t.Fatalf("reconciled by a peer: %+v", st)
	}
	if strings.Contains(buf.String(), "DAMAGE") || strings.Contains(buf.String(), "confirmed") {
		t.Fatalf("a peer's answer logged a result:\n%s", buf.String())
	}
	for _, p := range []*actortest.Probe{r.peer, r.wal, r.txn} {
		actortest.ExpectNone(t, p, 0)
	}
	r.reply(tx(1), 0, messages.DecisionCommit)
	waitForLine(t, buf, damageLine(messages.DecisionCommit, messages.DecisionAbort, tx(1)))
	noMoreQueries(t, r, tx(1))
	if len(r.peer.Seen()) != 0 {
		t.Fatalf("the peer was asked: %+v", r.peer.Seen())
	}
}

// Heuristic decisions recovered from the log (ParticipantConfig.Heuristic)
// are reconciled after start: asked about at once, each answer logged.
func TestReconcileRecoveredHeuristics(t *testing.T) {
	r, buf := newReconcileRig(t, func(c *ParticipantConfig) {
		c.Fresh = false
		c.Heuristic = map[messages.TxID]bool{tx(1): true, tx(2): false}
	})
	expectQueries(t, r.coord, tx(1), tx(2))
	if st := r.status(t); st.Unreconciled != 2 {
		t.Fatalf("status after start: %+v, want 2 unreconciled", st)
	}
	r.reply(tx(1), 0, messages.DecisionAbort)
	r.reply(tx(2), 0, messages.DecisionAbort)
	waitForLine(t, buf, damageLine(messages.DecisionAbort, messages.DecisionCommit, tx(1)))
	waitForLine(t, buf, confirmedLine(messages.DecisionAbort, tx(2)))
	noMoreQueries(t, r, tx(1))
	noMoreQueries(t, r, tx(2))
	if len(r.wal.Seen()) != 0 || len(r.peer.Seen()) != 0 || len(r.txn.Seen()) != 0 {
		t.Fatalf("something written or sent: wal %v peer %v txn %v", r.wal.Seen(), r.peer.Seen(), r.txn.Seen())
	}
}

// A Commit of a transaction the operator aborted is damage reported on the
// Commit path (an Ack marked Heuristic): that reconciles it too.
func TestReconcileByCommitPath(t *testing.T) {
	r, buf := newReconcileRig(t, nil)
	r.prepared(t, tx(1), messages.Add("a", 5))
	if fr := forceLogged(t, r, tx(1), false); !fr.Applied {
		t.Fatalf("force: %+v", fr)
	}
	expectQueries(t, r.coord, tx(1))
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: tx(1)}, r.txn.PID)
	if ack, _ := actortest.Expect[*messages.Ack](t, r.txn, wait); !ack.Heuristic {
		t.Fatalf("ack %+v", ack)
	}
	waitForLine(t, buf, damageLine(messages.DecisionCommit, messages.DecisionAbort, tx(1)))
	noMoreQueries(t, r, tx(1))
	// The coordinator's answer to the query sent earlier: nothing new.
	r.reply(tx(1), 0, messages.DecisionCommit)
	r.status(t)
	if n := strings.Count(buf.String(), "HEURISTIC DAMAGE"); n != 1 {
		t.Fatalf("%d damage lines, want 1:\n%s", n, buf.String())
	}
}

// After a restart, a recovered heuristic commit whose coordinator answers
// with a presumed abort cannot be judged: before the restart the
// coordinator may have committed, been acked by everyone, and forgotten.
// That is said at WARN, never as damage. Without the restart the same
// answer is damage (TestReconcileForcedCommitCoordinatorAborted).
func TestReconcileRecoveredCommitAgainstPresumedAbortIsNoAlarm(t *testing.T) {
	r, buf := newReconcileRig(t, func(c *ParticipantConfig) {
		c.Fresh = false
		c.Heuristic = map[messages.TxID]bool{tx(1): true}
	})
	expectQueries(t, r.coord, tx(1))
	r.sys.Root.Send(r.pid, &messages.DecisionReply{Tx: tx(1), From: 0, Decision: messages.DecisionAbort, Presumed: true})
	waitForLine(t, buf, "heuristic commit of "+tx(1).String()+" cannot be confirmed")
	noMoreQueries(t, r, tx(1))
	if strings.Contains(buf.String(), "HEURISTIC DAMAGE") {
		t.Fatalf("a false alarm:\n%s", buf.String())
	}
}
