package actors

// The rigs of this package's tests: each role under test with its
// collaborators replaced by probes (actortest), and the helpers that drive
// them. One file, so that a test reads against one set of helpers.

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/go-hclog"

	"twopc/actors/actortest"
	"twopc/messages"
	"twopc/persistence"
)

// ---------------------------------------------------------------------------
// participant rig: a participant whose collaborators are probes

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
	cfg := ParticipantConfig{Protocol: TwoPC, Node: 0, Members: 1, Persistence: r.wal.PID, Directory: dir, Fresh: true}
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

type diskError struct{}

func (diskError) Error() string { return "disk on fire" }

var errDisk error = diskError{}

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

// ---------------------------------------------------------------------------
// participant rig: timed prepares and commits; restart rig: a participant
// over a real log, restarted by a panic

// newTimedParticipantRig is newParticipantRig with chosen clocks.
func newTimedParticipantRig(t *testing.T, timing Timing, kv map[string]int64) *participantRig {
	return buildParticipantRig(t, timing, kv, nil)
}

// prepareAt sends a Prepare begun at testEpoch+begun; it returns nothing: the
// caller expects what follows (an Append, a vote, or nothing).
func (r *participantRig) prepareAt(id messages.TxID, begun int64, ops ...messages.Op) {
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: id, Ops: ops, Participants: []int32{0, 1}, Begun: testEpoch + begun}, r.txn.PID)
}

// prepareYes prepares id and acknowledges its PREPARED: it votes yes.
func (r *participantRig) prepareYes(t *testing.T, id messages.TxID, begun int64, ops ...messages.Op) {
	t.Helper()
	r.prepareAt(id, begun, ops...)
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	if app.Records[0].Kind != messages.RecPrepared || app.Records[0].Tx != id {
		t.Fatalf("want PREPARED of %v, got %+v", id, app)
	}
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Tx != id || v.Kind != messages.VoteYes {
		t.Fatalf("want yes for %v, got %+v", id, v)
	}
}

// commit drives a prepared id through COMMITTED to its ack.
func (r *participantRig) commit(t *testing.T, id messages.TxID) {
	t.Helper()
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: id}, r.txn.PID)
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	if app.Records[0].Kind != messages.RecCommitted || app.Records[0].Tx != id {
		t.Fatalf("want COMMITTED of %v, got %+v", id, app)
	}
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	if ack, _ := actortest.Expect[*messages.Ack](t, r.txn, wait); ack.Tx != id {
		t.Fatalf("ack %+v", ack)
	}
}

func readReply(t *testing.T, f *actor.Future) *messages.ReadReply {
	t.Helper()
	res, err := f.Result()
	if err != nil {
		t.Fatal(err)
	}
	return res.(*messages.ReadReply)
}

// restartRig is a participant over a real persistence actor, with Reload,
// so that a panic restarts it from its log.
type restartRig struct {
	sys              *actor.ActorSystem
	pid, wal         *actor.PID
	txn, coord, peer *actortest.Probe
}

func newRestartRig(t *testing.T) *restartRig {
	t.Helper()
	return newRestartRigTiming(t, Timing{InDoubtAfter: time.Hour})
}

func newRestartRigTiming(t *testing.T, timing Timing) *restartRig {
	t.Helper()
	sys := actortest.NewSystem(t)
	l, err := persistence.Open(persistence.Options{Dir: t.TempDir(), SnapshotEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	wal, err := sys.Root.SpawnNamed(persistence.Props(l), "wal")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sys.Root.PoisonFuture(wal).Wait() })
	r := &restartRig{sys: sys, wal: wal,
		txn: actortest.NewProbe(t, sys, "txn"), coord: actortest.NewProbe(t, sys, "coord"), peer: actortest.NewProbe(t, sys, "peer")}
	reload := func() (map[string]int64, []messages.Record, map[messages.TxID]bool, error) {
		res, err := sys.Root.RequestFuture(wal, &persistence.CurrentState{}, wait).Result()
		if err != nil {
			return nil, nil, nil, err
		}
		st := res.(*persistence.StateReply).State
		var inDoubt []messages.Record
		for _, rec := range st.InDoubt {
			inDoubt = append(inDoubt, rec)
		}
		return st.KV, inDoubt, st.Heuristic, nil
	}
	pid, err := sys.Root.SpawnNamed(NewParticipantProps(ParticipantConfig{Protocol: TwoPC,
		Node: 0, Members: 1, Persistence: wal, Timing: timing,
		Directory: &actortest.Directory{
			Coordinators: map[int32]*actor.PID{0: r.coord.PID},
			Participants: map[int32]*actor.PID{1: r.peer.PID},
		},
		Reload: reload, Fresh: true, // a panic restarts it as a successor
	}), "participant")
	if err != nil {
		t.Fatal(err)
	}
	r.pid = pid
	t.Cleanup(func() { _ = sys.Root.StopFuture(pid).Wait() })
	return r
}

func (r *restartRig) read(t *testing.T, key string) int64 {
	t.Helper()
	res, err := r.sys.Root.RequestFuture(r.pid, &messages.Read{Keys: []string{key}}, wait).Result()
	if err != nil {
		t.Fatal(err)
	}
	return res.(*messages.ReadReply).Values[0].Value
}

// expectRefused: the Prepare of id just sent got a no vote and prepared
// nothing.
func (r *restartRig) expectRefused(t *testing.T, id messages.TxID) {
	t.Helper()
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Tx != id || v.Kind != messages.VoteNo {
		t.Fatalf("vote %+v, want no for %v", v, id)
	}
	if st := r.status(t); st.Preparing > 0 || containsTx(st.InDoubt, id) {
		t.Fatalf("refused transaction %v prepared: %+v", id, st)
	}
}

// expectNotPreparedAgain: the participant answers a duplicate Prepare of id,
// which it committed, with yes, and prepares nothing.
func (r *restartRig) expectNotPreparedAgain(t *testing.T, id messages.TxID) {
	t.Helper()
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Tx != id || v.Kind != messages.VoteYes {
		t.Fatalf("vote %+v, want yes (committed here) for %v", v, id)
	}
	if st := r.status(t); st.Preparing > 0 || containsTx(st.InDoubt, id) {
		t.Fatalf("committed transaction %v prepared again: %+v", id, st)
	}
}

func (r *restartRig) status(t *testing.T) *ParticipantStatus {
	t.Helper()
	res, err := r.sys.Root.RequestFuture(r.pid, &ParticipantStatusRequest{}, wait).Result()
	if err != nil {
		t.Fatal(err)
	}
	return res.(*ParticipantStatus)
}

func (r *restartRig) crash() { r.sys.Root.Send(r.pid, (*messages.Read)(nil)) }

// committed runs prep through yes, Commit and ack.
func (r *restartRig) committed(t *testing.T, prep *messages.Prepare) {
	t.Helper()
	r.sys.Root.RequestWithCustomSender(r.pid, prep, r.txn.PID)
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Kind != messages.VoteYes {
		t.Fatalf("vote %+v", v)
	}
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: prep.Tx}, r.txn.PID)
	actortest.Expect[*messages.Ack](t, r.txn, wait)
}

// expectLookup waits for a DecisionLookup of id at the persistence probe and
// returns who to answer.
func expectLookup(t *testing.T, r *coordRig, id messages.TxID) *actor.PID {
	t.Helper()
	for {
		e, err := r.wal.Next(wait)
		if err != nil {
			t.Fatalf("waiting for DecisionLookup: %v", err)
		}
		if l, ok := e.Msg.(*messages.DecisionLookup); ok {
			if l.Tx != id {
				t.Fatalf("lookup %+v", l)
			}
			return e.Sender
		}
	}
}

// ---------------------------------------------------------------------------
// coordinator rig: a coordinator whose persistence actor, participants and
// client are probes

type coordRig struct {
	sys    *actor.ActorSystem
	pid    *actor.PID
	wal    *actortest.Probe
	client *actortest.Probe
	parts  map[int32]*actortest.Probe
}

const coordIncarnation = 2

func newCoordRig(t *testing.T, timing Timing, pending []PendingCommit, persistencePID *actor.PID) *coordRig {
	t.Helper()
	sys := actortest.NewSystem(t)
	var wal *actortest.Probe
	if persistencePID == nil {
		wal = actortest.NewProbe(t, sys, "wal")
		persistencePID = wal.PID
	}
	r := newCoordRigOn(t, sys, timing, pending, persistencePID)
	r.wal = wal
	return r
}

// begin submits a transaction on n0/a and n1/b as the client probe and
// returns the txn actor's PID (the sender of the Prepares).
func (r *coordRig) begin(t *testing.T) *actor.PID {
	t.Helper()
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Begin{Ops: []messages.Op{messages.Set("n0/a", 1), messages.Set("n1/b", 2)}}, r.client.PID)
	var txnPID *actor.PID
	for n, p := range r.parts {
		prep, from := actortest.Expect[*messages.Prepare](t, p, wait)
		if from == nil || prep.Tx.Node != 0 || prep.Tx.Incarnation != coordIncarnation {
			t.Fatalf("participant %d: prepare %+v from %v", n, prep, from)
		}
		txnPID = from
	}
	return txnPID
}

// decidingCommit begins a transaction and has both participants vote yes;
// it returns the txn actor, the transaction and the COMMIT Append the txn
// actor asked for (not yet answered) with who to answer.
func (r *coordRig) decidingCommit(t *testing.T) (*actor.PID, messages.TxID, *messages.Append, *actor.PID) {
	t.Helper()
	txnPID := r.begin(t)
	id := r.parts[0].Seen()[0].Msg.(*messages.Prepare).Tx
	for _, n := range []int32{0, 1} {
		r.sys.Root.Send(txnPID, &messages.Vote{Tx: id, From: n, Kind: messages.VoteYes})
	}
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	if app.Records[0].Kind != messages.RecCommitDecision {
		t.Fatalf("want the COMMIT append, got %+v", app)
	}
	return txnPID, id, app, from
}

// answerLookup waits for the DecisionLookup the coordinator asks the
// persistence probe and answers it.
func (r *coordRig) answerLookup(t *testing.T, want messages.TxID, pending bool, parts []int32) {
	t.Helper()
	for {
		e, err := r.wal.Next(wait)
		if err != nil {
			t.Fatalf("waiting for DecisionLookup: %v", err)
		}
		l, ok := e.Msg.(*messages.DecisionLookup)
		if !ok {
			continue // e.g. an Append of the crashed actor
		}
		if l.Tx != want || e.Sender == nil {
			t.Fatalf("lookup %+v from %v, want tx %v", l, e.Sender, want)
		}
		r.sys.Root.Send(e.Sender, &messages.DecisionLookupReply{Tx: l.Tx, CommitPending: pending, Participants: parts})
		return
	}
}

func newCoordRigOn(t *testing.T, sys *actor.ActorSystem, timing Timing, pending []PendingCommit, persistencePID *actor.PID) *coordRig {
	t.Helper()
	r := &coordRig{sys: sys, client: actortest.NewProbe(t, sys, "client"), parts: map[int32]*actortest.Probe{}}
	dir := &actortest.Directory{Participants: map[int32]*actor.PID{}, Coordinators: map[int32]*actor.PID{}}
	for _, n := range []int32{0, 1} {
		p := actortest.NewProbe(t, sys, "participant-"+string(rune('0'+n)))
		r.parts[n] = p
		dir.Participants[n] = p.PID
	}
	pid, err := sys.Root.SpawnNamed(NewCoordinatorProps(CoordinatorConfig{Protocol: TwoPC,
		Node: 0, Members: 2, Incarnation: coordIncarnation, Persistence: persistencePID,
		Directory: dir, Timing: timing, Pending: pending,
	}), CoordinatorName)
	if err != nil {
		t.Fatal(err)
	}
	dir.Coordinators[0] = pid
	r.pid = pid
	t.Cleanup(func() { _ = sys.Root.PoisonFuture(pid).Wait() })
	return r
}

// ---------------------------------------------------------------------------
// txn rig: one txn actor; its coordinator, log and participants are probes

// txnRig runs one txn actor whose participants, persistence actor and
// coordinator (reportTo) are probes.
type txnRig struct {
	sys   *actor.ActorSystem
	pid   *actor.PID
	parts map[int32]*actortest.Probe
	wal   *actortest.Probe
	boss  *actortest.Probe
}

func newTxnRig(t *testing.T, timing Timing, participants ...int32) *txnRig {
	return newTxnRigLog(t, timing, nil, participants...)
}

// newTxnRigLog is newTxnRig with the txn actor logging to log.
func newTxnRigLog(t *testing.T, timing Timing, log hclog.Logger, participants ...int32) *txnRig {
	sys := actortest.NewSystem(t)
	r := &txnRig{sys: sys, parts: map[int32]*actortest.Probe{},
		wal: actortest.NewProbe(t, sys, "wal"), boss: actortest.NewProbe(t, sys, "coordinator")}
	dir := &actortest.Directory{Participants: map[int32]*actor.PID{}, Coordinators: map[int32]*actor.PID{0: r.boss.PID}}
	ops := make([][]messages.Op, len(participants))
	for i, n := range participants {
		p := actortest.NewProbe(t, sys, "participant-"+string(rune('0'+n)))
		r.parts[n] = p
		dir.Participants[n] = p.PID
		ops[i] = []messages.Op{messages.Add("value", 1)}
	}
	pid, err := sys.Root.SpawnNamed(newTxnProps(txnConfig{
		tx: tx(1), participants: participants, ops: ops, directory: dir,
		persistence: r.wal.PID, timing: timing.WithDefaults(), log: orNull(log), reportTo: r.boss.PID,
	}), "txn")
	if err != nil {
		t.Fatal(err)
	}
	r.pid = pid
	return r
}

// prepared collects the Prepare each participant got and returns the txn's
// PID as they saw it (the vote goes there).
func (r *txnRig) prepared(t *testing.T) {
	t.Helper()
	for n, p := range r.parts {
		prep, from := actortest.Expect[*messages.Prepare](t, p, wait)
		if prep.Tx != tx(1) || from == nil || from.Id != r.pid.Id {
			t.Fatalf("participant %d: prepare %+v from %v", n, prep, from)
		}
	}
}

func (r *txnRig) vote(n int32, kind messages.VoteKind, reason string) {
	r.sys.Root.Send(r.pid, &messages.Vote{Tx: tx(1), From: n, Kind: kind, Reason: reason})
}

// ---------------------------------------------------------------------------
// operator's questions: OutcomeQuery and ForceDecision

// askOutcome sends an OutcomeQuery to pid and returns the answer.
func askOutcome(t *testing.T, r *participantRig, id messages.TxID) *OutcomeAnswer {
	t.Helper()
	res, err := r.sys.Root.RequestFuture(r.pid, &OutcomeQuery{Tx: id}, wait).Result()
	if err != nil {
		t.Fatalf("outcome query %v: %v", id, err)
	}
	a := res.(*OutcomeAnswer)
	if a.Tx != id || a.From != 0 {
		t.Fatalf("answer for another transaction or node: %+v", a)
	}
	return a
}

func wantOutcome(t *testing.T, a *OutcomeAnswer, d messages.Decision, why string) {
	t.Helper()
	if a.Decision != d || !strings.Contains(a.Why, why) {
		t.Fatalf("outcome of %v: %v (%q), want %v (%q)", a.Tx, a.Decision, a.Why, d, why)
	}
}

// quiet fails if the participant sent anything to its peers, its
// coordinator, its log or a txn actor: an OutcomeQuery only looks.
func (r *participantRig) quiet(t *testing.T) {
	t.Helper()
	for _, p := range []*actortest.Probe{r.peer, r.coord, r.wal, r.txn} {
		actortest.ExpectNone(t, p, 30*time.Millisecond)
	}
}

// forceDecision sends a ForceDecision and returns the result.
func forceDecision(t *testing.T, r *participantRig, id messages.TxID, commit bool) *ForceDecisionResult {
	t.Helper()
	res, err := r.sys.Root.RequestFuture(r.pid, &ForceDecision{Tx: id, Commit: commit}, wait).Result()
	if err != nil {
		t.Fatal(err)
	}
	fr := res.(*ForceDecisionResult)
	if fr.Tx != id || fr.Node != 0 {
		t.Fatalf("result for another transaction or node: %+v", fr)
	}
	return fr
}

// forceLogged sends a ForceDecision for a transaction in doubt, checks that
// the participant first asks for a forced HEURISTIC record and answers
// nothing before it is durable, makes it durable and returns the result.
func forceLogged(t *testing.T, r *participantRig, id messages.TxID, commit bool) *ForceDecisionResult {
	t.Helper()
	f := r.sys.Root.RequestFuture(r.pid, &ForceDecision{Tx: id, Commit: commit}, wait)
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	want := messages.Record{Kind: messages.RecHeuristic, Tx: id, Decision: forcedDecision(commit)}
	if !app.Force || len(app.Records) != 1 || app.Records[0].Kind != want.Kind || app.Records[0].Tx != id || app.Records[0].Decision != want.Decision {
		t.Fatalf("want a forced %v first, got %+v", want, app)
	}
	// Nothing is applied before the record is durable.
	actortest.ExpectNone(t, r.wal, 30*time.Millisecond)
	actortest.ExpectNone(t, r.coord, 0)
	if st := r.status(t); len(st.InDoubt) != 1 || st.InDoubt[0] != id {
		t.Fatalf("applied before its HEURISTIC record was durable: %+v", st)
	}
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	res, err := f.Result()
	if err != nil {
		t.Fatal(err)
	}
	fr := res.(*ForceDecisionResult)
	if fr.Tx != id || fr.Node != 0 {
		t.Fatalf("result for another transaction or node: %+v", fr)
	}
	return fr
}

// askCoordinator sends an OutcomeQuery to the coordinator of a coordRig.
func askCoordinator(t *testing.T, r *coordRig, id messages.TxID) *actortest.Probe {
	t.Helper()
	r.sys.Root.RequestWithCustomSender(r.pid, &OutcomeQuery{Tx: id}, r.client.PID)
	return r.client
}

func expectCoordAnswer(t *testing.T, r *coordRig, id messages.TxID, d messages.Decision, why string) {
	t.Helper()
	a, _ := actortest.Expect[*OutcomeAnswer](t, askCoordinator(t, r, id), wait)
	if a.Tx != id || a.From != 0 {
		t.Fatalf("answer %+v", a)
	}
	if a.Decision != d || !strings.Contains(a.Why, why) {
		t.Fatalf("coordinator on %v: %v (%q), want %v (%q)", id, a.Decision, a.Why, d, why)
	}
}

// noTxnSpawned fails if the coordinator runs a txn actor or sent anything
// to a participant: an OutcomeQuery must not re-drive or abort anything
// (onQuery, for a DecisionQuery, re-drives a pending commit).
func (r *coordRig) noTxnSpawned(t *testing.T) {
	t.Helper()
	res, err := r.sys.Root.RequestFuture(r.pid, &CoordinatorStatusRequest{}, wait).Result()
	if err != nil {
		t.Fatal(err)
	}
	if st := res.(*CoordinatorStatus); st.InFlight != 0 {
		t.Fatalf("an OutcomeQuery left a txn actor running: %+v", st)
	}
	for _, p := range r.parts {
		actortest.ExpectNone(t, p, 50*time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// heuristic decisions

func errorLogger() (hclog.Logger, *actortest.Buffer) {
	buf := &actortest.Buffer{}
	return hclog.New(&hclog.LoggerOptions{Name: "test", Level: hclog.Error, Output: buf}), buf
}

// shortMemory: outcomes forgotten within 100 ms or so (RememberOutcomes is
// raised to VoteTimeout + 2 × ClockSkew = 60 ms; the forgetting tick runs
// every VoteTimeout/2), nobody asks about anything in doubt.
var shortMemory = Timing{VoteTimeout: 40 * time.Millisecond, ClockSkew: 10 * time.Millisecond, RememberOutcomes: 60 * time.Millisecond, InDoubtAfter: time.Hour}

func damageLine(d, forced messages.Decision, id messages.TxID) string {
	return "HEURISTIC DAMAGE: coordinator decided " + d.String() + " for " + id.String() + ", this node applied the operator's " + forced.String()
}

// expectHeuristicAck: the next message on p is an Ack for id marked
// Heuristic, and nothing follows it.
func expectHeuristicAck(t *testing.T, p *actortest.Probe, id messages.TxID) {
	t.Helper()
	ack, _ := actortest.Expect[*messages.Ack](t, p, wait)
	if ack.Tx != id || ack.From != 0 || !ack.Heuristic {
		t.Fatalf("answer to a Commit of %v, heuristically aborted here: %+v, want an Ack marked Heuristic", id, ack)
	}
	actortest.ExpectNone(t, p, 50*time.Millisecond)
}

// askPeerQuery sends a DecisionQuery about id as node 1 (the peer probe)
// and returns the reply.
func (r *participantRig) askPeerQuery(t *testing.T, id messages.TxID) messages.Decision {
	t.Helper()
	r.sys.Root.Send(r.pid, &messages.DecisionQuery{Tx: id, From: 1})
	rep, _ := actortest.Expect[*messages.DecisionReply](t, r.peer, wait)
	if rep.Tx != id || rep.From != 0 {
		t.Fatalf("reply %+v", rep)
	}
	return rep.Decision
}

func (r *participantRig) readValue(t *testing.T, key string) int64 {
	t.Helper()
	res, err := r.sys.Root.RequestFuture(r.pid, &messages.Read{Keys: []string{key}}, wait).Result()
	if err != nil {
		t.Fatal(err)
	}
	return res.(*messages.ReadReply).Values[0].Value
}

// ---------------------------------------------------------------------------
// reconciling heuristic decisions

// reconcileTiming: nothing is asked about as in doubt (InDoubtAfter is an
// hour), heuristic decisions are asked about every 50 ms at most, and the
// query tick runs every 20 ms.
var reconcileTiming = Timing{VoteTimeout: 40 * time.Millisecond, InDoubtAfter: time.Hour, MaxQueryInterval: 50 * time.Millisecond}

func warnLogger() (hclog.Logger, *actortest.Buffer) {
	buf := &actortest.Buffer{}
	return hclog.New(&hclog.LoggerOptions{Name: "test", Level: hclog.Warn, Output: buf}), buf
}

func confirmedLine(d messages.Decision, id messages.TxID) string {
	return "heuristic decision confirmed: the coordinator also decided " + d.String() + " for " + id.String()
}

// expectQueries: the next len(ids) messages on p are DecisionQueries from
// node 0, one about each of ids (in any order).
func expectQueries(t *testing.T, p *actortest.Probe, ids ...messages.TxID) {
	t.Helper()
	var got []messages.TxID
	for range ids {
		q, _ := actortest.Expect[*messages.DecisionQuery](t, p, wait)
		if q.From != 0 {
			t.Fatalf("query %+v, want one from node 0", q)
		}
		got = append(got, q.Tx)
	}
	for _, id := range ids {
		if !slices.Contains(got, id) {
			t.Fatalf("queries about %v, want one about each of %v", got, ids)
		}
	}
}

// queriesSeen counts the DecisionQueries about id p has received so far.
func queriesSeen(p *actortest.Probe, id messages.TxID) int {
	n := 0
	for _, e := range p.Seen() {
		if q, ok := e.Msg.(*messages.DecisionQuery); ok && q.Tx == id {
			n++
		}
	}
	return n
}

func newReconcileRig(t *testing.T, edit func(*ParticipantConfig)) (*participantRig, *actortest.Buffer) {
	log, buf := warnLogger()
	r := buildParticipantRigWith(t, func(c *ParticipantConfig) {
		c.Timing, c.KV, c.Logger = reconcileTiming, map[string]int64{"a": 1}, log
		if edit != nil {
			edit(c)
		}
	})
	return r, buf
}

// reply answers as node from about id.
func (r *participantRig) reply(id messages.TxID, from int32, d messages.Decision) {
	r.sys.Root.Send(r.pid, &messages.DecisionReply{Tx: id, From: from, Decision: d})
}

func waitForLine(t *testing.T, buf *actortest.Buffer, line string) {
	t.Helper()
	actortest.Eventually(t, wait, func() string {
		if !strings.Contains(buf.String(), line) {
			return "no line " + line + " in:\n" + buf.String()
		}
		return ""
	})
}

// noMoreQueries: once the participant has handled everything sent so far
// (a status request is answered after it), no DecisionQuery about id follows
// for several rounds of its query timer, each of which would have asked;
// it holds no unreconciled decision.
func noMoreQueries(t *testing.T, r *participantRig, id messages.TxID) {
	t.Helper()
	st := r.status(t)
	if st.Unreconciled != 0 {
		t.Fatalf("still %d unreconciled heuristic decisions", st.Unreconciled)
	}
	before := queriesSeen(r.coord, id)
	// Rounds come every min(InDoubtAfter/4, VoteTimeout/2) (20 ms here);
	// the pauses between queries grow only to MaxQueryInterval (50 ms), so
	// rounds spanning more than that would have asked again.
	start := st.Rounds
	actortest.Eventually(t, wait, func() string {
		if n := r.status(t).Rounds - start; n < 6 {
			return fmt.Sprintf("the query timer ran %d rounds, want 6", n)
		}
		return ""
	})
	if after := queriesSeen(r.coord, id); after != before {
		t.Fatalf("%d more DecisionQueries about %v after it was reconciled", after-before, id)
	}
}

// ---------------------------------------------------------------------------
// in doubt: peers asking

func (r *participantRig) peerAsks(t *testing.T, id messages.TxID, begun int64) messages.Decision {
	t.Helper()
	r.sys.Root.Send(r.pid, &messages.DecisionQuery{Tx: id, From: 1, Begun: begun})
	rep, _ := actortest.Expect[*messages.DecisionReply](t, r.peer, wait)
	if rep.Tx != id || rep.From != 0 {
		t.Fatalf("reply %+v, want one about %v from node 0", rep, id)
	}
	return rep.Decision
}

// ackForced expects the participant's next Append to be one forced record
// of kind for id, and acks it: a refusal (REFUSED) or a read-only vote
// (READ-ONLY) is durable before it is answered.
func (r *participantRig) ackForced(t *testing.T, kind messages.RecordKind, id messages.TxID) {
	t.Helper()
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	for !app.Force && len(app.Records) == 1 && app.Records[0].Kind == messages.RecMark {
		// A coordinator's mark, logged lazily on the participant's tick.
		app, from = actortest.Expect[*messages.Append](t, r.wal, wait)
	}
	if !app.Force || len(app.Records) != 1 || app.Records[0].Kind != kind || app.Records[0].Tx != id {
		t.Fatalf("append %+v, want a forced %v of %v", app, kind, id)
	}
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
}

// peerAsksRefusing is peerAsks for a transaction the participant refuses
// (it has not voted on it): the answer follows its durable REFUSED record.
func (r *participantRig) peerAsksRefusing(t *testing.T, id messages.TxID, begun int64) messages.Decision {
	t.Helper()
	r.sys.Root.Send(r.pid, &messages.DecisionQuery{Tx: id, From: 1, Begun: begun})
	r.ackForced(t, messages.RecRefused, id)
	rep, _ := actortest.Expect[*messages.DecisionReply](t, r.peer, wait)
	if rep.Tx != id || rep.From != 0 {
		t.Fatalf("reply %+v, want one about %v from node 0", rep, id)
	}
	return rep.Decision
}

// ---------------------------------------------------------------------------
// reading a probe

// nextOf skips a probe's messages until one of type T arrives.
func nextOf[T any](t *testing.T, p *actortest.Probe) T {
	t.Helper()
	for {
		e, err := p.Next(wait)
		if err != nil {
			t.Fatalf("probe %s: %v", p.Name, err)
		}
		if m, ok := e.Msg.(T); ok {
			return m
		}
	}
}

// ---------------------------------------------------------------------------
// inspecting a participant's internals on its own goroutine

// inspectRequest runs f on the participant's own goroutine (between two of its
// messages) and answers with what f returns: a look at internals without a
// data race.
type inspectRequest struct {
	f func(p *participant) interface{}
}

// inspectableParticipant is a participant that also answers inspectRequest.
type inspectableParticipant struct{ p *participant }

func (w *inspectableParticipant) Receive(ctx actor.Context) {
	if q, ok := ctx.Message().(*inspectRequest); ok {
		ctx.Respond(q.f(w.p))
		return
	}
	w.p.Receive(ctx)
}

// newInspectableRig is buildParticipantRig with a participant that can be inspected.
func newInspectableRig(t *testing.T, timing Timing, kv map[string]int64) *participantRig {
	t.Helper()
	sys := actortest.NewSystem(t)
	r := &participantRig{
		sys:   sys,
		wal:   actortest.NewProbe(t, sys, "wal"),
		txn:   actortest.NewProbe(t, sys, "txn"),
		coord: actortest.NewProbe(t, sys, "coord"),
		peer:  actortest.NewProbe(t, sys, "peer"),
	}
	cfg := ParticipantConfig{Protocol: TwoPC,
		Node: 0, Members: 1, Persistence: r.wal.PID, Timing: timing, KV: kv, Fresh: true,
		Directory: &actortest.Directory{
			Coordinators: map[int32]*actor.PID{0: r.coord.PID},
			Participants: map[int32]*actor.PID{1: r.peer.PID},
		},
	}
	seq, starts, mem := new(uint64), new(int), newMemory(nil, nil, time.Now())
	pid, err := sys.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor {
		return &inspectableParticipant{p: &participant{cfg: cfg, appendSeq: seq, starts: starts, mem: mem, now: time.Now}}
	}), "participant")
	if err != nil {
		t.Fatal(err)
	}
	r.pid = pid
	t.Cleanup(func() { _ = sys.Root.StopFuture(pid).Wait() })
	return r
}

func (r *participantRig) inspect(t *testing.T, f func(p *participant) interface{}) interface{} {
	t.Helper()
	res, err := r.sys.Root.RequestFuture(r.pid, &inspectRequest{f: f}, wait).Result()
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// waitersIndexed counts the waiters the participant still indexes by their
// blockers (waits.byBlocker), live or done.
func waitersIndexed(p *participant) interface{} {
	n := 0
	for _, list := range p.waits.byBlocker {
		n += len(list)
	}
	return n
}

// ---------------------------------------------------------------------------
// acceptor rig: node 1's acceptor (of a 4-node cluster) with a probe for
// its log; requests come from a probe proposer.

type acceptorRig struct {
	sys      *actor.ActorSystem
	wal      *actortest.Probe
	proposer *actortest.Probe
	pid      *actor.PID
	log      []messages.Record // every record the acceptor had made durable
}

func newAcceptorRig(t *testing.T, recovered map[messages.TxID]messages.Acceptance) *acceptorRig {
	t.Helper()
	sys := actortest.NewSystem(t)
	r := &acceptorRig{sys: sys, wal: actortest.NewProbe(t, sys, "wal"), proposer: actortest.NewProbe(t, sys, "proposer")}
	pid, err := sys.Root.SpawnNamed(NewAcceptorProps(AcceptorConfig{Node: 1, Members: 4, Persistence: r.wal.PID, Recovered: recovered}), "acceptor")
	if err != nil {
		t.Fatal(err)
	}
	r.pid = pid
	return r
}

// ask sends m as if from the proposer probe.
func (r *acceptorRig) ask(m any) { r.sys.Root.RequestWithCustomSender(r.pid, m, r.proposer.PID) }

// forced takes the acceptor's next Append, checks it is one forced record
// of kind, and (unless hold) answers it.
func (r *acceptorRig) forced(t *testing.T, kind messages.RecordKind) (messages.Record, func()) {
	t.Helper()
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	if !app.Force || len(app.Records) != 1 || app.Records[0].Kind != kind {
		t.Fatalf("append %+v, want one forced %v", app, kind)
	}
	rec := app.Records[0]
	return rec, func() {
		r.log = append(r.log, rec)
		r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	}
}

// promise asks for a promise of ballot b for id. ok: the acceptor is
// expected to make it durable (answered here) before replying.
func (r *acceptorRig) promise(t *testing.T, id messages.TxID, b messages.Ballot, ok bool) *messages.PromiseReply {
	t.Helper()
	before := len(r.wal.Seen())
	r.ask(&messages.PromiseRequest{Tx: id, Ballot: b, From: b.Owner(id, 4)})
	if ok {
		_, done := r.forced(t, messages.RecPromised)
		done()
	}
	m, _ := actortest.Expect[*messages.PromiseReply](t, r.proposer, wait)
	r.noAppendSince(t, ok, before)
	return m
}

// accept asks for id's acceptance of d in ballot b, as promise does.
func (r *acceptorRig) accept(t *testing.T, id messages.TxID, b messages.Ballot, d messages.Decision, ok bool) *messages.AcceptReply {
	t.Helper()
	before := len(r.wal.Seen())
	r.ask(&messages.AcceptRequest{Tx: id, Ballot: b, From: b.Owner(id, 4), Decision: d})
	if ok {
		_, done := r.forced(t, messages.RecAccepted)
		done()
	}
	m, _ := actortest.Expect[*messages.AcceptReply](t, r.proposer, wait)
	r.noAppendSince(t, ok, before)
	return m
}

// noAppendSince checks that a refused request wrote nothing: once its
// reply is out the acceptor is done with it, so any Append is queued by
// now.
func (r *acceptorRig) noAppendSince(t *testing.T, wrote bool, before int) {
	t.Helper()
	if seen := r.wal.Seen(); !wrote && len(seen) != before {
		t.Fatalf("a refused request wrote %+v", seen[before].Msg)
	}
}

// fold is the acceptor state its log would give after a restart.
func (r *acceptorRig) fold() map[messages.TxID]messages.Acceptance {
	s := persistence.NewState()
	for _, rec := range r.log {
		s.Apply(rec)
	}
	return s.Acceptor
}

// ---------------------------------------------------------------------------
// log rig: a participant over a real log, restarted from what is on disk

// logRig is a participant over a real persistence actor that a test
// restarts as a node does: both are stopped (the log flushed), the log is
// opened again from its directory, and a new participant starts from its
// state — committed values, in-doubt transactions, heuristic decisions and
// the reconciled ones. The participant's notes (RECONCILED) go to its log.
// The probes outlive the restarts.
type logRig struct {
	dir              string
	sys              *actor.ActorSystem
	log              hclog.Logger
	buf              *actortest.Buffer
	pid, wal         *actor.PID
	txn, coord, peer *actortest.Probe
	starts           int
}

func newLogRig(t *testing.T) *logRig {
	t.Helper()
	log, buf := warnLogger()
	sys := actortest.NewSystem(t)
	r := &logRig{dir: t.TempDir(), sys: sys, log: log, buf: buf,
		txn: actortest.NewProbe(t, sys, "txn"), coord: actortest.NewProbe(t, sys, "coord"), peer: actortest.NewProbe(t, sys, "peer")}
	t.Cleanup(func() { r.stop(t) })
	r.start(t)
	return r
}

func (r *logRig) start(t *testing.T) {
	t.Helper()
	r.starts++
	l, err := persistence.Open(persistence.Options{Dir: r.dir, SnapshotEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	st := l.State()
	if r.wal, err = r.sys.Root.SpawnNamed(persistence.Props(l), fmt.Sprintf("wal-%d", r.starts)); err != nil {
		t.Fatal(err)
	}
	var inDoubt []messages.Record
	for _, rec := range st.InDoubt {
		inDoubt = append(inDoubt, rec)
	}
	r.pid, err = r.sys.Root.SpawnNamed(NewParticipantProps(ParticipantConfig{Protocol: TwoPC,
		Node: 0, Members: 1, Persistence: r.wal, Notes: r.wal, Timing: reconcileTiming, Logger: r.log,
		Directory: &actortest.Directory{
			Coordinators: map[int32]*actor.PID{0: r.coord.PID},
			Participants: map[int32]*actor.PID{1: r.peer.PID},
		},
		KV: st.KV, InDoubt: inDoubt, Heuristic: st.Heuristic, Reconciled: st.Reconciled,
		Outcomes: st.Outcomes, Marks: st.Marks, Fresh: r.starts == 1,
	}), fmt.Sprintf("participant-%d", r.starts))
	if err != nil {
		t.Fatal(err)
	}
}

// stop stops the participant, then its log, which flushes what was sent
// to it before.
func (r *logRig) stop(t *testing.T) {
	t.Helper()
	if r.pid == nil {
		return
	}
	_ = r.sys.Root.StopFuture(r.pid).Wait()
	_ = r.sys.Root.PoisonFuture(r.wal).Wait()
	r.pid, r.wal = nil, nil
}

// restart stops the participant and its log once the participant has
// handled everything sent to it so far, and starts both again from disk.
func (r *logRig) restart(t *testing.T) {
	t.Helper()
	r.status(t) // answered after everything sent before: its appends are queued at the log
	r.stop(t)
	r.start(t)
}

func (r *logRig) status(t *testing.T) *ParticipantStatus {
	t.Helper()
	res, err := r.sys.Root.RequestFuture(r.pid, &ParticipantStatusRequest{}, wait).Result()
	if err != nil {
		t.Fatal(err)
	}
	return res.(*ParticipantStatus)
}

// prepared prepares id with ops and waits for the yes vote.
func (r *logRig) prepared(t *testing.T, id messages.TxID, ops ...messages.Op) {
	t.Helper()
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: id, Ops: ops, Participants: []int32{0}, Begun: testEpoch}, r.txn.PID)
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Tx != id || v.Kind != messages.VoteYes {
		t.Fatalf("vote %+v, want yes for %v", v, id)
	}
}

// force takes the operator's decision on id and waits until it is applied.
func (r *logRig) force(t *testing.T, id messages.TxID, commit bool) {
	t.Helper()
	res, err := r.sys.Root.RequestFuture(r.pid, &ForceDecision{Tx: id, Commit: commit}, wait).Result()
	if fr, _ := res.(*ForceDecisionResult); err != nil || fr == nil || !fr.Applied {
		t.Fatalf("force %v: %+v %v", id, res, err)
	}
}

// quietAbout: after the participant's query timer has run rounds enough to
// ask about id several times, it has not, and it holds nothing
// unreconciled.
func (r *logRig) quietAbout(t *testing.T, id messages.TxID) {
	t.Helper()
	st := r.status(t)
	if st.Unreconciled != 0 {
		t.Fatalf("%d unreconciled heuristic decisions after the restart, want 0", st.Unreconciled)
	}
	before := queriesSeen(r.coord, id)
	start := st.Rounds
	actortest.Eventually(t, wait, func() string {
		if n := r.status(t).Rounds - start; n < 6 {
			return fmt.Sprintf("the query timer ran %d rounds, want 6", n)
		}
		return ""
	})
	if after := queriesSeen(r.coord, id); after != before {
		t.Fatalf("%d DecisionQueries about %v after the restart: it was reported before", after-before, id)
	}
}
