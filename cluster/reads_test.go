package cluster

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"twopc/actors"
	"twopc/messages"
)

// Read-your-writes with the early answer: a client told "committed" (the
// COMMIT record is durable, Commits may still be in flight) reads `value`
// through another node at once, from every node. Each node must already
// count every transaction whose client was told "committed" before the read
// began: the participant holds the read until those are applied.
func TestReadYourWritesAcrossNodes(t *testing.T) {
	const nodes, writers, rounds = 4, 4, 12
	l := testCluster(t, nodes, actors.Timing{})
	clients := make([]*Client, nodes)
	for i := range clients {
		clients[i] = dial(t, l, i)
	}
	var done atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan string, writers*rounds)
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				o, err := clients[(g+i)%nodes].Submit(messages.Add("value", 1))
				if err != nil || !o.Committed {
					errs <- "submit: " + errString(err) + " " + outcomeString(o)
					return
				}
				done.Add(1)
				floor := done.Load() // every one of these was answered "committed"
				vals, err := clients[(g+i+1)%nodes].Read("value")
				if err != nil {
					errs <- "read: " + err.Error()
					return
				}
				if len(vals) != nodes {
					errs <- "read: wrong number of owners"
					return
				}
				for _, v := range vals {
					if v.Value < floor {
						errs <- "stale read: a committed write is missing"
						t.Logf("node %d value %d < %d commits already answered", v.Node, v.Value, floor)
					}
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	wantEverywhere(t, clients[0], "value", nodes, writers*rounds)
}

// Node.Read on a node whose power was cut fails, as Submit does ("a
// client of a crashed node learns nothing"): from the moment PowerCut
// returns "nothing [its actors] do can be seen from outside", so a Go
// caller must not read the dead node's participant either.
func TestReadOnPowerCutNodeFails(t *testing.T) {
	l := testCluster(t, 2, actors.Timing{VoteTimeout: 500 * time.Millisecond})
	n0 := l.Node(0)
	if o, err := n0.Submit(messages.Set("n0/x", 7)); err != nil || !o.Committed {
		t.Fatalf("setup: %v %v", o, err)
	}
	waitLocksFree(t, l) // the commit applied, so a read need not wait for it
	n0.PowerCut()
	defer func() { _ = l.Crash(0) }()
	vals, err := n0.Read("n0/x")
	if err == nil {
		t.Errorf("Read on a node whose power is cut answered %v; want an error (%v), as Submit gives", vals, errNodeCrashed)
	}
	if _, err := n0.Submit(messages.Set("n0/x", 8)); !errors.Is(err, errNodeCrashed) {
		t.Fatalf("Submit after the power cut: %v, want %v", err, errNodeCrashed)
	}
}
