package web

import (
	"slices"
	"testing"
	"time"

	"twopc/trace"
)

// What a page that opens late lists is read from the traces: the outcome
// the coordinator told its client, or unknown when the coordinator crashed
// before telling; a transaction still running is not listed.
func TestEndFromTrace(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	tx := txn(3)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	prepares := []trace.Event{
		{At: at(0), Node: 0, Kind: trace.Send, Peer: 2, Tx: tx, What: "Prepare"},
		{At: at(1), Node: 0, Kind: trace.Send, Peer: 1, Tx: tx, What: "Prepare"},
	}
	outcome := func(ms int, detail string) []trace.Event {
		return append(slices.Clone(prepares), trace.Event{At: at(ms), Node: 0, Kind: trace.Send, Peer: trace.PeerClient, Tx: tx, What: "Outcome", Detail: detail})
	}
	for _, c := range []struct {
		name            string
		evs             []trace.Event
		ok              bool
		outcome, reason string
		took            time.Duration
	}{
		{"committed", outcome(12, "committed"), true, OutcomeCommitted, "", 12 * time.Millisecond},
		{"read-only", outcome(5, "committed (read-only)"), true, OutcomeCommitted, "read-only", 5 * time.Millisecond},
		{"aborted", outcome(7, "aborted: node 2 voted no: balance too low"), true, OutcomeAborted, "node 2 voted no: balance too low", 7 * time.Millisecond},
		{"unknown", outcome(9, "unknown: log write failed"), true, OutcomeUnknown, "log write failed", 9 * time.Millisecond},
		{"coordinator crashed", append(slices.Clone(prepares), trace.Event{At: at(4), Node: 0, Kind: trace.NodeEvent, Peer: trace.NoPeer, What: "crashed (power cut)"}),
			true, OutcomeUnknown, "node 0 crashed before it answered; the participants settle it", 4 * time.Millisecond},
		{"a participant crashed", append(slices.Clone(prepares), trace.Event{At: at(4), Node: 2, Kind: trace.NodeEvent, Peer: trace.NoPeer, What: "crashed (power cut)"}), false, "", "", 0},
		{"running", prepares, false, "", "", 0},
	} {
		got, ok := endFromTrace(tx, c.evs)
		if ok != c.ok {
			t.Errorf("%s: listed %v, want %v", c.name, ok, c.ok)
			continue
		}
		if !ok {
			continue
		}
		if got.Outcome != c.outcome || got.Reason != c.reason || got.Took != c.took || got.Node != 0 || got.Tx != tx || !slices.Equal(got.Participants, []int32{1, 2}) {
			t.Errorf("%s: %+v, want %s %q after %v, participants 1 2", c.name, got, c.outcome, c.reason, c.took)
		}
	}
}
