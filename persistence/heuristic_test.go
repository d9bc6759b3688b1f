package persistence

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"twopc/messages"
)

// A heuristic decision is folded into State.Heuristic and kept there for
// good: across a snapshot that drops the segments holding its record, a
// reopen, and another snapshot taken after the reopen.
func TestHeuristicSurvivesSnapshotAndReopen(t *testing.T) {
	dir := t.TempDir()
	recs := heuristicHistory()
	want := map[messages.TxID]bool{tx(1): true, tx(2): false, tx(4): false}
	s := foldOf(recs)
	if !reflect.DeepEqual(s.Heuristic, want) || len(s.InDoubt) != 1 || s.KV["a"] != 10 || s.KV["b"] != 0 {
		t.Fatalf("fold: heuristic %v, in doubt %v, KV %v", s.Heuristic, s.InDoubt, s.KV)
	}

	n := startNode(t, newSystem(t), dir, -1)
	n.mustAppend(true, recs...)
	if rep := request[*messages.SnapshotTaken](t, n, &messages.TakeSnapshot{}); rep.Err != nil {
		t.Fatal(rep.Err)
	}
	n.mustAppend(true, prepared(5, messages.Set("e", 1)), committed(5))
	n.stop()
	if _, err := os.Stat(segPath(dir, 1)); err == nil {
		t.Fatal("segment 1, holding the HEURISTIC records, still exists: the snapshot would not be tested")
	}
	l := openLog(t, dir, -1)
	if got := l.State(); !reflect.DeepEqual(got.Heuristic, want) {
		t.Fatalf("after snapshot + reopen: heuristic %v, want %v", got.Heuristic, want)
	}
	if got, all := l.State(), foldOf(append(recs, prepared(5, messages.Set("e", 1)), committed(5))); !reflect.DeepEqual(got, all) {
		t.Fatalf("replayed state:\n got %+v\nwant %+v", got, all)
	}
	l.Close()

	// Another snapshot, written by the reopened log, still holds them.
	n = startNode(t, newSystem(t), dir, -1)
	if rep := request[*messages.SnapshotTaken](t, n, &messages.TakeSnapshot{}); rep.Err != nil {
		t.Fatal(rep.Err)
	}
	n.stop()
	l = openLog(t, dir, -1)
	defer l.Close()
	if got := l.State(); !reflect.DeepEqual(got.Heuristic, want) {
		t.Fatalf("after a second snapshot: heuristic %v, want %v", got.Heuristic, want)
	}
}

// A snapshot written before heuristic decisions existed (version 1, without
// the section) still loads, with none; a log opened on it takes new ones.
func TestOldSnapshotWithoutHeuristicsLoads(t *testing.T) {
	s := preOutcomes(fiveRecords()) // nor outcomes (version 3)
	s.InDoubt[tx(9)] = prepared(9, messages.Set("z", 1))
	s.Pending[tx(8)] = []int32{0, 1}
	covers, got, err := decodeState(v1State(t, 3, s))
	if err != nil || covers != 3 || !reflect.DeepEqual(got, s) {
		t.Fatalf("decode of a version 1 payload: covers %d, err %v, equal %v", covers, err, reflect.DeepEqual(got, s))
	}
	// The version byte decides: a version 1 payload followed by a heuristic
	// section has trailing bytes, a version 2 one cut before it ends early.
	v2 := appendState(nil, 3, s)
	v1Long := append([]byte{1}, v2[1:]...)
	if _, _, err := decodeState(v1Long); err == nil {
		t.Fatal("a version 1 payload with a heuristic section decoded")
	}
	if _, _, err := decodeState(v2[:len(v2)-1]); err == nil {
		t.Fatal("a version 2 payload without its heuristic section decoded")
	}

	// On disk: replace a log's snapshot by the version 1 encoding of the
	// same state and reopen.
	dir := t.TempDir()
	n := startNode(t, newSystem(t), dir, -1)
	n.mustAppend(true, fiveRecords()...)
	if rep := request[*messages.SnapshotTaken](t, n, &messages.TakeSnapshot{}); rep.Err != nil {
		t.Fatal(rep.Err)
	}
	n.stop()
	frame, err := frameBytes(v1State(t, 2, preOutcomes(fiveRecords())))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, snapName(2)), frame, 0o644); err != nil {
		t.Fatal(err)
	}
	l := openLog(t, dir, -1)
	if got := l.State(); !reflect.DeepEqual(got, preOutcomes(fiveRecords())) || got.Heuristic == nil {
		t.Fatalf("state from a version 1 snapshot:\n got %+v\nwant %+v", got, preOutcomes(fiveRecords()))
	}
	l.Close()
	n = startNode(t, newSystem(t), dir, -1)
	n.mustAppend(true, prepared(7, messages.Set("q", 1)), messages.Record{Kind: messages.RecHeuristic, Tx: tx(7), Decision: messages.DecisionAbort})
	n.stop()
	l = openLog(t, dir, -1)
	defer l.Close()
	if got := l.State(); !reflect.DeepEqual(got.Heuristic, map[messages.TxID]bool{tx(7): false}) {
		t.Fatalf("heuristic after a version 1 snapshot: %v", got.Heuristic)
	}
}

// A RECONCILED record marks a heuristic decision as reported (and is
// ignored for a transaction with none); the mark is kept across a snapshot
// that drops its segment, a reopen, and the snapshot's encoding. A version
// 3 snapshot, written before such records existed, loads with none.
func TestReconciledSurvivesSnapshotAndReopen(t *testing.T) {
	dir := t.TempDir()
	recs := append(heuristicHistory(),
		messages.Record{Kind: messages.RecReconciled, Tx: tx(1)},
		messages.Record{Kind: messages.RecReconciled, Tx: tx(3)}, // no heuristic decision: nothing to mark
		messages.Record{Kind: messages.RecReconciled, Tx: tx(4)},
		messages.Record{Kind: messages.RecReconciled, Tx: tx(4)}, // a repeat changes nothing
	)
	want := map[messages.TxID]bool{tx(1): true, tx(4): true}
	if got := foldOf(recs).Reconciled; !reflect.DeepEqual(got, want) {
		t.Fatalf("fold: reconciled %v, want %v", got, want)
	}
	if got := foldOf(heuristicHistory()).Reconciled; got != nil {
		t.Fatalf("fold without RECONCILED records: %v, want nil", got)
	}

	n := startNode(t, newSystem(t), dir, -1)
	n.mustAppend(true, recs...)
	if rep := request[*messages.SnapshotTaken](t, n, &messages.TakeSnapshot{}); rep.Err != nil {
		t.Fatal(rep.Err)
	}
	n.stop()
	if _, err := os.Stat(segPath(dir, 1)); err == nil {
		t.Fatal("segment 1, holding the RECONCILED records, still exists: the snapshot would not be tested")
	}
	l := openLog(t, dir, -1)
	if got := l.State(); !reflect.DeepEqual(got.Reconciled, want) || !reflect.DeepEqual(got, foldOf(recs)) {
		t.Fatalf("after snapshot + reopen: reconciled %v, want %v (state equal to the fold: %v)", got.Reconciled, want, reflect.DeepEqual(got, foldOf(recs)))
	}
	l.Close()

	s := foldOf(recs)
	enc := appendState(nil, 5, s)
	// Version 4: the same payload without the reconciled section.
	v4 := append([]byte{4}, enc[1:len(enc)-(1+2*(1+1+1))]...) // count, then two txs of three one-byte varints
	_, old, err := decodeState(v4)
	if err != nil {
		t.Fatalf("a version 4 payload: %v", err)
	}
	if old.Reconciled != nil || !reflect.DeepEqual(old.Heuristic, s.Heuristic) {
		t.Fatalf("a version 4 payload: reconciled %v, heuristic %v; want none and %v", old.Reconciled, old.Heuristic, s.Heuristic)
	}
	// A reconciled transaction with no heuristic decision is damage.
	bad := s.Clone()
	bad.Reconciled[tx(3)] = true
	if _, _, err := decodeState(appendState(nil, 5, bad)); err == nil {
		t.Fatal("a snapshot marking a transaction without a heuristic decision reconciled decoded")
	}
}
