package cluster

import (
	"fmt"
	"testing"
	"time"

	"twopc/actors/actortest"
)

// State spread over several nodes (locks, in-doubt transactions, log
// folds) has no single event to wait on, so cluster tests poll it with
// actortest.Eventually, which fails with the last reason the condition gave.

// settled waits until none of nodes (all that are up, if none are given)
// holds a lock, is in doubt, runs a txn actor or has a commit without END
// in its log.
func settled(tb testing.TB, l *Local, within time.Duration, nodes ...int) {
	tb.Helper()
	if len(nodes) == 0 {
		for i := range l.Members() {
			nodes = append(nodes, i)
		}
	}
	actortest.Eventually(tb, within, func() string {
		for _, i := range nodes {
			if n := l.Node(i); n != nil {
				if busy := nodeBusy(n); busy != "" {
					return fmt.Sprintf("node %d not settled: %s", i, busy)
				}
			}
		}
		return ""
	})
}
