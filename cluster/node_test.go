package cluster

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"twopc/actors"
	"twopc/messages"
)

// Start refuses a config that breaks a rule, naming the field, before it
// listens or touches the disk.
func TestStartRefusesBadConfig(t *testing.T) {
	two := []string{"127.0.0.1:1", "127.0.0.1:2"}
	for _, c := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no members", Config{}, "Members: member list is empty"},
		{"id out of range", Config{ID: 2, Members: two}, "ID = 2: not a member (Members are nodes 0-1)"},
		{"negative id", Config{ID: -1, Members: two}, "ID = -1: not a member"},
		{"bad address", Config{Members: []string{"127.0.0.1:1", "nohostport"}}, `Members[1] = "nohostport": not host:port`},
		{"duplicate address", Config{ID: 1, Members: []string{"127.0.0.1:1", "127.0.0.1:1"}}, `Members[0] and Members[1] are both "127.0.0.1:1"`},
	} {
		if err := c.cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Validate() = %v, want an error containing %q", c.name, err, c.want)
		}
		c.cfg.DataDir, c.cfg.Logger = t.TempDir(), hclog.NewNullLogger()
		if n, err := Start(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			if n != nil {
				n.Stop()
			}
			t.Errorf("%s: Start() = %v, want an error containing %q", c.name, err, c.want)
		}
	}
	if err := (Config{ID: 1, Members: two}).Validate(); err != nil {
		t.Errorf("a valid config: %v", err)
	}
}

// Node.Stop ("cleanly: ... listener and connections closed", what
// cmd/node does on SIGTERM) with a client's Submit in flight: teardown
// closes the client's connection and stops the coordinator, whose txn
// actors die without answering, and net/rpc's ServeConn waits for the calls
// it is serving (clientService.Submit → Node.Submit) before it returns. So
// Submit must end as soon as the node stops (stopCh), not at its
// clientTimeout (3 × VoteTimeout + 2 s), or Stop would hang that long.
// Stop returns promptly; the Submit it cut short ends with an error ("node
// stopping": no known outcome).
func TestStopReturnsWithAClientSubmitInFlight(t *testing.T) {
	l, _ := hookedCluster(t, 2, actors.Timing{VoteTimeout: 3 * time.Second}) // clientTimeout 11 s
	c, err := Dial(l.Members()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Node 1 never gets the Prepare: the transaction keeps collecting votes.
	if err := l.Partition(0, 1); err != nil {
		t.Fatal(err)
	}
	submitted := make(chan error, 1)
	go func() {
		_, err := c.Submit(messages.Set("n0/a", 1), messages.Set("n1/b", 1))
		submitted <- err
	}()
	waitInFlight(t, l.Node(0), 1)

	stopped := make(chan error, 1)
	go func() { stopped <- l.StopNode(0) }()
	select {
	case <-stopped:
	case <-time.After(2500 * time.Millisecond):
		t.Errorf("Node.Stop has not returned: it waits for the in-flight client Submit, whose transaction it stopped, to time out")
		<-stopped // bounded by the client timeout
	}
	<-submitted // the client's connection was closed: it has an error at once
}

// Node.Stop under load, with in-process callers only, returns; the
// callers of the other nodes get answers; the node restarts and everything
// settles. Local.Stop also returns with a node whose power was cut but that
// was never Crash()ed.
func TestStopUnderLoadAndWithAPowerCutNode(t *testing.T) {
	l, _ := hookedCluster(t, 4, termTiming)
	var stop atomic.Bool
	var submitted atomic.Int64
	var wg sync.WaitGroup
	for c := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			via := []int{0, 2, 3}[c%3] // node 1 is stopped under them
			for i := 0; !stop.Load(); i++ {
				n := l.Node(via)
				_, _ = n.Submit(messages.Add(fmt.Sprintf("n1/k%d", c), 1), messages.Add(fmt.Sprintf("n%d/k%d", via, c), 1))
				submitted.Add(1)
			}
		}()
	}
	waitProgress(t, &submitted, 40) // under load
	stopped := make(chan error, 1)
	go func() { stopped <- l.StopNode(1) }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(10 * time.Second):
		t.Error("Node.Stop under load has not returned")
		<-stopped
	}
	waitProgress(t, &submitted, 20) // the callers keep getting answers with node 1 stopped
	stop.Store(true)
	wg.Wait()
	if err := l.RestartNode(1); err != nil {
		t.Fatal(err)
	}
	settledWithin(t, l, 15*time.Second, "after node 1 restarted")

	l.Node(3).PowerCut()
	done := make(chan error, 1)
	go func() { done <- l.Stop() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Error("Local.Stop with a power-cut node has not returned")
		<-done
	}
}
