package bridge

// Message faults at the bridge: what the network may do to messages between
// nodes (lose, repeat, hold back, reorder them; cut a link; cut a node off
// entirely), made to happen on purpose so tests can show the protocol
// survives it. Every outbound message crossing nodes passes the bridge
// actor's enqueue, so that is where faults are injected; cuts are also
// checked where a batch is about to be sent and where one arrives.
//
// Threads: the bridge actor owns the fault state (the faults in force, the
// cuts, the RNG, held-back messages' timers, the counts). The controls
// (SetFaults, Cut, Isolate, ...) are called from any goroutine: each sends
// the actor a faultControl and waits for its answer, so it has taken effect
// when the control returns. Inbound batches (net/rpc goroutines) need only
// which links are cut: the actor publishes that as one immutable linkView.

import (
	"fmt"
	"math/rand/v2"
	"slices"
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

// linkView is what inbound batches must know of the fault state: whether
// this node is isolated and which links are cut (by node id; shorter than
// Members when no link was ever cut). The bridge actor publishes a new one
// on every change and never modifies a published one.
type linkView struct {
	isolated bool
	cut      []bool
}

func (v *linkView) refuses(from int32) bool {
	return v != nil && (v.isolated || (int(from) < len(v.cut) && v.cut[from]))
}

// faultControl asks the bridge actor to change (or only report) the fault
// state; it answers with a faultReport.
type faultControl struct {
	op     faultOp
	peer   int32  // Cut, Heal
	faults Faults // Set
}

type faultOp int

const (
	opReport faultOp = iota
	opSet
	opCut
	opHeal
	opHealAll
	opIsolate
)

// faultReport is the actor's answer to a faultControl: the state after it.
type faultReport struct {
	faults  Faults
	cut     []int32    // cut peers, ascending
	stats   FaultStats // outbound counts (inbound refusals are added by the caller)
	changed bool       // Cut: newly cut; Heal: was cut; Isolate: first time
	healed  []int32    // HealAll: the links it restored
}

// controlTimeout bounds a control's wait for the bridge actor, which answers
// at once unless it has stopped (then the wait ends with a dead letter).
const controlTimeout = time.Minute

// control has the bridge actor carry out c and returns its report. Once the
// bridge is stopped (or stops meanwhile) nothing changes any more: the report
// is the state the actor left.
func (b *Bridge) control(c *faultControl) faultReport {
	b.stopMu.RLock()
	if b.stopped {
		b.stopMu.RUnlock()
		return b.leftReport()
	}
	// Queued before Stop's PoisonPill (stopMu), so answered before it.
	f := b.sys.Root.RequestFuture(b.pid, c, controlTimeout)
	b.stopMu.RUnlock()
	res, err := f.Result()
	if r, ok := res.(*faultReport); ok && err == nil {
		return *r
	}
	if err != nil {
		b.log.Debug("fault control not answered", "error", err)
	}
	return b.leftReport()
}

// leftReport is the fault state the last bridge actor left on stopping.
func (b *Bridge) leftReport() faultReport {
	h := b.handover.Load()
	if h == nil {
		return faultReport{}
	}
	return h.report()
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
	b.control(&faultControl{op: opSet, faults: f})
	if f.injects() {
		b.log.Info("message faults set", "drop", f.Drop, "duplicate", f.Duplicate, "delay", f.Delay, "max_delay", f.MaxDelay, "reorder", f.Reorder, "seed", f.Seed)
	} else {
		b.log.Info("message faults cleared")
	}
	return nil
}

// Faults returns the faults in force (MaxDelay with its default filled in).
func (b *Bridge) Faults() Faults {
	return b.control(&faultControl{op: opReport}).faults
}

// FaultStats returns what the injected faults did so far.
func (b *Bridge) FaultStats() FaultStats {
	st := b.control(&faultControl{op: opReport}).stats
	st.CutOff += b.refusedCut.Load()
	return st
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
	if b.control(&faultControl{op: opCut, peer: peer}).changed {
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
	if b.control(&faultControl{op: opHeal, peer: peer}).changed {
		b.log.Info("link healed (fault injection)", "peer", peer, "addr", b.cfg.Members[peer])
	}
	return nil
}

// HealAll restores every cut link. It does not undo Isolate.
func (b *Bridge) HealAll() {
	if healed := b.control(&faultControl{op: opHealAll}).healed; len(healed) > 0 {
		b.log.Info("links healed (fault injection)", "peers", healed)
	}
}

// CutPeers returns the peers whose link is cut, in ascending order.
func (b *Bridge) CutPeers() []int32 {
	return b.control(&faultControl{op: opReport}).cut
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
	if b.control(&faultControl{op: opIsolate}).changed {
		b.log.Info("node isolated (fault injection): nothing is sent to or accepted from any peer from now on")
	}
}

// refuseCut refuses an inbound batch from a peer whose link is cut, or any
// batch once the node is isolated. Called with inboundMu held: the actor
// publishes a new linkView under it too, so a batch being delivered when a
// Cut or Isolate is made finishes before the control returns, and any later
// one sees it.
func (b *Bridge) refuseCut(from int32, batch *Batch) error {
	v := b.links.Load()
	if !v.refuses(from) {
		return nil
	}
	why := "the link is cut"
	if v.isolated {
		why = "this node is isolated"
	}
	b.refusedBatches.Add(1)
	b.refusedCut.Add(uint64(len(batch.Msgs)))
	b.log.Debug("refused batch: "+why+" (fault injection)", "from", from, "seq", batch.Seq, "msgs", len(batch.Msgs))
	return fmt.Errorf("node %d refuses batch from node %d: %s (fault injection)", b.cfg.Self, from, why)
}

// --- the bridge actor's side -------------------------------------------------

// delayedMsg is a held-back message whose time has come.
type delayedMsg struct {
	epoch uint64 // the actor instance that held it
	id    uint64
	peer  int32
	msg   Msg
	cuts  uint64 // the link's cut count when it was held: a cut since drops it
}

// faultState is the fault state that outlives a bridge actor instance: a
// restarted actor takes it over (Bridge.handover), so a restart neither
// heals a cut nor forgets the faults in force.
type faultState struct {
	cfg      Faults
	isolated bool
	cut      []bool     // by node id
	cuts     []uint64   // times each link was cut: messages held before a cut never go out after it
	stats    FaultStats // outbound counts
}

func (s *faultState) report() faultReport {
	r := faultReport{faults: s.cfg, stats: s.stats}
	for i, c := range s.cut {
		if c {
			r.cut = append(r.cut, int32(i))
		}
	}
	return r
}

// actorFaults is the bridge actor's fault state, plus what only this
// instance needs: the RNG and the timers of held-back messages.
type actorFaults struct {
	faultState
	on     bool // anything to inject or check: off, enqueue takes the plain path
	rng    *rand.Rand
	timers map[uint64]*time.Timer // held-back messages by delayedMsg.id
	nextID uint64
}

// takeOver starts a new actor instance with the state the previous one
// left (nil for the first).
func (a *bridgeActor) takeOver(h *faultState) {
	af := &a.fx
	n := len(a.peers)
	af.cut, af.cuts = make([]bool, n), make([]uint64, n)
	if h != nil {
		af.cfg, af.isolated, af.stats = h.cfg, h.isolated, h.stats
		copy(af.cut, h.cut)
		copy(af.cuts, h.cuts)
	}
	af.reseed()
	af.update()
}

// reseed restarts the RNG from the configured seed. PCG takes two words;
// the second only needs to differ from zero-ish patterns, so a fixed one
// keeps Seed the single knob.
func (af *actorFaults) reseed() {
	af.rng = rand.New(rand.NewPCG(uint64(af.cfg.Seed), 0x2c0ffee2bc))
}

func (af *actorFaults) update() {
	af.on = af.cfg.injects() || af.isolated || slices.Contains(af.cut, true)
}

func (af *actorFaults) linkCut(peer int32) bool {
	return af.isolated || af.cut[peer]
}

// publish hands inbound batches the new cuts. It stores under inboundMu so
// that a batch being delivered finishes first: when the control returns,
// no batch from a cut link is being handed to local actors any more.
func (a *bridgeActor) publish() {
	v := &linkView{isolated: a.fx.isolated, cut: slices.Clone(a.fx.cut)}
	a.b.inboundMu.Lock()
	a.b.links.Store(v)
	a.b.inboundMu.Unlock()
}

// onControl carries out a control on the actor's goroutine.
func (a *bridgeActor) onControl(c *faultControl) *faultReport {
	af := &a.fx
	changed := false
	var healed []int32
	switch c.op {
	case opSet:
		af.cfg = c.faults
		af.reseed()
	case opCut:
		changed = !af.cut[c.peer]
		af.cut[c.peer] = true
		af.cuts[c.peer]++
		a.publish()
		// What was queued for the peer goes now, not at its next send.
		a.dropCut(a.peers[c.peer])
	case opHeal:
		changed = af.cut[c.peer]
		if changed {
			af.cut[c.peer] = false
			a.publish()
		}
	case opHealAll:
		for i, cut := range af.cut {
			if cut {
				af.cut[i] = false
				healed = append(healed, int32(i))
			}
		}
		if len(healed) > 0 {
			a.publish()
		}
	case opIsolate:
		changed = !af.isolated
		if changed {
			af.isolated = true
			a.publish()
			a.b.closeAllClients()
			for _, p := range a.peers {
				if p != nil {
					a.dropCut(p)
				}
			}
		}
	}
	af.update()
	r := af.report()
	r.changed, r.healed = changed, healed
	return &r
}

// injecting reports whether enqueue must go through inject.
func (a *bridgeActor) injecting() bool { return a.fx.on }

// dropCut drops everything queued for p because its link is cut.
func (a *bridgeActor) dropCut(p *peerLink) {
	if len(p.queue) == 0 {
		return
	}
	n := uint64(len(p.queue))
	p.queue = nil
	a.b.droppedMsgs.Add(n)
	a.fx.stats.CutOff += n
	a.b.log.Debug("fault: dropped messages queued for a cut link", "peer", p.id, "dropped", n)
}

// linkDown is flush's check: a cut link sends nothing, and what is queued
// for it is dropped.
func (a *bridgeActor) linkDown(p *peerLink) bool {
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
		af.stats.CutOff++
		if b.log.IsDebug() {
			b.log.Debug("fault: message to a cut link dropped", "peer", p.id, "to", w.To, "type", fmt.Sprintf("%T", w.Body))
		}
		return
	}
	cfg, r := &af.cfg, af.rng
	if cfg.Drop > 0 && r.Float64() < cfg.Drop {
		b.droppedMsgs.Add(1)
		af.stats.Dropped++
		if b.log.IsDebug() {
			b.log.Debug("fault: message dropped", "peer", p.id, "to", w.To, "type", fmt.Sprintf("%T", w.Body))
		}
		return
	}
	copies := 1
	if cfg.Duplicate > 0 && r.Float64() < cfg.Duplicate {
		copies = 2
		af.stats.Duplicated++
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
			af.stats.Reordered++
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
	m := &delayedMsg{epoch: a.epoch, id: af.nextID, peer: p.id, msg: w, cuts: af.cuts[p.id]}
	// After Stop, post refuses and the message is simply gone.
	af.timers[m.id] = time.AfterFunc(d, func() { b.post(m) })
	af.stats.Delayed++
	if b.log.IsDebug() {
		b.log.Debug("fault: message held back", "peer", p.id, "to", w.To, "type", fmt.Sprintf("%T", w.Body), "for", d)
	}
}

func (a *bridgeActor) onDelayed(m *delayedMsg) {
	if m.epoch != a.epoch { // held by an instance that has since restarted; counted by its release
		return
	}
	delete(a.fx.timers, m.id)
	p := a.peers[m.peer]
	if a.fx.linkCut(p.id) || a.fx.cuts[p.id] != m.cuts {
		a.b.droppedMsgs.Add(1)
		a.fx.stats.CutOff++
		a.b.log.Debug("fault: held-back message dropped, its link was cut meanwhile", "peer", p.id, "to", m.msg.To)
		return
	}
	a.push(p, m.msg)
	a.flush(p)
}

// releaseFaults stops the timers of held-back messages, which are lost with
// the rest of the queue, and leaves the fault state to the next instance
// (or, after Stop, to the controls' late callers).
func (a *bridgeActor) releaseFaults() {
	if n := len(a.fx.timers); n > 0 {
		for _, t := range a.fx.timers {
			t.Stop()
		}
		clear(a.fx.timers)
		a.b.droppedMsgs.Add(uint64(n))
		a.b.log.Debug("dropping held-back messages on stop", "dropped", n)
	}
	left := a.fx.faultState
	left.cut, left.cuts = slices.Clone(left.cut), slices.Clone(left.cuts)
	a.b.handover.Store(&left)
}
