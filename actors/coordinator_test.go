package actors

import (
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"twopc/actors/actortest"
	"twopc/messages"
)

// coordinatorRig is a coordinator of node 0 in a two-node cluster whose
// participants and persistence actor are probes.
type coordinatorRig struct {
	sys   *actor.ActorSystem
	pid   *actor.PID
	parts map[int32]*actortest.Probe
	wal   *actortest.Probe
}

func newCoordinatorRig(t *testing.T, pending ...PendingCommit) *coordinatorRig {
	sys := actortest.NewSystem(t)
	r := &coordinatorRig{sys: sys, wal: actortest.NewProbe(t, sys, "wal"), parts: map[int32]*actortest.Probe{}}
	dir := &actortest.Directory{Participants: map[int32]*actor.PID{}, Coordinators: map[int32]*actor.PID{}}
	for _, n := range []int32{0, 1} {
		r.parts[n] = actortest.NewProbe(t, sys, "participant-"+string(rune('0'+n)))
		dir.Participants[n] = r.parts[n].PID
	}
	pid, err := sys.Root.SpawnNamed(NewCoordinatorProps(CoordinatorConfig{
		Node: 0, Members: 2, Incarnation: 3, Persistence: r.wal.PID, Directory: dir,
		Timing: Timing{VoteTimeout: time.Hour, ResendInterval: time.Hour}, Pending: pending,
	}), CoordinatorName)
	if err != nil {
		t.Fatal(err)
	}
	r.pid = pid
	dir.Coordinators[0] = pid
	t.Cleanup(func() { _ = sys.Root.StopFuture(pid).Wait() })
	return r
}

func (r *coordinatorRig) begin(ops ...messages.Op) *actor.Future {
	return r.sys.Root.RequestFuture(r.pid, &messages.Begin{Ops: ops}, 10*time.Second)
}

// A txn actor that crashes before its commit decision is durable: the log
// says no decision, so everyone is told to abort and the client hears why.
func TestCoordinatorAnswersClientWhenTxnCrashesUndecided(t *testing.T) {
	r := newCoordinatorRig(t)
	f := r.begin(messages.Set("n0/a", 1), messages.Set("n1/b", 2))
	prep, txnPID := actortest.Expect[*messages.Prepare](t, r.parts[0], wait)
	actortest.Expect[*messages.Prepare](t, r.parts[1], wait)

	r.sys.Root.Send(txnPID, &injectPanic{reason: "boom"})
	lk, from := actortest.Expect[*messages.DecisionLookup](t, r.wal, wait)
	if lk.Tx != prep.Tx {
		t.Fatalf("lookup for %v, want %v", lk.Tx, prep.Tx)
	}
	r.sys.Root.Send(from, &messages.DecisionLookupReply{Tx: lk.Tx})
	for _, n := range []int32{0, 1} {
		if ab, _ := actortest.Expect[*messages.Abort](t, r.parts[n], wait); ab.Tx != prep.Tx {
			t.Fatalf("participant %d: %+v", n, ab)
		}
	}
	res, err := f.Result()
	if err != nil {
		t.Fatal(err)
	}
	if o := res.(*messages.Outcome); o.Committed || !strings.Contains(o.Reason, "txn actor crashed: boom") {
		t.Fatalf("client got %v", o)
	}
}

// A txn actor that crashes after its COMMIT record: the commit is driven
// again by a new txn actor and the client is told it committed.
func TestCoordinatorRedrivesCommitWhenTxnCrashesAfterDecision(t *testing.T) {
	r := newCoordinatorRig(t)
	f := r.begin(messages.Set("n0/a", 1), messages.Set("n1/b", 2))
	prep, txnPID := actortest.Expect[*messages.Prepare](t, r.parts[0], wait)
	actortest.Expect[*messages.Prepare](t, r.parts[1], wait)
	for _, n := range []int32{0, 1} {
		r.sys.Root.Send(txnPID, &messages.Vote{Tx: prep.Tx, From: n, Kind: messages.VoteYes})
	}
	app, _ := actortest.Expect[*messages.Append](t, r.wal, wait)
	if app.Records[0].Kind != messages.RecCommitDecision {
		t.Fatalf("want COMMIT, got %+v", app)
	}
	// Crash before the append is answered: only the log knows.
	r.sys.Root.Send(txnPID, &injectPanic{reason: "boom"})
	lk, from := actortest.Expect[*messages.DecisionLookup](t, r.wal, wait)
	r.sys.Root.Send(from, &messages.DecisionLookupReply{Tx: lk.Tx, CommitPending: true, Participants: []int32{0, 1}})
	for _, n := range []int32{0, 1} {
		if c, _ := actortest.Expect[*messages.Commit](t, r.parts[n], wait); c.Tx != prep.Tx {
			t.Fatalf("participant %d: %+v", n, c)
		}
	}
	res, err := f.Result()
	if err != nil {
		t.Fatal(err)
	}
	if o := res.(*messages.Outcome); !o.Committed {
		t.Fatalf("client got %v", o)
	}
	for n, p := range r.parts {
		for _, e := range p.Seen() {
			if _, isAbort := e.Msg.(*messages.Abort); isAbort {
				t.Fatalf("participant %d told to abort a committed transaction", n)
			}
		}
	}
}

// Presumed abort, answered from the log: the coordinator has no txn actor
// for the transaction, so it asks its log, and answers what the log says.
func TestCoordinatorAnswersDecisionQueryFromTheLog(t *testing.T) {
	r := newCoordinatorRig(t)
	for _, tc := range []struct {
		pending bool
		want    messages.Decision
	}{{false, messages.DecisionAbort}, {true, messages.DecisionCommit}} {
		id := messages.TxID{Node: 0, Incarnation: 2, Seq: 9} // from an earlier incarnation
		r.sys.Root.Send(r.pid, &messages.DecisionQuery{Tx: id, From: 1})
		lk, from := actortest.Expect[*messages.DecisionLookup](t, r.wal, wait)
		if lk.Tx != id {
			t.Fatalf("lookup %v", lk.Tx)
		}
		r.sys.Root.Send(from, &messages.DecisionLookupReply{Tx: id, CommitPending: tc.pending, Participants: []int32{1}})
		rep, _ := actortest.Expect[*messages.DecisionReply](t, r.parts[1], wait)
		if rep.Tx != id || rep.Decision != tc.want {
			t.Fatalf("pending=%v: reply %+v, want %v", tc.pending, rep, tc.want)
		}
		if tc.pending {
			// A commit still pending in the log is driven again, too.
			if c, _ := actortest.Expect[*messages.Commit](t, r.parts[1], wait); c.Tx != id {
				t.Fatalf("commit %+v", c)
			}
		}
	}
}

// Recovered commit decisions are re-driven at start.
func TestCoordinatorRedrivesRecoveredCommits(t *testing.T) {
	id := messages.TxID{Node: 0, Incarnation: 2, Seq: 4}
	r := newCoordinatorRig(t, PendingCommit{Tx: id, Participants: []int32{0, 1}})
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

// Ids are node.incarnation.seq and never repeat; bad input is refused
// with the reason before any participant hears of it.
func TestCoordinatorNamesAndRefuses(t *testing.T) {
	r := newCoordinatorRig(t)
	res, err := r.begin().Result()
	if err != nil {
		t.Fatal(err)
	}
	o := res.(*messages.Outcome)
	if o.Committed || o.Tx != (messages.TxID{Node: 0, Incarnation: 3, Seq: 1}) || !strings.Contains(o.Reason, "no operations") {
		t.Fatalf("empty transaction: %v", o)
	}
	r.begin(messages.Set("n0/a", 1))
	prep, _ := actortest.Expect[*messages.Prepare](t, r.parts[0], wait)
	if prep.Tx.Seq != 2 || prep.Tx.Incarnation != 3 {
		t.Fatalf("second transaction got id %v", prep.Tx)
	}
	actortest.ExpectNone(t, r.parts[1], 50*time.Millisecond) // only the owner is asked
}
