package web

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"twopc/actors"
	"twopc/bridge"
	"twopc/cluster"
	"twopc/messages"
	"twopc/trace"
)

// What the sources share: one node's card, asked of its roles with a
// deadline of the view's own (a card must come even from a stuck node),
// and the votes a trace shows.

// askTimeout bounds each question to a role when ctx has no deadline.
const askTimeout = time.Second

// ask sends msg to one of n's roles and waits for the answer until ctx's
// deadline.
func ask(ctx context.Context, n *cluster.Node, role string, msg any) (any, error) {
	d := askTimeout
	if dl, ok := ctx.Deadline(); ok {
		d = time.Until(dl)
	}
	if d <= 0 {
		return nil, fmt.Errorf("node %d: no time left to ask its %s", n.ID(), role)
	}
	pid := n.Coordinator()
	if role == "participant" {
		pid = n.Participant()
	}
	res, err := n.System().Root.RequestFuture(pid, msg, d).Result()
	if err != nil {
		return nil, fmt.Errorf("node %d's %s did not answer: %w", n.ID(), role, err)
	}
	return res, nil
}

// protocolOf names the commit protocol node n runs, for its card (nil:
// the default one).
func protocolOf(n *cluster.Node) string {
	p := actors.DefaultProtocol
	if n != nil {
		p = n.Protocol()
	}
	if p == actors.TwoPC {
		return "2pc (presumed abort)"
	}
	return string(p) + " (Paxos Commit)"
}

// upCard is the card of a running node, and its participant's in-doubt
// transactions (nil if it did not answer).
func upCard(ctx context.Context, n *cluster.Node, addr string) (NodeStatus, []actors.InDoubtTx) {
	c := NodeStatus{ID: n.ID(), Addr: addr, State: StateUp, Incarnation: n.Incarnation(),
		InFlight: -1, Locks: -1, InDoubt: -1, Protocol: protocolOf(n)}
	if err := n.Ready(); err != nil {
		c.State, c.Why = StateDown, err.Error()
		return c, nil
	}
	st := n.LogStats()
	c.LogBytes, c.Records, c.Fsyncs = st.LogBytes, st.Records, st.Fsyncs
	c.Faults = faultsText(n.Bridge().Faults())
	c.Cut = n.Bridge().CutPeers()
	if len(c.Cut) > 0 {
		c.State = StatePartitioned
	}
	var why []string
	if res, err := ask(ctx, n, "coordinator", &actors.CoordinatorStatusRequest{}); err != nil {
		why = append(why, err.Error())
	} else if cs, ok := res.(*actors.CoordinatorStatus); ok {
		c.InFlight = cs.InFlight
	}
	var doubts []actors.InDoubtTx
	if res, err := ask(ctx, n, "participant", &actors.ParticipantStatusRequest{}); err != nil {
		why = append(why, err.Error())
	} else if ps, ok := res.(*actors.ParticipantStatus); ok {
		c.Locks, c.InDoubt = ps.LocksHeld, len(ps.Doubts)
		doubts = ps.Doubts
	}
	c.Why = strings.Join(why, "; ")
	return c, doubts
}

// faultsText is how a card shows the message faults injected; "" for none.
func faultsText(f bridge.Faults) string {
	var parts []string
	add := func(name string, p float64) {
		if p > 0 {
			parts = append(parts, fmt.Sprintf("%s=%g", name, p))
		}
	}
	add("drop", f.Drop)
	add("dup", f.Duplicate)
	if f.Delay > 0 {
		d := f.MaxDelay
		if d == 0 {
			d = bridge.DefaultMaxDelay
		}
		parts = append(parts, fmt.Sprintf("delay=%g:%v", f.Delay, d))
	}
	add("reorder", f.Reorder)
	return strings.Join(parts, " ")
}

// votesOf is each participant's vote on tx as its trace shows it ("?" for
// one not traced).
func votesOf(rec *trace.Recorder, tx messages.TxID, participants []int32) []Vote {
	seen := map[int32]string{}
	if rec != nil {
		for _, e := range rec.Events(tx) {
			if e.Kind == trace.Send && strings.HasPrefix(e.What, "Vote ") {
				if _, ok := seen[e.Node]; !ok {
					seen[e.Node] = strings.TrimPrefix(e.What, "Vote ")
				}
			}
		}
	}
	out := make([]Vote, 0, len(participants))
	for _, p := range participants {
		v, ok := seen[p]
		if !ok {
			v = "?"
		}
		out = append(out, Vote{Node: p, Vote: v})
	}
	return out
}

// sortDoubts orders in-doubt entries by transaction, then node, and keeps
// the first MaxInDoubt.
func sortDoubts(s *Snapshot) {
	slices.SortFunc(s.InDoubt, func(a, b InDoubt) int {
		if c := a.Tx.Compare(b.Tx); c != 0 {
			return c
		}
		return int(a.Node - b.Node)
	})
	s.InDoubtTotal = len(s.InDoubt)
	if len(s.InDoubt) > MaxInDoubt {
		s.InDoubt = s.InDoubt[:MaxInDoubt]
	}
}

// recentFrom reads the last n transactions a Recorder keeps that have an
// outcome (the coordinator's Outcome to its client), oldest first.
func recentFrom(rec *trace.Recorder, n int) []TxEnd {
	if rec == nil || n <= 0 {
		return nil
	}
	ids := rec.Transactions()
	if len(ids) > n {
		ids = ids[len(ids)-n:]
	}
	out := make([]TxEnd, 0, len(ids))
	for _, tx := range ids {
		if t, ok := endFromTrace(tx, rec.Events(tx)); ok {
			out = append(out, t)
		}
	}
	return out
}

// endFromTrace is what a transaction's trace says of its end: the
// Outcome its coordinator sent the client, the time from its first event,
// and the participants its Prepares went to. With no Outcome traced but
// its coordinator's crash, the outcome is unknown (as its client was
// told). ok is false for neither: it is still running.
func endFromTrace(tx messages.TxID, evs []trace.Event) (TxEnd, bool) {
	var t TxEnd
	var found bool
	var crash *trace.Event
	var parts []int32
	for i, e := range evs {
		switch {
		case e.Kind == trace.NodeEvent && e.Node == tx.Node && strings.HasPrefix(e.What, "crashed") && crash == nil:
			crash = &evs[i]
		case e.Kind == trace.Send && e.What == "Prepare" && e.Peer >= 0 && !slices.Contains(parts, e.Peer):
			parts = append(parts, e.Peer)
		case e.Kind == trace.Send && e.What == "Outcome" && !found:
			found = true
			t = TxEnd{Tx: tx, Node: e.Node, At: e.At, Took: e.At.Sub(evs[0].At)}
			switch {
			case strings.HasPrefix(e.Detail, "committed"):
				t.Outcome = OutcomeCommitted
				t.Reason = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(e.Detail, "committed"), " ("), ")")
			case strings.HasPrefix(e.Detail, "unknown"):
				t.Outcome, t.Reason = OutcomeUnknown, strings.TrimPrefix(e.Detail, "unknown: ")
			default:
				t.Outcome, t.Reason = OutcomeAborted, strings.TrimPrefix(e.Detail, "aborted: ")
			}
		}
	}
	if !found && crash != nil {
		found = true
		t = TxEnd{Tx: tx, Node: tx.Node, At: crash.At, Took: crash.At.Sub(evs[0].At), Outcome: OutcomeUnknown,
			Reason: fmt.Sprintf("node %d crashed before it answered; the participants settle it", tx.Node)}
	}
	slices.Sort(parts)
	t.Participants = parts
	return t, found
}
