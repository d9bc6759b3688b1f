package actors

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

// Commit decisions recovered from the log are driven again at start, and
// ended once every participant acks.
func TestCoordinatorRedrivesRecoveredCommits(t *testing.T) {
	id := messages.TxID{Node: 0, Incarnation: 1, Seq: 4}
	r := newCoordRig(t, Timing{VoteTimeout: time.Hour, ResendInterval: time.Hour}, []PendingCommit{{Tx: id, Participants: []int32{0, 1}}}, nil)
	for _, n := range []int32{0, 1} {
		c, sender := actortest.Expect[*messages.Commit](t, r.parts[n], wait)
		if c.Tx != id {
			t.Fatalf("commit %+v", c)
		}
		r.sys.Root.Send(sender, &messages.Ack{Tx: id, From: n})
	}
	end, _ := actortest.Expect[*messages.Append](t, r.wal, wait)
	if end.Records[0].Kind != messages.RecEnd || end.Records[0].Tx != id {
		t.Fatalf("want END of %v, got %+v", id, end)
	}
}

// Ids are node.incarnation.seq and never repeat; bad input is refused with
// the reason before any participant hears of it; only owners are asked.
func TestCoordinatorNamesAndRefuses(t *testing.T) {
	r := newCoordRig(t, Timing{VoteTimeout: time.Hour}, nil, nil)
	res, err := r.sys.Root.RequestFuture(r.pid, &messages.Begin{}, wait).Result()
	if err != nil {
		t.Fatal(err)
	}
	o := res.(*messages.Outcome)
	if o.Committed || o.Tx != (messages.TxID{Node: 0, Incarnation: coordIncarnation, Seq: 1}) || !strings.Contains(o.Reason, "no operations") {
		t.Fatalf("empty transaction: %v", o)
	}
	r.sys.Root.Send(r.pid, &messages.Begin{Ops: []messages.Op{messages.Set("n0/a", 1)}})
	prep, _ := actortest.Expect[*messages.Prepare](t, r.parts[0], wait)
	if prep.Tx.Seq != 2 || prep.Tx.Incarnation != coordIncarnation {
		t.Fatalf("second transaction got id %v", prep.Tx)
	}
	actortest.ExpectNone(t, r.parts[1], 50*time.Millisecond)
}

// A txn actor crashes after asking for its COMMIT record. Before the
// coordinator's own lookup (onChildCrashed) returns, a participant's
// DecisionQuery finds no running actor, reads the same durable COMMIT and
// spawns a successor. Once found: the client was parked on the crashed
// actor's record and never heard. Fixed: the successor inherits the waiting
// client, and the crash lookup answers it from the log.
func TestCoordinatorCrashedTxnClientAnsweredWhenQueryRedriveWinsTheRace(t *testing.T) {
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

// The common crash: the txn actor crashes after the client was told
// "committed"; the client is not answered again, and the successor ends
// the transaction.
func TestCoordinatorTxnCrashAfterAnswerNotAnsweredTwice(t *testing.T) {
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

// A coordinator asked about a transaction whose txn actor is collecting
// votes aborts it first and answers abort; a yes vote arriving after that is
// ignored (the txn actor has stopped), and a second query, now settled by
// the log, is answered abort too — never commit.
func TestCoordinatorQueryDuringCollectingAbortsAndStaysAborted(t *testing.T) {
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

// A DecisionQuery about a transaction of an earlier incarnation with no
// running txn actor is settled by the log: nothing pending → abort
// (presumed abort).
func TestCoordinatorQueryForUnknownTxIsAbortFromTheLog(t *testing.T) {
	r := newCoordRig(t, Timing{VoteTimeout: time.Hour}, nil, nil)
	old := messages.TxID{Node: 0, Incarnation: 1, Seq: 5}
	r.sys.Root.Send(r.pid, &messages.DecisionQuery{Tx: old, From: 1})
	r.answerLookup(t, old, false, nil)
	rep, _ := actortest.Expect[*messages.DecisionReply](t, r.parts[1], wait)
	if rep.Tx != old || rep.Decision != messages.DecisionAbort || rep.From != 0 {
		t.Fatalf("reply %+v, want abort for %v from 0", rep, old)
	}
	actortest.ExpectNone(t, r.parts[0], 50*time.Millisecond) // nothing re-driven
}

// The same query when the log still holds a commit decision without END:
// the answer is commit and the commit is re-driven to every yes-voter.
func TestCoordinatorQueryForPendingCommitAnswersCommitAndRedrives(t *testing.T) {
	r := newCoordRig(t, Timing{VoteTimeout: time.Hour, ResendInterval: time.Hour}, nil, nil)
	old := messages.TxID{Node: 0, Incarnation: 1, Seq: 5}
	r.sys.Root.Send(r.pid, &messages.DecisionQuery{Tx: old, From: 1})
	r.answerLookup(t, old, true, []int32{0, 1})

	if c, _ := actortest.Expect[*messages.Commit](t, r.parts[0], wait); c.Tx != old {
		t.Fatalf("commit %+v", c)
	}
	// Node 1 gets both the answer and a Commit, in either order.
	var gotReply, gotCommit bool
	for i := 0; i < 2; i++ {
		e, err := r.parts[1].Next(wait)
		if err != nil {
			t.Fatal(err)
		}
		switch m := e.Msg.(type) {
		case *messages.DecisionReply:
			if m.Decision != messages.DecisionCommit {
				t.Fatalf("answered %v for a pending commit", m.Decision)
			}
			gotReply = true
		case *messages.Commit:
			gotCommit = true
		default:
			t.Fatalf("participant 1 got %T", e.Msg)
		}
	}
	if !gotReply || !gotCommit {
		t.Fatalf("reply %v commit %v", gotReply, gotCommit)
	}
	// A second query while the re-drive runs is answered by it (commit),
	// without another lookup.
	r.sys.Root.Send(r.pid, &messages.DecisionQuery{Tx: old, From: 1})
	if rep, _ := actortest.Expect[*messages.DecisionReply](t, r.parts[1], wait); rep.Decision != messages.DecisionCommit {
		t.Fatalf("second answer %+v", rep)
	}
	actortest.ExpectNone(t, r.wal, 50*time.Millisecond)
}

// A query about a transaction id this incarnation has not handed out yet is
// ignored: no lookup, no answer (answering abort would be a promise about a
// transaction that may begin later).
func TestCoordinatorIgnoresQueryForTxNotYetBegun(t *testing.T) {
	r := newCoordRig(t, Timing{VoteTimeout: time.Hour}, nil, nil)
	future := messages.TxID{Node: 0, Incarnation: coordIncarnation, Seq: 99}
	r.sys.Root.Send(r.pid, &messages.DecisionQuery{Tx: future, From: 1})
	actortest.ExpectNone(t, r.wal, 100*time.Millisecond)
	actortest.ExpectNone(t, r.parts[1], 10*time.Millisecond)

	// Nor is one of an incarnation this node's log never recorded: its
	// decision is in some other log, so "abort" would be a guess.
	later := messages.TxID{Node: 0, Incarnation: coordIncarnation + 1, Seq: 1}
	r.sys.Root.Send(r.pid, &messages.DecisionQuery{Tx: later, From: 1})
	actortest.ExpectNone(t, r.wal, 100*time.Millisecond)
	actortest.ExpectNone(t, r.parts[1], 10*time.Millisecond)
}

// A txn actor that crashes before any decision: the coordinator asks the
// log, finds no commit, tells every participant to abort and answers the
// client.
func TestCoordinatorTxnCrashBeforeDecisionAbortsAndAnswersClient(t *testing.T) {
	r := newCoordRig(t, Timing{VoteTimeout: time.Hour}, nil, nil)
	txnPID := r.begin(t)
	r.sys.Root.Send(txnPID, (*messages.Vote)(nil)) // makes the txn actor panic
	prep := r.parts[0].Seen()[0].Msg.(*messages.Prepare)
	r.answerLookup(t, prep.Tx, false, nil)
	for n, p := range r.parts {
		if ab, _ := actortest.Expect[*messages.Abort](t, p, wait); ab.Tx != prep.Tx {
			t.Fatalf("participant %d: abort %+v", n, ab)
		}
	}
	out, _ := actortest.Expect[*messages.Outcome](t, r.client, wait)
	if out.Committed || out.Tx != prep.Tx || !strings.Contains(out.Reason, "txn actor crashed") {
		t.Fatalf("outcome %+v", out)
	}
	// The coordinator is sound afterwards: a query for the crashed one is
	// settled by the log.
	r.sys.Root.Send(r.pid, &messages.DecisionQuery{Tx: prep.Tx, From: 1})
	r.answerLookup(t, prep.Tx, false, nil)
	if rep, _ := actortest.Expect[*messages.DecisionReply](t, r.parts[1], wait); rep.Decision != messages.DecisionAbort {
		t.Fatalf("reply %+v", rep)
	}
}

// A txn actor that crashes after its COMMIT record is durable: the commit is
// re-driven by a new txn actor and the client hears "committed" once every
// participant acked.
func TestCoordinatorTxnCrashAfterCommitDecisionRedrivesAndAnswersClient(t *testing.T) {
	r := newCoordRig(t, Timing{VoteTimeout: time.Hour, ResendInterval: time.Hour}, nil, nil)
	txnPID, id, app, from := r.decidingCommit(t)
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	for _, n := range []int32{0, 1} {
		actortest.Expect[*messages.Commit](t, r.parts[n], wait)
	}
	out, _ := actortest.Expect[*messages.Outcome](t, r.client, wait)
	if !out.Committed || out.Tx != id {
		t.Fatalf("outcome %+v", out)
	}
	r.sys.Root.Send(txnPID, (*messages.Ack)(nil)) // crash while awaiting acks
	r.answerLookup(t, id, true, []int32{0, 1})
	// The successor sends Commit again; the acks reach it via the coordinator.
	for _, n := range []int32{0, 1} {
		c, _ := actortest.Expect[*messages.Commit](t, r.parts[n], wait)
		if c.Tx != id {
			t.Fatalf("commit %+v", c)
		}
		r.sys.Root.Send(r.pid, &messages.Ack{Tx: id, From: n})
	}
	// The successor ends the transaction (END) and the client is not
	// answered a second time.
	for {
		e, err := r.wal.Next(wait)
		if err != nil {
			t.Fatal("no END after every ack")
		}
		if a, ok := e.Msg.(*messages.Append); ok && a.Records[0].Kind == messages.RecEnd && a.Records[0].Tx == id {
			break
		}
	}
	actortest.ExpectNone(t, r.client, 50*time.Millisecond)
	for _, e := range append(r.parts[0].Seen(), r.parts[1].Seen()...) {
		if _, ok := e.Msg.(*messages.Abort); ok {
			t.Fatalf("abort sent for a durable commit")
		}
	}
}

// A commit decision survives a snapshot, the log truncation it allows and a
// restart: the recovered coordinator re-drives it and answers "commit" to a
// participant in doubt; once every participant acked (END), the log says
// abort, which is safe since nobody is in doubt any more.
func TestCoordinatorCommitDecisionSurvivesSnapshotAndRestart(t *testing.T) {
	dir := t.TempDir()
	id := messages.TxID{Node: 0, Incarnation: 1, Seq: 3}

	l, err := persistence.Open(persistence.Options{Dir: dir, SnapshotEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	sys := actortest.NewSystem(t)
	wal := sys.Root.Spawn(persistence.Props(l))
	for _, a := range []*messages.Append{
		{ID: 1, Force: true, Records: []messages.Record{{Kind: messages.RecBoot, Incarnation: 1}}},
		{ID: 2, Force: true, Records: []messages.Record{{Kind: messages.RecCommitDecision, Tx: id, Participants: []int32{1}}}},
	} {
		res, err := sys.Root.RequestFuture(wal, a, wait).Result()
		if err != nil || res.(*messages.Appended).Err != nil {
			t.Fatalf("append: %v %+v", err, res)
		}
	}
	res, err := sys.Root.RequestFuture(wal, &messages.TakeSnapshot{}, wait).Result()
	if err != nil || res.(*messages.SnapshotTaken).Err != nil {
		t.Fatalf("snapshot: %v %+v", err, res)
	}
	_ = sys.Root.PoisonFuture(wal).Wait()

	l, err = persistence.Open(persistence.Options{Dir: dir, SnapshotEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	st := l.State()
	parts, ok := st.Pending[id]
	if !ok || len(parts) != 1 || parts[0] != 1 {
		t.Fatalf("commit decision lost across snapshot and restart: pending %v", st.Pending)
	}
	var pending []PendingCommit
	for tx, p := range st.Pending {
		pending = append(pending, PendingCommit{Tx: tx, Participants: p})
	}
	sys2 := actortest.NewSystem(t)
	wal2 := sys2.Root.Spawn(persistence.Props(l))
	t.Cleanup(func() { _ = sys2.Root.PoisonFuture(wal2).Wait() })
	r := newCoordRigOn(t, sys2, Timing{VoteTimeout: time.Hour, ResendInterval: time.Hour}, pending, wal2)

	if c, _ := actortest.Expect[*messages.Commit](t, r.parts[1], wait); c.Tx != id {
		t.Fatalf("re-driven commit %+v", c)
	}
	r.sys.Root.Send(r.pid, &messages.DecisionQuery{Tx: id, From: 1})
	if rep, _ := actortest.Expect[*messages.DecisionReply](t, r.parts[1], wait); rep.Decision != messages.DecisionCommit {
		t.Fatalf("in-doubt participant told %v for a durable commit", rep.Decision)
	}
	actortest.ExpectNone(t, r.parts[0], 20*time.Millisecond) // node 0 did not vote yes
	r.sys.Root.Send(r.pid, &messages.Ack{Tx: id, From: 1})
	// END is lazy and the txn actor's Terminated may lag: ask until the log
	// answers; it must say abort (presumed), and only after END.
	deadline := time.Now().Add(5 * time.Second)
	for {
		r.sys.Root.Send(r.pid, &messages.DecisionQuery{Tx: id, From: 1})
		e, err := r.parts[1].Next(200 * time.Millisecond)
		if err == nil {
			if rep, ok := e.Msg.(*messages.DecisionReply); ok && rep.Decision == messages.DecisionAbort {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no abort answer after END")
		}
	}
}

// After a failed write or fsync nobody knows whether the COMMIT record is on
// disk (txn.go's logging state says so and leaves it to the restart). The
// persistence actor must then not answer a DecisionLookup from its in-memory
// fold, which lacks the record: the coordinator would answer "abort" to a
// participant in doubt, and a restart that finds the COMMIT on disk would
// re-drive commit to the others. Shown here with the simulated crash, the only
// failure the log can be driven into from outside the package.
func TestCoordinatorDecisionLookupRefusedOnFailedLog(t *testing.T) {
	l, err := persistence.Open(persistence.Options{Dir: t.TempDir(), SnapshotEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	sys := actortest.NewSystem(t)
	wal := sys.Root.Spawn(persistence.Props(l))
	t.Cleanup(func() { _ = sys.Root.PoisonFuture(wal).Wait() })
	if _, err := sys.Root.RequestFuture(wal, &persistence.SimulateCrash{}, wait).Result(); err != nil {
		t.Fatal(err)
	}
	res, err := sys.Root.RequestFuture(wal, &messages.DecisionLookup{Tx: tx(1)}, 200*time.Millisecond).Result()
	if err == nil {
		if r, ok := res.(*messages.DecisionLookupReply); ok && r.Err == nil && !r.CommitPending {
			t.Fatalf("failed log answered a definite 'no commit' for %v", tx(1))
		}
	}
}
