package cluster

// The receiving side of the bridge: net/rpc calls Deliver on its own
// goroutine for every batch a peer sends.

import (
	"fmt"

	"github.com/asynkron/protoactor-go/actor"
)

// bridgeService is the inbound rpc service; a separate type keeps the
// Bridge's other exported methods off the wire.
type bridgeService struct{ b *Bridge }

// Deliver hands a peer's batch to local actors, in order. It runs on
// net/rpc's per-call goroutine and never blocks: sends only enqueue.
func (s *bridgeService) Deliver(batch *WireBatch, ack *WireAck) error {
	return s.b.deliver(batch, ack)
}

// admit records batch as the newest of its link, or refuses it when a newer
// batch of the same session was delivered already: its call had timed out
// and the sender moved on, so delivering it now would reorder the link.
// Called with inboundMu held.
func (b *Bridge) admit(from int32, batch *WireBatch) error {
	known := b.inbound[from]
	for i := range known {
		if known[i].session != batch.Session {
			continue
		}
		if batch.Seq <= known[i].seq {
			b.refusedBatches.Add(1)
			b.droppedMsgs.Add(uint64(len(batch.Msgs)))
			b.log.Warn("refused a late batch: newer ones from this peer were delivered already", "from", from, "seq", batch.Seq, "newest", known[i].seq)
			return fmt.Errorf("node %d refuses batch %d from node %d: batch %d was delivered already", b.cfg.Self, batch.Seq, from, known[i].seq)
		}
		known[i].seq = batch.Seq
		return nil
	}
	if len(known) == sessionsKept {
		known = known[1:]
	}
	b.inbound[from] = append(known, linkPosition{session: batch.Session, seq: batch.Seq})
	return nil
}

func (b *Bridge) deliver(batch *WireBatch, ack *WireAck) error {
	from := batch.From
	if from < 0 || int(from) >= len(b.cfg.Members) || from == b.cfg.Self {
		b.refusedBatches.Add(1)
		b.log.Warn("refused batch from a node that is not a peer", "from", from, "msgs", len(batch.Msgs))
		return fmt.Errorf("node %d refuses batch from node %d: not a peer (members are 0-%d)", b.cfg.Self, from, len(b.cfg.Members)-1)
	}
	b.stopMu.RLock()
	stopped := b.stopped
	b.stopMu.RUnlock()
	if stopped {
		b.refusedBatches.Add(1)
		return fmt.Errorf("node %d refuses batch from node %d: bridge stopped", b.cfg.Self, from)
	}
	if batch.Cluster != b.cluster || batch.FromAddr != b.cfg.Members[from] || batch.To != b.cfg.Self {
		b.refusedBatches.Add(1)
		b.log.Warn("refused batch from outside this cluster", "from", from, "from_addr", batch.FromAddr, "to", batch.To, "msgs", len(batch.Msgs))
		return fmt.Errorf("node %d refuses batch from node %d at %s addressed to node %d: not a member of this cluster %v (or sent to the wrong node)",
			b.cfg.Self, from, batch.FromAddr, batch.To, b.cfg.Members)
	}
	b.inboundMu.Lock()
	defer b.inboundMu.Unlock()
	if err := b.refuseCut(from, batch); err != nil {
		return err
	}
	if err := b.admit(from, batch); err != nil {
		return err
	}
	accepted, skipped := 0, 0
	for i := range batch.Msgs {
		m := &batch.Msgs[i]
		if m.Body == nil || m.To == "" {
			skipped++
			continue
		}
		target := actor.NewPID(b.self, m.To)
		if m.SenderID == "" {
			b.sys.Root.Send(target, m.Body)
		} else {
			addr := m.SenderAddr
			if addr == "" { // a sender with no address can only live on the sending node
				addr = b.cfg.Members[from]
			}
			b.sys.Root.RequestWithCustomSender(target, m.Body, actor.NewPID(addr, m.SenderID))
		}
		accepted++
	}
	if skipped > 0 {
		b.skippedMsgs.Add(uint64(skipped))
		b.log.Warn("skipped malformed messages (no body or no target)", "from", from, "skipped", skipped, "accepted", accepted)
	}
	b.recvMsgs.Add(uint64(accepted))
	b.recvBatches.Add(1)
	ack.Accepted = accepted
	return nil
}
