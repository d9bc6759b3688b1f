// Package actortest is a small kit for actor-level unit tests: probe actors
// that stand in for a role, the persistence actor or the bridge and record
// what they receive, and a Directory that points every role at probes.
package actortest

import (
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/goleak"
)

// NewSystem returns an actor system that logs nothing, shut down when the
// test ends.
func NewSystem(t testing.TB) *actor.ActorSystem {
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
	t.Cleanup(sys.Shutdown)
	return sys
}

// Envelope is one message a probe received, with its sender.
type Envelope struct {
	Msg    interface{}
	Sender *actor.PID
}

// Probe is a mocked mailbox: an actor that records every message it
// receives, in order.
type Probe struct {
	PID  *actor.PID
	Name string
	sys  *actor.ActorSystem
	ch   chan Envelope

	mu   sync.Mutex
	seen []Envelope
}

// NewProbe spawns a probe named name (names make failures readable).
func NewProbe(t testing.TB, sys *actor.ActorSystem, name string) *Probe {
	p := &Probe{Name: name, sys: sys, ch: make(chan Envelope, 4096)}
	pid, err := sys.Root.SpawnNamed(actor.PropsFromFunc(func(ctx actor.Context) {
		switch ctx.Message().(type) {
		case *actor.Started, *actor.Stopping, *actor.Stopped, *actor.Restarting:
			return
		}
		e := Envelope{Msg: ctx.Message(), Sender: ctx.Sender()}
		p.mu.Lock()
		p.seen = append(p.seen, e)
		p.mu.Unlock()
		p.ch <- e
	}), name)
	if err != nil {
		t.Fatalf("spawn probe %s: %v", name, err)
	}
	p.PID = pid
	t.Cleanup(func() { _ = sys.Root.StopFuture(pid).Wait() })
	return p
}

// Next waits up to timeout for the next message.
func (p *Probe) Next(timeout time.Duration) (Envelope, error) {
	select {
	case e := <-p.ch:
		return e, nil
	case <-time.After(timeout):
		return Envelope{}, fmt.Errorf("probe %s: no message within %v", p.Name, timeout)
	}
}

// Seen returns every message received so far, in order.
func (p *Probe) Seen() []Envelope {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Envelope(nil), p.seen...)
}

// Expect waits for the next message and fails the test unless it is a T.
func Expect[T any](t testing.TB, p *Probe, timeout time.Duration) (T, *actor.PID) {
	t.Helper()
	var zero T
	e, err := p.Next(timeout)
	if err != nil {
		t.Fatalf("waiting for %v: %v", reflect.TypeOf(zero), err)
	}
	m, ok := e.Msg.(T)
	if !ok {
		t.Fatalf("probe %s: got %T %+v, want %v", p.Name, e.Msg, e.Msg, reflect.TypeOf(zero))
	}
	return m, e.Sender
}

// ExpectNone fails the test if a message arrives within d.
func ExpectNone(t testing.TB, p *Probe, d time.Duration) {
	t.Helper()
	if e, err := p.Next(d); err == nil {
		t.Fatalf("probe %s: got unexpected %T %+v", p.Name, e.Msg, e.Msg)
	}
}

// Directory points each node's roles at probes (or any PIDs).
type Directory struct {
	Coordinators map[int32]*actor.PID
	Participants map[int32]*actor.PID
	Acceptors    map[int32]*actor.PID
}

func (d *Directory) Coordinator(n int32) *actor.PID { return d.Coordinators[n] }
func (d *Directory) Participant(n int32) *actor.PID { return d.Participants[n] }
func (d *Directory) Acceptor(n int32) *actor.PID    { return d.Acceptors[n] }

// VerifyNoLeaks runs a package's tests and fails them if any goroutine is
// left running afterwards. protoactor's dead-letter throttle is let go: it
// ends by itself a second after a system's last dead letter. more lets a
// package exempt goroutines of its own libraries, each with its reason.
func VerifyNoLeaks(m *testing.M, more ...goleak.Option) {
	goleak.VerifyTestMain(m, append(more, goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"))...)
}

// Eventually waits until cond returns "" and fails the test with cond's
// last answer if that takes longer than within. For state with no event to
// wait on (a status several actors contribute to); prefer Expect on a probe
// where there is a message to wait for.
func Eventually(tb testing.TB, within time.Duration, cond func() string) {
	tb.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		why := cond()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("still waiting after %v: %s", within, why)
		}
		<-tick.C
	}
}
