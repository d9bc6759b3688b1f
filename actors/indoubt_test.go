package actors

// In doubt (indoubt.go): what a participant tells a peer in doubt, and how it
// asks about a transaction it is in doubt about (cooperative termination).

import (
	"fmt"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"twopc/actors/actortest"
	"twopc/messages"
)

// Cooperative termination: what a participant answers a peer in doubt, and
// whom a participant in doubt asks.

// A participant that never saw a transaction has not voted on it: it
// votes no there and then (durably: REFUSED), so the peer learns "abort",
// and the Prepare, if it still comes, is refused.
func TestCooperativeNeverSeenRecentTransactionIsAborted(t *testing.T) {
	r := buildParticipantRig(t, Timing{InDoubtAfter: time.Hour, ClockSkew: 10 * time.Millisecond}, nil, nil)
	begun := time.Now().UnixNano()
	if d := r.peerAsksRefusing(t, tx(1), begun); d != messages.DecisionAbort {
		t.Fatalf("never-seen recent transaction: %v, want abort", d)
	}
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(1), Ops: []messages.Op{messages.Set("a", 1)}, Participants: []int32{0, 1}, Begun: begun}, r.txn.PID)
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Kind != messages.VoteNo {
		t.Fatalf("Prepare after answering abort: %+v, want a no vote", v)
	}
	actortest.ExpectNone(t, r.wal, 100*time.Millisecond) // nothing prepared
}

// Without a begin time, or for a transaction older than what it remembers,
// or begun before it started, a participant that has no trace of the
// transaction and has not let go of it (it is not below its coordinator's
// mark) refuses it all the same: it vouches from what it logged, whatever
// the clocks say. Below the mark, it cannot tell "never saw it" from
// "committed it and forgot", and says unknown.
//
// Changed with issue 11: the begin time used to decide (the last three
// cases were "unknown"); it decides nothing now.
func TestCooperativeCannotVouchForOldOrUndatedTransactions(t *testing.T) {
	r := buildParticipantRig(t, Timing{InDoubtAfter: time.Hour, VoteTimeout: 20 * time.Millisecond,
		ClockSkew: 10 * time.Millisecond, RememberOutcomes: 200 * time.Millisecond}, nil, nil)
	// No pause before asking: the begin times below span an hour either
	// way, and none of them decides anything.
	now := time.Now()
	cases := []struct {
		name  string
		begun int64
		want  messages.Decision
	}{
		{"recent (the control)", now.Add(-20 * time.Millisecond).UnixNano(), messages.DecisionAbort},
		{"no begin time", 0, messages.DecisionAbort},
		{"older than remembered", now.Add(-400 * time.Millisecond).UnixNano(), messages.DecisionAbort},
		{"begun before it started", now.Add(-time.Hour).UnixNano(), messages.DecisionAbort},
		{"begun in the future (a clock ahead)", now.Add(time.Hour).UnixNano(), messages.DecisionAbort},
	}
	for i, c := range cases {
		if d := r.peerAsksRefusing(t, tx(uint64(10+i)), c.begun); d != c.want {
			t.Errorf("%s: %v, want %v", c.name, d, c.want)
		}
	}
	// The coordinator says it has settled everything below seq 100: below
	// that, whatever the begin time, the participant no longer vouches.
	r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(100), Settled: 100})
	for i, begun := range []int64{0, now.UnixNano(), now.Add(time.Hour).UnixNano()} {
		if d := r.peerAsks(t, tx(uint64(50+i)), begun); d != messages.DecisionUnknown {
			t.Errorf("below the mark, begun %d: %v, want unknown", begun, d)
		}
	}
	// Nothing refused below the mark (the mark itself may be logged).
	for {
		e, err := r.wal.Next(50 * time.Millisecond)
		if err != nil {
			break
		}
		if app, ok := e.Msg.(*messages.Append); !ok || app.Records[0].Kind != messages.RecMark {
			t.Fatalf("below the mark, the participant wrote %+v", e.Msg)
		}
	}
}

// A read-only voter knows nothing of the outcome: the coordinator may have
// committed without it.
func TestCooperativeReadOnlyVoterSaysUnknown(t *testing.T) {
	r := newParticipantRig(t, map[string]int64{"a": 5}, nil)
	begun := time.Now().UnixNano()
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(1), Ops: []messages.Op{messages.AddFloor("a", 0, 0)}, Participants: []int32{0, 1}, Begun: begun}, r.txn.PID)
	r.ackForced(t, messages.RecReadOnly, tx(1)) // the vote is durable first
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Kind != messages.VoteReadOnly {
		t.Fatalf("want a read-only vote, got %+v", v)
	}
	if d := r.peerAsks(t, tx(1), begun); d != messages.DecisionUnknown {
		t.Fatalf("read-only voter answered %v, want unknown", d)
	}
}

// A participant in doubt asks its coordinator and, in the same round, the
// other participants, telling them when the transaction began.
func TestCooperativeInDoubtAsksCoordinatorAndPeers(t *testing.T) {
	r := buildParticipantRig(t, Timing{InDoubtAfter: 50 * time.Millisecond, MaxQueryInterval: time.Hour}, nil, nil)
	begun := time.Now().UnixNano()
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(1), Ops: []messages.Op{messages.Set("a", 1)}, Participants: []int32{0, 1}, Begun: begun}, r.txn.PID)
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	actortest.Expect[*messages.Vote](t, r.txn, wait)
	for _, probe := range []*actortest.Probe{r.coord, r.peer} {
		q, _ := actortest.Expect[*messages.DecisionQuery](t, probe, wait)
		if q.Tx != tx(1) || q.From != 0 || q.Begun != begun {
			t.Fatalf("%s asked %+v, want tx %v from 0 begun %d", probe.PID.Id, q, tx(1), begun)
		}
	}
	// The peer's abort settles it.
	r.sys.Root.Send(r.pid, &messages.DecisionReply{Tx: tx(1), From: 1, Decision: messages.DecisionAbort})
	if app, _ := actortest.Expect[*messages.Append](t, r.wal, wait); app.Records[0].Kind != messages.RecAborted {
		t.Fatalf("want ABORTED, got %+v", app)
	}
	if st := r.status(t); st.LocksHeld != 0 || len(st.InDoubt) != 0 {
		t.Fatalf("still in doubt after the peer's abort: %+v", st)
	}
}

// What a participant tells a peer in doubt, state by state: unknown while it
// is preparing or prepared itself, commit once it is committing or
// committed.
func TestInDoubtPeerAnsweredByState(t *testing.T) {
	r := newParticipantRig(t, nil, nil)
	ask := func(want messages.Decision) {
		t.Helper()
		r.sys.Root.Send(r.pid, &messages.DecisionQuery{Tx: tx(1), From: 1})
		if rep, _ := actortest.Expect[*messages.DecisionReply](t, r.peer, wait); rep.Tx != tx(1) || rep.Decision != want {
			t.Fatalf("reply %+v, want %v", rep, want)
		}
	}
	r.prepareAt(tx(1), 10, messages.Add("a", 1))
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	ask(messages.DecisionUnknown) // preparing
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	actortest.Expect[*messages.Vote](t, r.txn, wait)
	ask(messages.DecisionUnknown) // prepared: in doubt too
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: tx(1)}, r.txn.PID)
	app, from = actortest.Expect[*messages.Append](t, r.wal, wait)
	ask(messages.DecisionCommit) // committing
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	actortest.Expect[*messages.Ack](t, r.txn, wait)
	ask(messages.DecisionCommit) // committed, remembered
}

// A peer's question about a Prepare still waiting for locks: the waiter
// votes no (it may: it has not voted), answers abort, and never takes the
// locks afterwards.
func TestInDoubtPeerQueryRefusesWaitingPrepare(t *testing.T) {
	r := newParticipantRig(t, nil, nil)
	r.prepareYes(t, tx(1), 10, messages.Set("a", 1))
	r.prepareAt(tx(2), 20, messages.Set("a", 2))
	r.sys.Root.Send(r.pid, &messages.DecisionQuery{Tx: tx(2), From: 1})
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Tx != tx(2) || v.Kind != messages.VoteNo {
		t.Fatalf("vote %+v", v)
	}
	r.ackForced(t, messages.RecRefused, tx(2)) // the refusal is durable before it is told
	if rep, _ := actortest.Expect[*messages.DecisionReply](t, r.peer, wait); rep.Decision != messages.DecisionAbort {
		t.Fatalf("reply %+v", rep)
	}
	r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(1)})
	actortest.Expect[*messages.Append](t, r.wal, wait) // ABORTED of tx 1
	actortest.ExpectNone(t, r.wal, 50*time.Millisecond)
	actortest.ExpectNone(t, r.txn, 10*time.Millisecond)
	if st := r.status(t); st.Waiting != 0 || st.LocksHeld != 0 {
		t.Fatalf("status %+v", st)
	}
}

// PINNED. A participant in doubt keeps asking its coordinator (and its
// peers) for as long as it takes, with pauses doubling up to
// MaxQueryInterval — never giving up — and settles on the first answer.
func TestInDoubtKeepsAskingUntilAnswered(t *testing.T) {
	r := newInspectableRig(t, Timing{InDoubtAfter: 20 * time.Millisecond, MaxQueryInterval: 40 * time.Millisecond}, nil)
	r.prepareYes(t, tx(1), 10, messages.Set("a", 1))
	for range 6 { // well past the cap on the pause
		q, _ := actortest.Expect[*messages.DecisionQuery](t, r.coord, wait)
		if q.Tx != tx(1) {
			t.Fatalf("query %+v", q)
		}
	}
	r.sys.Root.Send(r.pid, &messages.DecisionReply{Tx: tx(1), From: 0, Decision: messages.DecisionCommit})
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	if app.Records[0].Kind != messages.RecCommitted {
		t.Fatalf("want COMMITTED, got %+v", app)
	}
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	actortest.Eventually(t, 3*time.Second, func() string {
		if st := r.status(t); st.LocksHeld != 0 || len(st.InDoubt) != 0 || st.Committing != 0 {
			return fmt.Sprintf("not settled after the answer: %+v", st)
		}
		return ""
	})
}

// A stale DecisionReply (the participant is no longer in doubt) is ignored:
// an abort answer after the commit was applied changes nothing.
func TestInDoubtStaleDecisionReplyIgnored(t *testing.T) {
	r := newParticipantRig(t, nil, nil)
	r.prepared(t, tx(1), messages.Add("a", 5))
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Commit{Tx: tx(1)}, r.txn.PID)
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	// While COMMITTED is being written, an abort answer must not undo it.
	r.sys.Root.Send(r.pid, &messages.DecisionReply{Tx: tx(1), From: 1, Decision: messages.DecisionAbort})
	r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(1)})
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	actortest.Expect[*messages.Ack](t, r.txn, wait)
	r.sys.Root.Send(r.pid, &messages.DecisionReply{Tx: tx(1), From: 0, Decision: messages.DecisionCommit})
	actortest.ExpectNone(t, r.wal, 50*time.Millisecond)
	if got := r.read(t, "a"); got != 5 {
		t.Fatalf("a = %d, want 5", got)
	}
}

// A peer's DecisionQuery is answered abort only for a transaction this node
// aborted (or refuses now, having never voted on it, above its
// coordinator's mark); otherwise unknown (below the mark it cannot tell a
// forgotten commit from a transaction never seen). An abort it was told is
// repeated at once; one it decided itself only once a REFUSED record binds
// it (TestCooperativeNeverSeenRecentTransactionIsAborted).
func TestInDoubtPeerQueryAnsweredAbortOnlyForAborted(t *testing.T) {
	r := newParticipantRig(t, nil, nil)
	r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(3), Settled: 2}) // the coordinator settled below seq 2
	r.sys.Root.Send(r.pid, &messages.DecisionQuery{Tx: tx(1), From: 1})
	if rep, _ := actortest.Expect[*messages.DecisionReply](t, r.peer, wait); rep.Decision != messages.DecisionUnknown {
		t.Fatalf("unknown tx answered %+v", rep)
	}
	r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(2)})
	r.sys.Root.Send(r.pid, &messages.DecisionQuery{Tx: tx(2), From: 1})
	if rep, _ := actortest.Expect[*messages.DecisionReply](t, r.peer, wait); rep.Decision != messages.DecisionAbort || rep.From != 0 {
		t.Fatalf("aborted tx answered %+v", rep)
	}
}

// The design's termination rule: a prepared participant whose coordinator
// does not answer asks the other participants (cooperative termination).
func TestInDoubtParticipantAsksPeersWhenCoordinatorSilent(t *testing.T) {
	rec := messages.Record{Kind: messages.RecPrepared, Tx: tx(7), Participants: []int32{0, 1}, Ops: []messages.Op{messages.Set("a", 9)}}
	sys := actortest.NewSystem(t)
	wal := actortest.NewProbe(t, sys, "wal")
	coord := actortest.NewProbe(t, sys, "coord") // never answers: unreachable
	peer := actortest.NewProbe(t, sys, "peer")
	dir := &actortest.Directory{
		Coordinators: map[int32]*actor.PID{0: coord.PID},
		Participants: map[int32]*actor.PID{1: peer.PID},
	}
	pid, err := sys.Root.SpawnNamed(NewParticipantProps(ParticipantConfig{Protocol: TwoPC,
		Node: 0, Members: 1, Persistence: wal.PID, Directory: dir,
		Timing:  Timing{InDoubtAfter: 20 * time.Millisecond, MaxQueryInterval: 40 * time.Millisecond},
		InDoubt: []messages.Record{rec},
	}), "participant")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sys.Root.StopFuture(pid).Wait() })
	for i := 0; i < 3; i++ {
		actortest.Expect[*messages.DecisionQuery](t, coord, wait)
	}
	q, _ := actortest.Expect[*messages.DecisionQuery](t, peer, 5*time.Second)
	if q.Tx != tx(7) || q.From != 0 {
		t.Fatalf("peer query %+v", q)
	}
}
