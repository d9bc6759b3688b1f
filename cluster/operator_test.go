package cluster

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"twopc/actors"
	"twopc/actors/actortest"
	"twopc/messages"
)

// opTiming: short clocks, as crashTiming, and outcomes remembered only as
// long as the protocol allows (VoteTimeout + 2 × ClockSkew, rounded up), so
// that what happens once a participant forgets shows within the test.
var opTiming = actors.Timing{
	VoteTimeout:       time.Second,
	ClockSkew:         50 * time.Millisecond,
	ResendInterval:    50 * time.Millisecond,
	MaxResendInterval: 200 * time.Millisecond,
	InDoubtAfter:      100 * time.Millisecond,
	MaxQueryInterval:  400 * time.Millisecond,
	RememberOutcomes:  1200 * time.Millisecond,
}

// opRig is a three-node crash rig: node 0 coordinates, nodes 1 and 2 take
// part, each with one key set to 100. log, if set, gets every node's log
// lines (at ERROR and above).
type opRig struct {
	*crashRig
	x, y string // n1/..., n2/...
}

func newOpRig(t *testing.T, timing actors.Timing, log hclog.Logger) *opRig {
	if log == nil {
		log = hclog.New(&hclog.LoggerOptions{Level: hclog.Off})
	}
	cr := &crashRig{t: t}
	l, err := StartLocal(LocalConfig{Nodes: 3, DataDir: t.TempDir(), Timing: timing, Logger: log, CrashAtSteps: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	cr.l = l
	r := &opRig{crashRig: cr, x: "n1/op-x", y: "n2/op-y"}
	if o, err := l.Node(0).Submit(messages.Set(r.x, 100), messages.Set(r.y, 100)); err != nil || !o.Committed {
		t.Fatalf("setup: %v %v", o, err)
	}
	settled(t, l, 10*time.Second)
	return r
}

// transferCrashingAt submits "move 10 from x to y" through node 0 and cuts
// node 0's power at the armed step; it returns the step and Submit's error,
// then takes node 0 down.
func (r *opRig) transferCrashingAt(c *crashAt) (actors.Step, error) {
	r.t.Helper()
	errc := make(chan error, 1)
	go func() {
		o, err := r.l.Node(0).Submit(messages.Add(r.x, -10), messages.Add(r.y, 10))
		if err == nil {
			r.t.Errorf("a client of a crashed coordinator got an outcome: %v", o)
		}
		errc <- err
	}()
	at := r.r4crashed(c)
	var err error
	select {
	case err = <-errc:
	case <-time.After(5 * time.Second):
		r.t.Fatal("Submit still waiting after its node's power was cut")
	}
	if err := r.l.Crash(0); err != nil {
		r.t.Fatal(err)
	}
	return at, err
}

// values reads x and y (from their owners, through node 1).
func (r *opRig) values() (int64, int64) {
	r.t.Helper()
	vals, err := r.l.Node(1).Read(r.x, r.y)
	if err != nil {
		r.t.Fatal(err)
	}
	return vals[0].Value, vals[1].Value
}

func (r *opRig) wantValues(x, y int64, when string) {
	r.t.Helper()
	if gx, gy := r.values(); gx != x || gy != y {
		r.t.Fatalf("%s: x=%d y=%d, want %d %d", when, gx, gy, x, y)
	}
}

func (r *opRig) wantKnown(tx messages.TxID, d messages.Decision, source string) {
	r.t.Helper()
	got, src, err := r.l.KnownOutcome(tx)
	if err != nil || got != d || !strings.Contains(src, source) {
		r.t.Fatalf("KnownOutcome(%v) = %v %q %v, want %v %q", tx, got, src, err, d, source)
	}
}

// A Submit whose coordinator dies after logging COMMIT has no outcome, but
// its error names the transaction: with the coordinator down nobody knows
// how it ends; once it is back, KnownOutcome says committed.
func TestOperatorSubmitNoOutcomeNamesTheTransaction(t *testing.T) {
	r := newOpRig(t, opTiming, nil)
	at, err := r.transferCrashingAt(r.r4arm(0, actors.StepCommitLogged, -1, nil))
	var ne *NoOutcomeError
	if !errors.As(err, &ne) || ne.Tx != at.Tx || ne.Node != 0 {
		t.Fatalf("Submit's error %v (%T), want a *NoOutcomeError for %v", err, err, at.Tx)
	}
	if !errors.Is(err, errNodeCrashed) || !strings.Contains(err.Error(), "node 0: no outcome for "+at.Tx.String()+": node crashed (") {
		t.Fatalf("error text %q", err)
	}
	r.wantKnown(at.Tx, messages.DecisionUnknown, "") // both participants in doubt, coordinator down

	if err := r.l.RestartNode(0); err != nil {
		t.Fatal(err)
	}
	actortest.Eventually(t, 10*time.Second, func() string {
		if d, _, _ := r.l.KnownOutcome(at.Tx); d != messages.DecisionCommit {
			return "outcome still " + d.String()
		}
		return ""
	})
	settled(t, r.l, 10*time.Second)
	r.wantValues(90, 110, "after the coordinator's restart")
	if _, _, err := r.l.KnownOutcome(messages.TxID{}); err == nil {
		t.Error("KnownOutcome of the zero id: no error")
	}
	if _, _, err := r.l.KnownOutcome(messages.TxID{Node: 3, Incarnation: 1, Seq: 1}); err == nil || !strings.Contains(err.Error(), "not a member") {
		t.Errorf("KnownOutcome of a non-member's id: %v", err)
	}
}

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
	at, err := r.transferCrashingAt(r.r4arm(0, actors.StepCommitDecided, -1, nil))
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
	at, _ := r.transferCrashingAt(r.r4arm(0, actors.StepCommitSent, 1,
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
	at, _ := r.transferCrashingAt(r.r4arm(0, actors.StepCommitLogged, -1, nil))
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
