package trace

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"twopc/messages"
)

// MaxLineWidth is the width, in characters, at which Render cuts an event's
// line (with "…"): a terminal stays readable with four nodes' lanes and a
// long abort reason. The first line, the summary, is never cut, so the full
// reason is shown once; Events has everything.
const MaxLineWidth = 100

// Render draws tx's events (Events) as a text sequence diagram with one
// lane per node, at least nodes lanes (more if an event names a higher
// node). Operators and scripts read it; its shape is:
//
//	trace 0.1.5: committed; coordinator node 0, participants 1 2
//	      +ms  n0 n1 n2
//	    0.000   o-->  .    Prepare 0 → 1
//	    0.390   .  >  .    Prepare 0 → 1 received
//	    1.904   .  #  .    node 1 log PREPARED (forced)
//	    5.771   *  .  .    node 0 decision: commit
//
// The offset is milliseconds since the transaction's first event. In the
// lanes, o is a sender with its arrow reaching to the receiver's lane (to
// the right edge for a client; "o>" for a message to the same node), > or <
// a receiver (the arrow's direction from its sender), # a log write, * a
// decision, X a crash, ^ a restart, ! another node event, ? a note.
//
// It returns an error "no trace of <tx> (…)" when nothing of tx is kept.
func (r *Recorder) Render(w io.Writer, tx messages.TxID, nodes int) error {
	evs := r.Events(tx)
	if len(evs) == 0 {
		return fmt.Errorf("no trace of %v (never seen here, or evicted: only the last %d transactions are kept)", tx, r.maxTxs)
	}
	return render(w, tx, evs, nodes)
}

func render(w io.Writer, tx messages.TxID, evs []Event, nodes int) error {
	for _, e := range evs {
		nodes = max(nodes, int(e.Node)+1, int(e.Peer)+1)
	}
	nodes = max(nodes, 1)
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "trace %v: %s\n", tx, Summary(tx, evs))

	var hdr strings.Builder
	for i := 0; i < nodes; i++ {
		fmt.Fprintf(&hdr, "%-3s", fmt.Sprintf("n%d", i))
	}
	fmt.Fprintf(bw, "%9s  %s\n", "+ms", strings.TrimRight(hdr.String(), " "))

	start := evs[0].At
	for _, e := range evs {
		ms := float64(e.At.Sub(start).Nanoseconds()) / 1e6
		line := fmt.Sprintf("%9.3f  %s  %s", ms, lanes(e, nodes), e.String())
		fmt.Fprintln(bw, cut(line, MaxLineWidth))
	}
	return bw.Flush()
}

// Summary is the first line Render writes for tx's events, without its
// "trace <tx>: ": the outcome (and any heuristic decision), the
// coordinator and the participants. The web view heads its diagram with it.
func Summary(tx messages.TxID, evs []Event) string {
	return fmt.Sprintf("%s%s; coordinator node %d, participants %s", status(evs), heuristics(evs), tx.Node, participants(evs))
}

// status is the summary of the outcome. A commit counts once its COMMIT
// record is written (the decision itself may die with its node before
// that); an abort once decided (presumed abort logs nothing), or once the
// coordinator answers a question with abort — after a crash before it
// decided, that presumed abort is the only decision there is.
func status(evs []Event) string {
	switch d, e := outcome(evs); {
	case d == "commit":
		return "committed"
	case d == "abort" && e != nil && e.Kind == Decision && e.Detail != "":
		return "aborted: " + e.Detail
	case d == "abort" && e != nil && e.Kind == Send:
		return "aborted (presumed: no COMMIT in the coordinator's log)"
	case d == "abort":
		return "aborted"
	}
	var commitDecided bool
	var reply *Event
	for i := range evs {
		e := &evs[i]
		switch {
		case e.Kind == Decision && e.What == "commit":
			commitDecided = true
		case e.Kind == Send && e.What == "Outcome" && reply == nil:
			reply = e
		}
	}
	switch {
	case reply != nil && reply.Detail != "":
		return reply.Detail // e.g. a read-only commit, or an abort with no txn actor
	case commitDecided:
		return "commit decided, COMMIT not logged"
	}
	return "no decision recorded"
}

// outcome is the coordinator's decision as the events show it — "commit"
// (COMMIT written), "abort" (decided, or answered to a question by the
// coordinator's node), or "" — and the event that shows it.
func outcome(evs []Event) (string, *Event) {
	var abort *Event
	for i := range evs {
		e := &evs[i]
		switch {
		case e.Kind == LogWrite && e.What == messages.RecCommitDecision.String():
			return "commit", e
		case abort == nil && e.Kind == Decision && e.What == "abort":
			abort = e
		case abort == nil && e.Kind == Send && e.What == "DecisionReply" && e.Node == e.Tx.Node && e.Detail == messages.DecisionAbort.String():
			abort = e
		}
	}
	if abort != nil {
		return "abort", abort
	}
	return "", nil
}

// heuristics says where an operator forced a decision (a HEURISTIC record)
// and where that disagrees with the coordinator's decision (an ack of
// heuristic damage, or the forced node's own COMMITTED or ABORTED against
// the outcome): the summary must not read as a clean outcome then.
func heuristics(evs []Event) string {
	var forced, damaged []int32
	applied := map[int32]string{} // what each forced node wrote after its HEURISTIC record
	for _, e := range evs {
		switch {
		case e.Kind == LogWrite && e.What == messages.RecHeuristic.String():
			if !slices.Contains(forced, e.Node) {
				forced = append(forced, e.Node)
			}
		case e.Kind == LogWrite && slices.Contains(forced, e.Node) && e.What == messages.RecCommitted.String():
			applied[e.Node] = "commit"
		case e.Kind == LogWrite && slices.Contains(forced, e.Node) && e.What == messages.RecAborted.String():
			applied[e.Node] = "abort"
		case e.Kind == Send && e.What == "Ack" && e.Detail == "heuristic damage" && !slices.Contains(damaged, e.Node):
			damaged = append(damaged, e.Node)
		}
	}
	if d, _ := outcome(evs); d != "" {
		for n, a := range applied {
			if a != d && !slices.Contains(damaged, n) {
				damaged = append(damaged, n)
			}
		}
	}
	var notes []string
	if len(forced) > 0 {
		notes = append(notes, "the operator forced a heuristic decision on node "+nodeList(forced))
	}
	if len(damaged) > 0 {
		notes = append(notes, "heuristic damage on node "+nodeList(damaged))
	}
	if len(notes) == 0 {
		return ""
	}
	return " (" + strings.Join(notes, "; ") + ")"
}

func nodeList(ns []int32) string {
	slices.Sort(ns)
	parts := make([]string, len(ns))
	for i, n := range ns {
		parts[i] = fmt.Sprint(n)
	}
	return strings.Join(parts, " ")
}

// participants lists the nodes the transaction's first-phase and
// second-phase messages and records name.
func participants(evs []Event) string {
	seen := map[int32]bool{}
	for _, e := range evs {
		switch e.Kind {
		case Send:
			if isPhaseMessage(e.What) && e.Peer >= 0 {
				seen[e.Peer] = true
			}
		case Receive:
			if isPhaseMessage(e.What) {
				seen[e.Node] = true
			}
		case LogWrite:
			switch e.What {
			case messages.RecPrepared.String(), messages.RecCommitted.String(), messages.RecAborted.String(), messages.RecHeuristic.String():
				seen[e.Node] = true
			}
		}
	}
	if len(seen) == 0 {
		return "unknown"
	}
	ids := make([]int, 0, len(seen))
	for n := range seen {
		ids = append(ids, int(n))
	}
	sort.Ints(ids)
	s := make([]string, len(ids))
	for i, n := range ids {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, " ")
}

// isPhaseMessage: messages only a participant receives from its coordinator.
func isPhaseMessage(what string) bool {
	return what == "Prepare" || what == "Commit" || what == "Abort"
}

func lane(i int32) int { return 3*int(i) + 1 }

// lanes draws e's strip: 3 characters per node plus one for a client
// arrow's head.
func lanes(e Event, nodes int) string {
	width := 3*nodes + 1
	row := []byte(strings.Repeat(" ", width))
	for i := 0; i < nodes; i++ {
		row[lane(int32(i))] = '.'
	}
	in := func(n int32) bool { return n >= 0 && int(n) < nodes }
	mark := func(n int32, c byte) {
		if in(n) {
			row[lane(n)] = c
		}
	}
	switch e.Kind {
	case Send:
		if !in(e.Node) {
			break
		}
		from := lane(e.Node)
		to := -1
		switch {
		case e.Peer == PeerClient:
			to = width - 1
		case e.Peer == e.Node:
			row[from+1] = '>' // a zero-length arrow
		case in(e.Peer):
			to = lane(e.Peer)
		}
		switch {
		case to > from:
			for c := from + 1; c < to; c++ {
				row[c] = '-'
			}
			row[to] = '>'
		case to >= 0 && to < from:
			for c := to + 1; c < from; c++ {
				row[c] = '-'
			}
			row[to] = '<'
		}
		row[from] = 'o'
	case Receive:
		c := byte('>')
		if e.Peer == PeerClient || (e.Peer >= 0 && e.Peer > e.Node) {
			c = '<'
		}
		mark(e.Node, c)
	case LogWrite:
		mark(e.Node, '#')
	case Decision:
		mark(e.Node, '*')
	case NodeEvent:
		c := byte('!')
		switch {
		case strings.HasPrefix(e.What, "crashed"):
			c = 'X'
		case strings.HasPrefix(e.What, "restarted"), strings.HasPrefix(e.What, "started"):
			c = '^'
		}
		if e.Node < 0 {
			for i := 0; i < nodes; i++ {
				mark(int32(i), c)
			}
		}
		mark(e.Node, c)
		mark(e.Peer, c)
	default:
		mark(e.Node, '?')
	}
	return string(row)
}

// cut shortens s to at most width characters, ending it with "…".
func cut(s string, width int) string {
	if utf8.RuneCountInString(s) <= width {
		return s
	}
	r := []rune(s)
	return string(r[:width-1]) + "…"
}
