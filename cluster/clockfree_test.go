package cluster

// Issue 11: no answer about a transaction depends on a clock. Nodes' clocks
// are skewed through Local.SetSkew; refusals are durable before they are
// said; a restarted node vouches from its log.

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"twopc/actors"
	"twopc/actors/actortest"
	"twopc/messages"
	"twopc/persistence"
)

// The clock-skew counterexample of issue 11: the coordinator's clock 5 s
// ahead, its Commit reached one participant only (node 1) before its power
// was cut, node 1 forgot it had committed, and then the participants in
// doubt (nodes 2 and 3) asked it. Before, node 1 took the transaction's
// begin time for recent, voted no and said "abort": nodes 2 and 3 aborted a
// transaction node 1 had committed (value [1, 1, 2, 1] in the run,
// here [2, 1, 1]). Now node 1, having let go of it, says unknown; nodes 2
// and 3 wait for the coordinator, and every node ends with the same value.
func TestClockSkewCommitReachedOneNodeThatForgot(t *testing.T) {
	timing := actors.Timing{
		VoteTimeout: time.Second, ClockSkew: 50 * time.Millisecond,
		ResendInterval: 50 * time.Millisecond, MaxResendInterval: 200 * time.Millisecond,
		// Node 1 forgets (1.1 s, checked every 500 ms) well before the
		// others first ask (3 s): the order of the counterexample.
		RememberOutcomes: 1100 * time.Millisecond, InDoubtAfter: 3 * time.Second, MaxQueryInterval: time.Second,
	}
	l, err := StartLocal(LocalConfig{Nodes: 4, DataDir: t.TempDir(), Timing: timing, CrashAtSteps: true,
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Off})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	r := &crashRig{t: t, l: l}
	if err := l.SetSkew(0, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	keys := []string{"n1/value", "n2/value", "n3/value"}
	coord := l.Node(0)
	if o, err := coord.Submit(messages.Set(keys[0], 1), messages.Set(keys[1], 1), messages.Set(keys[2], 1)); err != nil || !o.Committed {
		t.Fatalf("setup: %v %v", o, err)
	}
	r.waitSettled()
	// Commit goes to node 1 first; the coordinator is held there until
	// node 1 has committed, and its power is cut before it sends more.
	c := r.arm(&crashAt{node: 0, at: actors.StepCommitSent, peer: 1,
		after: func(s actors.Step) bool { return s.Node == 1 && s.Kind == actors.StepCommittedLogged }}, false)
	defer l.Disarm(0)
	go coord.Submit(messages.Add(keys[0], 1), messages.Add(keys[1], 1), messages.Add(keys[2], 1)) // its client dies with node 0
	r.crashed(c)
	<-c.armed.Down()

	// Node 1 forgets its commit; then nodes 2 and 3 ask (twice each, so
	// that the first round's answers have arrived).
	actortest.Eventually(t, 10*time.Second, func() string {
		if ps, err := l.Node(1).ParticipantStatus(); err != nil || ps.Remembered != 0 {
			return fmt.Sprintf("node 1 still remembers: %+v %v", ps, err)
		}
		return ""
	})
	actortest.Eventually(t, 20*time.Second, func() string {
		for _, i := range []int{2, 3} {
			ps, err := l.Node(i).ParticipantStatus()
			if err != nil {
				return err.Error()
			}
			if len(ps.Doubts) == 0 {
				return "" // settled already: by the peers' answers (wrongly, before the fix)
			}
			if ps.Doubts[0].Asked < 2 {
				return fmt.Sprintf("node %d has asked %d times", i, ps.Doubts[0].Asked)
			}
		}
		return ""
	})
	if err := l.RestartNode(0); err != nil {
		t.Fatal(err)
	}
	settled(t, l, 20*time.Second)
	var got []int64
	for _, k := range keys {
		v, err := l.Node(0).Read(k)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, v[0].Value)
	}
	if got[0] != got[1] || got[1] != got[2] {
		t.Fatalf("value on nodes 1, 2, 3 = %v: not atomic (the coordinator's clock 5 s ahead)", got)
	}
	if got[0] != 2 {
		t.Fatalf("value = %v, want 2 everywhere: the coordinator logged COMMIT", got)
	}
}

// The crash-point table again, with clocks 5 s apart: nodes 0 and 2 ahead,
// 1 and 3 behind. Every assertion is the table's own.
func TestCrashPointsWithSkewedClocks(t *testing.T) {
	if testing.Short() {
		t.Skip("crash points take a few seconds")
	}
	for _, proto := range []actors.Protocol{actors.TwoPC, actors.NonBlocking} {
		t.Run(string(proto), func(t *testing.T) {
			r := newCrashRigSnapshotting(t, 0, proto)
			for i, d := range []time.Duration{5 * time.Second, -5 * time.Second, 5 * time.Second, -5 * time.Second} {
				if err := r.l.SetSkew(i, d); err != nil {
					t.Fatal(err)
				}
			}
			runCrashPoints(t, r)
			for i, want := range []time.Duration{5 * time.Second, -5 * time.Second, 5 * time.Second, -5 * time.Second} {
				if got := r.l.Skew(i); got != want {
					t.Errorf("node %d skew %v after its restarts, want %v", i, got, want)
				}
			}
		})
	}
}

// prepareAt sends a Prepare straight to node n's participant and returns
// its vote.
func prepareAt(t *testing.T, n *Node, tx messages.TxID, begun int64, ops ...messages.Op) *messages.Vote {
	t.Helper()
	res, err := n.System().Root.RequestFuture(n.Participant(), &messages.Prepare{
		Tx: tx, Ops: ops, Participants: []int32{n.ID()}, Begun: begun,
	}, 10*time.Second).Result()
	if err != nil {
		t.Fatalf("Prepare of %v at node %d: %v", tx, n.ID(), err)
	}
	v, ok := res.(*messages.Vote)
	if !ok {
		t.Fatalf("Prepare of %v at node %d answered %T", tx, n.ID(), res)
	}
	return v
}

// loggedOutcome is what node n's log says it did with tx.
func loggedOutcome(t *testing.T, n *Node, tx messages.TxID) messages.RecordKind {
	t.Helper()
	res, err := n.System().Root.RequestFuture(n.Persistence(), &persistence.CurrentState{}, 5*time.Second).Result()
	if err != nil {
		t.Fatal(err)
	}
	return res.(*persistence.StateReply).State.Outcomes[tx]
}

// No restart window: a node restarted from its log votes on a Prepare begun
// before its restart (its log shows it never voted on it), and still
// refuses one it refused, durably, before the restart — whatever the begin
// times say.
func TestRestartedNodeTakesOldPreparesAndKeepsRefusals(t *testing.T) {
	r := newCrashRig(t)
	inc := r.l.Node(0).Incarnation()
	// Two transactions of coordinator 0 that it has not begun (so it
	// leaves them alone), begun — by its clock — before node 2 restarts.
	fresh := messages.TxID{Node: 0, Incarnation: inc, Seq: 1 << 40}
	refused := messages.TxID{Node: 0, Incarnation: inc, Seq: 1<<40 + 1}
	begun := r.l.Node(0).Now().UnixNano()
	n2 := r.l.Node(2)
	n2.System().Root.Send(n2.Participant(), &messages.DecisionQuery{Tx: refused, From: 1, Begun: begun})
	actortest.Eventually(t, 10*time.Second, func() string {
		if k := loggedOutcome(t, n2, refused); k != messages.RecRefused {
			return fmt.Sprintf("node 2's log holds %v for %v, not REFUSED yet", k, refused)
		}
		return ""
	})
	if err := r.l.Crash(2); err != nil {
		t.Fatal(err)
	}
	if err := r.l.RestartNode(2); err != nil {
		t.Fatal(err)
	}
	n2 = r.l.Node(2)
	if v := prepareAt(t, n2, fresh, begun, messages.Set("n2/restart-window", 1)); v.Kind != messages.VoteYes {
		t.Fatalf("restarted node voted %v (%s) on a Prepare begun before its restart: want yes, no restart window", v.Kind, v.Reason)
	}
	if v := prepareAt(t, n2, refused, begun, messages.Set("n2/refused", 1)); v.Kind != messages.VoteNo {
		t.Fatalf("restarted node voted %v on a transaction it durably refused before its restart: want no", v.Kind)
	}
	// fresh was never begun by its coordinator: end it here.
	n2.System().Root.Send(n2.Participant(), &messages.Abort{Tx: fresh, From: 0})
	r.waitSettled()
}

// A refusal survives a power cut that comes right after it was answered:
// the coordinator crashes once its Prepare reached node 1 only; node 1, in
// doubt, asks node 2, which refuses (it never got the Prepare) and says
// abort; the moment node 1 has settled on that, node 2's power is cut.
// Restarted, node 2 still refuses the transaction's Prepare.
func TestRefusalSurvivesPowerCutAfterTheAnswer(t *testing.T) {
	r := newCrashRig(t)
	a, b := "n1/refusal", "n2/refusal"
	coord := r.l.Node(0)
	if o, err := coord.Submit(messages.Set(a, 100), messages.Set(b, 100)); err != nil || !o.Committed {
		t.Fatalf("setup: %v %v", o, err)
	}
	r.waitSettled()
	c := r.arm(&crashAt{node: 0, at: actors.StepPrepareSent, peer: 1,
		after: func(s actors.Step) bool { return s.Node == 1 && s.Kind == actors.StepPreparedLogged }}, false)
	defer r.l.Disarm(0)
	go coord.Submit(messages.Add(a, -10), messages.Add(b, 10)) // its client dies with node 0
	r.crashed(c)
	<-c.armed.Down()
	var tx messages.TxID
	actortest.Eventually(t, 10*time.Second, func() string {
		ps, err := r.l.Node(1).ParticipantStatus()
		if err != nil || len(ps.InDoubt) != 1 {
			return fmt.Sprintf("node 1 not in doubt: %+v %v", ps, err)
		}
		tx = ps.InDoubt[0]
		return ""
	})
	actortest.Eventually(t, 10*time.Second, func() string {
		if ps, err := r.l.Node(1).ParticipantStatus(); err != nil || len(ps.InDoubt) != 0 {
			return fmt.Sprintf("node 1 still in doubt: %+v %v", ps, err)
		}
		return ""
	})
	if err := r.l.Crash(2); err != nil { // right after node 2's answer arrived
		t.Fatal(err)
	}
	if err := r.l.RestartNode(2); err != nil {
		t.Fatal(err)
	}
	if v := prepareAt(t, r.l.Node(2), tx, time.Now().UnixNano(), messages.Add(b, 10)); v.Kind != messages.VoteNo {
		t.Fatalf("restarted node voted %v on %v, which it refused before its power cut: want no", v.Kind, tx)
	}
	if err := r.l.RestartNode(0); err != nil {
		t.Fatal(err)
	}
	r.waitSettled()
	for k, want := range map[string]int64{a: 100, b: 100} {
		v, err := r.l.Node(0).Read(k)
		if err != nil {
			t.Fatal(err)
		}
		if v[0].Value != want {
			t.Errorf("%s = %d, want %d (aborted)", k, v[0].Value, want)
		}
	}
}
