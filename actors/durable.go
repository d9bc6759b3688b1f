package actors

import (
	"github.com/asynkron/protoactor-go/actor"

	"twopc/messages"
)

// durable is "make it durable, then act", written once: a role hands it a
// record and what to do once the record is on disk (or failed to get
// there); durable sends the Append to the persistence actor and runs that
// continuation when the Appended reply comes back to the role's mailbox.
//
// It keeps the role's mailbox running while the write is in flight (no
// future is waited on) and runs continuations on the role's goroutine, in
// the order the replies arrive. A continuation's error means the record
// must be taken as not written.
//
// A durable belongs to one actor instance. An Appended addressed to an
// instance that failed and was restarted matches nothing in its
// successor's durable, as long as both share the sequence (seq) that
// numbers the appends.
type durable struct {
	persistence *actor.PID
	seq         *uint64
	pending     map[uint64]func(actor.Context, error)
}

// newDurable returns a durable writing through persistence. seq numbers its
// appends; share it across restarts of the owning actor (see above).
func newDurable(persistence *actor.PID, seq *uint64) *durable {
	return &durable{persistence: persistence, seq: seq, pending: make(map[uint64]func(actor.Context, error))}
}

// then appends rec, forced (fsynced before the reply), and runs done with
// the reply's error once it arrives.
func (d *durable) then(ctx actor.Context, rec messages.Record, done func(ctx actor.Context, err error)) {
	id := d.next()
	d.pending[id] = done
	ctx.Request(d.persistence, &messages.Append{ID: id, Records: []messages.Record{rec}, Force: true})
}

// lazy appends rec without forcing it and without waiting: for records
// whose loss in a crash the protocol tolerates (ABORTED, END under presumed
// abort). Nothing answers it.
func (d *durable) lazy(ctx actor.Context, rec messages.Record) {
	ctx.Send(d.persistence, &messages.Append{ID: d.next(), Records: []messages.Record{rec}})
}

// onAppended runs the continuation m answers, if it is one of this
// durable's; a stale or unknown reply is dropped.
func (d *durable) onAppended(ctx actor.Context, m *messages.Appended) {
	done, ok := d.pending[m.ID]
	if !ok {
		return
	}
	delete(d.pending, m.ID)
	done(ctx, m.Err)
}

func (d *durable) next() uint64 {
	*d.seq++
	return *d.seq
}
