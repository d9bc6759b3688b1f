package actors

import (
	"strings"
	"testing"
	"time"

	"twopc/actors/actortest"
	"twopc/messages"
)

// Commit decisions recovered from the log are driven again at start, and
// ended once every participant acks.
func TestCoordinatorRedrivesRecoveredCommits(t *testing.T) {
	id := messages.TxID{Node: 0, Incarnation: 1, Seq: 4}
	r := newCoordRig(t, Timing{VoteTimeout: time.Hour, ResendInterval: time.Hour}, []PendingCommit{{Tx: id, Participants: []int32{0, 1}}}, nil)
	for _, n := range []int32{0, 1} {
		c, sender := actortest.Expect[*messages.Commit](t, r.parts[n], wait)
		if c.Tx != id {
			t.Fatalf("commit %+v", c)
		}
		r.sys.Root.Send(sender, &messages.Ack{Tx: id, From: n})
	}
	end, _ := actortest.Expect[*messages.Append](t, r.wal, wait)
	if end.Records[0].Kind != messages.RecEnd || end.Records[0].Tx != id {
		t.Fatalf("want END of %v, got %+v", id, end)
	}
}

// Ids are node.incarnation.seq and never repeat; bad input is refused with
// the reason before any participant hears of it; only owners are asked.
func TestCoordinatorNamesAndRefuses(t *testing.T) {
	r := newCoordRig(t, Timing{VoteTimeout: time.Hour}, nil, nil)
	res, err := r.sys.Root.RequestFuture(r.pid, &messages.Begin{}, wait).Result()
	if err != nil {
		t.Fatal(err)
	}
	o := res.(*messages.Outcome)
	if o.Committed || o.Tx != (messages.TxID{Node: 0, Incarnation: reviewIncarnation, Seq: 1}) || !strings.Contains(o.Reason, "no operations") {
		t.Fatalf("empty transaction: %v", o)
	}
	r.sys.Root.Send(r.pid, &messages.Begin{Ops: []messages.Op{messages.Set("n0/a", 1)}})
	prep, _ := actortest.Expect[*messages.Prepare](t, r.parts[0], wait)
	if prep.Tx.Seq != 2 || prep.Tx.Incarnation != reviewIncarnation {
		t.Fatalf("second transaction got id %v", prep.Tx)
	}
	actortest.ExpectNone(t, r.parts[1], 50*time.Millisecond)
}
