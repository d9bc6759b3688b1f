package actors

import (
	"testing"
	"time"

	"twopc/actors/actortest"
	"twopc/messages"
)

// Cooperative termination: what a participant answers a peer in doubt, and
// whom a participant in doubt asks.

func (r *participantRig) peerAsks(t *testing.T, id messages.TxID, begun int64) messages.Decision {
	t.Helper()
	r.sys.Root.Send(r.pid, &messages.DecisionQuery{Tx: id, From: 1, Begun: begun})
	rep, _ := actortest.Expect[*messages.DecisionReply](t, r.peer, wait)
	if rep.Tx != id || rep.From != 0 {
		t.Fatalf("reply %+v, want one about %v from node 0", rep, id)
	}
	return rep.Decision
}

// A participant that never saw a recent transaction has not voted on it: it
// votes no there and then, so the peer learns "abort", and the Prepare, if
// it still comes, is refused.
func TestCooperativeNeverSeenRecentTransactionIsAborted(t *testing.T) {
	r := buildParticipantRig(t, Timing{InDoubtAfter: time.Hour, ClockSkew: 10 * time.Millisecond}, nil, nil)
	time.Sleep(20 * time.Millisecond) // begun a skew after the participant started
	begun := time.Now().UnixNano()
	if d := r.peerAsks(t, tx(1), begun); d != messages.DecisionAbort {
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
// transaction cannot tell "never saw it" from "committed it and forgot".
func TestCooperativeCannotVouchForOldOrUndatedTransactions(t *testing.T) {
	r := buildParticipantRig(t, Timing{InDoubtAfter: time.Hour, VoteTimeout: 20 * time.Millisecond,
		ClockSkew: 10 * time.Millisecond, RememberOutcomes: 200 * time.Millisecond}, nil, nil)
	time.Sleep(500 * time.Millisecond)
	now := time.Now()
	cases := []struct {
		name  string
		begun int64
		want  messages.Decision
	}{
		{"recent (the control)", now.Add(-20 * time.Millisecond).UnixNano(), messages.DecisionAbort},
		{"no begin time", 0, messages.DecisionUnknown},
		{"older than remembered", now.Add(-400 * time.Millisecond).UnixNano(), messages.DecisionUnknown},
		{"begun before it started", now.Add(-time.Hour).UnixNano(), messages.DecisionUnknown},
	}
	for i, c := range cases {
		if d := r.peerAsks(t, tx(uint64(10+i)), c.begun); d != c.want {
			t.Errorf("%s: %v, want %v", c.name, d, c.want)
		}
	}
}

// A read-only voter knows nothing of the outcome: the coordinator may have
// committed without it.
func TestCooperativeReadOnlyVoterSaysUnknown(t *testing.T) {
	r := newParticipantRig(t, map[string]int64{"a": 5}, nil)
	begun := time.Now().UnixNano()
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(1), Ops: []messages.Op{messages.AddFloor("a", 0, 0)}, Participants: []int32{0, 1}, Begun: begun}, r.txn.PID)
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
