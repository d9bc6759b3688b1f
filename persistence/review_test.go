package persistence

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"twopc/messages"
)

// framesOf frames recs as one batch would.
func framesOf(t *testing.T, recs ...messages.Record) []byte {
	t.Helper()
	var out []byte
	for i := range recs {
		var err error
		if out, err = appendRecordFrame(out, &recs[i]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestReviewCrashMidRotationBeforeOldSegmentSynced: a power cut that leaves an
// empty last segment and, in the one before it, part of an unforced batch: a
// torn frame in a segment that is no longer the last. snapshot() now syncs
// the old segment before creating the next, so it cannot leave this; and
// should a log look like this anyway, Open treats the last non-empty segment
// as the one a crash can tear, instead of refusing to start.
func TestReviewCrashMidRotationBeforeOldSegmentSynced(t *testing.T) {
	dir := t.TempDir()
	recs := fiveRecords()
	l := openLog(t, dir, -1)
	if err := l.writeBatch(framesOf(t, recs[:2]...), 2, 1, true); err != nil { // acknowledged, forced
		t.Fatal(err)
	}
	synced := l.syncedSize
	if err := l.writeBatch(framesOf(t, recs[2:]...), 3, 1, false); err != nil { // lazy: written, not synced
		t.Fatal(err)
	}
	// snapshot(), first step: the next segment exists and its name is durable.
	f, err := l.newSegmentFile(l.segIndex + 1)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	// Power cut before l.sync(): part of the lazy batch reached the disk.
	if err := l.seg.Truncate(synced + frameHeaderSize + 2); err != nil {
		t.Fatal(err)
	}
	l.seg.Close()
	l.closed = true

	l2, err := Open(Options{Dir: dir, SnapshotEvery: -1})
	if err != nil {
		t.Fatalf("Open after a crash mid-rotation: %v\n(only unforced records are torn; every forced one is intact)", err)
	}
	defer l2.Close()
	if got, want := l2.State(), foldOf(recs[:2]); !reflect.DeepEqual(got, want) {
		t.Fatalf("state:\n got %+v\nwant %+v", got, want)
	}
}

// TestReviewLengthCorruptionMidLastSegmentIsDamage: the CRC covers only the
// payload, so one flipped high bit in the length of a frame in the middle of
// the last segment makes that frame "run past the end of the file", which
// looks like a torn tail; trimming it would drop every later frame, although
// all of them were fsynced and acknowledged. A torn write can only be the
// last write, so an intact frame after the bad one proves damage: Open must
// refuse, naming the offset.
func TestReviewLengthCorruptionMidLastSegmentIsDamage(t *testing.T) {
	dir := t.TempDir()
	recs := fiveRecords()
	writeHistory(t, dir, recs) // every record forced and acknowledged
	seg := segPath(dir, 1)
	off := frameOffsets(t, seg)[2]
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	data[off+3] ^= 0x40 // bit 30 of the little-endian length
	if err := os.WriteFile(seg, data, 0o644); err != nil {
		t.Fatal(err)
	}
	before := dirContents(t, dir)
	l, err := Open(Options{Dir: dir, SnapshotEvery: -1})
	if err == nil {
		st := l.State()
		l.Close()
		t.Fatalf("Open succeeded and trimmed 3 acknowledged records (state %+v, want all of %d)", st, len(recs))
	}
	var de *DamageError
	if !errors.As(err, &de) || de.File != seg || de.Offset != off {
		t.Errorf("error %v is not a *DamageError for %s at %d", err, seg, off)
	}
	if !reflect.DeepEqual(dirContents(t, dir), before) {
		t.Fatal("Open changed the directory")
	}
}

// TestReviewLazyRecordsSurviveCrashAfterSnapshot pins that a snapshot only
// covers synced bytes: rotation fsyncs the old segment, so lazily appended
// records folded into the snapshot are durable before the snapshot names them.
func TestReviewLazyRecordsSurviveCrashAfterSnapshot(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, newSystem(t), dir, -1)
	recs := fiveRecords()
	n.mustAppend(true, recs[:2]...)
	n.mustAppend(false, recs[2:]...)
	if rep := request[*messages.SnapshotTaken](t, n, &messages.TakeSnapshot{}); rep.Err != nil {
		t.Fatal(rep.Err)
	}
	extra := messages.Record{Kind: messages.RecCommitDecision, Tx: tx(9), Participants: []int32{1}}
	n.mustAppend(false, extra) // lazy, in the new segment: may be lost
	crashThenReplay(t, n, dir, recs)
}

// TestReviewEmptyForcedAppendSyncsLazyRecords pins that a forced Append
// with no records still makes earlier lazy records durable before it is
// answered.
func TestReviewEmptyForcedAppendSyncsLazyRecords(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, newSystem(t), dir, -1)
	recs := fiveRecords()
	n.mustAppend(false, recs...)
	n.mustAppend(true)
	crashThenReplay(t, n, dir, recs)
}

// TestReviewHugeLengthIsDamageWithoutAllocation pins that a garbage length
// (4 GiB) in a segment that later segments follow is reported with file and
// offset, changes nothing, and does not drive an allocation.
func TestReviewHugeLengthIsDamageWithoutAllocation(t *testing.T) {
	dir := t.TempDir()
	recs := fiveRecords()
	writeHistory(t, dir, recs)
	seg := segPath(dir, 1)
	off := frameOffsets(t, seg)[1]
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		data[off+int64(i)] = 0xff
	}
	if err := os.WriteFile(seg, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(segPath(dir, 2), framesOf(t, messages.Record{Kind: messages.RecBoot, Incarnation: 2}), 0o644); err != nil {
		t.Fatal(err)
	}
	before := dirContents(t, dir)
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	_, err = Open(Options{Dir: dir, SnapshotEvery: -1})
	runtime.ReadMemStats(&m1)
	var de *DamageError
	if !errors.As(err, &de) || de.File != seg || de.Offset != off {
		t.Fatalf("Open: err = %v, want a *DamageError for %s at %d", err, seg, off)
	}
	if grew := m1.TotalAlloc - m0.TotalAlloc; grew > 16<<20 {
		t.Fatalf("Open allocated %d bytes for a garbage length", grew)
	}
	if !reflect.DeepEqual(dirContents(t, dir), before) {
		t.Fatal("Open changed the directory")
	}
}

// TestReviewCrashBetweenSnapshotRenameAndDelete pins that segments and
// snapshots a newer snapshot covers (left behind when a crash came between
// the rename and the deletes) are ignored by replay and removed.
func TestReviewCrashBetweenSnapshotRenameAndDelete(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, newSystem(t), dir, -1)
	recs := fiveRecords()
	n.mustAppend(true, recs[:3]...)
	old := dirContents(t, dir) // segment 1
	if rep := request[*messages.SnapshotTaken](t, n, &messages.TakeSnapshot{}); rep.Err != nil {
		t.Fatal(rep.Err)
	}
	n.mustAppend(true, recs[3:]...)
	n.stop()
	// The delete of segment 1 did not survive the crash; neither did a
	// stale older snapshot's.
	for name, content := range old {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stale, err := frameBytes(appendState(nil, 1, NewState()))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, snapName(1)), stale, 0o644); err != nil {
		t.Fatal(err)
	}
	l := openLog(t, dir, -1)
	defer l.Close()
	if got, want := l.State(), foldOf(recs); !reflect.DeepEqual(got, want) {
		t.Fatalf("state:\n got %+v\nwant %+v", got, want)
	}
	if got := keys(dirContents(t, dir)); !reflect.DeepEqual(got, []string{snapName(2), segName(2)}) {
		t.Fatalf("files after Open: %v", got)
	}
}

// TestReviewStatsWhileAppendingAndSnapshotting pins that Stats may be read
// from any goroutine while the actor writes and snapshots (run with -race).
func TestReviewStatsWhileAppendingAndSnapshotting(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, newSystem(t), dir, 7)
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var last uint64
		for !stop.Load() {
			st := n.log.Stats()
			if st.Records < last {
				panic(fmt.Sprintf("records went back from %d to %d", last, st.Records))
			}
			last = st.Records
			runtime.Gosched()
		}
	}()
	for i := uint64(1); i <= 60; i++ {
		n.mustAppend(i%3 == 0, prepared(i, messages.Set("k", int64(i))), committed(i))
	}
	stop.Store(true)
	wg.Wait()
	st := n.log.Stats()
	n.stop()
	if st.Records != 120 || st.Snapshots == 0 || st.LastSnapshot == "" {
		t.Fatalf("stats %+v", st)
	}
}

// crashThenReplay cuts the power under n's log (unsynced bytes are lost),
// then replays dir and checks it adds up to want.
func crashThenReplay(t *testing.T, n *node, dir string, want []messages.Record) {
	t.Helper()
	request[*CrashSimulated](t, n, &SimulateCrash{})
	n.stop()
	l := openLog(t, dir, -1)
	defer l.Close()
	if got, want := l.State(), foldOf(want); !reflect.DeepEqual(got, want) {
		t.Fatalf("state after crash:\n got %+v\nwant %+v", got, want)
	}
}
