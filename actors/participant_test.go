package actors

import (
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"twopc/actors/actortest"
	"twopc/messages"
)

const wait = 2 * time.Second

// testEpoch is the begin time tests count from: in the future, so that no
// Prepare of a test is stale (begun before its participant started, or
// longer ago than a vote can count); only the order of begin times matters.
var testEpoch = time.Now().Add(time.Hour).UnixNano()

// participantRig is a participant whose collaborators are probes: wal is the
// persistence actor, txn the transaction that prepares it, coord the
// coordinator, peer another participant.
type participantRig struct {
	sys                   *actor.ActorSystem
	pid                   *actor.PID
	wal, txn, coord, peer *actortest.Probe
}

func newParticipantRig(t *testing.T, kv map[string]int64, inDoubt []messages.Record) *participantRig {
	return buildParticipantRig(t, Timing{InDoubtAfter: time.Hour}, kv, inDoubt)
}

func buildParticipantRig(t *testing.T, timing Timing, kv map[string]int64, inDoubt []messages.Record) *participantRig {
	return buildParticipantRigWith(t, func(c *ParticipantConfig) {
		c.Timing, c.KV, c.InDoubt = timing, kv, inDoubt
	})
}

// buildParticipantRigWith is buildParticipantRig with the config (Fresh,
// Node 0 of 1, probes for collaborators) changed by edit.
func buildParticipantRigWith(t *testing.T, edit func(*ParticipantConfig)) *participantRig {
	sys := actortest.NewSystem(t)
	r := &participantRig{
		sys:   sys,
		wal:   actortest.NewProbe(t, sys, "wal"),
		txn:   actortest.NewProbe(t, sys, "txn"),
		coord: actortest.NewProbe(t, sys, "coord"),
		peer:  actortest.NewProbe(t, sys, "peer"),
	}
	dir := &actortest.Directory{
		Coordinators: map[int32]*actor.PID{0: r.coord.PID},
		Participants: map[int32]*actor.PID{1: r.peer.PID},
	}
	cfg := ParticipantConfig{Node: 0, Members: 1, Persistence: r.wal.PID, Directory: dir, Fresh: true}
	edit(&cfg)
	pid, err := sys.Root.SpawnNamed(NewParticipantProps(cfg), "participant")
	if err != nil {
		t.Fatal(err)
	}
	r.pid = pid
	t.Cleanup(func() { _ = sys.Root.StopFuture(pid).Wait() })
	return r
}

func tx(seq uint64) messages.TxID { return messages.TxID{Node: 0, Incarnation: 1, Seq: seq} }

// prepare sends Prepare as the txn probe and returns the Append the
// participant asked the persistence probe for (and who to answer).
func (r *participantRig) prepare(t *testing.T, id messages.TxID, ops ...messages.Op) (*messages.Append, *actor.PID) {
	t.Helper()
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: id, Ops: ops, Participants: []int32{0}}, r.txn.PID)
	return actortest.Expect[*messages.Append](t, r.wal, wait)
}

// prepared takes a transaction through Prepare, a durable PREPARED and a
// yes vote.
func (r *participantRig) prepared(t *testing.T, id messages.TxID, ops ...messages.Op) {
	t.Helper()
	app, from := r.prepare(t, id, ops...)
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Tx != id || v.Kind != messages.VoteYes {
		t.Fatalf("want a yes vote for %v, got %+v", id, v)
	}
}

func TestParticipantVotesYesOnlyAfterPreparedIsDurable(t *testing.T) {
	r := newParticipantRig(t, nil, nil)
	app, from := r.prepare(t, tx(1), messages.Add("a", 5))

	if !app.Force || len(app.Records) != 1 || app.Records[0].Kind != messages.RecPrepared || app.Records[0].Tx != tx(1) {
		t.Fatalf("want one forced PREPARED record for %v, got %+v", tx(1), app)
	}
	// Not yet durable: no vote may have left.
	actortest.ExpectNone(t, r.txn, 100*time.Millisecond)

	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait)
	if v.Kind != messages.VoteYes || v.Tx != tx(1) || v.From != 0 {
		t.Fatalf("want yes vote for %v from 0, got %+v", tx(1), v)
	}
}

func TestParticipantVotesNoWhenPreparedCannotBeLogged(t *testing.T) {
	r := newParticipantRig(t, nil, nil)
	app, from := r.prepare(t, tx(1), messages.Set("a", 5))
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID, Err: errDisk})
	v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait)
	if v.Kind != messages.VoteNo || !strings.Contains(v.Reason, "log write failed") {
		t.Fatalf("want no vote naming the log failure, got %+v", v)
	}
	// The lock was released: the same key can be prepared again.
	app2, _ := r.prepare(t, tx(2), messages.Set("a", 6))
	if app2.Records[0].Tx != tx(2) {
		t.Fatalf("second prepare logged %+v", app2)
	}
}

type diskError struct{}

func (diskError) Error() string { return "disk on fire" }

var errDisk error = diskError{}

func TestParticipantOlderRequesterVotesNoAtOnce(t *testing.T) {
	r := newParticipantRig(t, nil, nil)
	// tx(2) holds a (its PREPARED is being logged), begun at time 200.
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(2), Ops: []messages.Op{messages.Set("a", 1)}, Begun: testEpoch + 200}, r.txn.PID)
	actortest.Expect[*messages.Append](t, r.wal, wait)

	// tx(1), begun earlier, must not wait for a younger holder: no at once.
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(1), Ops: []messages.Op{messages.Add("a", 1)}, Begun: testEpoch + 100}, r.txn.PID)
	v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait)
	if v.Tx != tx(1) || v.Kind != messages.VoteNo || !strings.Contains(v.Reason, "locked by transaction 0.1.2") {
		t.Fatalf("want immediate no for the older requester, got %+v", v)
	}
	actortest.ExpectNone(t, r.wal, 50*time.Millisecond) // nothing logged for the refused one
}

func TestParticipantYoungerRequesterWaitsForOlderHolder(t *testing.T) {
	r := newParticipantRig(t, nil, nil)
	app, from := r.prepare(t, tx(1), messages.Set("a", 1)) // Begun 0: oldest
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	actortest.Expect[*messages.Vote](t, r.txn, wait)

	// tx(2) is younger: it waits, holding nothing, and says nothing yet.
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(2), Ops: []messages.Op{messages.Set("a", 2)}, Begun: testEpoch + 50}, r.txn.PID)
	actortest.ExpectNone(t, r.txn, 100*time.Millisecond)
	if st := r.status(t); st.Waiting != 1 || st.LocksHeld != 1 {
		t.Fatalf("want one waiting prepare and one held key, got %+v", st)
	}
	// The holder aborts: the waiter gets the lock and logs its PREPARED.
	r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(1)})
	actortest.Expect[*messages.Append](t, r.wal, wait) // lazy ABORTED of tx(1)
	app2, from2 := actortest.Expect[*messages.Append](t, r.wal, wait)
	if app2.Records[0].Kind != messages.RecPrepared || app2.Records[0].Tx != tx(2) {
		t.Fatalf("want PREPARED of the waiter, got %+v", app2)
	}
	r.sys.Root.Send(from2, &messages.Appended{ID: app2.ID})
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Tx != tx(2) || v.Kind != messages.VoteYes {
		t.Fatalf("waiter's vote %+v", v)
	}
}

func TestParticipantWaitingPrepareDroppedOnAbort(t *testing.T) {
	r := newParticipantRig(t, nil, nil)
	r.prepared(t, tx(1), messages.Set("a", 1))
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(2), Ops: []messages.Op{messages.Set("a", 2)}, Begun: testEpoch + 50}, r.txn.PID)
	// Its coordinator gives up on tx(2) while it waits.
	r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(2)})
	if st := r.status(t); st.Waiting != 0 {
		t.Fatalf("aborted prepare still waiting: %+v", st)
	}
	r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(1)})
	actortest.Expect[*messages.Append](t, r.wal, wait)   // ABORTED of tx(1)
	actortest.ExpectNone(t, r.wal, 100*time.Millisecond) // tx(2) never prepared
	if st := r.status(t); st.LocksHeld != 0 {
		t.Fatalf("locks left: %+v", st)
	}
}

func TestParticipantFloorRefusesOverdraft(t *testing.T) {
	r := newParticipantRig(t, map[string]int64{"alice": 10}, nil)
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(1), Ops: []messages.Op{messages.AddFloor("alice", -11, 0)}}, r.txn.PID)
	v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait)
	if v.Kind != messages.VoteNo || !strings.Contains(v.Reason, "below its floor 0") {
		t.Fatalf("want no vote for the overdraft, got %+v", v)
	}
}

func TestParticipantCommitLogsThenAppliesThenAcks(t *testing.T) {
	r := newParticipantRig(t, map[string]int64{"a": 1}, nil)
	r.prepared(t, tx(1), messages.Add("a", 5))

	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: tx(1)}, r.txn.PID)
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	if !app.Force || app.Records[0].Kind != messages.RecCommitted {
		t.Fatalf("want forced COMMITTED, got %+v", app)
	}
	// Not durable yet: no ack. A read of the key waits: the client may
	// already have been told "committed", and must read its own write.
	actortest.ExpectNone(t, r.txn, 50*time.Millisecond)
	pending := r.sys.Root.RequestFuture(r.pid, &messages.Read{Keys: []string{"a"}}, wait)
	if res, err := r.sys.Root.RequestFuture(r.pid, &messages.Read{Keys: []string{"other"}}, wait).Result(); err != nil || res.(*messages.ReadReply).Values[0].Value != 0 {
		t.Fatalf("read of an unrelated key: %v %v", res, err) // not held back
	}
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	ack, _ := actortest.Expect[*messages.Ack](t, r.txn, wait)
	if ack.Tx != tx(1) {
		t.Fatalf("ack for %v", ack.Tx)
	}
	res, err := pending.Result()
	if err != nil {
		t.Fatal(err)
	}
	if got := res.(*messages.ReadReply).Values[0].Value; got != 6 {
		t.Fatalf("read held during commit answered %d, want 6", got)
	}
	// A duplicate Commit (the ack was lost) is acked again and changes nothing.
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: tx(1)}, r.txn.PID)
	actortest.Expect[*messages.Ack](t, r.txn, wait)
	actortest.ExpectNone(t, r.wal, 50*time.Millisecond)
	if got := r.read(t, "a"); got != 6 {
		t.Fatalf("duplicate commit applied twice: a = %d", got)
	}
}

func TestParticipantAbortReleasesAndRefusesLatePrepare(t *testing.T) {
	r := newParticipantRig(t, nil, nil)
	r.prepared(t, tx(1), messages.Set("a", 1))

	r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(1)})
	ab, _ := actortest.Expect[*messages.Append](t, r.wal, wait)
	if ab.Force || ab.Records[0].Kind != messages.RecAborted {
		t.Fatalf("want lazy ABORTED, got %+v", ab)
	}
	if got := r.read(t, "a"); got != 0 {
		t.Fatalf("aborted set applied: a = %d", got)
	}
	// A duplicated Prepare arriving after the Abort must not lock again.
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(1), Ops: []messages.Op{messages.Set("a", 1)}}, r.txn.PID)
	v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait)
	if v.Kind != messages.VoteNo {
		t.Fatalf("late prepare after abort: %+v", v)
	}
	if st := r.status(t); st.LocksHeld != 0 {
		t.Fatalf("%d locks held after abort", st.LocksHeld)
	}
}

func TestParticipantRecoveredInDoubtAsksCoordinator(t *testing.T) {
	rec := messages.Record{Kind: messages.RecPrepared, Tx: tx(7), Participants: []int32{0, 1}, Ops: []messages.Op{messages.Set("a", 9)}}
	r := newParticipantRig(t, map[string]int64{"a": 1}, []messages.Record{rec})
	q, _ := actortest.Expect[*messages.DecisionQuery](t, r.coord, wait)
	if q.Tx != tx(7) || q.From != 0 {
		t.Fatalf("query %+v", q)
	}
	if st := r.status(t); st.LocksHeld != 1 || len(st.InDoubt) != 1 {
		t.Fatalf("recovered transaction not re-locked: %+v", st)
	}
	// Still in doubt: a conflicting transaction is refused.
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(8), Ops: []messages.Op{messages.Set("a", 2)}}, r.txn.PID)
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Kind != messages.VoteNo {
		t.Fatalf("in-doubt key was not locked: %+v", v)
	}
	r.sys.Root.Send(r.pid, &messages.DecisionReply{Tx: tx(7), From: 0, Decision: messages.DecisionCommit})
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	if app.Records[0].Kind != messages.RecCommitted {
		t.Fatalf("want COMMITTED, got %+v", app)
	}
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	actortest.Expect[*messages.Ack](t, r.coord, wait)
	if got := r.read(t, "a"); got != 9 {
		t.Fatalf("a = %d after resolving commit, want 9", got)
	}
}

func (r *participantRig) read(t *testing.T, key string) int64 {
	t.Helper()
	res, err := r.sys.Root.RequestFuture(r.pid, &messages.Read{Keys: []string{key}}, wait).Result()
	if err != nil {
		t.Fatal(err)
	}
	return res.(*messages.ReadReply).Values[0].Value
}

func (r *participantRig) status(t *testing.T) *ParticipantStatus {
	t.Helper()
	res, err := r.sys.Root.RequestFuture(r.pid, &ParticipantStatusRequest{}, wait).Result()
	if err != nil {
		t.Fatal(err)
	}
	return res.(*ParticipantStatus)
}

// A duplicate Prepare — while PREPARED is being logged, once prepared, and
// while COMMITTED is being logged — gets the same answer and logs nothing
// again: a second PREPARED after COMMITTED would leave the transaction in
// doubt in the log's fold for good. (The mutation run found only the
// randomized test catching this, and only with some seeds.)
func TestParticipantDuplicatePrepareLogsNothingAgain(t *testing.T) {
	r := newParticipantRig(t, map[string]int64{"a": 1}, nil)
	prep := &messages.Prepare{Tx: tx(1), Ops: []messages.Op{messages.Add("a", 5)}, Participants: []int32{0}}
	r.sys.Root.RequestWithCustomSender(r.pid, prep, r.txn.PID)
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)

	r.sys.Root.RequestWithCustomSender(r.pid, prep, r.txn.PID) // while preparing
	actortest.ExpectNone(t, r.wal, 50*time.Millisecond)
	actortest.ExpectNone(t, r.txn, 10*time.Millisecond) // no vote before PREPARED is durable
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Kind != messages.VoteYes {
		t.Fatalf("vote %+v", v)
	}

	r.sys.Root.RequestWithCustomSender(r.pid, prep, r.txn.PID) // once prepared
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Kind != messages.VoteYes {
		t.Fatalf("duplicate Prepare once prepared: vote %+v, want yes again", v)
	}
	actortest.ExpectNone(t, r.wal, 50*time.Millisecond)

	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: tx(1)}, r.txn.PID)
	app, from = actortest.Expect[*messages.Append](t, r.wal, wait)
	if app.Records[0].Kind != messages.RecCommitted {
		t.Fatalf("want COMMITTED, got %+v", app)
	}
	r.sys.Root.RequestWithCustomSender(r.pid, prep, r.txn.PID) // while committing
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Kind != messages.VoteYes {
		t.Fatalf("duplicate Prepare while committing: vote %+v, want yes again", v)
	}
	actortest.ExpectNone(t, r.wal, 50*time.Millisecond)
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	actortest.Expect[*messages.Ack](t, r.txn, wait)
	actortest.ExpectNone(t, r.txn, 50*time.Millisecond) // one ack
	if st := r.status(t); len(st.InDoubt) != 0 || st.Committing != 0 || st.LocksHeld != 0 {
		t.Fatalf("after commit: %+v", st)
	}
	if got := r.read(t, "a"); got != 6 {
		t.Fatalf("a = %d, want 6", got)
	}
}
