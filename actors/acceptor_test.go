package actors

import (
	"testing"

	"twopc/actors/actortest"
	"twopc/messages"
)

// An acceptor promises only upward, accepts only at or above its promise,
// and reports what it accepted with every promise: the single-decree Paxos
// rules that keep two outcomes from being chosen.
func TestAcceptorPromisesUpwardAndReportsWhatItAccepted(t *testing.T) {
	r := newAcceptorRig(t, nil)
	id := messages.TxID{Node: 0, Incarnation: 1, Seq: 1} // acceptors 0, 1, 2

	if a := r.accept(t, id, 0, messages.DecisionCommit, true); !a.OK || a.From != 1 || a.Ballot != 0 {
		t.Fatalf("ballot-0 accept: %+v, want OK from node 1", a)
	}
	p := r.promise(t, id, 6, true) // node 1's ballot (6 = 1 + 1 + 4)
	if !p.OK || p.AcceptedBallot != 0 || p.Accepted != messages.DecisionCommit {
		t.Fatalf("promise 6: %+v, want OK reporting commit accepted in ballot 0", p)
	}
	if p := r.promise(t, id, 3, false); p.OK || p.Promised != 6 {
		t.Fatalf("promise 3 after 6: %+v, want refused naming 6", p)
	}
	if a := r.accept(t, id, 0, messages.DecisionCommit, false); a.OK || a.Promised != 6 {
		t.Fatalf("ballot-0 accept after promise 6: %+v, want refused", a)
	}
	if a := r.accept(t, id, 6, messages.DecisionCommit, true); !a.OK {
		t.Fatalf("accept in the promised ballot: %+v, want OK", a)
	}
	if p := r.promise(t, id, 7, true); !p.OK || p.AcceptedBallot != 6 || p.Accepted != messages.DecisionCommit {
		t.Fatalf("promise 7: %+v, want commit accepted in ballot 6", p)
	}
}

// A promise and an acceptance are answered only once their records are
// durable: the reply waits for the log.
func TestAcceptorAnswersOnlyOnceDurable(t *testing.T) {
	r := newAcceptorRig(t, nil)
	id := messages.TxID{Node: 3, Incarnation: 2, Seq: 9} // acceptors 3, 0, 1
	r.ask(&messages.PromiseRequest{Tx: id, Ballot: 2, From: 1})
	rec, done := r.forced(t, messages.RecPromised)
	if rec.Tx != id || rec.Ballot != 2 {
		t.Fatalf("PROMISED %+v, want ballot 2 of %v", rec, id)
	}
	if n := len(r.proposer.Seen()); n != 0 {
		t.Fatalf("%d replies before PROMISED was durable", n)
	}
	done()
	if p, _ := actortest.Expect[*messages.PromiseReply](t, r.proposer, wait); !p.OK || p.Ballot != 2 {
		t.Fatalf("reply %+v, want promise of ballot 2", p)
	}
	r.ask(&messages.AcceptRequest{Tx: id, Ballot: 2, From: 1, Decision: messages.DecisionAbort})
	rec, done = r.forced(t, messages.RecAccepted)
	if rec.Decision != messages.DecisionAbort || rec.Ballot != 2 {
		t.Fatalf("ACCEPTED %+v, want abort in ballot 2", rec)
	}
	if n := len(r.proposer.Seen()); n != 1 {
		t.Fatalf("%d replies before ACCEPTED was durable, want only the promise", n)
	}
	done()
	if a, _ := actortest.Expect[*messages.AcceptReply](t, r.proposer, wait); !a.OK {
		t.Fatalf("reply %+v, want OK", a)
	}
}

// An acceptor restarted from its log keeps its promise and its acceptance:
// one that forgot its promise would accept the coordinator's ballot 0 after
// promising a recovery not to.
func TestAcceptorRestartedFromItsLogKeepsItsPromise(t *testing.T) {
	r := newAcceptorRig(t, nil)
	id := messages.TxID{Node: 0, Incarnation: 1, Seq: 4}
	r.promise(t, id, 2, true)
	other := messages.TxID{Node: 0, Incarnation: 1, Seq: 5}
	r.accept(t, other, 0, messages.DecisionCommit, true)

	again := newAcceptorRig(t, r.fold())
	if a := again.accept(t, id, 0, messages.DecisionCommit, false); a.OK || a.Promised != 2 {
		t.Fatalf("ballot 0 after a restart that followed promise 2: %+v, want refused", a)
	}
	if p := again.promise(t, other, 3, true); !p.OK || p.Accepted != messages.DecisionCommit || p.AcceptedBallot != 0 {
		t.Fatalf("promise after restart: %+v, want commit accepted in ballot 0 reported", p)
	}
}

// Only a transaction's acceptors answer for it, and ballot 0 needs no
// promise: such requests are ignored.
func TestAcceptorIgnoresWhatIsNotItsToAnswer(t *testing.T) {
	r := newAcceptorRig(t, nil)
	notMine := messages.TxID{Node: 2, Incarnation: 1, Seq: 1} // acceptors 2, 3, 0
	r.ask(&messages.PromiseRequest{Tx: notMine, Ballot: 1, From: 0})
	r.ask(&messages.AcceptRequest{Tx: notMine, Ballot: 0, From: 2, Decision: messages.DecisionCommit})
	mine := messages.TxID{Node: 1, Incarnation: 1, Seq: 1}
	r.ask(&messages.PromiseRequest{Tx: mine, Ballot: 0, From: 1})
	// A request it does answer, after them: once its reply is out, the
	// ones before it were handled.
	r.promise(t, mine, 5, true)
	if n := len(r.proposer.Seen()); n != 1 {
		t.Fatalf("%d replies, want only the last request's", n)
	}
}

// An acceptor forgets a transaction once its coordinator's mark (carried on
// a ballot-0 AcceptRequest) passes it within the same incarnation, and
// never one of an earlier incarnation, which participants may still be in
// doubt about.
func TestAcceptorForgetsBelowTheMarkOfTheSameIncarnationOnly(t *testing.T) {
	old := messages.TxID{Node: 0, Incarnation: 1, Seq: 3}
	low := messages.TxID{Node: 0, Incarnation: 2, Seq: 3}
	r := newAcceptorRig(t, map[messages.TxID]messages.Acceptance{
		old: {AcceptedBallot: 0, Accepted: messages.DecisionCommit},
		low: {AcceptedBallot: 0, Accepted: messages.DecisionCommit},
	})
	r.ask(&messages.AcceptRequest{Tx: messages.TxID{Node: 0, Incarnation: 2, Seq: 10}, Ballot: 0, From: 0, Decision: messages.DecisionCommit, Settled: 10})
	_, done := r.forced(t, messages.RecAccepted)
	done()
	actortest.Expect[*messages.AcceptReply](t, r.proposer, wait)
	if p := r.promise(t, old, 2, true); p.Accepted != messages.DecisionCommit {
		t.Fatalf("earlier incarnation's transaction: %+v, want its commit still reported", p)
	}
	if p := r.promise(t, low, 2, true); p.Accepted != messages.DecisionUnknown {
		t.Fatalf("transaction below the mark: %+v, want it forgotten", p)
	}
}
