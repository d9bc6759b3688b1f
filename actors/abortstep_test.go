package actors

import (
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"twopc/actors/actortest"
	"twopc/messages"
)

// A txn actor that decides abort reports StepAbortDecided with the reason,
// before any Abort leaves it: a trace shows the decision and why.
func TestTxnReportsAbortDecidedWithReason(t *testing.T) {
	sys := actortest.NewSystem(t)
	boss := actortest.NewProbe(t, sys, "coordinator")
	part := actortest.NewProbe(t, sys, "participant-1")
	wal := actortest.NewProbe(t, sys, "wal")
	steps := make(chan Step, 16)
	_, err := sys.Root.SpawnNamed(newTxnProps(txnConfig{
		tx: tx(1), participants: []int32{1}, ops: [][]messages.Op{{messages.Add("value", 1)}},
		directory:   &actortest.Directory{Participants: map[int32]*actor.PID{1: part.PID}},
		persistence: wal.PID, timing: Timing{VoteTimeout: time.Hour}.WithDefaults(), log: orNull(nil),
		reportTo: boss.PID, steps: func(s Step) { steps <- s },
	}), "txn")
	if err != nil {
		t.Fatal(err)
	}
	_, txnPID := actortest.Expect[*messages.Prepare](t, part, wait)
	sys.Root.Send(txnPID, &messages.Vote{Tx: tx(1), From: 1, Kind: messages.VoteNo, Reason: "below the floor"})
	actortest.Expect[*txnOutcome](t, boss, wait)
	for {
		select {
		case s := <-steps:
			if s.Kind != StepAbortDecided {
				continue
			}
			if s.Tx != tx(1) || s.Reason != "node 1 voted no: below the floor" || s.Peer != -1 {
				t.Fatalf("abort step %+v", s)
			}
			return
		case <-time.After(wait):
			t.Fatal("no StepAbortDecided reported")
		}
	}
}
