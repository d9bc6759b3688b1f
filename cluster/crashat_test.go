package cluster

import (
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"twopc/actors"
	"twopc/messages"
)

// Local.CrashAt's rules, driven by steps handed to the Local's step hook
// by the test itself, in orders a loaded machine produces only now and
// then; the crash-point tests drive it with real transactions.

func crashAtCluster(t *testing.T, nodes int) *Local {
	t.Helper()
	l, err := StartLocal(LocalConfig{Nodes: nodes, DataDir: t.TempDir(), Timing: crashPointTiming, CrashAtSteps: true,
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Off})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	return l
}

var crashTx = messages.TxID{Node: 0, Incarnation: 1, Seq: 77}

func step(node int32, kind actors.StepKind, peer int32) actors.Step {
	return actors.Step{Node: node, Kind: kind, Tx: crashTx, Peer: peer}
}

func wantFired(t *testing.T, l *Local, a *ArmedCrash, at actors.Step) {
	t.Helper()
	select {
	case <-a.Fired():
	default:
		t.Fatalf("crash at %v did not fire", a.Step())
	}
	if got := a.At(); got != at {
		t.Errorf("fired at %v, want %v", got, at)
	}
	<-a.Down()
	if n := l.Node(a.Node()); n != nil {
		t.Errorf("node %d still up after its crash", a.Node())
	}
}

func wantArmed(t *testing.T, a *ArmedCrash) {
	t.Helper()
	select {
	case <-a.Fired():
		t.Fatalf("crash at %v fired at %v", a.Step(), a.At())
	default:
	}
}

// A vote can be counted before its voter reports having sent it (the
// voter's goroutine sends, then reports): the crash at `voted` fires at
// the report, not never.
func TestCrashAtVotedFiresWhenTheVoteArrivedBeforeItsSendWasReported(t *testing.T) {
	l := crashAtCluster(t, 2)
	a, err := l.CrashAt(1, actors.StepVoted, Delivered())
	if err != nil {
		t.Fatal(err)
	}
	l.onStep(step(0, actors.StepVoteReceived, 1)) // the arrival first
	wantArmed(t, a)
	voted := step(1, actors.StepVoted, 0)
	l.onStep(voted)
	wantFired(t, l, a, voted)
	if err := l.RestartNode(1); err != nil {
		t.Fatal(err)
	}
}

// In the usual order the crash fires at the arrival; a message to the
// node's own participant does not count (it dies with the node), and the
// first message sent need not be the one that arrives.
func TestCrashAtASendingStepFiresAtTheArrivalOfAnyMessageToAnotherNode(t *testing.T) {
	l := crashAtCluster(t, 3)
	a, err := l.CrashAt(0, actors.StepPrepareSent, Delivered())
	if err != nil {
		t.Fatal(err)
	}
	l.onStep(step(0, actors.StepPrepareSent, 0)) // to itself
	l.onStep(step(0, actors.StepPrepareReceived, 0))
	wantArmed(t, a)
	l.onStep(step(0, actors.StepPrepareSent, 1)) // lost, say
	l.onStep(step(0, actors.StepPrepareSent, 2))
	wantArmed(t, a)
	arrival := step(2, actors.StepPrepareReceived, 0)
	l.onStep(arrival)
	wantFired(t, l, a, arrival)
	if l.Armed(0) != nil {
		t.Error("a crash that fired is still armed")
	}
}

// One crash per node: arming again replaces (and says what), Disarm
// cancels, and neither fires afterwards.
func TestCrashAtReplacesAndDisarmCancels(t *testing.T) {
	l := crashAtCluster(t, 2)
	first, err := l.CrashAt(1, actors.StepPreparedLogged)
	if err != nil {
		t.Fatal(err)
	}
	second, err := l.CrashAt(1, actors.StepCommitReceived)
	if err != nil {
		t.Fatal(err)
	}
	if second.Replaced() != first || first.Replaced() != nil {
		t.Fatalf("second replaced %v, want the first", second.Replaced())
	}
	l.onStep(step(1, actors.StepPreparedLogged, -1))
	wantArmed(t, first)
	wantArmed(t, second)
	if got := l.Disarm(1); got != second {
		t.Fatalf("Disarm = %v, want the second crash", got)
	}
	if l.Disarm(1) != nil || l.Armed(1) != nil {
		t.Fatal("still armed after Disarm")
	}
	l.onStep(step(1, actors.StepCommitReceived, 0))
	wantArmed(t, second)
	if l.Up(1) == nil {
		t.Fatal("node 1 went down with its crash cancelled")
	}
}

// Refused: a cluster whose steps the Local does not see, an unknown node, Delivered at a step that sends nothing,
// Holding without Until.
func TestCrashAtRefusesWhatCannotFire(t *testing.T) {
	l := crashAtCluster(t, 1)
	if _, err := l.CrashAt(3, actors.StepVoted); err == nil {
		t.Error("armed a crash on node 3 of 1")
	}
	if _, err := l.CrashAt(0, actors.StepCommitLogged, Delivered()); err == nil {
		t.Error("Delivered at a step that sends nothing")
	}
	if _, err := l.CrashAt(0, actors.StepCommitLogged, Holding()); err == nil {
		t.Error("Holding with nothing to hold for")
	}
	if l.Armed(0) != nil {
		t.Error("a refused crash is armed")
	}
	plain, err := StartLocal(LocalConfig{Nodes: 1, DataDir: t.TempDir(), Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Off})})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Stop()
	if _, err := plain.CrashAt(0, actors.StepVoted); err == nil {
		t.Error("armed a crash on a cluster started without CrashAtSteps")
	}
}

// Holding keeps the reporting goroutine at the step until the step it
// waits for (watched on another node) fires the crash, whose node is
// another again; PowerCutOnly leaves that node for the caller to take
// down.
func TestCrashAtHoldsTheStepUntilItFires(t *testing.T) {
	l := crashAtCluster(t, 3)
	a, err := l.CrashAt(2, actors.StepCommitSent, Watching(0), WithPeer(1), Holding(), PowerCutOnly(),
		Until(func(at, s actors.Step) bool {
			return s.Tx == at.Tx && s.Node == 1 && s.Kind == actors.StepCommittedLogged
		}))
	if err != nil {
		t.Fatal(err)
	}
	l.onStep(step(0, actors.StepCommitSent, 2)) // another peer: not held
	held := make(chan struct{})
	go func() {
		defer close(held)
		l.onStep(step(0, actors.StepCommitSent, 1))
	}()
	l.onStep(step(1, actors.StepCommitReceived, 0))
	select {
	case <-held:
		t.Fatal("the step was not held")
	case <-time.After(50 * time.Millisecond): // a step wrongly let go returns at once
	}
	wantArmed(t, a)
	done := step(1, actors.StepCommittedLogged, 0)
	l.onStep(done)
	<-held
	select {
	case <-a.Fired():
	default:
		t.Fatal("did not fire")
	}
	if a.At() != done {
		t.Errorf("fired at %v, want %v", a.At(), done)
	}
	n := l.Node(2)
	if n == nil || !n.Crashed() {
		t.Fatal("node 2: want it still there, its power cut")
	}
	if err := l.Crash(2); err != nil {
		t.Fatal(err)
	}
}

// Await ends at the step it is told to wait for, or at the crash.
func TestAwaitEndsAtTheStepOrTheCrash(t *testing.T) {
	l := crashAtCluster(t, 2)
	a, err := l.CrashAt(1, actors.StepCommitReceived)
	if err != nil {
		t.Fatal(err)
	}
	l.onStep(step(1, actors.StepVoted, 0))
	if !l.Await(a, func(s actors.Step) bool { return s.Kind == actors.StepVoted }, time.Minute) {
		t.Error("Await missed a step reported before it was called")
	}
	go l.onStep(step(1, actors.StepCommitReceived, 0))
	if !l.Await(a, func(actors.Step) bool { return false }, time.Minute) {
		t.Error("Await did not end at the crash")
	}
	<-a.Down()
}
