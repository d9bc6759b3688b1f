package actors

// Sixth review: liveness — things that should end but do not. Tests named
// TestReview6... that fail against the current code are findings (each says
// what should happen instead); the others pin liveness behaviour the review
// verified.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"twopc/actors/actortest"
	"twopc/messages"
)

// r6Inspect runs f on the participant's own goroutine (between two of its
// messages) and answers with what f returns: a look at internals without a
// data race.
type r6Inspect struct {
	f func(p *participant) interface{}
}

// r6Inspectable is a participant that also answers r6Inspect.
type r6Inspectable struct{ p *participant }

func (w *r6Inspectable) Receive(ctx actor.Context) {
	if q, ok := ctx.Message().(*r6Inspect); ok {
		ctx.Respond(q.f(w.p))
		return
	}
	w.p.Receive(ctx)
}

// r6Rig is buildParticipantRig with a participant that can be inspected.
func r6Rig(t *testing.T, timing Timing, kv map[string]int64) *participantRig {
	t.Helper()
	sys := actortest.NewSystem(t)
	r := &participantRig{
		sys:   sys,
		wal:   actortest.NewProbe(t, sys, "wal"),
		txn:   actortest.NewProbe(t, sys, "txn"),
		coord: actortest.NewProbe(t, sys, "coord"),
		peer:  actortest.NewProbe(t, sys, "peer"),
	}
	cfg := ParticipantConfig{
		Node: 0, Members: 1, Persistence: r.wal.PID, Timing: timing, KV: kv, Fresh: true,
		Directory: &actortest.Directory{
			Coordinators: map[int32]*actor.PID{0: r.coord.PID},
			Participants: map[int32]*actor.PID{1: r.peer.PID},
		},
	}
	seq, starts := new(uint64), new(int)
	pid, err := sys.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor {
		return &r6Inspectable{p: &participant{cfg: cfg, appendSeq: seq, starts: starts, startedAt: time.Now()}}
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
	res, err := r.sys.Root.RequestFuture(r.pid, &r6Inspect{f: f}, wait).Result()
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

// FINDING. A transaction T1 is in doubt here (prepared, its coordinator down
// or cut off: it may stay so for as long as that lasts). Every younger
// transaction that writes T1's key waits for it (mayWait: T1 is older, not
// recovered), and each is then aborted by its own coordinator at the vote
// timeout — the Abort drops the waiter (done) before its own deadline,
// which starts later, when the Prepare arrived. waits.expired forgets done
// waiters in byBlocker only when some waiter expired in the same tick, and
// none does, so every aborted waiter (with its Prepare and ops) stays in
// byBlocker[T1] until T1 is decided: memory grows with the number of
// transactions that touch a hot key while one transaction on it is in
// doubt. waits.expired's own comment says it forgets every done waiter "so
// that a transaction in doubt for long does not collect them".
//
// Should: a waiter dropped by Abort (or by a peer's DecisionQuery) is gone
// from byBlocker by the next tick at the latest.
// Fix: in waits.expired, prune byBlocker whenever done waiters were found
// (not only when len(out) > 0) — or keep a count of done entries per
// blocker and compact the list when drop marks one done.
func TestReview6AbortedWaitersDoNotPileUpBehindAnInDoubtHolder(t *testing.T) {
	// Ticks every 10 ms (InDoubtAfter/4); waits' own deadline far off, as it
	// is whenever the coordinator's Abort arrives first (the usual case).
	r := r6Rig(t, Timing{VoteTimeout: time.Hour, RememberOutcomes: 2 * time.Hour, InDoubtAfter: 40 * time.Millisecond, MaxQueryInterval: time.Hour}, nil)
	r.prepareYes(t, tx(1), 10, messages.Set("a", 1)) // in doubt from now on

	const waiters = 200
	for i := uint64(2); i < 2+waiters; i++ {
		r.prepareAt(tx(i), 10+int64(i), messages.Set("a", int64(i)))
		r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(i), Reason: "vote timeout"})
	}
	if st := r.status(t); st.Waiting != 0 || st.InDoubt == nil {
		t.Fatalf("setup: want tx 1 in doubt and no Prepare waiting, got %+v", st)
	}
	actortest.Eventually(t, 3*time.Second, func() string {
		if n := r.inspect(t, waitersIndexed).(int); n != 0 {
			return fmt.Sprintf("%d aborted waiters still indexed behind the in-doubt transaction (of %d aborted); they are kept until it is decided", n, waiters)
		}
		return ""
	})
}

// FINDING. "A wait lasts at most the vote timeout" and a held read fails
// with a reason after it (README, Locks). But waiters are only expired on
// the in-doubt query tick, every InDoubtAfter/4: with an InDoubtAfter that
// is large next to the VoteTimeout (cmd/node takes both as flags), a read
// held by an undecided transaction stays unanswered long past its vote
// timeout — Node.Read's own future (2×VoteTimeout + 1 s) gives up first
// with "did not answer", and the participant keeps the waiter.
//
// Should: the held read is answered with the reasoned error about one vote
// timeout after it arrived, whatever InDoubtAfter is.
// Fix: arm the tick at min(InDoubtAfter/4, VoteTimeout/2) (or arm a timer
// at the earliest waiter deadline when a waiter is added).
func TestReview6HeldReadExpiresAtTheVoteTimeoutWhateverInDoubtAfter(t *testing.T) {
	r := r6Rig(t, Timing{VoteTimeout: 50 * time.Millisecond, InDoubtAfter: time.Hour, MaxQueryInterval: time.Hour}, map[string]int64{"a": 1})
	r.prepareYes(t, tx(1), 10, messages.Set("a", 9)) // undecided from now on
	f := r.sys.Root.RequestFuture(r.pid, &messages.Read{Keys: []string{"a"}}, 5*time.Second)
	res, err := f.Result()
	if err != nil {
		t.Fatalf("read held by an undecided transaction not answered (vote timeout 50ms, in-doubt tick 15m): %v", err)
	}
	if rep := res.(*messages.ReadReply); rep.Err == "" || !strings.Contains(rep.Err, "0.1.1") {
		t.Fatalf("held read answered %+v, want an error naming tx 0.1.1", rep)
	}
}

// FINDING (same cause). A Prepare waiting for an older holder gives up
// only on the tick, so with a long InDoubtAfter it waits past its vote
// timeout. If its coordinator's Abort was lost (a dropped message, a cut
// link), it waits until the holder is decided and then prepares — logs
// PREPARED, takes the locks and votes yes for a transaction that was
// aborted long ago — and holds those locks until it asks (InDoubtAfter
// later) and learns "abort".
//
// Should: the waiting Prepare votes no about one vote timeout after it
// arrived. Fix: as above.
func TestReview6LockWaitEndsAtTheVoteTimeoutWhateverInDoubtAfter(t *testing.T) {
	r := r6Rig(t, Timing{VoteTimeout: 50 * time.Millisecond, InDoubtAfter: time.Hour, MaxQueryInterval: time.Hour}, nil)
	r.prepareYes(t, tx(1), 10, messages.Set("a", 1))
	r.prepareAt(tx(2), 20, messages.Set("a", 2)) // younger: waits
	e, err := r.txn.Next(5 * time.Second)
	if err != nil {
		t.Fatalf("waiting Prepare never gave up (vote timeout 50ms, in-doubt tick 15m): %v", err)
	}
	if v, ok := e.Msg.(*messages.Vote); !ok || v.Tx != tx(2) || v.Kind != messages.VoteNo {
		t.Fatalf("want a no vote for tx 2, got %T %+v", e.Msg, e.Msg)
	}
}

// PINNED. A waiter that does reach its deadline takes every done waiter
// with it: with a read expiring in the same tick, the index is cleaned.
func TestReview6ExpiryCleansTheWaitIndex(t *testing.T) {
	r := r6Rig(t, Timing{VoteTimeout: 50 * time.Millisecond, InDoubtAfter: 40 * time.Millisecond, MaxQueryInterval: time.Hour}, nil)
	r.prepareYes(t, tx(1), 10, messages.Set("a", 1))
	for i := uint64(2); i < 12; i++ {
		r.prepareAt(tx(i), 10+int64(i), messages.Set("a", int64(i)))
		r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(i)})
	}
	// A read held by tx 1 expires after the vote timeout with an error.
	rep := readReply(t, r.sys.Root.RequestFuture(r.pid, &messages.Read{Keys: []string{"a"}}, 5*time.Second))
	if rep.Err == "" {
		t.Fatalf("held read answered %+v, want an error", rep)
	}
	if n := r.inspect(t, waitersIndexed).(int); n != 0 {
		t.Fatalf("%d waiters still indexed after an expiry", n)
	}
	// Deciding the holder leaves nothing locked.
	r.sys.Root.Send(r.pid, &messages.Abort{Tx: tx(1)})
	actortest.Expect[*messages.Append](t, r.wal, wait) // lazy ABORTED
	if st := r.status(t); st.LocksHeld != 0 || len(st.InDoubt) != 0 || st.Waiting != 0 || st.Reads != 0 {
		t.Fatalf("left behind: %+v", st)
	}
}

// PINNED. A participant in doubt keeps asking its coordinator (and its
// peers) for as long as it takes, with pauses doubling up to
// MaxQueryInterval — never giving up — and settles on the first answer.
func TestReview6InDoubtKeepsAskingUntilAnswered(t *testing.T) {
	r := r6Rig(t, Timing{InDoubtAfter: 20 * time.Millisecond, MaxQueryInterval: 40 * time.Millisecond}, nil)
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

// FINDING. A read held back by a prepared transaction, at a participant
// that then fails (panics) and is restarted from its log by its
// supervisor, is never answered: the failed instance's waiters are dropped
// with it — the participant answers held reads on Stopping, but a restart
// delivers Restarting, which it ignores — and its successor knows nothing
// of them. The reader waits out its own timeout (Node.Read: 2 × VoteTimeout
// + 1 s) and gets "did not answer" instead of the value or the reasoned
// error a held read is promised within the vote timeout.
//
// Should: the held read is answered — re-checked by the successor, or
// failed at once with a reason ("participant restarted; retry").
// Fix: on *actor.Restarting, answer the waiting reads with an error (as on
// Stopping); or hand the waiting reads to the successor through the state
// shared across restarts (like appendSeq).
func TestReview6HeldReadAnsweredWhenTheParticipantRestarts(t *testing.T) {
	// Waits expire every 10 ms, a second after they began: without the
	// restart the read would be answered (an error naming tx 1) after a
	// second, as TestReview2HeldReadExpiresWithAnError shows.
	r := newRestartRigTiming(t, Timing{VoteTimeout: time.Second, InDoubtAfter: 40 * time.Millisecond, MaxQueryInterval: time.Hour})
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(1), Ops: []messages.Op{messages.Add("a", 5)}, Participants: []int32{0, 1}, Begun: testEpoch + 10}, r.txn.PID)
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Kind != messages.VoteYes {
		t.Fatalf("vote %+v", v)
	}
	held := r.sys.Root.RequestFuture(r.pid, &messages.Read{Keys: []string{"a"}}, 5*time.Second)
	actortest.Eventually(t, wait, func() string {
		if st := r.status(t); st.Reads != 1 {
			return fmt.Sprintf("read not held back: %+v", st)
		}
		return ""
	})
	r.crash()
	if _, err := held.Result(); err != nil {
		t.Fatalf("read held when the participant failed and restarted was never answered: %v", err)
	}
}

// PINNED (the control for the finding above): on the same rig, without the
// restart, the held read is answered with the reasoned error after the
// vote timeout.
func TestReview6HeldReadAnsweredWithoutARestart(t *testing.T) {
	r := newRestartRigTiming(t, Timing{VoteTimeout: time.Second, InDoubtAfter: 40 * time.Millisecond, MaxQueryInterval: time.Hour})
	r.sys.Root.RequestWithCustomSender(r.pid, &messages.Prepare{Tx: tx(1), Ops: []messages.Op{messages.Add("a", 5)}, Participants: []int32{0, 1}, Begun: testEpoch + 10}, r.txn.PID)
	if v, _ := actortest.Expect[*messages.Vote](t, r.txn, wait); v.Kind != messages.VoteYes {
		t.Fatalf("vote %+v", v)
	}
	rep := readReply(t, r.sys.Root.RequestFuture(r.pid, &messages.Read{Keys: []string{"a"}}, 5*time.Second))
	if rep.Err == "" || !strings.Contains(rep.Err, "0.1.1") {
		t.Fatalf("held read answered %+v, want an error naming tx 0.1.1", rep)
	}
}
