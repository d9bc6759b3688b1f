package cluster

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"twopc/actors"
)

// A crash armed at a protocol step: the prompt's `crash <node> at <step>`
// and the crash-point tests both cut a node's power when the protocol next
// reaches a step, and both need the same care — a step that sends is not
// the moment its message arrives, the step that shows an arrival may be
// reported before the step that sent it, a node being restarted may report
// steps before the Local knows it, and whoever waits for the crash (a
// command about to print its answer, a restart) must find it either armed
// or done, never in between.

// ArmedCrash is a power cut waiting for its step. Its methods are safe from
// any goroutine.
type ArmedCrash struct {
	node int // whose power is cut
	step actors.StepKind
	// Where and how the step is watched (see the CrashOptions).
	watch     int32 // the node whose step it is
	peer      int32 // -1: any
	until     func(at, s actors.Step) bool
	delivered bool
	hold      bool
	cutOnly   bool
	notify    func(at actors.Step)

	replaced *ArmedCrash

	// Guarded by crashes.mu.
	matched []actors.Step // steps that matched, waiting for until (the latest maxMatched)
	seen    []actors.Step // every step reported since arming (the latest maxSeen)
	dropped int           // steps dropped from the front of seen
	changed chan struct{} // closed and replaced whenever seen grows
	at      actors.Step   // the step it fired at

	fired chan struct{} // closed once the power is cut
	ended chan struct{} // closed once it fired or was cancelled: releases a held step
	down  chan struct{} // closed once the node is torn down (see PowerCutOnly)
}

const (
	// maxMatched bounds the sends a delivered crash waits for. Any of them
	// fires it, not only the first: that one may never arrive (cut by a
	// partition, or a vote for a transaction already over), and the crash
	// would wait for ever.
	maxMatched = 256
	// maxSeen bounds the steps remembered since arming: enough for the
	// arrival that beat its own send, and for a command's transaction.
	maxSeen = 1024
)

// A CrashOption refines when an armed crash fires.
type CrashOption func(*ArmedCrash)

// WithPeer: only the step whose peer is peer fires the crash (say,
// StepCommitSent to one participant).
func WithPeer(peer int) CrashOption { return func(a *ArmedCrash) { a.peer = int32(peer) } }

// Watching: the step is watched on node instead of on the node whose power
// is cut (a participant crashing once its ack reached the coordinator is
// StepAckReceived watched on the coordinator, WithPeer the participant).
func Watching(node int) CrashOption { return func(a *ArmedCrash) { a.watch = int32(node) } }

// Until: the power goes not at the step itself but at the first later step
// s (on any node) for which after(at, s) holds, at being the step that
// matched; a step reported before the matching one counts too, since a
// message can arrive before its sender reports having sent it.
func Until(after func(at, s actors.Step) bool) CrashOption {
	return func(a *ArmedCrash) { a.until = after }
}

// Delivered, for a step that sends (StepPrepareSent, StepCommitSent,
// StepVoted), waits for the message to arrive before cutting the power: a
// cut at the sending step drops the message still queued at the bridge, and
// "vote sent" would be no different from "PREPARED logged". Only a message
// to another node counts (one to the node's own participant dies with it),
// and any of them arriving fires the crash.
func Delivered() CrashOption { return func(a *ArmedCrash) { a.delivered = true } }

// Holding, with Until, keeps the actor that reported the step waiting at it
// until the crash fires (or is cancelled): it sends nothing more meanwhile,
// so "Prepare reached one participant" means the others got none.
func Holding() CrashOption { return func(a *ArmedCrash) { a.hold = true } }

// PowerCutOnly leaves the node, its power cut, for the caller to take down
// with Crash; without it the node is torn down at once, off the step's
// goroutine, and RestartNode waits for that.
func PowerCutOnly() CrashOption { return func(a *ArmedCrash) { a.cutOnly = true } }

// Notify calls say at the step, before the power is cut and under the lock
// that a waiting caller takes: a command that wakes because its node died
// finds what say recorded.
func Notify(say func(at actors.Step)) CrashOption { return func(a *ArmedCrash) { a.notify = say } }

// Node is the node whose power the crash cuts.
func (a *ArmedCrash) Node() int { return a.node }

// Step is the step it waits for.
func (a *ArmedCrash) Step() actors.StepKind { return a.step }

// Replaced is the crash armed on the same node before this one, which this
// one cancelled (nil if none).
func (a *ArmedCrash) Replaced() *ArmedCrash { return a.replaced }

// Fired is closed once the power is cut.
func (a *ArmedCrash) Fired() <-chan struct{} { return a.fired }

// Down is closed once the node has been torn down after the cut (at the cut
// itself with PowerCutOnly, or if the node was not up).
func (a *ArmedCrash) Down() <-chan struct{} { return a.down }

// At is the step at which the crash fired (the arrival, for Delivered);
// read it once Fired is closed.
func (a *ArmedCrash) At() actors.Step {
	select {
	case <-a.fired:
		return a.at
	default:
		return actors.Step{}
	}
}

// crashes are a Local's armed crashes, one per node at most.
type crashes struct {
	mu      sync.Mutex
	armed   map[int]*ArmedCrash
	n       atomic.Int32          // len(armed), read without the lock by every step
	tearing map[int]chan struct{} // nodes being torn down after a crash at a step
}

// sendArrival is, for a step that sends, the step at which its receiver
// shows the message arrived (Peer -1: any).
func sendArrival(s actors.Step) (actors.Step, bool) {
	switch s.Kind {
	case actors.StepPrepareSent:
		return actors.Step{Kind: actors.StepPrepareReceived, Tx: s.Tx, Node: s.Peer, Peer: -1}, true
	case actors.StepCommitSent:
		return actors.Step{Kind: actors.StepCommitReceived, Tx: s.Tx, Node: s.Peer, Peer: -1}, true
	case actors.StepVoted:
		// Counted by the coordinator's txn actor, which names the voter.
		return actors.Step{Kind: actors.StepVoteReceived, Tx: s.Tx, Node: s.Tx.Node, Peer: s.Node}, true
	}
	return actors.Step{}, false
}

// CrashAt arms a power cut of node for when the protocol next reaches step
// there (refined by opts), replacing a crash armed on node before. At the
// step the power is cut (Node.PowerCut) on the reporting actor's goroutine,
// so nothing the node does afterwards is seen outside; then, unless
// PowerCutOnly, the node is taken down as Crash does.
func (l *Local) CrashAt(node int, step actors.StepKind, opts ...CrashOption) (*ArmedCrash, error) {
	if !l.cfg.CrashAtSteps {
		return nil, errors.New("crash at a step: the cluster was started without LocalConfig.CrashAtSteps")
	}
	if node < 0 || node >= len(l.members) {
		return nil, fmt.Errorf("unknown node %d (nodes are 0-%d)", node, len(l.members)-1)
	}
	a := &ArmedCrash{node: node, step: step, watch: int32(node), peer: -1,
		changed: make(chan struct{}), fired: make(chan struct{}), ended: make(chan struct{}), down: make(chan struct{})}
	for _, o := range opts {
		o(a)
	}
	if a.delivered {
		if _, ok := sendArrival(actors.Step{Kind: step}); !ok {
			return nil, fmt.Errorf("crash at %v: Delivered needs a step that sends", step)
		}
		if a.until != nil {
			return nil, errors.New("crash at a step: Delivered and Until both say when; give one")
		}
		a.until = func(at, s actors.Step) bool {
			w, _ := sendArrival(at)
			return s.Kind == w.Kind && s.Tx == w.Tx && s.Node == w.Node && (w.Peer < 0 || s.Peer == w.Peer)
		}
	}
	if a.hold && a.until == nil {
		return nil, errors.New("crash at a step: Holding needs Until (there is nothing to hold for)")
	}
	c := &l.crashes
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.armed == nil {
		c.armed = map[int]*ArmedCrash{}
	}
	if old := c.armed[node]; old != nil {
		a.replaced = old
		close(old.ended)
	} else {
		c.n.Add(1)
	}
	c.armed[node] = a
	return a, nil
}

// Disarm cancels node's armed crash and returns it (nil if none).
func (l *Local) Disarm(node int) *ArmedCrash {
	c := &l.crashes
	c.mu.Lock()
	defer c.mu.Unlock()
	a := c.armed[node]
	if a != nil {
		delete(c.armed, node)
		c.n.Add(-1)
		close(a.ended)
	}
	return a
}

// Armed is node's armed crash, nil if none (or once it fired).
func (l *Local) Armed(node int) *ArmedCrash {
	c := &l.crashes
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.armed[node]
}

// WaitCrashed waits until a crash at a step that fired on node has taken it
// down (RestartNode does too).
func (l *Local) WaitCrashed(node int) {
	c := &l.crashes
	c.mu.Lock()
	done := c.tearing[node]
	c.mu.Unlock()
	if done != nil {
		<-done
	}
}

// stopCrashes cancels every armed crash and waits for those that fired to
// finish tearing their node down: Stop must leave nothing running.
func (l *Local) stopCrashes() {
	c := &l.crashes
	c.mu.Lock()
	for node, a := range c.armed {
		delete(c.armed, node)
		c.n.Add(-1)
		close(a.ended)
	}
	var tearing []chan struct{}
	for _, done := range c.tearing {
		tearing = append(tearing, done)
	}
	c.mu.Unlock()
	for _, done := range tearing {
		<-done
	}
}

// Await waits until the crash has fired, was cancelled, or a step matching
// ok has been reported since it was armed; false if within passed first.
// The prompt uses it to give a crash at a step that comes after a client's
// answer (a participant's commit-received) the time to fire, stopping as
// soon as the transaction is over where the crash is armed.
func (l *Local) Await(a *ArmedCrash, ok func(actors.Step) bool, within time.Duration) bool {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	c := &l.crashes
	for next := 0; ; { // next: the first step not looked at, counted from arming
		c.mu.Lock()
		for next = max(next, a.dropped); next < a.dropped+len(a.seen); next++ {
			if ok(a.seen[next-a.dropped]) {
				c.mu.Unlock()
				return true
			}
		}
		changed := a.changed
		c.mu.Unlock()
		select {
		case <-a.ended:
			return true
		case <-changed:
		case <-deadline.C:
			return false
		}
	}
}

// stepHook is the hook the Local gives its nodes: the caller's own, or,
// if crashes may be armed at steps, onStep.
func (l *Local) stepHook() actors.StepHook {
	if !l.cfg.CrashAtSteps {
		return l.cfg.Steps
	}
	return l.onStep
}

// onStep is every node's step hook: the caller's (LocalConfig.Steps),
// then the armed crashes.
func (l *Local) onStep(s actors.Step) {
	if l.cfg.Steps != nil {
		l.cfg.Steps(s)
	}
	if l.crashes.n.Load() > 0 { // the usual case: no lock on the protocol's hot path
		l.crashAtStep(s)
	}
}

func (l *Local) crashAtStep(s actors.Step) {
	c := &l.crashes
	c.mu.Lock()
	for _, a := range c.armed {
		a.seen = append(a.seen, s)
		if len(a.seen) > maxSeen {
			keep := maxSeen / 2
			a.dropped += len(a.seen) - keep
			a.seen = append([]actors.Step(nil), a.seen[len(a.seen)-keep:]...)
		}
		close(a.changed)
		a.changed = make(chan struct{})
	}
	var fire []*ArmedCrash
	var hold *ArmedCrash
	for _, a := range c.armed {
		switch {
		case a.arrived(s) || a.match(s):
			fire = append(fire, a)
		case a.hold && len(a.matched) == 1 && a.matched[0] == s:
			hold = a
		}
	}
	for _, a := range fire {
		delete(c.armed, a.node)
		c.n.Add(-1)
		a.at = s
		if !a.cutOnly {
			if c.tearing == nil {
				c.tearing = map[int]chan struct{}{}
			}
			c.tearing[a.node] = a.down
		}
	}
	// Under the lock to the cut: whoever waits for one of these crashes
	// (Await, WaitCrashed, Armed) finds it armed, or cut with what notify
	// said already said.
	var teardown []*ArmedCrash
	for _, a := range fire {
		if l.cutLocked(a) {
			teardown = append(teardown, a)
		} else {
			l.doneTearingLocked(a)
		}
	}
	c.mu.Unlock()
	for _, a := range teardown {
		go func() {
			_ = l.Crash(a.node) // fails only if someone took it down already
			c.mu.Lock()
			l.doneTearingLocked(a)
			c.mu.Unlock()
		}()
	}
	if hold != nil {
		<-hold.ended
	}
}

// cutLocked cuts a's node's power, on the goroutine of the step that fired
// it, and says whether the node is left to tear down.
func (l *Local) cutLocked(a *ArmedCrash) bool {
	c := &l.crashes
	if a.notify != nil {
		a.notify(a.at)
	}
	n := l.Node(a.node)
	if n == nil && l.isStarting(a.node) {
		// A re-driven commit reports its steps from inside Start, before
		// the Local knows the node: cut it once it does, still on this
		// goroutine so that the step's actor goes no further.
		c.mu.Unlock()
		n = l.awaitStarted(a.node)
		c.mu.Lock()
	}
	if n != nil {
		n.PowerCut()
	}
	close(a.fired)
	close(a.ended)
	return n != nil && !a.cutOnly
}

func (l *Local) doneTearingLocked(a *ArmedCrash) {
	c := &l.crashes
	if c.tearing[a.node] == a.down {
		delete(c.tearing, a.node)
	}
	close(a.down)
}

// match: s is the armed step; it fires the crash at once, or is kept to wait
// for until (which a step seen before it may already satisfy).
func (a *ArmedCrash) match(s actors.Step) bool {
	if s.Node != a.watch || s.Kind != a.step || (a.peer >= 0 && s.Peer != a.peer) {
		return false
	}
	if a.until == nil {
		return true
	}
	if a.delivered && s.Kind != actors.StepVoted && s.Peer == s.Node {
		return false // to the node's own participant: dies with it
	}
	if a.hold && len(a.matched) > 0 {
		return false // the held step is the one
	}
	for _, x := range a.seen[:len(a.seen)-1] {
		if a.until(s, x) {
			return true
		}
	}
	a.matched = append(a.matched, s)
	if len(a.matched) > maxMatched {
		a.matched = a.matched[1:]
	}
	return false
}

// arrived: s is what a matched step was waiting for.
func (a *ArmedCrash) arrived(s actors.Step) bool {
	for _, m := range a.matched {
		if a.until(m, s) {
			return true
		}
	}
	return false
}

func (l *Local) isStarting(i int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return i >= 0 && i < len(l.starting) && l.starting[i]
}

// awaitStarted waits for node i, being started, to be known (nil if its
// start fails or takes over five seconds).
func (l *Local) awaitStarted(i int) *Node {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if n := l.Node(i); n != nil {
			return n
		}
		if !l.isStarting(i) {
			return nil
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}
