package actors

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"twopc/actors/actortest"
	"twopc/messages"
)

func TestTxnOneNoAbortsTheOthersAndNeverCommits(t *testing.T) {
	r := newTxnRig(t, Timing{VoteTimeout: time.Hour}, 0, 1, 2)
	r.prepared(t)
	r.vote(0, messages.VoteYes, "")
	r.vote(1, messages.VoteNo, "key a is locked")

	out, _ := actortest.Expect[*txnOutcome](t, r.boss, wait)
	if out.outcome.Committed || !strings.Contains(out.outcome.Reason, "node 1 voted no: key a is locked") {
		t.Fatalf("outcome %+v", out.outcome)
	}
	// The yes-voter and the one that had not voted get Abort; the no-voter
	// holds nothing and gets nothing.
	for _, n := range []int32{0, 2} {
		if ab, _ := actortest.Expect[*messages.Abort](t, r.parts[n], wait); ab.Tx != tx(1) {
			t.Fatalf("abort %+v", ab)
		}
	}
	r.vote(2, messages.VoteYes, "") // a late yes changes nothing
	for n, p := range r.parts {
		for _, e := range p.Seen() {
			if _, isCommit := e.Msg.(*messages.Commit); isCommit {
				t.Fatalf("participant %d got Commit", n)
			}
		}
	}
	actortest.ExpectNone(t, r.parts[1], 50*time.Millisecond)
	for _, e := range r.wal.Seen() {
		t.Fatalf("abort wrote to the log (presumed abort needs nothing): %+v", e.Msg)
	}
}

func TestTxnVoteTimeoutAborts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newTxnRig(t, Timing{VoteTimeout: 5 * time.Second}, 0, 1)
		r.prepared(t)
		r.vote(0, messages.VoteYes, "")
		start := time.Now()
		out, _ := actortest.Expect[*txnOutcome](t, r.boss, time.Minute)
		if waited := time.Since(start); waited < 5*time.Second {
			t.Fatalf("aborted after %v, before the 5s vote timeout", waited)
		}
		if out.outcome.Committed || !strings.Contains(out.outcome.Reason, "vote timeout: no vote from node(s) 1") {
			t.Fatalf("outcome %+v", out.outcome)
		}
		actortest.Expect[*messages.Abort](t, r.parts[0], wait)
		actortest.Expect[*messages.Abort](t, r.parts[1], wait)
		_ = r.sys.Root.StopFuture(r.pid).Wait()
		time.Sleep(2 * time.Second) // let the dead-letter throttle finish inside the bubble
	})
}

func TestTxnCommitsOnlyAfterDecisionIsDurable(t *testing.T) {
	r := newTxnRig(t, Timing{VoteTimeout: time.Hour, ResendInterval: time.Hour}, 0, 1)
	r.prepared(t)
	r.vote(0, messages.VoteYes, "")
	r.vote(1, messages.VoteYes, "")
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	if !app.Force || app.Records[0].Kind != messages.RecCommitDecision || len(app.Records[0].Participants) != 2 {
		t.Fatalf("want forced COMMIT naming both participants, got %+v", app)
	}
	actortest.ExpectNone(t, r.parts[0], 100*time.Millisecond) // no Commit before durable

	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	for n, p := range r.parts {
		if c, _ := actortest.Expect[*messages.Commit](t, p, wait); c.Tx != tx(1) {
			t.Fatalf("participant %d: %+v", n, c)
		}
	}
	// Durable decision: the client hears "committed" without waiting for acks.
	out, _ := actortest.Expect[*txnOutcome](t, r.boss, wait)
	if !out.outcome.Committed {
		t.Fatalf("outcome %+v", out.outcome)
	}
	r.sys.Root.Send(r.pid, &messages.Ack{Tx: tx(1), From: 0})
	actortest.ExpectNone(t, r.wal, 50*time.Millisecond) // no END before node 1 acks
	r.sys.Root.Send(r.pid, &messages.Ack{Tx: tx(1), From: 1})
	end, _ := actortest.Expect[*messages.Append](t, r.wal, wait)
	if end.Force || end.Records[0].Kind != messages.RecEnd {
		t.Fatalf("want lazy END, got %+v", end)
	}
}

func TestTxnResendsCommitUntilAcked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newTxnRig(t, Timing{VoteTimeout: time.Minute, ResendInterval: time.Second}, 0, 1)
		r.prepared(t)
		r.vote(0, messages.VoteYes, "")
		r.vote(1, messages.VoteYes, "")
		app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
		r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
		actortest.Expect[*messages.Commit](t, r.parts[0], wait)
		actortest.Expect[*messages.Commit](t, r.parts[1], wait)
		r.sys.Root.Send(r.pid, &messages.Ack{Tx: tx(1), From: 0})
		// Node 1's ack is lost: it gets Commit again, node 0 does not.
		actortest.Expect[*messages.Commit](t, r.parts[1], 10*time.Second)
		actortest.Expect[*messages.Commit](t, r.parts[1], 10*time.Second)
		actortest.ExpectNone(t, r.parts[0], 5*time.Second)
		r.sys.Root.Send(r.pid, &messages.Ack{Tx: tx(1), From: 1})
		end, _ := actortest.Expect[*messages.Append](t, r.wal, wait)
		if end.Records[0].Kind != messages.RecEnd {
			t.Fatalf("want END once both acked, got %+v", end)
		}
		time.Sleep(2 * time.Second)
	})
}

func TestTxnDecisionQueryWhileCollectingAbortsFirst(t *testing.T) {
	r := newTxnRig(t, Timing{VoteTimeout: time.Hour}, 0, 1)
	r.prepared(t)
	r.vote(0, messages.VoteYes, "")
	r.sys.Root.Send(r.pid, &messages.DecisionQuery{Tx: tx(1), From: 0})
	actortest.Expect[*messages.Abort](t, r.parts[0], wait)
	rep, _ := actortest.Expect[*messages.DecisionReply](t, r.parts[0], wait)
	if rep.Decision != messages.DecisionAbort {
		t.Fatalf("reply %+v", rep)
	}
	if out, _ := actortest.Expect[*txnOutcome](t, r.boss, wait); out.outcome.Committed {
		t.Fatalf("committed after answering abort")
	}
}

func TestTxnDecisionQueryWhileLoggingWaitsForCommit(t *testing.T) {
	r := newTxnRig(t, Timing{VoteTimeout: time.Hour, ResendInterval: time.Hour}, 0, 1)
	r.prepared(t)
	r.vote(0, messages.VoteYes, "")
	r.vote(1, messages.VoteYes, "")
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	r.sys.Root.Send(r.pid, &messages.DecisionQuery{Tx: tx(1), From: 1})
	actortest.ExpectNone(t, r.parts[1], 50*time.Millisecond) // no answer until durable
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	rep, _ := actortest.Expect[*messages.DecisionReply](t, r.parts[1], wait)
	if rep.Decision != messages.DecisionCommit {
		t.Fatalf("reply %+v", rep)
	}
}

// A COMMIT whose write failed may or may not be on disk: the txn actor sends
// neither decision and tells the client the outcome is unknown — not an
// abort, which a client would act on.
func TestTxnFailedCommitLogIsUnknownNotAbort(t *testing.T) {
	r := newTxnRig(t, Timing{VoteTimeout: time.Hour, ResendInterval: time.Hour}, 0, 1)
	r.prepared(t)
	r.vote(0, messages.VoteYes, "")
	r.vote(1, messages.VoteYes, "")
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID, Err: errDisk})
	out, _ := actortest.Expect[*txnOutcome](t, r.boss, wait)
	if o := out.outcome; o.Committed || !o.Unknown || !strings.Contains(o.Reason, errDisk.Error()) {
		t.Fatalf("outcome %+v, want unknown naming the log error", o)
	}
	for _, p := range r.parts {
		actortest.ExpectNone(t, p, 50*time.Millisecond) // neither Commit nor Abort
	}
}

// A repeated yes from one participant is not a second participant's vote.
func TestTxnDuplicateVoteDoesNotCountTwice(t *testing.T) {
	r := newTxnRig(t, Timing{VoteTimeout: time.Hour, ResendInterval: time.Hour}, 0, 1)
	r.prepared(t)
	r.vote(0, messages.VoteYes, "")
	r.vote(0, messages.VoteYes, "")
	// Votes that are not this transaction's, or not from a participant.
	r.sys.Root.Send(r.pid, &messages.Vote{Tx: tx(2), From: 1, Kind: messages.VoteYes})
	r.sys.Root.Send(r.pid, &messages.Vote{Tx: tx(1), From: 7, Kind: messages.VoteYes})
	actortest.ExpectNone(t, r.wal, 100*time.Millisecond)
	r.vote(1, messages.VoteYes, "")
	app, _ := actortest.Expect[*messages.Append](t, r.wal, wait)
	if p := app.Records[0].Participants; len(p) != 2 || p[0] != 0 || p[1] != 1 {
		t.Fatalf("COMMIT participants %v", p)
	}
}

// A yes followed by a (stale or forged) no from the same participant does
// not flip the decision.
func TestTxnLaterNoFromYesVoterIgnored(t *testing.T) {
	r := newTxnRig(t, Timing{VoteTimeout: time.Hour, ResendInterval: time.Hour}, 0, 1)
	r.prepared(t)
	r.vote(0, messages.VoteYes, "")
	r.vote(0, messages.VoteNo, "stale")
	r.vote(1, messages.VoteYes, "")
	app, _ := actortest.Expect[*messages.Append](t, r.wal, wait)
	if app.Records[0].Kind != messages.RecCommitDecision {
		t.Fatalf("append %+v", app)
	}
}

// A duplicate ack does not stand in for a missing one: END (which lets the
// coordinator forget the commit) is written only after every yes-voter acked.
// The client hears "committed" as soon as the decision is durable, once.
func TestTxnDuplicateAckDoesNotEnd(t *testing.T) {
	r := newTxnRig(t, Timing{VoteTimeout: time.Hour, ResendInterval: time.Hour}, 0, 1)
	r.prepared(t)
	r.vote(0, messages.VoteYes, "")
	r.vote(1, messages.VoteYes, "")
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	if out, _ := actortest.Expect[*txnOutcome](t, r.boss, wait); !out.outcome.Committed {
		t.Fatalf("outcome %+v", out.outcome)
	}
	r.sys.Root.Send(r.pid, &messages.Ack{Tx: tx(1), From: 0})
	r.sys.Root.Send(r.pid, &messages.Ack{Tx: tx(1), From: 0})
	r.sys.Root.Send(r.pid, &messages.Ack{Tx: tx(2), From: 1}) // another transaction's
	actortest.ExpectNone(t, r.wal, 100*time.Millisecond)      // no END yet
	// Still driving: a query is answered commit.
	r.sys.Root.Send(r.pid, &messages.DecisionQuery{Tx: tx(1), From: 1})
	actortest.Expect[*messages.Commit](t, r.parts[1], wait)
	if rep, _ := actortest.Expect[*messages.DecisionReply](t, r.parts[1], wait); rep.Decision != messages.DecisionCommit {
		t.Fatalf("reply %+v", rep)
	}
	r.sys.Root.Send(r.pid, &messages.Ack{Tx: tx(1), From: 1})
	end, _ := actortest.Expect[*messages.Append](t, r.wal, wait)
	if end.Records[0].Kind != messages.RecEnd {
		t.Fatalf("want END, got %+v", end)
	}
	actortest.ExpectNone(t, r.boss, 50*time.Millisecond) // answered once
}

// Only the yes-voters are in the COMMIT record and get Commit; a read-only
// voter is left out of phase two.
func TestTxnReadOnlyVoterLeftOutOfPhaseTwo(t *testing.T) {
	r := newTxnRig(t, Timing{VoteTimeout: time.Hour, ResendInterval: time.Hour}, 0, 1)
	r.prepared(t)
	r.vote(0, messages.VoteReadOnly, "")
	r.vote(1, messages.VoteYes, "")
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	if p := app.Records[0].Participants; len(p) != 1 || p[0] != 1 {
		t.Fatalf("COMMIT participants %v, want [1]", p)
	}
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	actortest.Expect[*messages.Commit](t, r.parts[1], wait)
	actortest.ExpectNone(t, r.parts[0], 50*time.Millisecond)
}
