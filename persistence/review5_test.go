package persistence

// Review 5: the log under a power cut.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"twopc/messages"
)

func r5Exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// r5BigState appends batches × perBatch committed keys, forced, and
// returns the records.
func r5BigState(n *node, batches, perBatch int) []messages.Record {
	var all []messages.Record
	for b := range batches {
		ops := make([]messages.Op, 0, perBatch)
		for k := range perBatch {
			ops = append(ops, messages.Set(fmt.Sprintf("key-%04d-%05d", b, k), int64(k)))
		}
		recs := []messages.Record{prepared(uint64(b+1), ops...), committed(uint64(b + 1))}
		n.mustAppend(true, recs...)
		all = append(all, recs...)
	}
	return all
}

// PowerCut promises that "from the moment it returns, nothing more is
// written or synced". writeBatch and sync check it, but a snapshot already
// under way does not look again after its first check: once the new
// segment exists it encodes the fold, writes and fsyncs the temp file,
// renames it, fsyncs the directory and deletes the segments it covers — all
// after the cut. A real power cut would have stopped it: after it, the
// directory must be as it was when the power went (here: segment 1 still
// there, no snapshot 2).
//
// The state replayed is the same either way (the snapshot holds only
// fsynced records), so this is the power-cut model being wrong rather than
// data being lost; but a crash-point test that cuts the power mid-snapshot
// never tests the interrupted snapshot it means to.
//
// The test needs the cut to land after the new segment is created and
// before the rename; a large fold makes that window wide, and the test
// retries with a larger one if it still misses.
//
// Fix: check powerCut between the steps of snapshot/writeSnapshot (before
// the temp file's write, its fsync, the rename, the directory fsync and
// removeStale) and give up with errCrashed, leaving whatever is on disk.
func TestReview5SnapshotCompletesAfterPowerCut(t *testing.T) {
	for _, perBatch := range []int{2000, 5000, 10000} {
		dir := t.TempDir()
		n := startNode(t, newSystem(t), dir, -1)
		durable := r5BigState(n, 40, perBatch)

		fut := n.sys.Root.RequestFuture(n.pid, &messages.TakeSnapshot{}, replyTimeout)
		deadline := time.Now().Add(replyTimeout)
		for !r5Exists(segPath(dir, 2)) {
			if time.Now().After(deadline) {
				t.Fatal("the snapshot never created segment 2")
			}
		}
		n.log.PowerCut()
		snapAtCut := r5Exists(filepath.Join(dir, snapName(2)))
		res, err := fut.Result()
		if err != nil {
			t.Fatal(err)
		}
		n.stop()
		if snapAtCut {
			t.Logf("%d keys: the snapshot was complete before the cut; again with a larger fold", 40*perBatch)
			continue
		}
		snapErr := res.(*messages.SnapshotTaken).Err
		if r5Exists(filepath.Join(dir, snapName(2))) {
			t.Errorf("snapshot %s was written after PowerCut returned (TakeSnapshot answered %v)", snapName(2), snapErr)
		}
		if !r5Exists(segPath(dir, 1)) {
			t.Errorf("segment %s was deleted after PowerCut returned", segName(1))
		}
		// Whatever happened, replay must give the durable records.
		l := openLog(t, dir, -1)
		defer l.Close()
		if got, want := l.State(), foldOf(durable); !reflect.DeepEqual(got.KV, want.KV) || len(got.InDoubt) != 0 {
			t.Fatalf("state after the cut mid-snapshot: %d keys, %d in doubt; want %d keys", len(got.KV), len(got.InDoubt), len(want.KV))
		}
		return
	}
	t.Skip("the snapshot always finished before the cut landed; cannot tell")
}

// Pinned: a power cut between a lazy append and the next forced one loses
// the lazy record and refuses the forced one; records forced before it
// survive, with a snapshot and a rotation before them. CrashForTest after
// the actor closed the cut log is a no-op (Close already dropped the
// unsynced bytes), and Close after CrashForTest is too.
func TestReview5PowerCutAfterSnapshotKeepsForcedOnly(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, newSystem(t), dir, -1)
	first := []messages.Record{{Kind: messages.RecBoot, Incarnation: 1}, prepared(1, messages.Set("a", 1))}
	n.mustAppend(true, first...)
	if r := request[*messages.SnapshotTaken](t, n, &messages.TakeSnapshot{}); r.Err != nil {
		t.Fatal(r.Err)
	}
	second := []messages.Record{committed(1), prepared(2, messages.Set("b", 2))}
	n.mustAppend(true, second...)
	n.mustAppend(false, committed(2)) // lazy: written, not synced
	n.log.PowerCut()
	if err := n.appendRecs(true, prepared(3, messages.Set("c", 3))); !errors.Is(err, errCrashed) {
		t.Fatalf("forced append after the cut: %v, want %v", err, errCrashed)
	}
	if r := request[*messages.SnapshotTaken](t, n, &messages.TakeSnapshot{}); !errors.Is(r.Err, errCrashed) {
		t.Fatalf("snapshot after the cut: %v, want %v", r.Err, errCrashed)
	}
	n.stop()
	n.log.CrashForTest()
	if err := n.log.Close(); err != nil {
		t.Fatalf("Close after CrashForTest: %v", err)
	}
	if r5Exists(filepath.Join(dir, snapName(3))) || r5Exists(segPath(dir, 3)) {
		t.Fatal("a snapshot asked for after the cut reached the disk")
	}
	l := openLog(t, dir, -1)
	defer l.Close()
	want := foldOf(append(append([]messages.Record(nil), first...), second...))
	if got := l.State(); !reflect.DeepEqual(got, want) {
		t.Fatalf("state after the cut:\n got %+v\nwant %+v", got, want)
	}
}

// Pinned: CrashForTest on a log that was closed cleanly changes nothing
// (the records Close synced stay), and a second Open after a crash that
// lost only lazy records opens cleanly again and again (no torn tail left).
func TestReview5CrashAfterCloseKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, newSystem(t), dir, -1)
	recs := []messages.Record{{Kind: messages.RecBoot, Incarnation: 1}, prepared(1, messages.Set("a", 1)), committed(1)}
	n.mustAppend(true, recs[:2]...)
	n.mustAppend(false, recs[2]) // lazy, but Close syncs it
	n.stop()
	n.log.CrashForTest()
	for range 2 {
		l := openLog(t, dir, -1)
		if got, want := l.State(), foldOf(recs); !reflect.DeepEqual(got, want) {
			t.Fatalf("state:\n got %+v\nwant %+v", got, want)
		}
		l.CrashForTest()
	}
}
