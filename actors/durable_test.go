package actors

import (
	"errors"
	"testing"

	"github.com/asynkron/protoactor-go/actor"

	"twopc/actors/actortest"
	"twopc/messages"
)

// durableDone is what the test actor reports for each continuation run.
type durableDone struct {
	tx  messages.TxID
	err error
}

// A continuation runs when its own Appended arrives, with its error; a
// stale or unknown reply runs nothing; a lazy append asks for no reply.
func TestDurableRunsTheContinuationOnItsReply(t *testing.T) {
	sys := actortest.NewSystem(t)
	wal := actortest.NewProbe(t, sys, "wal")
	out := actortest.NewProbe(t, sys, "out")
	var d *durable // only the actor's goroutine touches it
	pid := sys.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *actor.Started:
			d = newDurable(wal.PID, new(uint64))
		case messages.Record:
			if m.Kind == messages.RecAborted {
				d.lazy(ctx, m)
				return
			}
			d.then(ctx, m, func(ctx actor.Context, err error) { ctx.Send(out.PID, &durableDone{tx: m.Tx, err: err}) })
		case *messages.Appended:
			d.onAppended(ctx, m)
		}
	}))
	t.Cleanup(func() { _ = sys.Root.StopFuture(pid).Wait() })

	sys.Root.Send(pid, messages.Record{Kind: messages.RecPrepared, Tx: tx(1)})
	a1, from := actortest.Expect[*messages.Append](t, wal, wait)
	sys.Root.Send(pid, messages.Record{Kind: messages.RecCommitted, Tx: tx(2)})
	a2, _ := actortest.Expect[*messages.Append](t, wal, wait)
	if !a1.Force || !a2.Force || a1.ID == a2.ID || from == nil || !from.Equal(pid) {
		t.Fatalf("forced appends %+v %+v from %v", a1, a2, from)
	}
	sys.Root.Send(pid, messages.Record{Kind: messages.RecAborted, Tx: tx(3)})
	lazy, lazyFrom := actortest.Expect[*messages.Append](t, wal, wait)
	if lazy.Force || lazyFrom != nil || lazy.ID == a1.ID || lazy.ID == a2.ID {
		t.Fatalf("lazy append %+v from %v: want unforced, no reply asked", lazy, lazyFrom)
	}

	errDisk := errors.New("disk on fire")
	sys.Root.Send(pid, &messages.Appended{ID: a2.ID, Err: errDisk}) // out of order: fine
	if d, _ := actortest.Expect[*durableDone](t, out, wait); d.tx != tx(2) || !errors.Is(d.err, errDisk) {
		t.Fatalf("continuation of tx 2: %+v", d)
	}
	sys.Root.Send(pid, &messages.Appended{ID: a2.ID}) // a duplicate
	sys.Root.Send(pid, &messages.Appended{ID: 999})   // unknown
	sys.Root.Send(pid, &messages.Appended{ID: a1.ID})
	if d, _ := actortest.Expect[*durableDone](t, out, wait); d.tx != tx(1) || d.err != nil {
		t.Fatalf("continuation of tx 1: %+v", d)
	}
	actortest.ExpectNone(t, out, 50*wait/1000)
}
