package cluster

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"twopc/actors"
	"twopc/actors/actortest"
	"twopc/messages"
)

// ReadLocal reads this node's own copy, and only keys it owns.
func TestOperatorReadLocal(t *testing.T) {
	l := testCluster(t, 3, actors.Timing{VoteTimeout: time.Second})
	if o, err := l.Node(0).Submit(messages.Set("n1/a", 5), messages.Add(messages.EverywhereKey, 3)); err != nil || !o.Committed {
		t.Fatalf("setup: %v %v", o, err)
	}
	vals, err := l.Node(1).ReadLocal("n1/a", messages.EverywhereKey, "n1/missing")
	want := []messages.KeyValue{{Key: "n1/a", Value: 5}, {Key: messages.EverywhereKey, Value: 3}, {Key: "n1/missing", Value: 0}}
	if err != nil || !slices.Equal(vals, want) {
		t.Fatalf("ReadLocal on the owner: %v %v, want %v", vals, err, want)
	}
	if vals, err := l.Node(2).ReadLocal(messages.EverywhereKey); err != nil || vals[0].Value != 3 {
		t.Fatalf("ReadLocal of node 2's copy of %s: %v %v", messages.EverywhereKey, vals, err)
	}
	if _, err := l.Node(0).ReadLocal(messages.EverywhereKey, "n1/a"); err == nil || !strings.Contains(err.Error(), "n1/a") || !strings.Contains(err.Error(), "owned by node 1") {
		t.Fatalf("ReadLocal of another node's key: %v", err)
	}
	if _, err := l.Node(0).ReadLocal("bad key"); err == nil {
		t.Fatal("ReadLocal of an invalid key: no error")
	}
	if _, err := l.Node(0).ReadLocal(); err == nil {
		t.Fatal("ReadLocal of no keys: no error")
	}
	n2 := l.Node(2)
	n2.PowerCut()
	if _, err := n2.ReadLocal(messages.EverywhereKey); !errors.Is(err, errNodeCrashed) {
		t.Fatalf("ReadLocal on a node whose power is cut: %v, want %v", err, errNodeCrashed)
	}
}

// The coordinator dies after every participant voted yes, before it logged
// a decision: both participants are in doubt, and stay so (each asks the
// other, who is in doubt too). Local.InDoubt lists them; nobody knows the
// outcome, so Resolve applies the operator's heuristic commit, loudly.
//
// Then the coordinator comes back. Its log has no COMMIT: had anyone asked,
// it would have said abort (presumed) — the protocol's real outcome. The
// nodes stay committed and the coordinator's log disagrees with them (each
// forced node, reconciling, asks it and logs the HEURISTIC DAMAGE: see
// reconcile_test.go). KnownOutcome
// reports the commit (a participant's commit outweighs a presumed abort),
// the coordinator alone says abort.
func TestOperatorInDoubtResolvedByHeuristicCommit(t *testing.T) {
	log, buf := newBufferLogger(hclog.Error)
	r := newOpRig(t, crashTiming, log) // outcomes remembered 10 s: longer than the test
	at, err := r.transferCrashingAt(r.armCrash(0, actors.StepCommitDecided, -1, nil))
	if ne := (*NoOutcomeError)(nil); !errors.As(err, &ne) || ne.Tx != at.Tx {
		t.Fatalf("Submit: %v, want a *NoOutcomeError for %v", err, at.Tx)
	}
	tx := at.Tx

	var doubts []InDoubt
	actortest.Eventually(t, 5*time.Second, func() string {
		doubts, err = r.l.InDoubt()
		if err != nil {
			return err.Error()
		}
		if len(doubts) != 2 || doubts[0].Asked == 0 || doubts[1].Asked == 0 {
			return "want both participants in doubt and asking"
		}
		return ""
	})
	for i, d := range doubts {
		if d.Node != int32(i+1) || d.Tx != tx || d.CoordinatorUp || !slices.Equal(d.Participants, []int32{1, 2}) || d.Since.IsZero() || time.Since(d.Since) > time.Minute {
			t.Fatalf("in doubt: %+v, want nodes 1 and 2 in doubt about %v with the coordinator down", doubts, tx)
		}
	}
	r.wantKnown(tx, messages.DecisionUnknown, "")

	res, err := r.l.Resolve(tx, true)
	if err != nil || res.Tx != tx || !res.Commit || len(res.Nodes) == 0 || len(res.Nodes)+len(res.Refused) != 2 {
		t.Fatalf("Resolve: %+v %v", res, err)
	}
	for _, why := range res.Refused {
		// Told a moment after the other, a node may have learned the
		// heuristic commit from it already (cooperative termination).
		if !strings.Contains(why, "not in doubt") || !strings.Contains(why, "commit") {
			t.Fatalf("Resolve: %+v", res)
		}
	}
	r.wantValues(90, 110, "after the heuristic commit")
	if d, err := r.l.InDoubt(); err != nil || len(d) != 0 {
		t.Fatalf("still in doubt: %v %v", d, err)
	}
	want := "HEURISTIC DECISION by the operator: commit of " + tx.String() + " without knowing the coordinator's decision; if it decided otherwise, the nodes now disagree"
	if n := strings.Count(buf.String(), want); n != len(res.Nodes) {
		t.Fatalf("want the heuristic decision logged at ERROR by each node it was applied on (%v), found %d in:\n%s", res.Nodes, n, buf.String())
	}
	r.wantKnown(tx, messages.DecisionCommit, "by the operator's heuristic decision")
	if _, err := r.l.Resolve(tx, false); err == nil || !strings.Contains(err.Error(), tx.String()+" is not in doubt on any running node") {
		t.Fatalf("Resolve of a settled transaction: %v", err)
	}

	// The coordinator returns: nothing changes, and its own answer
	// contradicts the nodes'.
	if err := r.l.RestartNode(0); err != nil {
		t.Fatal(err)
	}
	settled(t, r.l, 10*time.Second)
	r.wantValues(90, 110, "after the coordinator's restart")
	n0 := r.l.Node(0)
	a, err := n0.askOutcome(n0.Coordinator(), tx)
	if err != nil || a.Decision != messages.DecisionAbort || !a.Presumed {
		t.Fatalf("the restarted coordinator on %v: %+v %v, want a presumed abort (it never logged COMMIT)", tx, a, err)
	}
	r.wantKnown(tx, messages.DecisionCommit, "node 1 committed it")
}

// A participant that knows the outcome makes Resolve refuse, whichever
// decision is asked for: here node 1 committed before the coordinator died,
// and node 2, cut off from node 1, is still in doubt. Once the link heals,
// node 2 learns "commit" from node 1 by itself.
func TestOperatorResolveRefusedWhileAParticipantKnows(t *testing.T) {
	r := newOpRig(t, crashTiming, nil) // outcomes remembered 10 s: longer than the test
	if err := r.l.Partition(1, 2); err != nil {
		t.Fatal(err)
	}
	at, _ := r.transferCrashingAt(r.armCrash(0, actors.StepCommitSent, 1,
		func(s actors.Step) bool { return s.Node == 1 && s.Kind == actors.StepCommittedLogged }))
	tx := at.Tx
	doubts, err := r.l.InDoubt()
	if err != nil || len(doubts) != 1 || doubts[0].Node != 2 || doubts[0].Tx != tx {
		t.Fatalf("in doubt: %+v %v, want node 2 only", doubts, err)
	}
	for _, commit := range []bool{false, true} {
		res, err := r.l.Resolve(tx, commit)
		var known *OutcomeKnownError
		if !errors.As(err, &known) || !known.Committed || known.Tx != tx || known.Source != "node 1 committed it" {
			t.Fatalf("Resolve(commit=%v): %+v %v, want an OutcomeKnownError naming node 1's commit", commit, res, err)
		}
		if want := "refused: " + tx.String() + " is known to have committed (node 1 committed it); its in-doubt participants will learn that when they next ask"; err.Error() != want {
			t.Fatalf("error %q, want %q", err, want)
		}
	}
	if d, err := r.l.InDoubt(); err != nil || len(d) != 1 || d[0].Node != 2 {
		t.Fatalf("a refused Resolve changed something: %+v %v", d, err)
	}
	r.l.Heal()
	settled(t, r.l, 10*time.Second, 1, 2)
	r.wantValues(90, 110, "once node 2 could ask node 1")
	if err := r.l.RestartNode(0); err != nil {
		t.Fatal(err)
	}
	settled(t, r.l, 10*time.Second)
}

// The dangerous case: the coordinator logged COMMIT and died before sending
// it; nobody running knows, so Resolve accepts the operator's heuristic
// abort. When the coordinator comes back it re-drives its COMMIT. The
// participants logged their heuristic abort (HEURISTIC, forced) and never
// forget it, so the disagreement is reported, not hidden:
//
//  1. Each participant answers the Commit with an Ack marked Heuristic and
//     logs "HEURISTIC DAMAGE" at ERROR (before, it refused to ack, and once
//     it had forgotten its abort it acked as if it had committed).
//  2. The coordinator counts those acks, logs "heuristic damage reported by
//     node N" at ERROR, writes END and ends: nothing is re-sent for ever.
//  3. The values stay as the operator forced them, and each participant
//     keeps saying it aborted by the operator's decision — after its
//     outcomes are forgotten and after a restart, when a Commit for the
//     transaction is still answered as damage.
func TestOperatorHeuristicAbortThenCoordinatorRestarts(t *testing.T) {
	log, buf := newBufferLogger(hclog.Error)
	r := newOpRig(t, opTiming, log)
	at, _ := r.transferCrashingAt(r.armCrash(0, actors.StepCommitLogged, -1, nil))
	tx := at.Tx
	res, err := r.l.Resolve(tx, false)
	if err != nil || len(res.Nodes) == 0 {
		t.Fatalf("Resolve: %+v %v", res, err)
	}
	r.wantValues(100, 100, "after the heuristic abort")

	if err := r.l.RestartNode(0); err != nil {
		t.Fatal(err)
	}
	damage := "HEURISTIC DAMAGE: coordinator decided commit for " + tx.String() + ", this node applied the operator's abort"
	actortest.Eventually(t, 5*time.Second, func() string {
		for _, n := range res.Nodes {
			reported := fmt.Sprintf("heuristic damage reported by node %d for %v: it applied the operator's decision, not the coordinator's", n, tx)
			if !strings.Contains(buf.String(), reported) {
				return fmt.Sprintf("the coordinator has not reported node %d's damage yet", n)
			}
		}
		if strings.Count(buf.String(), damage) < len(res.Nodes) {
			return "not every forced participant has logged the damage yet"
		}
		return ""
	})
	settled(t, r.l, 10*time.Second) // the coordinator wrote END and ended
	if strings.Contains(buf.String(), "conflicting decisions") {
		t.Fatalf("a participant refused the Commit instead of reporting the damage:\n%s", buf.String())
	}
	r.wantValues(100, 100, "after the coordinator ended the transaction")
	n0 := r.l.Node(0)
	if a, err := n0.askOutcome(n0.Coordinator(), tx); err != nil || a.Decision != messages.DecisionAbort || !a.Presumed {
		t.Fatalf("the coordinator on %v after END: %+v %v, want it forgotten (presumed abort)", tx, a, err)
	}
	forced := res.Nodes[0]
	r.wantKnown(tx, messages.DecisionAbort, "aborted it (by the operator's heuristic decision)")

	// Once the forced participant has forgotten its ordinary outcomes
	// (RememberOutcomes), and after its restart, the heuristic abort is
	// still there.
	actortest.Eventually(t, 10*time.Second, func() string {
		st, err := r.l.Node(int(forced)).ParticipantStatus()
		if err != nil {
			return err.Error()
		}
		if st.Remembered != 0 {
			return fmt.Sprintf("node %d still remembers %d outcomes", forced, st.Remembered)
		}
		return ""
	})
	r.wantKnown(tx, messages.DecisionAbort, "aborted it (by the operator's heuristic decision)")
	if err := r.l.Crash(int(forced)); err != nil {
		t.Fatal(err)
	}
	if err := r.l.RestartNode(int(forced)); err != nil {
		t.Fatal(err)
	}
	n := r.l.Node(int(forced))
	a, err := n.askOutcome(n.Participant(), tx)
	if err != nil || a.Decision != messages.DecisionAbort || a.Why != "aborted it (by the operator's heuristic decision)" {
		t.Fatalf("node %d's participant after its restart: %+v %v", forced, a, err)
	}
	before := strings.Count(buf.String(), damage)
	probe := actortest.NewProbe(t, n.System(), "late-coordinator")
	n.System().Root.RequestWithCustomSender(n.Participant(), &messages.Commit{Tx: tx, From: 0}, probe.PID)
	if ack, _ := actortest.Expect[*messages.Ack](t, probe, 5*time.Second); ack.Tx != tx || ack.From != forced || !ack.Heuristic {
		t.Fatalf("a Commit after node %d's restart: %+v, want an Ack marked Heuristic", forced, ack)
	}
	if strings.Count(buf.String(), damage) != before+1 {
		t.Fatalf("the restarted participant did not log the damage:\n%s", buf.String())
	}
	settled(t, r.l, 10*time.Second)
	r.wantValues(100, 100, "after the participant's restart")
}

// Resolve applies a heuristic decision while the transaction's coordinator
// is running and has already decided: every participant voted yes, the txn
// actor has decided commit and is logging COMMIT (held here at the
// commit-decided step, as a slow fsync would). KnownOutcome asks the
// coordinator, which answers "still collecting votes (or logging the
// decision)" — Unknown — and nobody else knows, so Resolve forces the abort
// on both participants. A moment later COMMIT is durable, the client is told
// "committed", and no node applied it.
//
// Nothing was blocked: the coordinator was up and would have finished by
// itself. A heuristic decision is for a transaction nobody can settle; an
// answer of "still deciding" from a running coordinator is a transient
// Unknown that Resolve must not take for "nobody knows" (a race between
// KnownOutcome and ForceDecision).
func TestResolveRefusedWhileTheCoordinatorIsDeciding(t *testing.T) {
	var hold atomic.Pointer[func(actors.Step)]
	l, err := StartLocal(LocalConfig{
		Nodes: 3, DataDir: t.TempDir(), Timing: opTiming,
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Off}),
		Steps: func(s actors.Step) {
			if f := hold.Load(); f != nil {
				(*f)(s)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	x, y := "n1/r7-x", "n2/r7-y"
	if o, err := l.Node(0).Submit(messages.Set(x, 100), messages.Set(y, 100)); err != nil || !o.Committed {
		t.Fatalf("setup: %v %v", o, err)
	}
	settled(t, l, 10*time.Second)

	reached := make(chan messages.TxID, 1)
	release := make(chan struct{})
	var once atomic.Bool
	f := func(s actors.Step) {
		if s.Node == 0 && s.Kind == actors.StepCommitDecided && once.CompareAndSwap(false, true) {
			reached <- s.Tx
			<-release // COMMIT not yet appended: a slow log, as seen from outside
		}
	}
	hold.Store(&f)
	var released atomic.Bool
	releaseOnce := func() {
		if released.CompareAndSwap(false, true) {
			close(release)
		}
	}
	t.Cleanup(releaseOnce)

	outc := make(chan *messages.Outcome, 1)
	go func() {
		o, err := l.Node(0).Submit(messages.Add(x, -10), messages.Add(y, 10))
		if err != nil {
			t.Errorf("Submit: %v", err)
		}
		outc <- o
	}()
	var tx messages.TxID
	select {
	case tx = <-reached:
	case <-time.After(5 * time.Second):
		t.Fatal("the coordinator never decided")
	}
	actortest.Eventually(t, 5*time.Second, func() string {
		d, err := l.InDoubt()
		if err != nil {
			return err.Error()
		}
		if len(d) != 2 {
			return fmt.Sprintf("in doubt: %+v, want nodes 1 and 2 (both voted yes)", d)
		}
		return ""
	})

	res, rerr := l.Resolve(tx, false)
	releaseOnce()
	o := <-outc
	vals := settledValues(t, l, x, y)
	if rerr == nil {
		t.Fatalf("Resolve(%v, abort) was applied on nodes %v while node 0's coordinator was up and had decided commit (it was logging COMMIT); then the client was told %+v, and x=%d y=%d: a committed transaction applied nowhere",
			tx, res.Nodes, o, vals[0].Value, vals[1].Value)
	}
	wantRunningRefusal(t, rerr)
	if !o.Committed || vals[0].Value != 90 || vals[1].Value != 110 {
		t.Fatalf("Resolve refused (%v), yet outcome %+v and x=%d y=%d", rerr, o, vals[0].Value, vals[1].Value)
	}
}

// The same race without any hook: the coordinator is up and collecting
// votes (node 2's Prepare is lost to a partition, so it will abort at its
// vote timeout); node 1 voted yes and is in doubt, not yet asking anyone
// (InDoubtAfter is longer than the vote timeout, as by default). KnownOutcome
// hears "still collecting votes" from the running coordinator, Resolve
// forces a commit on node 1, and a moment later the coordinator aborts: node
// 1 applied a transaction that aborted, though its coordinator never stopped
// running and nothing was blocked.
func TestResolveRefusedWhileTheCoordinatorIsCollectingVotes(t *testing.T) {
	timing := opTiming
	timing.VoteTimeout = time.Second
	timing.InDoubtAfter = 3 * time.Second // the default ratio: asks only after the vote timeout
	l, err := StartLocal(LocalConfig{
		Nodes: 3, DataDir: t.TempDir(), Timing: timing,
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Off}),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	x, y := "n1/r7c-x", "n2/r7c-y"
	if o, err := l.Node(0).Submit(messages.Set(x, 100), messages.Set(y, 100)); err != nil || !o.Committed {
		t.Fatalf("setup: %v %v", o, err)
	}
	settled(t, l, 10*time.Second)
	if err := l.Partition(0, 2); err != nil {
		t.Fatal(err)
	}

	outc := make(chan *messages.Outcome, 1)
	go func() {
		o, err := l.Node(0).Submit(messages.Add(x, -10), messages.Add(y, 10))
		if err != nil {
			t.Errorf("Submit: %v", err)
		}
		outc <- o
	}()
	var tx messages.TxID
	actortest.Eventually(t, 5*time.Second, func() string {
		d, err := l.InDoubt()
		if err != nil {
			return err.Error()
		}
		if len(d) != 1 || d[0].Node != 1 || !d[0].CoordinatorUp {
			return fmt.Sprintf("in doubt: %+v, want node 1 (coordinator up)", d)
		}
		tx = d[0].Tx
		return ""
	})

	res, rerr := l.Resolve(tx, true)
	o := <-outc
	l.Heal()
	vals := settledValues(t, l, x, y)
	if rerr == nil {
		t.Fatalf("Resolve(%v, commit) was applied on nodes %v while node 0's coordinator was up and collecting votes; it then decided %+v, and x=%d y=%d: node 1 applied a transaction that aborted",
			tx, res.Nodes, o, vals[0].Value, vals[1].Value)
	}
	wantRunningRefusal(t, rerr)
	if o.Committed || vals[0].Value != 100 || vals[1].Value != 100 {
		t.Fatalf("Resolve refused (%v), yet outcome %+v and x=%d y=%d", rerr, o, vals[0].Value, vals[1].Value)
	}
}
