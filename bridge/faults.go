package bridge

// Message faults at the bridge: what the network may do to messages between
// nodes (lose, repeat, hold back, reorder them; cut a link; cut a node off
// entirely), made to happen on purpose so tests can show the protocol
// survives it. Every outbound message crossing nodes passes the bridge
// actor's enqueue, so that is where faults are injected; cuts are also
// checked where a batch is about to be sent and where one arrives.
//
// Threads: the controls (SetFaults, Cut, Isolate, ...) are called from any
// goroutine and only change faultState under its mutex; the bridge actor
// reads a snapshot of it when its generation changes, and is the only user
// of the fault RNG and of delayed messages' timers. Inbound batches (net/rpc
// goroutines) read the cuts directly.

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxDelay is the longest a delayed message is held back when
// Faults.Delay is set and Faults.MaxDelay is not.
const DefaultMaxDelay = 50 * time.Millisecond

// Faults are message faults injected on a bridge's outbound messages. The
// zero value injects none. Each outbound message draws its faults in this
// order: lost (Drop); else sent once or twice (Duplicate); each copy either
// held back (Delay) or queued at once, possibly swapping places with the
// message queued before it (Reorder).
type Faults struct {
	// Drop is the probability an outbound message is lost.
	Drop float64
	// Duplicate is the probability it is sent twice (each copy may be
	// delayed on its own, so a duplicate can arrive much later, as a
	// retransmission on a real network would).
	Duplicate float64
	// Delay is the probability it is held back, for a uniform time in
	// (0, MaxDelay]. A delayed message is overtaken by later ones: that is
	// how reordering happens across batches (a batch itself is never
	// reordered on the wire).
	Delay float64
	// MaxDelay is the longest hold; DefaultMaxDelay when Delay > 0 and
	// MaxDelay is 0.
	MaxDelay time.Duration
	// Reorder is the probability it swaps places with the message queued
	// just before it for the same peer (reordering within a batch).
	Reorder float64
	// Seed seeds the bridge's fault RNG, so a run can be replayed (as far
	// as goroutine scheduling allows: how messages fall into batches
	// depends on timing).
	Seed int64
}

func (f Faults) injects() bool {
	return f.Drop > 0 || f.Duplicate > 0 || f.Delay > 0 || f.Reorder > 0
}

// Validate names the first bad field; NaN is refused with the out-of-range
// values (a NaN probability would silently inject nothing).
func (f Faults) Validate() error {
	for _, p := range []struct {
		name string
		v    float64
	}{{"Drop", f.Drop}, {"Duplicate", f.Duplicate}, {"Delay", f.Delay}, {"Reorder", f.Reorder}} {
		if !(p.v >= 0 && p.v <= 1) {
			return fmt.Errorf("bridge: fault %s = %v: a probability must be within [0, 1]", p.name, p.v)
		}
	}
	if f.MaxDelay < 0 {
		return fmt.Errorf("bridge: fault MaxDelay = %v: must not be negative", f.MaxDelay)
	}
	return nil
}

// FaultStats count what the injected faults did since New. Messages
// lost to a fault or a cut also count in Stats.DroppedMessages (when
// outbound) or Stats.RefusedBatches (the inbound batches).
type FaultStats struct {
	Dropped    uint64 // outbound messages lost to Faults.Drop
	Duplicated uint64 // outbound messages sent twice
	Delayed    uint64 // outbound messages (copies) held back
	Reordered  uint64 // outbound messages swapped with the one queued before
	CutOff     uint64 // outbound messages dropped by a cut or isolation, plus inbound messages refused by one
}

// faultState is the bridge's fault configuration, shared between the
// controls and the bridge actor. Its zero value injects nothing.
type faultState struct {
	mu       sync.Mutex
	cfg      Faults
	cfgGen   uint64   // bumped by SetFaults: the actor takes the new config and reseeds
	cut      []bool   // by node id; allocated on the first Cut
	cuts     []uint64 // times each link was cut: messages queued before a cut never go out after it
	isolated atomic.Bool
	nCut     atomic.Int32  // links cut now: lets inbound batches skip the mutex when none is
	gen      atomic.Uint64 // bumped (under mu) after every change, so the actor rereads

	dropped, duplicated, delayed, reordered, cutOff atomic.Uint64
}

// changed publishes a change made under mu.
func (f *faultState) changed() { f.gen.Add(1) }

func (f *faultState) grow(n int) {
	if len(f.cut) < n {
		f.cut = make([]bool, n)
		f.cuts = make([]uint64, n)
	}
}

// SetFaults replaces the faults injected on this bridge's outbound
// messages; Faults{} stops injecting (cuts stay until healed). Messages
// already held back are still delivered when their time comes.
func (b *Bridge) SetFaults(f Faults) error {
	if err := f.Validate(); err != nil {
		return err
	}
	if f.Delay > 0 && f.MaxDelay == 0 {
		f.MaxDelay = DefaultMaxDelay
	}
	fs := &b.faults
	fs.mu.Lock()
	fs.cfg = f
	fs.cfgGen++
	fs.changed()
	fs.mu.Unlock()
	if f.injects() {
		b.log.Info("message faults set", "drop", f.Drop, "duplicate", f.Duplicate, "delay", f.Delay, "max_delay", f.MaxDelay, "reorder", f.Reorder, "seed", f.Seed)
	} else {
		b.log.Info("message faults cleared")
	}
	return nil
}

// Faults returns the faults in force (MaxDelay with its default filled in).
func (b *Bridge) Faults() Faults {
	b.faults.mu.Lock()
	defer b.faults.mu.Unlock()
	return b.faults.cfg
}

// FaultStats returns what the injected faults did so far.
func (b *Bridge) FaultStats() FaultStats {
	f := &b.faults
	return FaultStats{
		Dropped:    f.dropped.Load(),
		Duplicated: f.duplicated.Load(),
		Delayed:    f.delayed.Load(),
		Reordered:  f.reordered.Load(),
		CutOff:     f.cutOff.Load(),
	}
}

func (b *Bridge) checkPeer(op string, peer int32) error {
	switch {
	case peer == b.cfg.Self:
		return fmt.Errorf("bridge: cannot %s node %d's link to itself", op, peer)
	case peer < 0 || int(peer) >= len(b.cfg.Members):
		return fmt.Errorf("bridge: cannot %s the link to node %d: not a member (members are 0-%d)", op, peer, len(b.cfg.Members)-1)
	}
	return nil
}

// Cut cuts the link to peer, as a network partition would: from the moment
// it returns, messages for peer are dropped (those already queued too, and
// those held back by Delay), and batches from peer are refused. A batch
// handed to net/rpc before the cut may still arrive. Heal undoes it.
func (b *Bridge) Cut(peer int32) error {
	if err := b.checkPeer("cut", peer); err != nil {
		return err
	}
	f := &b.faults
	f.mu.Lock()
	f.grow(len(b.cfg.Members))
	already := f.cut[peer]
	f.cut[peer] = true
	f.cuts[peer]++
	if !already {
		f.nCut.Add(1)
	}
	f.changed()
	f.mu.Unlock()
	// A batch from peer being delivered right now finishes before Cut
	// returns; any later one sees the cut (deliver checks under inboundMu).
	b.inboundMu.Lock()
	b.inboundMu.Unlock()
	// Have the actor drop what it queued for peer now, not at its next send.
	b.post(faultsChanged{})
	if !already {
		b.log.Info("link cut (fault injection): nothing goes to or is accepted from the peer until healed", "peer", peer, "addr", b.cfg.Members[peer])
	}
	return nil
}

// Heal restores the link to peer. Messages dropped while it was cut stay
// lost; the protocol recovers them (timeouts, re-sent Commits, queries).
func (b *Bridge) Heal(peer int32) error {
	if err := b.checkPeer("heal", peer); err != nil {
		return err
	}
	f := &b.faults
	f.mu.Lock()
	was := int(peer) < len(f.cut) && f.cut[peer]
	if was {
		f.cut[peer] = false
		f.nCut.Add(-1)
		f.changed()
	}
	f.mu.Unlock()
	if was {
		b.log.Info("link healed (fault injection)", "peer", peer, "addr", b.cfg.Members[peer])
	}
	return nil
}

// HealAll restores every cut link. It does not undo Isolate.
func (b *Bridge) HealAll() {
	f := &b.faults
	f.mu.Lock()
	var healed []int32
	for i, c := range f.cut {
		if c {
			f.cut[i] = false
			healed = append(healed, int32(i))
		}
	}
	if len(healed) > 0 {
		f.nCut.Store(0)
		f.changed()
	}
	f.mu.Unlock()
	if len(healed) > 0 {
		b.log.Info("links healed (fault injection)", "peers", healed)
	}
}

// CutPeers returns the peers whose link is cut, in ascending order.
func (b *Bridge) CutPeers() []int32 {
	f := &b.faults
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []int32
	for i, c := range f.cut {
		if c {
			out = append(out, int32(i))
		}
	}
	return out
}

// Isolate cuts this node off from every peer at once and for good, as a
// power cut would: queued outbound messages are dropped, nothing is sent or
// accepted any more, and the connections to peers are closed (HealAll does
// not undo it; a restarted node has a new bridge). It takes effect before
// it returns, from any goroutine (also from inside another actor's Receive):
// a message handed to the bridge afterwards never reaches a peer, and no
// inbound message is handed to a local actor afterwards. Batches already
// handed to net/rpc may still arrive, as bytes already on the wire would.
func (b *Bridge) Isolate() {
	f := &b.faults
	f.mu.Lock()
	already := f.isolated.Swap(true)
	f.changed()
	f.mu.Unlock()
	if already {
		return
	}
	// Barrier: a batch being delivered now finishes before Isolate returns.
	b.inboundMu.Lock()
	b.inboundMu.Unlock()
	b.closeAllClients()
	b.post(faultsChanged{})
	b.log.Info("node isolated (fault injection): nothing is sent to or accepted from any peer from now on")
}

// refuseCut refuses an inbound batch from a peer whose link is cut, or any
// batch once the node is isolated. Called with inboundMu held, which makes
// Cut and Isolate take effect for inbound batches before they return.
func (b *Bridge) refuseCut(from int32, batch *Batch) error {
	f := &b.faults
	why := ""
	switch {
	case f.isolated.Load():
		why = "this node is isolated"
	case f.nCut.Load() > 0:
		f.mu.Lock()
		if int(from) < len(f.cut) && f.cut[from] {
			why = "the link is cut"
		}
		f.mu.Unlock()
	}
	if why == "" {
		return nil
	}
	b.refusedBatches.Add(1)
	f.cutOff.Add(uint64(len(batch.Msgs)))
	b.log.Debug("refused batch: "+why+" (fault injection)", "from", from, "seq", batch.Seq, "msgs", len(batch.Msgs))
	return fmt.Errorf("node %d refuses batch from node %d: %s (fault injection)", b.cfg.Self, from, why)
}

// --- the bridge actor's side -------------------------------------------------

// faultEvent is a message the bridge actor passes to onFaultEvent.
type faultEvent interface{ faultEvent() }

type (
	// faultsChanged asks the actor to take a cut or isolation in now, so
	// queued messages are dropped (and counted) at once.
	faultsChanged struct{}
	// delayedMsg is a held-back message whose time has come.
	delayedMsg struct {
		epoch uint64 // the actor instance that held it
		id    uint64
		peer  int32
		msg   Msg
		cuts  uint64 // the link's cut count when it was held: a cut since drops it
	}
)

func (faultsChanged) faultEvent() {}
func (*delayedMsg) faultEvent()   {}

// actorFaults is the bridge actor's snapshot of faultState, plus what only
// the actor touches: the RNG and the timers of held-back messages.
type actorFaults struct {
	gen      uint64 // faultState.gen of the snapshot
	cfgGen   uint64
	cfg      Faults
	isolated bool
	cut      []bool
	cuts     []uint64
	on       bool // anything to inject or check: off, enqueue takes the plain path
	rng      *rand.Rand
	timers   map[uint64]*time.Timer // held-back messages by delayedMsg.id
	nextID   uint64
}

func (af *actorFaults) linkCut(peer int32) bool {
	return af.isolated || (int(peer) < len(af.cut) && af.cut[peer])
}

func (af *actorFaults) cutCount(peer int32) uint64 {
	if int(peer) < len(af.cuts) {
		return af.cuts[peer]
	}
	return 0
}

// syncFaults takes in what the controls changed since the last look, and
// drops what is queued for a link cut since (even if healed meanwhile:
// those messages were queued before the cut).
func (a *bridgeActor) syncFaults() {
	f, af := &a.b.faults, &a.fx
	if f.gen.Load() == af.gen {
		return
	}
	f.mu.Lock()
	af.gen = f.gen.Load()
	af.isolated = f.isolated.Load()
	af.cut = append(af.cut[:0], f.cut...)
	oldCuts := af.cuts
	af.cuts = append([]uint64(nil), f.cuts...)
	cfg, cfgGen := f.cfg, f.cfgGen
	f.mu.Unlock()

	if cfgGen != af.cfgGen {
		af.cfgGen, af.cfg = cfgGen, cfg
		// PCG takes two words; the second only needs to differ from zero-ish
		// patterns, so a fixed one keeps Seed the single knob.
		af.rng = rand.New(rand.NewPCG(uint64(cfg.Seed), 0x2c0ffee2bc))
	}
	af.on = af.cfg.injects() || af.isolated || slices.Contains(af.cut, true)
	for _, p := range a.peers {
		if p == nil {
			continue
		}
		var before uint64
		if int(p.id) < len(oldCuts) {
			before = oldCuts[p.id]
		}
		if af.linkCut(p.id) || af.cutCount(p.id) != before {
			a.dropCut(p)
		}
	}
}

// injecting reports whether enqueue must go through inject.
func (a *bridgeActor) injecting() bool {
	a.syncFaults()
	return a.fx.on
}

// dropCut drops everything queued for p because its link is (or was) cut.
func (a *bridgeActor) dropCut(p *peerLink) {
	if len(p.queue) == 0 {
		return
	}
	n := uint64(len(p.queue))
	p.queue = nil
	a.b.droppedMsgs.Add(n)
	a.b.faults.cutOff.Add(n)
	a.b.log.Debug("fault: dropped messages queued for a cut link", "peer", p.id, "dropped", n)
}

// linkDown is flush's check: a cut link sends nothing, and what is queued
// for it is dropped.
func (a *bridgeActor) linkDown(p *peerLink) bool {
	a.syncFaults()
	if !a.fx.linkCut(p.id) {
		return false
	}
	a.dropCut(p)
	return true
}

// inject queues w for p with the configured faults applied.
func (a *bridgeActor) inject(p *peerLink, w Msg) {
	b, af := a.b, &a.fx
	if af.linkCut(p.id) {
		b.droppedMsgs.Add(1)
		b.faults.cutOff.Add(1)
		if b.log.IsDebug() {
			b.log.Debug("fault: message to a cut link dropped", "peer", p.id, "to", w.To, "type", fmt.Sprintf("%T", w.Body))
		}
		return
	}
	cfg, r := &af.cfg, af.rng
	if cfg.Drop > 0 && r.Float64() < cfg.Drop {
		b.droppedMsgs.Add(1)
		b.faults.dropped.Add(1)
		if b.log.IsDebug() {
			b.log.Debug("fault: message dropped", "peer", p.id, "to", w.To, "type", fmt.Sprintf("%T", w.Body))
		}
		return
	}
	copies := 1
	if cfg.Duplicate > 0 && r.Float64() < cfg.Duplicate {
		copies = 2
		b.faults.duplicated.Add(1)
		if b.log.IsDebug() {
			b.log.Debug("fault: message duplicated", "peer", p.id, "to", w.To, "type", fmt.Sprintf("%T", w.Body))
		}
	}
	for range copies {
		if cfg.Delay > 0 && r.Float64() < cfg.Delay {
			a.hold(p, w)
			continue
		}
		a.push(p, w)
		if n := len(p.queue); cfg.Reorder > 0 && n >= 2 && r.Float64() < cfg.Reorder {
			p.queue[n-2], p.queue[n-1] = p.queue[n-1], p.queue[n-2]
			b.faults.reordered.Add(1)
			if b.log.IsDebug() {
				b.log.Debug("fault: message swapped with the one queued before it", "peer", p.id, "to", w.To, "type", fmt.Sprintf("%T", w.Body))
			}
		}
	}
	a.flush(p)
}

// hold holds w back for a random time; a timer posts it back to the actor,
// so the queue is only ever touched on the actor's goroutine.
func (a *bridgeActor) hold(p *peerLink, w Msg) {
	af, b := &a.fx, a.b
	d := time.Duration(1 + af.rng.Int64N(int64(af.cfg.MaxDelay))) // (0, MaxDelay]; SetFaults makes MaxDelay > 0 when Delay > 0
	if af.timers == nil {
		af.timers = make(map[uint64]*time.Timer)
	}
	af.nextID++
	m := &delayedMsg{epoch: a.epoch, id: af.nextID, peer: p.id, msg: w, cuts: af.cutCount(p.id)}
	// After Stop, post refuses and the message is simply gone.
	af.timers[m.id] = time.AfterFunc(d, func() { b.post(m) })
	b.faults.delayed.Add(1)
	if b.log.IsDebug() {
		b.log.Debug("fault: message held back", "peer", p.id, "to", w.To, "type", fmt.Sprintf("%T", w.Body), "for", d)
	}
}

func (a *bridgeActor) onFaultEvent(ev faultEvent) {
	switch m := ev.(type) {
	case faultsChanged:
		a.syncFaults()
	case *delayedMsg:
		a.onDelayed(m)
	}
}

func (a *bridgeActor) onDelayed(m *delayedMsg) {
	if m.epoch != a.epoch { // held by an instance that has since restarted; counted by its release
		return
	}
	delete(a.fx.timers, m.id)
	a.syncFaults()
	p := a.peers[m.peer]
	if a.fx.linkCut(p.id) || a.fx.cutCount(p.id) != m.cuts {
		a.b.droppedMsgs.Add(1)
		a.b.faults.cutOff.Add(1)
		a.b.log.Debug("fault: held-back message dropped, its link was cut meanwhile", "peer", p.id, "to", m.msg.To)
		return
	}
	a.push(p, m.msg)
	a.flush(p)
}

// releaseFaults stops the timers of held-back messages, which are lost with
// the rest of the queue.
func (a *bridgeActor) releaseFaults() {
	if n := len(a.fx.timers); n > 0 {
		for _, t := range a.fx.timers {
			t.Stop()
		}
		clear(a.fx.timers)
		a.b.droppedMsgs.Add(uint64(n))
		a.b.log.Debug("dropping held-back messages on stop", "dropped", n)
	}
}
