package cluster

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"twopc/actors"
	"twopc/actors/actortest"
	"twopc/messages"
)

// The case the Commit path never reports: the coordinator dies after every
// participant voted yes, before it logged COMMIT; the operator resolves the
// in-doubt transaction with a heuristic commit while it is down. Its real
// outcome is abort (presumed: no COMMIT in its log), and under presumed
// abort the restarted coordinator sends nobody anything. Each forced
// participant asks it (reconciling its heuristic decision), hears abort,
// and logs the HEURISTIC DAMAGE at ERROR. Nothing is undone: the values
// stay as the operator forced them.
func TestReconcileHeuristicCommitCoordinatorPresumedAbort(t *testing.T) {
	log, buf := newBufferLogger(hclog.Error)
	r := newOpRig(t, opTiming, log)
	at, _ := r.transferCrashingAt(r.armCrash(0, actors.StepCommitDecided, -1, nil))
	tx := at.Tx
	actortest.Eventually(t, 5*time.Second, func() string {
		if d, err := r.l.InDoubt(); err != nil || len(d) != 2 {
			return fmt.Sprintf("in doubt: %v %v, want nodes 1 and 2", d, err)
		}
		return ""
	})
	res, err := r.l.Resolve(tx, true)
	if err != nil || len(res.Nodes) == 0 {
		t.Fatalf("Resolve: %+v %v", res, err)
	}
	r.wantValues(90, 110, "after the heuristic commit")
	damage := "HEURISTIC DAMAGE: coordinator decided abort for " + tx.String() + ", this node applied the operator's commit"
	if strings.Contains(buf.String(), damage) {
		t.Fatalf("damage reported before the coordinator could answer:\n%s", buf.String())
	}

	if err := r.l.RestartNode(0); err != nil {
		t.Fatal(err)
	}
	actortest.Eventually(t, 5*time.Second, func() string {
		lines := strings.Split(buf.String(), "\n")
		for _, n := range res.Nodes {
			found := false
			for _, l := range lines {
				if strings.Contains(l, "[ERROR]") && strings.Contains(l, damage) && strings.Contains(l, fmt.Sprintf("node=%d", n)) {
					found = true
				}
			}
			if !found {
				return fmt.Sprintf("node %d has not logged the damage yet", n)
			}
		}
		return ""
	})
	settled(t, r.l, 10*time.Second)
	r.wantValues(90, 110, "after the damage was reported")
	n0 := r.l.Node(0)
	if a, err := n0.askOutcome(n0.Coordinator(), tx); err != nil || a.Decision != messages.DecisionAbort || !a.Presumed {
		t.Fatalf("the restarted coordinator on %v: %+v %v, want a presumed abort", tx, a, err)
	}
	r.wantKnown(tx, messages.DecisionCommit, "by the operator's heuristic decision")
}

// The case a user met: the operator's heuristic commit, while the
// coordinator was down, matched the coordinator's decision (its COMMIT was
// durable). Restarted, the coordinator re-drives the commit, each forced
// node confirms the decision (WARN) and acks, and the coordinator ends the
// transaction and forgets it. Later restarts of those nodes used to ask it
// again, hear a presumed abort, and warn that the decision "cannot be
// confirmed" — at every restart. Now each node noted that it reported
// (RECONCILED): restarted, it holds nothing unreconciled and says nothing.
func TestReconcileConfirmedHeuristicQuietAfterRestarts(t *testing.T) {
	log, buf := newBufferLogger(hclog.Warn)
	r := newOpRig(t, opTiming, log)
	at, _ := r.transferCrashingAt(r.armCrash(0, actors.StepCommitLogged, -1, nil))
	tx := at.Tx
	actortest.Eventually(t, 5*time.Second, func() string {
		if d, err := r.l.InDoubt(); err != nil || len(d) != 2 {
			return fmt.Sprintf("in doubt: %v %v, want nodes 1 and 2", d, err)
		}
		return ""
	})
	res, err := r.l.Resolve(tx, true)
	if err != nil || len(res.Nodes) == 0 {
		t.Fatalf("Resolve: %+v %v", res, err)
	}
	if err := r.l.RestartNode(0); err != nil {
		t.Fatal(err)
	}
	confirmed := "heuristic decision confirmed: the coordinator also decided commit for " + tx.String()
	actortest.Eventually(t, 10*time.Second, func() string {
		for _, n := range res.Nodes {
			if countLines(buf.String(), confirmed, fmt.Sprintf("node=%d", n)) == 0 {
				return fmt.Sprintf("node %d has not confirmed the heuristic commit yet:\n%s", n, buf.String())
			}
		}
		return ""
	})
	settled(t, r.l, 10*time.Second) // the coordinator has ended the transaction: it answers a presumed abort now
	for round := range 2 {
		for _, n := range res.Nodes {
			if err := r.l.Crash(int(n)); err != nil {
				t.Fatal(err)
			}
			if err := r.l.RestartNode(int(n)); err != nil {
				t.Fatal(err)
			}
			st, err := r.l.Node(int(n)).ParticipantStatus()
			if err != nil {
				t.Fatal(err)
			}
			if st.Unreconciled != 0 {
				t.Fatalf("restart %d of node %d: %d heuristic decisions to ask about again, want 0 (it was confirmed)", round+1, n, st.Unreconciled)
			}
		}
	}
	settled(t, r.l, 10*time.Second)
	if strings.Contains(buf.String(), "cannot be confirmed") || strings.Contains(buf.String(), "HEURISTIC DAMAGE") {
		t.Fatalf("a confirmed heuristic decision reported again after restarts:\n%s", buf.String())
	}
	for _, n := range res.Nodes {
		if c := countLines(buf.String(), confirmed, fmt.Sprintf("node=%d", n)); c != 1 {
			t.Fatalf("node %d confirmed %d times, want once:\n%s", n, c, buf.String())
		}
	}
	r.wantValues(90, 110, "after the restarts")
}
