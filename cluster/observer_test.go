package cluster

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"twopc/messages"
)

// Ready (what /readyz reports) follows a node: nil while it serves, and a
// reason once it stopped itself after a log failure, lost its power, or
// was stopped.
func TestReadyFollowsTheNode(t *testing.T) {
	l, err := StartLocal(LocalConfig{Nodes: 2, DataDir: t.TempDir(), Timing: opTiming, Logger: hclog.NewNullLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	for i := 0; i < 2; i++ {
		if err := l.Node(i).Ready(); err != nil {
			t.Fatalf("node %d started: Ready() = %v", i, err)
		}
	}

	n1 := l.Node(1)
	n1.wal.FailWritesForTest(errors.New("injected: disk failed"))
	if o, err := n1.Submit(messages.Set("n1/a", 1)); err == nil && o.Committed {
		t.Fatal("committed with a failed log")
	}
	select {
	case <-n1.FailStopped():
	case <-time.After(20 * time.Second):
		t.Fatal("node 1 did not stop after its log failed")
	}
	if err := n1.Ready(); err == nil || !strings.Contains(err.Error(), "its log failed") || !strings.Contains(err.Error(), "injected: disk failed") {
		t.Errorf("Ready() after a log failure = %v, want it to say the log failed, and how", err)
	}

	n0 := l.Node(0)
	n0.PowerCut()
	if err := n0.Ready(); err == nil || err.Error() != "crashed (power cut)" {
		t.Errorf("Ready() after a power cut = %v", err)
	}
	if err := l.Crash(0); err != nil {
		t.Fatal(err)
	}
	if err := l.RestartNode(0); err != nil {
		t.Fatal(err)
	}
	n0 = l.Node(0)
	if err := n0.Ready(); err != nil {
		t.Errorf("Ready() after a restart = %v", err)
	}
	if err := l.StopNode(0); err != nil {
		t.Fatal(err)
	}
	if err := n0.Ready(); err == nil || err.Error() != "stopped" {
		t.Errorf("Ready() after Stop = %v", err)
	}
}
