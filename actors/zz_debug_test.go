package actors

import (
	"fmt"
	"testing"
	"time"

	"twopc/actors/actortest"
	"twopc/messages"
)

func TestZZDebug(t *testing.T) {
	r := newTxnRig(t, Timing{VoteTimeout: time.Hour, ResendInterval: time.Hour}, 0, 1)
	r.prepared(t)
	r.vote(0, messages.VoteYes, "")
	r.vote(1, messages.VoteYes, "")
	app, from := actortest.Expect[*messages.Append](t, r.wal, wait)
	r.sys.Root.Send(from, &messages.Appended{ID: app.ID})
	r.sys.Root.Send(r.pid, &messages.Ack{Tx: tx(1), From: 0})
	e, err := r.boss.Next(200 * time.Millisecond)
	if err == nil {
		o := e.Msg.(*txnOutcome).outcome; fmt.Printf("%+v %q\n", o, o.Reason)
	}
}
