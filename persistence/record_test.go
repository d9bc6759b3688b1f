package persistence

import (
	"encoding/binary"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"twopc/messages"
)

func TestRecordRoundTrip(t *testing.T) {
	for _, r := range sampleRecords() {
		enc := appendRecord(nil, &r)
		got, err := decodeRecord(enc)
		if err != nil {
			t.Fatalf("%v: decode: %v", r, err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Fatalf("round trip:\n got %#v\nwant %#v", got, r)
		}
	}
}

func TestDecodeRecordRejects(t *testing.T) {
	good := appendRecord(nil, &sampleRecords()[1])
	hugeCount := []byte{recordVersion, byte(messages.RecPrepared), 0, 0, 0, 0}
	hugeCount = binary.AppendUvarint(hugeCount, 1<<40) // participants
	hugeKey := []byte{recordVersion, byte(messages.RecPrepared), 0, 0, 0, 0, 0, 1}
	hugeKey = binary.AppendUvarint(hugeKey, 1<<40) // op key length
	hugeKey = append(hugeKey, make([]byte, 8)...)
	heuristic := appendRecord(nil, &messages.Record{Kind: messages.RecHeuristic, Tx: tx(3), Decision: messages.DecisionCommit})

	cases := []struct {
		name, want string
		b          []byte
	}{
		{"empty", "ends early", nil},
		{"version", "version", append([]byte{9}, good[1:]...)},
		{"kind", "record kind", append([]byte{recordVersion, 0}, good[2:]...)},
		{"truncated", "ends", good[:len(good)-1]},
		{"trailing", "trailing", append(append([]byte{}, good...), 0)},
		{"participant count", "exceeds", hugeCount},
		{"key length", "exceeds", hugeKey},
		{"heuristic without decision", "ends early", heuristic[:len(heuristic)-1]},
		{"heuristic decision", "unknown heuristic decision", append(append([]byte{}, heuristic[:len(heuristic)-1]...), byte(messages.DecisionUnknown))},
		{"heuristic decision value", "unknown heuristic decision", append(append([]byte{}, heuristic[:len(heuristic)-1]...), 9)},
		// An older kind never carries the decision byte.
		{"decision on another kind", "trailing", append(appendRecord(nil, &messages.Record{Kind: messages.RecAborted}), byte(messages.DecisionAbort))},
	}
	for _, c := range cases {
		_, err := decodeRecord(c.b)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", c.name, err, c.want)
		}
	}
}

func TestCheckRecordRefusesWhatDecodeRejects(t *testing.T) {
	bad := []messages.Record{
		{Kind: 0},
		{Kind: messages.LastRecordKind + 1}, // the first kind this build does not know
		{Kind: messages.RecPrepared, Ops: []messages.Op{{Key: "a", Kind: 0}}},
		{Kind: messages.RecHeuristic, Tx: tx(1)}, // no decision
		{Kind: messages.RecHeuristic, Tx: tx(1), Decision: 7},
		{Kind: messages.RecAborted, Tx: tx(1), Decision: messages.DecisionAbort}, // only HEURISTIC carries one
	}
	for _, r := range bad {
		if _, err := appendRecordFrame(nil, &r); err == nil {
			t.Errorf("appendRecordFrame(%#v) accepted a record replay would reject", r)
		}
	}
}

func FuzzDecodeRecord(f *testing.F) {
	for _, r := range sampleRecords() {
		f.Add(appendRecord(nil, &r))
	}
	f.Add([]byte{})
	f.Add([]byte{recordVersion, 2, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		// Arbitrary bytes: decoding must not panic, and whatever decodes must
		// survive encode -> decode unchanged.
		if r, err := decodeRecord(data); err == nil {
			if err := checkRecord(&r); err != nil {
				t.Fatalf("decoded a record the encoder refuses: %v", err)
			}
			again, err := decodeRecord(appendRecord(nil, &r))
			if err != nil {
				t.Fatalf("re-decode: %v", err)
			}
			if !reflect.DeepEqual(again, r) {
				t.Fatalf("round trip changed the record:\n got %#v\nwant %#v", again, r)
			}
		}
		// A record built from the input: encode -> decode is the identity.
		r := recordFrom(data)
		got, err := decodeRecord(appendRecord(nil, &r))
		if err != nil {
			t.Fatalf("decode of %#v: %v", r, err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Fatalf("round trip:\n got %#v\nwant %#v", got, r)
		}
	})
}

func TestStateEncodingRoundTrip(t *testing.T) {
	s := foldOf(randomHistory(rand.New(rand.NewPCG(1, 2)), 500))
	if len(s.KV) == 0 || len(s.InDoubt) == 0 || len(s.Pending) == 0 || len(s.Heuristic) == 0 {
		t.Fatalf("history too thin to test with: %d keys, %d in doubt, %d pending, %d heuristic", len(s.KV), len(s.InDoubt), len(s.Pending), len(s.Heuristic))
	}
	enc := appendState(nil, 42, s)
	covers, got, err := decodeState(enc)
	if err != nil {
		t.Fatal(err)
	}
	if covers != 42 || !reflect.DeepEqual(got, s) {
		t.Fatalf("round trip: covers %d, state equal %v", covers, reflect.DeepEqual(got, s))
	}
	if string(appendState(nil, 42, got)) != string(enc) {
		t.Fatal("equal states encoded to different bytes")
	}
	for cut := range len(enc) {
		if _, _, err := decodeState(enc[:cut]); err == nil {
			t.Fatalf("decodeState accepted a payload cut at %d of %d bytes", cut, len(enc))
		}
	}
}

func FuzzDecodeState(f *testing.F) {
	f.Add(appendState(nil, 3, foldOf(randomHistory(rand.New(rand.NewPCG(3, 4)), 40))))
	f.Add(appendState(nil, 1, NewState()))
	f.Fuzz(func(t *testing.T, data []byte) {
		covers, s, err := decodeState(data)
		if err != nil {
			return
		}
		c2, s2, err := decodeState(appendState(nil, covers, s))
		if err != nil || c2 != covers || !reflect.DeepEqual(s2, s) {
			t.Fatalf("state round trip failed: err %v", err)
		}
	})
}

func TestStateApply(t *testing.T) {
	s := NewState()
	s.Apply(messages.Record{Kind: messages.RecBoot, Incarnation: 3})
	s.Apply(messages.Record{Kind: messages.RecBoot, Incarnation: 2})
	s.Apply(prepared(1, messages.Set("a", 5), messages.Add("a", 2), messages.Set("b", 1), messages.Delete("b")))
	s.Apply(prepared(2, messages.Set("c", 9)))
	if len(s.InDoubt) != 2 || len(s.KV) != 0 {
		t.Fatalf("after prepares: %d in doubt, KV %v", len(s.InDoubt), s.KV)
	}
	s.Apply(committed(1))
	s.Apply(committed(1)) // a duplicate must not apply the ops twice
	s.Apply(messages.Record{Kind: messages.RecAborted, Tx: tx(2)})
	s.Apply(messages.Record{Kind: messages.RecCommitDecision, Tx: tx(3), Participants: []int32{1, 2}})
	s.Apply(messages.Record{Kind: messages.RecCommitDecision, Tx: tx(4), Participants: []int32{0}})
	s.Apply(messages.Record{Kind: messages.RecEnd, Tx: tx(4)})
	s.Apply(messages.Record{Kind: messages.RecHeuristic, Tx: tx(2), Decision: messages.DecisionAbort})
	s.Apply(messages.Record{Kind: messages.RecHeuristic, Tx: tx(1), Decision: messages.DecisionCommit})
	want := &State{
		Incarnation: 3,
		KV:          map[string]int64{"a": 7},
		InDoubt:     map[messages.TxID]messages.Record{},
		Pending:     map[messages.TxID][]int32{tx(3): {1, 2}},
		Heuristic:   map[messages.TxID]bool{tx(1): true, tx(2): false},
		// What the participant did with each, until a mark passes it.
		Outcomes: map[messages.TxID]messages.RecordKind{tx(1): messages.RecCommitted, tx(2): messages.RecAborted},
		Marks:    map[int32]messages.TxID{},
		Acceptor: map[messages.TxID]Acceptance{},
	}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("fold:\n got %+v\nwant %+v", s, want)
	}
	c := s.Clone()
	c.Pending[tx(3)][0] = 99
	c.KV["a"] = 0
	c.Heuristic[tx(2)] = true
	if s.Pending[tx(3)][0] != 1 || s.KV["a"] != 7 || s.Heuristic[tx(2)] {
		t.Fatal("Clone shares memory with the original")
	}
}

// A participant's outcomes are kept until its coordinator's mark passes
// them: REFUSED and READ-ONLY count like COMMITTED, a mark drops what is
// below it and outcomes that arrive below it, and marks only rise. The
// snapshot keeps both.
func TestStateOutcomesAndMarks(t *testing.T) {
	c := func(inc uint32, seq uint64) messages.TxID { return messages.TxID{Node: 2, Incarnation: inc, Seq: seq} }
	s := NewState()
	s.Apply(messages.Record{Kind: messages.RecRefused, Tx: c(1, 4)})
	s.Apply(messages.Record{Kind: messages.RecReadOnly, Tx: c(1, 6)})
	s.Apply(messages.Record{Kind: messages.RecRefused, Tx: tx(3)}) // another coordinator
	s.Apply(messages.Record{Kind: messages.RecMark, Tx: c(1, 5)})
	if _, ok := s.Outcomes[c(1, 4)]; ok || s.Outcomes[c(1, 6)] != messages.RecReadOnly || s.Outcomes[tx(3)] != messages.RecRefused {
		t.Fatalf("after mark 2.1.5: outcomes %v", s.Outcomes)
	}
	s.Apply(messages.Record{Kind: messages.RecMark, Tx: c(1, 2)}) // lower: ignored
	s.Apply(messages.Record{Kind: messages.RecRefused, Tx: c(1, 3)})
	if s.Marks[2] != c(1, 5) || len(s.Outcomes) != 2 {
		t.Fatalf("a lower mark or an outcome below the mark changed the state: marks %v outcomes %v", s.Marks, s.Outcomes)
	}
	covers, got, err := decodeState(appendState(nil, 9, s))
	if err != nil || covers != 9 || !reflect.DeepEqual(got, s) {
		t.Fatalf("snapshot round trip: covers %d err %v\n got %+v\nwant %+v", covers, err, got, s)
	}
	s.Apply(messages.Record{Kind: messages.RecMark, Tx: c(2, 1)}) // a later incarnation passes all of 1
	if len(s.Outcomes) != 1 || !Below(c(1, 99), s.Marks[2]) || Below(c(2, 1), s.Marks[2]) || Below(tx(3), s.Marks[2]) {
		t.Fatalf("after mark 2.2.1: outcomes %v marks %v", s.Outcomes, s.Marks)
	}
}
