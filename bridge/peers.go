package bridge

import (
	"fmt"
	"time"
)

// PeerState is the bridge's view of one peer at one moment, for a node's
// metrics: read from the bridge actor on request, so watching costs the
// message path nothing.
type PeerState struct {
	Node   int32
	Addr   string
	Queued int // messages waiting to be sent to it (not counting a batch in flight)
	// Up: the link is not cut (a partition, or this node isolated) and the
	// last attempt to connect to the peer did not fail. A peer never
	// needed yet counts as up: nothing says otherwise.
	Up bool
}

// peersRequest asks the bridge actor for a []PeerState.
type peersRequest struct{}

// Peers returns the state of every peer, in node-id order, or an error if
// the bridge actor does not answer within timeout (it has stopped, or is
// too busy to).
func (b *Bridge) Peers(timeout time.Duration) ([]PeerState, error) {
	res, err := b.sys.Root.RequestFuture(b.pid, &peersRequest{}, timeout).Result()
	if err != nil {
		return nil, fmt.Errorf("bridge: peer states: %w", err)
	}
	ps, ok := res.([]PeerState)
	if !ok {
		return nil, fmt.Errorf("bridge: peer states: unexpected answer %T", res)
	}
	return ps, nil
}

// peerStates answers a peersRequest, on the bridge actor.
func (a *bridgeActor) peerStates() []PeerState {
	out := make([]PeerState, 0, len(a.peers))
	for _, p := range a.peers {
		if p == nil {
			continue
		}
		out = append(out, PeerState{Node: p.id, Addr: p.addr, Queued: len(p.queue),
			Up: !a.fx.linkCut(p.id) && !a.b.unreachable[p.id].Load()})
	}
	return out
}
