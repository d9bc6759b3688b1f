package persistence

import (
	"reflect"
	"testing"

	"twopc/messages"
)

// An acceptor's promises and acceptances fold into State.Acceptor: the
// highest promise, the latest acceptance; a mark drops them only within its
// own incarnation; a snapshot carries them.
func TestAcceptorRecordsFoldAndSurviveASnapshot(t *testing.T) {
	a := messages.TxID{Node: 0, Incarnation: 2, Seq: 3}
	b := messages.TxID{Node: 0, Incarnation: 2, Seq: 9}
	old := messages.TxID{Node: 0, Incarnation: 1, Seq: 40}
	s := NewState()
	for _, r := range []messages.Record{
		{Kind: messages.RecAccepted, Tx: a, Ballot: 0, Decision: messages.DecisionCommit},
		{Kind: messages.RecPromised, Tx: a, Ballot: 6},
		{Kind: messages.RecPromised, Tx: a, Ballot: 2}, // lower: the promise stays 6
		{Kind: messages.RecPromised, Tx: b, Ballot: 5},
		{Kind: messages.RecAccepted, Tx: b, Ballot: 5, Decision: messages.DecisionAbort},
		{Kind: messages.RecAccepted, Tx: old, Ballot: 0, Decision: messages.DecisionCommit},
	} {
		s.Apply(r)
	}
	want := map[messages.TxID]messages.Acceptance{
		a:   {Promised: 6, AcceptedBallot: 0, Accepted: messages.DecisionCommit},
		b:   {Promised: 5, AcceptedBallot: 5, Accepted: messages.DecisionAbort},
		old: {Promised: 0, AcceptedBallot: 0, Accepted: messages.DecisionCommit},
	}
	if !reflect.DeepEqual(s.Acceptor, want) {
		t.Fatalf("fold %+v, want %+v", s.Acceptor, want)
	}
	_, got, err := decodeState(appendState(nil, 7, s))
	if err != nil || !reflect.DeepEqual(got.Acceptor, want) {
		t.Fatalf("through a snapshot: %+v (%v), want %+v", got.Acceptor, err, want)
	}

	// The mark 0.2.5 passes a (same incarnation, lower seq) only: b is
	// above it, and old is of an earlier incarnation, which a participant
	// in doubt may still need the acceptors' word on.
	s.Apply(messages.Record{Kind: messages.RecMark, Tx: messages.TxID{Node: 0, Incarnation: 2, Seq: 5}})
	delete(want, a)
	if !reflect.DeepEqual(s.Acceptor, want) {
		t.Fatalf("after the mark %+v, want %+v", s.Acceptor, want)
	}
}

// Records of the new kinds round-trip, and a ballot on a kind that does not
// carry one is refused before it reaches the log.
func TestAcceptorRecordsEncodeAndAreChecked(t *testing.T) {
	for _, r := range []messages.Record{
		{Kind: messages.RecPromised, Tx: messages.TxID{Node: 2, Incarnation: 1, Seq: 1}, Ballot: 1 << 31},
		{Kind: messages.RecAccepted, Tx: messages.TxID{Node: 2, Incarnation: 1, Seq: 1}, Ballot: 3, Decision: messages.DecisionAbort},
	} {
		if err := checkRecord(&r); err != nil {
			t.Fatalf("%v: %v", r, err)
		}
		got, err := decodeRecord(appendRecord(nil, &r))
		if err != nil || !reflect.DeepEqual(got, r) {
			t.Fatalf("round trip of %v: %+v, %v", r, got, err)
		}
	}
	for _, r := range []messages.Record{
		{Kind: messages.RecCommitted, Tx: messages.TxID{Node: 2, Incarnation: 1, Seq: 1}, Ballot: 2},
		{Kind: messages.RecAccepted, Tx: messages.TxID{Node: 2, Incarnation: 1, Seq: 1}, Ballot: 2},
	} {
		if err := checkRecord(&r); err == nil {
			t.Errorf("%+v accepted by checkRecord", r)
		}
	}
}
