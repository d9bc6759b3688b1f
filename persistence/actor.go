package persistence

import (
	"fmt"
	"slices"

	"github.com/asynkron/protoactor-go/actor"

	"twopc/messages"
)

// SimulateCrash asks the persistence actor to behave as if the power went
// out now (see Log.CrashForTest): buffered appends are answered with an
// error, unsynced bytes are lost, and every later append is refused. The
// actor answers with CrashSimulated. For crash-point tests only.
type SimulateCrash struct{}

// CurrentState asks the persistence actor for the state its log adds up to
// now (after writing whatever is queued); answered with a StateReply.
type CurrentState struct{}

// StateReply answers CurrentState; Err is set when the log has failed.
type StateReply struct {
	State *State
	Err   error
}

// CrashSimulated answers SimulateCrash.
type CrashSimulated struct{}

// flushNow is the group-commit marker. Sent to itself on the first append of
// a batch, it queues behind every append already in the mailbox, so one
// write and one fsync serve all of them; appends that arrive while the fsync
// runs form the next batch.
type flushNow struct{}

// maxIdleBuffer is how much encode buffer the actor keeps between batches;
// one huge batch should not pin its memory forever.
const maxIdleBuffer = 4 << 20

// Props returns the persistence actor for l. Once spawned it owns l and is
// its only writer: spawn it once, and leave l alone until it has stopped.
// Stopping it (Poison or Stop) flushes what it buffered and closes l.
func Props(l *Log) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return &logActor{l: l} })
}

type pendingAppend struct {
	replyTo *actor.PID // nil for a fire-and-forget append
	req     *messages.Append
}

type logActor struct {
	l           *Log
	pending     []pendingAppend // appends of the batch being gathered, in arrival order
	frames      []byte          // their records, already framed
	records     int
	force       bool
	flushQueued bool
}

func (a *logActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *messages.Append:
		a.append(ctx, m)
	case *flushNow:
		a.flushQueued = false
		a.flush(ctx)
	case *messages.DecisionLookup:
		// An append queued before the lookup must be visible to it.
		a.flush(ctx)
		if err := a.l.usable(); err != nil {
			ctx.Respond(&messages.DecisionLookupReply{Tx: m.Tx, Err: err})
			return
		}
		parts, ok := a.l.state.Pending[m.Tx]
		ctx.Respond(&messages.DecisionLookupReply{Tx: m.Tx, CommitPending: ok, Participants: slices.Clone(parts)})
	case *CurrentState:
		// What a restarted role rebuilds from: everything queued so far,
		// written and folded.
		a.flush(ctx)
		if err := a.l.usable(); err != nil {
			ctx.Respond(&StateReply{Err: err})
			return
		}
		ctx.Respond(&StateReply{State: a.l.state.Clone()})
	case *messages.TakeSnapshot:
		a.flush(ctx)
		ctx.Respond(&messages.SnapshotTaken{Err: a.l.snapshot()})
	case *messages.StatsRequest:
		st := a.l.Stats()
		ctx.Respond(&st)
	case *SimulateCrash:
		a.answerPending(ctx, errCrashed)
		a.l.CrashForTest()
		ctx.Respond(&CrashSimulated{})
	case *actor.Restarting:
		// The next instance starts with an empty buffer; answer this one's.
		a.flush(ctx)
	case *actor.Stopping, *actor.Stopped:
		// After Poison the flush marker sits behind the poison pill and is
		// never delivered, so the buffered appends are written here.
		a.flush(ctx)
		if err := a.l.Close(); err != nil && err != a.l.failed { // a failure is logged when it happens
			a.l.logger.Error("closing log", "dir", a.l.dir, "error", err)
		}
	}
}

func (a *logActor) append(ctx actor.Context, m *messages.Append) {
	if err := a.l.usable(); err != nil {
		reply(ctx, ctx.Sender(), m.ID, err)
		return
	}
	mark := len(a.frames)
	for i := range m.Records {
		var err error
		a.frames, err = appendRecordFrame(a.frames, &m.Records[i])
		if err != nil {
			a.frames = a.frames[:mark]
			err = fmt.Errorf("persistence: append %d refused: record %d (%v): %w", m.ID, i, m.Records[i].Kind, err)
			if ctx.Sender() == nil {
				// Nobody would hear of it otherwise.
				a.l.logger.Error("append refused", "error", err)
			}
			reply(ctx, ctx.Sender(), m.ID, err)
			return
		}
	}
	a.pending = append(a.pending, pendingAppend{replyTo: ctx.Sender(), req: m})
	a.records += len(m.Records)
	a.force = a.force || m.Force
	if !a.flushQueued {
		a.flushQueued = true
		ctx.Send(ctx.Self(), &flushNow{})
	}
}

// flush writes the batch, folds it into the state, answers its requesters
// in arrival order, and takes a snapshot when one is due.
func (a *logActor) flush(ctx actor.Context) {
	if len(a.pending) == 0 {
		return
	}
	err := a.l.writeBatch(a.frames, a.records, len(a.pending), a.force)
	if err == nil {
		for _, p := range a.pending {
			for _, r := range p.req.Records {
				a.l.state.Apply(r)
			}
			if a.l.written != nil {
				a.l.written(p.req.Records, p.req.Force)
			}
		}
	}
	a.answerPending(ctx, err)
	// Requesters are answered first: the snapshot is not theirs to wait for.
	if err == nil && a.l.snapshotDue() {
		_ = a.l.snapshot() // logged inside; the log itself is still sound
	}
}

// answerPending replies to every buffered append with err (nil: written)
// and empties the batch.
func (a *logActor) answerPending(ctx actor.Context, err error) {
	for i, p := range a.pending {
		reply(ctx, p.replyTo, p.req.ID, err)
		a.pending[i] = pendingAppend{}
	}
	a.pending = a.pending[:0]
	a.frames = a.frames[:0]
	if cap(a.frames) > maxIdleBuffer {
		a.frames = nil
	}
	a.records = 0
	a.force = false
}

func reply(ctx actor.Context, to *actor.PID, id uint64, err error) {
	if to != nil {
		ctx.Send(to, &messages.Appended{ID: id, Err: err})
	}
}
