package actors

// The proposer's side of the non-blocking commit (see acceptor.go). Two
// roles propose: a txn actor, which proposes commit in ballot 0 once every
// vote is yes, and anyone who must learn or finish the outcome without the
// coordinator — a participant in doubt, or a txn actor whose ballot 0 was
// overtaken — in a ballot of its own above every ballot it has seen.
//
// A recovery round is Paxos' two phases: promises from a majority of the
// acceptors, each reporting what it accepted; then the value accepted in
// the highest ballot among them — or abort, if none reports one — is
// proposed again in the new ballot. Commit is proposed first only in ballot
// 0 and only after every yes vote, and a recovery can only re-propose a
// value it was told of, so commit is chosen only if every participant
// voted yes; and a value once chosen is the only one any later ballot can
// carry (Paxos' safety), so commit and abort are never both chosen.

import (
	"github.com/asynkron/protoactor-go/actor"

	"twopc/messages"
)

// proposal is one proposer's state for one transaction. The host actor
// feeds it the replies addressed to it; it says when a value is chosen.
type proposal struct {
	tx        messages.TxID
	self      int32
	members   int
	acceptors []int32
	directory Directory

	ballot  messages.Ballot
	phase   int // 1: collecting promises; 2: collecting acceptances; 0: idle
	value   messages.Decision
	chosen  messages.Decision
	highest messages.Ballot // the highest ballot seen in any reply, to start above it

	promised map[int32]bool
	// best is the highest-ballot value the promises reported.
	best       messages.Decision
	bestBallot messages.Ballot
	accepted   map[int32]bool
	refused    bool // an acceptor has promised a higher ballot: this round cannot succeed
}

func newProposal(tx messages.TxID, self int32, members int, dir Directory) *proposal {
	return &proposal{tx: tx, self: self, members: members, acceptors: messages.Acceptors(tx, members), directory: dir}
}

// propose starts ballot 0 (the coordinator's): phase 2 at once, with v,
// sent to a bare majority of the acceptors — the coordinator's own and the
// next — rather than to all three: that is enough to choose, costs two
// messages on the wire instead of four, and resendAccepts brings in the
// third if one of them is slow to answer or down.
func (p *proposal) propose(ctx actor.Context, v messages.Decision, settled uint64, sent func(acceptor int32)) {
	p.ballot, p.phase, p.value = 0, 2, v
	p.accepted, p.refused = make(map[int32]bool), false
	for _, n := range p.acceptors[:messages.Majority(len(p.acceptors))] {
		ctx.Request(p.directory.Acceptor(n), &messages.AcceptRequest{Tx: p.tx, Ballot: 0, From: p.self, Decision: v, Settled: settled})
		if sent != nil {
			sent(n)
		}
	}
}

// resendAccepts repeats the current phase-2 request to the acceptors that
// have not answered it (a message lost, or an acceptor restarting).
func (p *proposal) resendAccepts(ctx actor.Context, settled uint64) {
	if p.phase != 2 {
		return
	}
	if p.ballot != 0 {
		settled = 0
	}
	for _, n := range p.acceptors {
		if !p.accepted[n] {
			ctx.Request(p.directory.Acceptor(n), &messages.AcceptRequest{Tx: p.tx, Ballot: p.ballot, From: p.self, Decision: p.value, Settled: settled})
		}
	}
}

// recover starts a new round in this node's next ballot above every one
// seen: phase 1.
func (p *proposal) recover(ctx actor.Context) {
	p.ballot = messages.NextBallot(max(p.ballot, p.highest), p.self, p.members)
	p.phase, p.value = 1, messages.DecisionUnknown
	p.promised, p.accepted, p.refused = make(map[int32]bool), make(map[int32]bool), false
	p.best, p.bestBallot = messages.DecisionUnknown, 0
	for _, n := range p.acceptors {
		ctx.Request(p.directory.Acceptor(n), &messages.PromiseRequest{Tx: p.tx, Ballot: p.ballot, From: p.self})
	}
}

// running: a round is under way and has not been refused.
func (p *proposal) running() bool { return p.phase != 0 && !p.refused }

func (p *proposal) isAcceptor(n int32) bool {
	for _, a := range p.acceptors {
		if a == n {
			return true
		}
	}
	return false
}

// onPromise takes a phase-1 answer. Once a majority has promised, it moves
// to phase 2 with the value to carry: the one accepted in the highest
// ballot, or abort if none was (commit cannot have been chosen then: a
// chosen value is held by a majority, and any two majorities meet).
func (p *proposal) onPromise(ctx actor.Context, m *messages.PromiseReply) {
	p.highest = max(p.highest, m.Promised, m.AcceptedBallot)
	if p.phase != 1 || m.Ballot != p.ballot || !p.isAcceptor(m.From) {
		return
	}
	if !m.OK {
		p.refused = true
		return
	}
	if p.promised[m.From] {
		return
	}
	p.promised[m.From] = true
	if m.Accepted != messages.DecisionUnknown && (p.best == messages.DecisionUnknown || m.AcceptedBallot > p.bestBallot) {
		p.best, p.bestBallot = m.Accepted, m.AcceptedBallot
	}
	if len(p.promised) < messages.Majority(len(p.acceptors)) {
		return
	}
	p.phase, p.value = 2, p.best
	if p.value == messages.DecisionUnknown {
		p.value = messages.DecisionAbort
	}
	for _, n := range p.acceptors {
		ctx.Request(p.directory.Acceptor(n), &messages.AcceptRequest{Tx: p.tx, Ballot: p.ballot, From: p.self, Decision: p.value})
	}
}

// onAccepted takes a phase-2 answer and reports whether the value is now
// chosen (a majority accepted it in this ballot).
func (p *proposal) onAccepted(m *messages.AcceptReply) bool {
	p.highest = max(p.highest, m.Promised)
	if p.phase != 2 || m.Ballot != p.ballot || !p.isAcceptor(m.From) {
		return false
	}
	if !m.OK {
		p.refused = true
		return false
	}
	p.accepted[m.From] = true
	if len(p.accepted) < messages.Majority(len(p.acceptors)) {
		return false
	}
	p.phase, p.chosen = 0, p.value
	return true
}
