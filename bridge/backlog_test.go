package bridge

import (
	"fmt"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"twopc/messages"
)

// A peer cannot queue more at a node than its backlog allows: while the
// receiving role is stuck, inbound batches wait (and the sender's queue
// holds the rest) instead of piling up in the role's mailbox; once it moves
// again, everything arrives, in order, once.
func TestBacklogHoldsInboundBatchesWhileRolesAreBusy(t *testing.T) {
	checkNoLeaks(t)
	const limit, batch, n = 100, 10, 3000
	backlog := NewBacklog(limit)
	la, lb := listenLoopback(t), listenLoopback(t)
	members := []string{la.Addr().String(), lb.Addr().String()}
	a := startNode(t, 0, members, la, func(c *Config) { c.BatchLimit = batch }, nil)
	b := startNode(t, 1, members, lb, func(c *Config) { c.Backlog = backlog }, nil)

	gate := make(chan struct{})
	got := make(chan uint64, n)
	props := actor.PropsFromFunc(func(ctx actor.Context) {
		if v, ok := ctx.Message().(*messages.Vote); ok {
			<-gate // stuck until the test lets it go
			got <- v.Tx.Seq
		}
	}, actor.WithMailbox(backlog.Mailbox()))
	pid, err := b.sys.Root.SpawnNamed(props, "recorder")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.sys.Root.Stop(pid) })
	released := false
	t.Cleanup(func() {
		if !released {
			close(gate)
		}
	})

	sendVotes(t, a.sys, actor.NewPID(b.addr, "recorder"), n)
	waitFor(t, "the backlog to fill", func() bool { return backlog.Depth() >= limit })
	// The next batch arrives and is held back, not handed over.
	waitFor(t, "a batch held back", func() bool { return backlog.Holding() > 0 })
	if d := backlog.Depth(); d > limit+batch {
		t.Fatalf("backlog depth %d with a limit of %d and batches of %d: inbound batches were not held", d, limit, batch)
	}
	if r := b.bridge.Stats().ReceivedMessages; r > limit+batch {
		t.Fatalf("%d of %d messages handed over while the role was stuck (limit %d + one batch of %d)", r, n, limit, batch)
	}

	close(gate)
	released = true
	for i := uint64(1); i <= n; i++ {
		select {
		case s := <-got:
			if s != i {
				t.Fatalf("message %d: got seq %d (out of order, duplicated or lost)", i, s)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("message %d of %d never arrived", i, n)
		}
	}
	waitFor(t, "the backlog to empty", func() bool { return backlog.Depth() == 0 })
	t.Logf("%s", fmt.Sprint(b.bridge.Stats()))
}
