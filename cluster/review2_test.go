package cluster

import (
	"sync"
	"sync/atomic"
	"testing"

	"twopc/actors"
	"twopc/messages"
)

// Read-your-writes with the early answer: a client told "committed" (the
// COMMIT record is durable, Commits may still be in flight) reads `value`
// through another node at once, from every node. Each node must already
// count every transaction whose client was told "committed" before the read
// began: the participant holds the read until those are applied.
func TestReview2ReadYourWritesAcrossNodes(t *testing.T) {
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

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func outcomeString(o *messages.Outcome) string {
	if o == nil {
		return "<nil>"
	}
	return o.String()
}
