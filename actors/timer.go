package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// timerFired is what a timer posts to its actor's mailbox. The actor checks
// it with timer.current: an expiry of a timer that was re-armed or stopped
// in the meantime is stale and ignored.
//
// protoactor's own ReceiveTimeout and SendRepeatedly write actor state from
// the timer goroutine (data races under -race); a timer that only posts a
// message keeps all state on the actor's goroutine.
type timerFired struct {
	name string
	gen  uint64
}

type timer struct {
	name string
	gen  uint64
	t    *time.Timer
}

func newTimer(name string) *timer { return &timer{name: name} }

// arm (re)starts the timer: after d, a timerFired reaches self.
func (x *timer) arm(ctx actor.Context, d time.Duration) {
	x.stop()
	msg := &timerFired{name: x.name, gen: x.gen}
	self, root := ctx.Self(), ctx.ActorSystem().Root
	x.t = time.AfterFunc(d, func() { root.Send(self, msg) })
}

// stop cancels the timer and makes any expiry already queued stale.
func (x *timer) stop() {
	x.gen++
	if x.t != nil {
		x.t.Stop()
		x.t = nil
	}
}

func (x *timer) current(f *timerFired) bool { return f.name == x.name && f.gen == x.gen }

// backoff spaces out a repeated attempt (re-sending Commit, asking about a
// transaction in doubt): the pause doubles after every attempt, up to max,
// so a long outage costs few messages and a short one is noticed soon.
type backoff struct {
	pause time.Duration // the current pause
	max   time.Duration
}

func newBackoff(first, max time.Duration) backoff { return backoff{pause: first, max: max} }

// grow doubles the pause, up to max, and returns it: the wait before the
// next attempt.
func (b *backoff) grow() time.Duration {
	b.pause = min(2*b.pause, b.max)
	return b.pause
}
