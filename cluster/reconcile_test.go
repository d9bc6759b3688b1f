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
