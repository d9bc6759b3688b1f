package actors

// Heuristic decisions are durable and never forgotten: a Commit for a
// transaction the operator made this node abort is answered, however late
// and after whatever restart, with an Ack marked Heuristic (never a plain
// one), and the damage is logged; the txn actor that gets such an ack ends
// the transaction and reports the damage.

import (
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"twopc/actors/actortest"
	"twopc/messages"
)

// The operator aborted tx(1) here; the coordinator had decided commit, and
// its Commit comes only after this participant has forgotten its ordinary
// outcomes. It is answered with an Ack marked Heuristic (before, the
// participant took it for a duplicate of a commit it had forgotten and sent
// a plain ack), the damage is logged, the value stays as the operator left
// it, and the outcome answers still say what this node did.
func TestHeuristicAbortAnswersLateCommitWithDamage(t *testing.T) {
	log, buf := errorLogger()
	r := buildParticipantRigWith(t, func(c *ParticipantConfig) {
		c.Timing, c.KV, c.Logger = shortMemory, map[string]int64{"a": 1}, log
	})
	r.prepared(t, tx(1), messages.Add("a", 5))
	if fr := forceLogged(t, r, tx(1), false); !fr.Applied {
		t.Fatalf("force: %+v", fr)
	}
	if app, _ := actortest.Expect[*messages.Append](t, r.wal, wait); app.Records[0].Kind != messages.RecAborted {
		t.Fatalf("want the lazy ABORTED, got %+v", app)
	}
	actortest.Eventually(t, wait, func() string {
		if st := r.status(t); st.Remembered != 0 {
			return "the participant still remembers its outcomes"
		}
		return ""
	})

	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: tx(1)}, r.txn.PID)
	expectHeuristicAck(t, r.txn, tx(1))
	if !strings.Contains(buf.String(), damageLine(messages.DecisionCommit, messages.DecisionAbort, tx(1))) {
		t.Fatalf("no HEURISTIC DAMAGE line at ERROR in:\n%s", buf.String())
	}
	// A Commit without a sender: the ack goes to the coordinator (which
	// was asked about the heuristic decision when it was taken).
	expectQueries(t, r.coord, tx(1))
	r.sys.Root.Send(r.pid, &messages.Commit{Tx: tx(1)})
	expectHeuristicAck(t, r.coord, tx(1))
	actortest.ExpectNone(t, r.wal, 30*time.Millisecond) // nothing committed
	if v := r.readValue(t, "a"); v != 1 {
		t.Fatalf("a = %d after the operator's abort and the coordinator's Commit, want 1", v)
	}

	wantOutcome(t, askOutcome(t, r, tx(1)), messages.DecisionAbort, "aborted it (by the operator's heuristic decision)")
	// A peer in doubt is not told the operator's guess: it would then
	// refuse the coordinator's Commit too.
	if d := r.askPeerQuery(t, tx(1)); d != messages.DecisionUnknown {
		t.Fatalf("a peer asking about %v learns %v, want unknown (a heuristic decision must not spread)", tx(1), d)
	}
	if fr := forceDecision(t, r, tx(1), true); fr.Applied || !strings.Contains(fr.Err, "aborted by the operator's heuristic decision") {
		t.Fatalf("force again: %+v", fr)
	}
	// A late Abort agrees: nothing to say, no damage.
	before := strings.Count(buf.String(), "HEURISTIC DAMAGE")
	r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(1)})
	actortest.ExpectNone(t, r.coord, 30*time.Millisecond)
	if strings.Count(buf.String(), "HEURISTIC DAMAGE") != before {
		t.Fatalf("an agreeing Abort logged damage:\n%s", buf.String())
	}
}

// A participant started with heuristic decisions recovered from its log
// (ParticipantConfig.Heuristic) holds to them: a Commit of one it aborted
// gets an Ack marked Heuristic, a Commit of one it committed a plain ack, an
// Abort of one it committed is logged as damage and not acked.
func TestHeuristicRecoveredDecisionsAnswerCommits(t *testing.T) {
	log, buf := errorLogger()
	r := buildParticipantRigWith(t, func(c *ParticipantConfig) {
		c.Timing, c.Logger = shortMemory, log
		c.Fresh = false
		c.Heuristic = map[messages.TxID]bool{tx(1): false, tx(2): true}
	})
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: tx(1)}, r.txn.PID)
	expectHeuristicAck(t, r.txn, tx(1))
	if !strings.Contains(buf.String(), damageLine(messages.DecisionCommit, messages.DecisionAbort, tx(1))) {
		t.Fatalf("no HEURISTIC DAMAGE line for %v in:\n%s", tx(1), buf.String())
	}

	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: tx(2)}, r.txn.PID)
	if ack, _ := actortest.Expect[*messages.Ack](t, r.txn, wait); ack.Tx != tx(2) || ack.Heuristic {
		t.Fatalf("Commit of a transaction heuristically committed here: %+v, want a plain ack", ack)
	}
	if strings.Contains(buf.String(), tx(2).String()) {
		t.Fatalf("an agreeing Commit logged an error:\n%s", buf.String())
	}
	r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(2)})
	actortest.Eventually(t, wait, func() string {
		if !strings.Contains(buf.String(), damageLine(messages.DecisionAbort, messages.DecisionCommit, tx(2))) {
			return "no HEURISTIC DAMAGE line for the Abort of " + tx(2).String()
		}
		return ""
	})
	expectQueries(t, r.coord, tx(1), tx(2)) // reconciling both, asked at start
	for _, p := range []*actortest.Probe{r.txn, r.coord, r.wal} {
		actortest.ExpectNone(t, p, 30*time.Millisecond)
	}
	wantOutcome(t, askOutcome(t, r, tx(1)), messages.DecisionAbort, "aborted it (by the operator's heuristic decision)")
	wantOutcome(t, askOutcome(t, r, tx(2)), messages.DecisionCommit, "committed it (by the operator's heuristic decision)")
	if d := r.askPeerQuery(t, tx(2)); d != messages.DecisionUnknown {
		t.Fatalf("a peer asking about %v learns %v, want unknown (a heuristic decision must not spread)", tx(2), d)
	}
}

// A crash between the HEURISTIC record and the decision's own record (the
// lazy ABORTED lost, or COMMITTED not yet written) leaves the transaction in
// doubt in the log: the restarted participant applies the operator's
// decision at once instead of asking the coordinator about it.
func TestHeuristicRecoveredInDoubtIsFinished(t *testing.T) {
	recs := []messages.Record{
		{Kind: messages.RecPrepared, Tx: tx(1), Participants: []int32{0}, Ops: []messages.Op{messages.Set("a", 5)}},
		{Kind: messages.RecPrepared, Tx: tx(2), Participants: []int32{0}, Ops: []messages.Op{messages.Set("b", 7)}},
	}
	r := buildParticipantRigWith(t, func(c *ParticipantConfig) {
		c.Timing, c.InDoubt, c.Fresh = Timing{InDoubtAfter: time.Hour}, recs, false
		c.Heuristic = map[messages.TxID]bool{tx(1): false, tx(2): true}
	})
	got := map[messages.RecordKind]*messages.Append{}
	var commitFrom *actor.PID
	for range 2 {
		app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
		got[app.Records[0].Kind] = app
		if app.Records[0].Kind == messages.RecCommitted {
			commitFrom = from
		}
	}
	ab, co := got[messages.RecAborted], got[messages.RecCommitted]
	if ab == nil || ab.Records[0].Tx != tx(1) || ab.Force || co == nil || co.Records[0].Tx != tx(2) || !co.Force {
		t.Fatalf("want a lazy ABORTED of %v and a forced COMMITTED of %v, got %+v", tx(1), tx(2), got)
	}
	// Asked about (only) to reconcile the heuristic decisions, and before
	// the forced commit's ack.
	expectQueries(t, r.coord, tx(1), tx(2))
	r.sys.Root.Send(commitFrom, &messages.Appended{ID: co.ID})
	if ack, _ := actortest.Expect[*messages.Ack](t, r.coord, wait); ack.Tx != tx(2) || ack.Heuristic {
		t.Fatalf("ack of the finished heuristic commit: %+v", ack)
	}
	actortest.ExpectNone(t, r.coord, 30*time.Millisecond) // no in-doubt DecisionQuery about either
	actortest.ExpectNone(t, r.peer, 0)
	if st := r.status(t); len(st.InDoubt) != 0 || st.LocksHeld != 0 {
		t.Fatalf("still in doubt after the restart: %+v", st)
	}
	if a, b := r.readValue(t, "a"), r.readValue(t, "b"); a != 0 || b != 7 {
		t.Fatalf("a=%d b=%d, want 0 and 7", a, b)
	}
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: tx(1)}, r.txn.PID)
	expectHeuristicAck(t, r.txn, tx(1))
}

// A Commit that arrives while the HEURISTIC record of a forced abort is
// being logged waits for it, and is then answered as damage; the
// ForceDecision's answer comes only once the record is durable.
func TestHeuristicCommitDuringForcedAbortWaits(t *testing.T) {
	r := newParticipantRig(t, map[string]int64{"a": 1}, nil)
	r.prepared(t, tx(1), messages.Add("a", 5))
	f := r.sys.Root.RequestFuture(r.pid, &ForceDecision{Tx: tx(1), Commit: false}, wait)
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	if app.Records[0].Kind != messages.RecHeuristic || !app.Force {
		t.Fatalf("want the forced HEURISTIC, got %+v", app)
	}
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: tx(1)}, r.txn.PID)
	actortest.ExpectNone(t, r.txn, 50*time.Millisecond)
	actortest.ExpectNone(t, r.wal, 0) // no COMMITTED
	if fr := forceDecision(t, r, tx(1), true); fr.Applied || !strings.Contains(fr.Err, "being decided by the operator") {
		t.Fatalf("a second ForceDecision while the first is logged: %+v", fr)
	}
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	res, err := f.Result()
	if err != nil || !res.(*ForceDecisionResult).Applied {
		t.Fatalf("force: %v %v", res, err)
	}
	expectHeuristicAck(t, r.txn, tx(1))
	if v := r.readValue(t, "a"); v != 1 {
		t.Fatalf("a = %d, want 1", v)
	}
}

// A HEURISTIC record that cannot be written is no decision: the answer says
// so and the transaction stays in doubt.
func TestHeuristicNotLoggedIsNotApplied(t *testing.T) {
	r := newParticipantRig(t, nil, nil)
	r.prepared(t, tx(1), messages.Set("a", 5))
	f := r.sys.Root.RequestFuture(r.pid, &ForceDecision{Tx: tx(1), Commit: true}, wait)
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID, Err: errDisk})
	res, err := f.Result()
	if fr, _ := res.(*ForceDecisionResult); err != nil || fr == nil || fr.Applied || !strings.Contains(fr.Err, "disk on fire") {
		t.Fatalf("force with a failed log write: %+v %v", res, err)
	}
	actortest.ExpectNone(t, r.wal, 30*time.Millisecond)
	if st := r.status(t); len(st.InDoubt) != 1 {
		t.Fatalf("not in doubt any more: %+v", st)
	}
	wantOutcome(t, askOutcome(t, r, tx(1)), messages.DecisionUnknown, "in doubt here too")
}

// Over a real log: the heuristic abort is on disk, so a participant that
// failed and rebuilt itself from the log (Reload) still answers the
// coordinator's Commit as damage.
func TestHeuristicSurvivesParticipantReload(t *testing.T) {
	r := newRestartRig(t)
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(1), Ops: []messages.Op{messages.Set("a", 5)}, Participants: []int32{0, 1}}, r.txn.PID)
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Kind != messages.VoteYes {
		t.Fatalf("vote %+v", v)
	}
	res, err := r.sys.Root.RequestFuture(r.pid, &ForceDecision{Tx: tx(1), Commit: false}, wait).Result()
	if err != nil || !res.(*ForceDecisionResult).Applied {
		t.Fatalf("force: %v %v", res, err)
	}
	r.crash()
	actortest.Eventually(t, wait, func() string {
		if st := r.status(t); len(st.InDoubt) != 0 {
			return "in doubt"
		}
		return ""
	})
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: tx(1)}, r.txn.PID)
	expectHeuristicAck(t, r.txn, tx(1))
	if v := r.read(t, "a"); v != 0 {
		t.Fatalf("a = %d, want 0", v)
	}
}

// A txn actor re-sending Commit gets an Ack marked Heuristic from one
// participant: the transaction counts it as acked, ends (END written) and
// logs the damage at ERROR.
func TestTxnHeuristicAckEndsTheTransaction(t *testing.T) {
	log, buf := errorLogger()
	r := newTxnRigLog(t, Timing{VoteTimeout: time.Hour, ResendInterval: 20 * time.Millisecond}, log, 0, 1)
	r.prepared(t)
	r.vote(0, messages.VoteYes, "")
	r.vote(1, messages.VoteYes, "")
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	actortest.Expect[*messages.Commit](t, r.parts[0], wait)
	actortest.Expect[*messages.Commit](t, r.parts[1], wait)
	actortest.Expect[*txnOutcome](t, r.boss, wait)
	r.sys.Root.Send(r.pid, &messages.Ack{Tx: tx(1), From: 0})
	actortest.Expect[*messages.Commit](t, r.parts[1], wait) // re-sent
	r.sys.Root.Send(r.pid, &messages.Ack{Tx: tx(1), From: 1, Heuristic: true})
	end, _ := actortest.Expect[*messages.Append](t, r.wal, wait)
	if end.Records[0].Kind != messages.RecEnd || end.Records[0].Tx != tx(1) {
		t.Fatalf("want END once the heuristic ack counted, got %+v", end)
	}
	want := "heuristic damage reported by node 1 for " + tx(1).String() + ": it applied the operator's decision, not the coordinator's"
	if !strings.Contains(buf.String(), want) || !strings.Contains(buf.String(), "[ERROR]") {
		t.Fatalf("want %q at ERROR, got:\n%s", want, buf.String())
	}
	// It has ended: it no longer exists to re-send anything.
	actortest.Eventually(t, wait, func() string {
		if _, err := r.sys.Root.RequestFuture(r.pid, &messages.Ack{Tx: tx(1), From: 1}, 100*time.Millisecond).Result(); err != actor.ErrDeadLetter {
			return "the txn actor still runs"
		}
		return ""
	})
}

// A heuristic decision the coordinator confirmed stays quiet after later
// restarts: the participant noted in its log that it reported it
// (RECONCILED), so a restarted one neither asks the coordinator again nor
// logs the confirmation again. A damage already reported is not asked
// about again either; the coordinator's Commit, if it comes again, is
// still answered as damage.
func TestHeuristicConfirmedStaysQuietAfterRestart(t *testing.T) {
	r := newLogRig(t)
	r.prepared(t, tx(1), messages.Set("a", 5))
	r.prepared(t, tx(2), messages.Set("b", 6))
	r.force(t, tx(1), false)
	r.force(t, tx(2), false)
	expectQueries(t, r.coord, tx(1), tx(2))
	r.sys.Root.Send(r.pid, &messages.DecisionReply{Tx: tx(1), From: 0, Decision: messages.DecisionAbort, Presumed: true})
	r.sys.Root.Send(r.pid, &messages.DecisionReply{Tx: tx(2), From: 0, Decision: messages.DecisionCommit})
	waitForLine(t, r.buf, confirmedLine(messages.DecisionAbort, tx(1)))
	waitForLine(t, r.buf, damageLine(messages.DecisionCommit, messages.DecisionAbort, tx(2)))
	for range 2 {
		r.restart(t)
		r.quietAbout(t, tx(1))
		r.quietAbout(t, tx(2))
	}
	if n := strings.Count(r.buf.String(), "confirmed"); n != 1 {
		t.Fatalf("%d confirmations over two restarts, want the first only:\n%s", n, r.buf.String())
	}
	if n := strings.Count(r.buf.String(), "HEURISTIC DAMAGE"); n != 1 {
		t.Fatalf("%d damage lines over two restarts, want the first only:\n%s", n, r.buf.String())
	}
	// Still held to: the coordinator's Commit of the one it committed is
	// damage, answered with an Ack marked Heuristic.
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: tx(2)}, r.txn.PID)
	expectHeuristicAck(t, r.txn, tx(2))
	waitForLine(t, r.buf, "HEURISTIC DAMAGE") // a second line now
	if n := strings.Count(r.buf.String(), "HEURISTIC DAMAGE"); n != 2 {
		t.Fatalf("%d damage lines, want a second for the late Commit:\n%s", n, r.buf.String())
	}
}

// A heuristic commit that truly cannot be judged — recovered after a
// restart, its coordinator answering with a presumed abort (it may have
// committed, been acked by this node, and forgotten) — is reported once,
// not at every restart.
func TestHeuristicUnjudgeableReportedOnce(t *testing.T) {
	r := newLogRig(t)
	r.prepared(t, tx(1), messages.Set("a", 5))
	r.force(t, tx(1), true)
	expectQueries(t, r.coord, tx(1)) // asked before the forced commit's ack
	if ack, _ := actortest.Expect[*messages.Ack](t, r.coord, wait); ack.Tx != tx(1) || ack.Heuristic {
		t.Fatalf("ack of the forced commit: %+v", ack)
	}
	// Restarted before the coordinator answered: asked again, as recovered.
	r.restart(t)
	expectQueries(t, r.coord, tx(1))
	r.sys.Root.Send(r.pid, &messages.DecisionReply{Tx: tx(1), From: 0, Decision: messages.DecisionAbort, Presumed: true})
	line := "heuristic commit of " + tx(1).String() + " cannot be confirmed"
	waitForLine(t, r.buf, line)
	for range 2 {
		r.restart(t)
		r.quietAbout(t, tx(1))
	}
	if n := strings.Count(r.buf.String(), line); n != 1 {
		t.Fatalf("reported %d times over two more restarts, want once:\n%s", n, r.buf.String())
	}
	if strings.Contains(r.buf.String(), "HEURISTIC DAMAGE") || strings.Contains(r.buf.String(), "decision confirmed") {
		t.Fatalf("a judgement made of what cannot be judged:\n%s", r.buf.String())
	}
}
