package bridge

// The receiving side of the bridge: net/rpc calls Deliver on its own
// goroutine for every batch a peer sends.

import (
	"fmt"
	"strconv"

	"github.com/asynkron/protoactor-go/actor"

	"twopc/messages"
)

// bridgeService is the inbound rpc service; a separate type keeps the
// Bridge's other exported methods off the wire. peer is the node the
// connection's certificate proves (RegisterPeer), or unbound.
type bridgeService struct {
	b    *Bridge
	peer int32
}

// unbound marks a service with no authenticated sender (plaintext, insecure).
const unbound int32 = -1

// Deliver hands a peer's batch to local actors, in order. It runs on
// net/rpc's per-call goroutine and never blocks: sends only enqueue.
func (s *bridgeService) Deliver(batch *Batch, ack *Ack) error {
	if s.peer != unbound && batch.From != s.peer {
		// A member speaking for another: refused whole, before any of its
		// messages is looked at. Logged at a bounded rate, numbers only.
		s.b.refusedBatches.Add(1)
		if ok, missed := s.b.impostors.Allow(); ok {
			s.b.log.Warn("refused a batch claiming another sender than the connection's certificate", "certificate", s.peer, "claimed", batch.From, "refusals_not_logged", missed)
		}
		return fmt.Errorf("node %d refuses batch: the connection is node %d's, the batch claims node %d", s.b.cfg.Self, s.peer, batch.From)
	}
	return s.b.deliver(batch, ack)
}

// SenderHeader is the message header under which the bridge tells a local
// actor which node a message came from: the batch's sender, which with
// TLS is the node its connection's certificate proves. Messages sent
// within a node carry no such header.
const SenderHeader = "twopc-from-node"

// SentBy reads the sending node from a bridged message's header; ok is
// false for a message that did not cross the wire.
func SentBy(h actor.ReadonlyMessageHeader) (node int32, ok bool) {
	if h == nil {
		return 0, false
	}
	v := h.Get(SenderHeader)
	if v == "" {
		return 0, false
	}
	id, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return 0, false
	}
	return int32(id), true
}

// senderHeaders are the headers each peer's messages carry, made once:
// a header is only read, so every message from a peer may share it.
func senderHeaders(members int) []map[string]string {
	h := make([]map[string]string, members)
	for i := range h {
		h[i] = map[string]string{SenderHeader: strconv.Itoa(i)}
	}
	return h
}

// admit records batch as the newest of its link, or refuses it when a newer
// batch of the same session was delivered already: its call had timed out
// and the sender moved on, so delivering it now would reorder the link.
// Called with inboundMu held.
func (b *Bridge) admit(from int32, batch *Batch) error {
	known := b.inbound[from]
	for i := range known {
		if known[i].session != batch.Session {
			continue
		}
		if batch.Seq <= known[i].seq {
			b.refusedBatches.Add(1)
			b.droppedMsgs.Add(uint64(len(batch.Msgs)))
			b.refusals.refuse("late-batch", "refused a late batch: newer ones from this peer were delivered already", "from", from, "seq", batch.Seq, "newest", known[i].seq)
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

func (b *Bridge) deliver(batch *Batch, ack *Ack) error {
	from := batch.From
	if from < 0 || int(from) >= len(b.cfg.Members) || from == b.cfg.Self {
		b.refusedBatches.Add(1)
		b.refusals.refuse("not-a-peer", "refused batch from a node that is not a peer", "from", from, "msgs", len(batch.Msgs))
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
		b.refusals.refuse("outside-cluster", "refused batch from outside this cluster", "from", from, "from_addr", sanitize(batch.FromAddr), "to", batch.To, "msgs", len(batch.Msgs))
		return fmt.Errorf("node %d refuses batch from node %d at %s addressed to node %d: not a member of this cluster %v (or sent to the wrong node)",
			b.cfg.Self, from, sanitize(batch.FromAddr), batch.To, b.cfg.Members)
	}
	// Back-pressure before the lock: a wait must not hold up Cut or Isolate.
	if !b.cfg.Backlog.wait(b.ctx) {
		b.refusedBatches.Add(1)
		return fmt.Errorf("node %d refuses batch from node %d: bridge stopped", b.cfg.Self, from)
	}
	b.inboundMu.Lock()
	defer b.inboundMu.Unlock()
	if err := b.refuseCut(from, batch); err != nil {
		return err
	}
	if err := b.admit(from, batch); err != nil {
		return err
	}
	accepted, skipped, forged := 0, 0, 0
	for i := range batch.Msgs {
		m := &batch.Msgs[i]
		if m.To == "" || !wireable(m.Body) {
			skipped++
			continue
		}
		if rule, why := b.forgery(from, m.Body); why != "" {
			forged++
			b.warnForged(from, rule, why, m)
			continue
		}
		target := actor.NewPID(b.self, m.To)
		env := &actor.MessageEnvelope{Header: b.fromHeader[from], Message: m.Body}
		if m.SenderID != "" {
			addr := m.SenderAddr
			if addr == "" { // a sender with no address can only live on the sending node
				addr = b.cfg.Members[from]
			}
			env.Sender = actor.NewPID(addr, m.SenderID)
		}
		// The envelope goes to the mailbox as is: its header tells the
		// receiver (a reply box, say) which node sent the message.
		b.sys.Root.Send(target, env)
		accepted++
	}
	if skipped > 0 {
		b.refusals.refuse("malformed", "skipped malformed messages (no body, no target or a type peers may not send)", "from", from, "skipped", skipped, "accepted", accepted)
	}
	b.skippedMsgs.Add(uint64(skipped + forged))
	b.recvMsgs.Add(uint64(accepted))
	b.recvBatches.Add(1)
	ack.Accepted = accepted
	return nil
}

// A peer may speak only for itself: every protocol message names its sender
// node (From), and only a transaction's coordinator — the node in its id —
// prepares, commits or aborts it. The batch's sender is known (a member, at
// its own address), so a message that claims otherwise is forged, or comes
// from a broken peer, and is refused before any actor can act on it: a
// forged Commit could make a participant apply a transaction its coordinator
// aborted, a forged Vote could count as another node's yes.

// forgedKey is one kind of forgery by one sender: each is warned about
// once, so a hostile peer cannot flood the log.
type forgedKey struct {
	from int32
	rule string
}

// forgery checks a message from node from against the rules above; it
// returns the rule broken (e.g. "Vote.From") and why, or "" and "".
func (b *Bridge) forgery(from int32, body interface{}) (rule, why string) {
	var (
		typ         string
		claimed     = from // Prepare names no sender: its Tx does
		tx          messages.TxID
		coordinator bool // only tx.Node may send it
	)
	switch m := body.(type) {
	case *messages.Prepare:
		typ, tx, coordinator = "Prepare", m.Tx, true
	case *messages.Commit:
		typ, claimed, tx, coordinator = "Commit", m.From, m.Tx, true
	case *messages.Abort:
		typ, claimed, tx, coordinator = "Abort", m.From, m.Tx, true
	case *messages.Vote:
		typ, claimed, tx = "Vote", m.From, m.Tx
	case *messages.Ack:
		typ, claimed, tx = "Ack", m.From, m.Tx
	case *messages.DecisionQuery:
		typ, claimed, tx = "DecisionQuery", m.From, m.Tx
	case *messages.DecisionReply:
		typ, claimed, tx = "DecisionReply", m.From, m.Tx
	case *messages.ReadLock, *messages.ReadRelease, *messages.ReadLocked, *messages.ReadReleased:
		return readForgery(from, m)
	case *messages.PromiseRequest:
		typ, claimed, tx = "PromiseRequest", m.From, m.Tx
		if rule, why := b.ballotForgery(typ, from, tx, m.Ballot, false); rule != "" {
			return rule, why
		}
	case *messages.AcceptRequest:
		typ, claimed, tx = "AcceptRequest", m.From, m.Tx
		if rule, why := b.ballotForgery(typ, from, tx, m.Ballot, true); rule != "" {
			return rule, why
		}
	case *messages.PromiseReply:
		typ, claimed, tx = "PromiseReply", m.From, m.Tx
	case *messages.AcceptReply:
		typ, claimed, tx = "AcceptReply", m.From, m.Tx
	default:
		return "", ""
	}
	switch {
	case claimed != from:
		return typ + ".From", fmt.Sprintf("%s claims to be from node %d, but node %d sent it", typ, claimed, from)
	case tx.Node < 0 || int(tx.Node) >= len(b.cfg.Members):
		return typ + ".Tx.Node", fmt.Sprintf("%s is for transaction %v, whose coordinator node %d is not a member (members are 0-%d)", typ, tx, tx.Node, len(b.cfg.Members)-1)
	case coordinator && tx.Node != from:
		return typ + ".Tx.Node", fmt.Sprintf("%s is for transaction %v, coordinated by node %d, but node %d sent it (only a transaction's coordinator may)", typ, tx, tx.Node, from)
	}
	return "", ""
}

// ballotForgery checks a proposer's request (non-blocking commit): a node
// proposes only in ballots it owns — ballot 0 is the transaction's
// coordinator's, every other ballot one node's (messages.Ballot.Owner) —
// and ballot 0 needs no promise. A peer proposing in another's ballot could
// otherwise get a value accepted under a promise made to someone else,
// which is how two outcomes would get chosen.
func (b *Bridge) ballotForgery(typ string, from int32, tx messages.TxID, ballot messages.Ballot, zeroOK bool) (rule, why string) {
	if ballot == 0 && !zeroOK {
		return typ + ".Ballot", fmt.Sprintf("%s for %v in ballot 0, which needs no promise", typ, tx)
	}
	if tx.Node < 0 || int(tx.Node) >= len(b.cfg.Members) {
		return "", "" // the Tx.Node rule names it
	}
	if owner := ballot.Owner(tx, len(b.cfg.Members)); owner != from {
		return typ + ".Ballot", fmt.Sprintf("%s for %v in ballot %d, which is node %d's, but node %d sent it", typ, tx, ballot, owner, from)
	}
	return "", ""
}

// readForgery checks a snapshot read's messages: a read lock is taken and
// released only by the node whose read it is (Reader.Node), and an owner
// answers only for itself (From). A forged release would otherwise drop
// another node's read lock early (the reader would then retry), and a
// forged answer would put values of the sender's choosing in its snapshot.
func readForgery(from int32, body interface{}) (rule, why string) {
	var typ string
	var claimed int32
	switch m := body.(type) {
	case *messages.ReadLock:
		typ, claimed = "ReadLock.Reader.Node", m.Reader.Node
	case *messages.ReadRelease:
		typ, claimed = "ReadRelease.Reader.Node", m.Reader.Node
	case *messages.ReadLocked:
		typ, claimed = "ReadLocked.From", m.From
	case *messages.ReadReleased:
		typ, claimed = "ReadReleased.From", m.From
	}
	if claimed != from {
		return typ, fmt.Sprintf("%s is node %d, but node %d sent it", typ, claimed, from)
	}
	return "", ""
}

// warnForged logs a refused message: at Warn the first time a sender
// breaks a rule, then at most once per interval for all kinds together.
// Called with inboundMu held.
func (b *Bridge) warnForged(from int32, rule, why string, m *Msg) {
	k := forgedKey{from: from, rule: rule}
	if b.forged[k] || len(b.forged) >= maxWarned {
		b.refusals.refuse("forged", "more forged messages, of kinds warned about before", "from", from, "to", sanitize(m.To), "rule", rule, "why", why)
		return
	}
	if b.forged == nil {
		b.forged = make(map[forgedKey]bool)
	}
	b.forged[k] = true
	b.log.Warn("refused a forged message (further ones of this kind from this node are logged at a bounded rate)", "from", from, "to", sanitize(m.To), "rule", rule, "reason", why)
}
