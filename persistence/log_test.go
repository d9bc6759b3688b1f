package persistence

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"twopc/messages"
)

// writeHistory appends recs one forced append at a time through the actor
// and closes the log, leaving one frame per record in segment 1.
func writeHistory(t *testing.T, dir string, recs []messages.Record) {
	t.Helper()
	n := startNode(t, newSystem(t), dir, -1)
	for _, r := range recs {
		n.mustAppend(true, r)
	}
	n.stop()
}

func fiveRecords() []messages.Record {
	return []messages.Record{
		{Kind: messages.RecBoot, Incarnation: 1},
		prepared(1, messages.Set("a", 10)),
		committed(1),
		prepared(2, messages.Add("a", 5), messages.Set("b", 2)),
		committed(2),
	}
}

func TestOpenTrimsTornTail(t *testing.T) {
	recs := fiveRecords()
	lastRecord := recs[len(recs)-1]
	cases := []struct {
		name string
		// damage mutates the segment; lastOff and size describe the good file.
		damage   func(data []byte, lastOff int64) []byte
		lostLast bool // the torn bytes held the last record
		reason   string
	}{
		{"cut inside the last payload", func(d []byte, o int64) []byte { return d[:o+frameHeaderSize+3] }, true, "runs past the end"},
		{"cut inside the last header", func(d []byte, o int64) []byte { return d[:o+5] }, true, "header cut short"},
		{"zero bytes appended", func(d []byte, _ int64) []byte { return append(d, make([]byte, 100)...) }, false, "zero fill"},
		{"byte flipped in the last frame", func(d []byte, o int64) []byte { d[len(d)-2] ^= 0x40; return d }, true, "crc mismatch"},
		{"last frame partly zeroed by the file system", func(d []byte, o int64) []byte {
			clear(d[o+frameHeaderSize+2:])
			return append(d, make([]byte, 4096)...)
		}, true, "crc mismatch"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeHistory(t, dir, recs)
			seg := segPath(dir, 1)
			offs := frameOffsets(t, seg)
			if len(offs) != len(recs) {
				t.Fatalf("%d frames, want %d", len(offs), len(recs))
			}
			good, err := os.ReadFile(seg)
			if err != nil {
				t.Fatal(err)
			}
			lastOff := offs[len(offs)-1]
			if err := os.WriteFile(seg, c.damage(bytes.Clone(good), lastOff), 0o644); err != nil {
				t.Fatal(err)
			}

			var logged bytes.Buffer
			l, err := Open(Options{Dir: dir, SnapshotEvery: -1, Logger: hclog.New(&hclog.LoggerOptions{Output: &logged, Level: hclog.Warn})})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			kept, wantSize := recs, int64(len(good))
			if c.lostLast {
				kept, wantSize = recs[:len(recs)-1], lastOff
			}
			if got, want := l.State(), foldOf(kept); !reflect.DeepEqual(got, want) {
				t.Fatalf("state after trim:\n got %+v\nwant %+v", got, want)
			}
			if fi, err := os.Stat(seg); err != nil || fi.Size() != wantSize {
				t.Fatalf("segment size after trim = %v (%v), want %d", fi.Size(), err, wantSize)
			}
			for _, want := range []string{"torn tail", seg, fmt.Sprintf("offset=%d", wantSize), c.reason} {
				if !strings.Contains(logged.String(), want) {
					t.Errorf("warning %q does not mention %q", logged.String(), want)
				}
			}

			// The log goes on from the trim point, and the new records replay.
			n := spawnNode(t, newSystem(t), l)
			more := []messages.Record{lastRecord, prepared(3, messages.Set("c", 1)), committed(3)}
			n.mustAppend(true, more...)
			n.stop()
			l2 := openLog(t, dir, -1)
			defer l2.Close()
			if got, want := l2.State(), foldOf(append(slices.Clone(kept), more...)); !reflect.DeepEqual(got, want) {
				t.Fatalf("state after more appends:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestOpenRefusesDamage(t *testing.T) {
	recs := fiveRecords()
	cases := []struct {
		name   string
		frame  int // frame to damage
		damage func(data []byte, off int64)
		reason string
	}{
		{"payload byte flipped", 1, func(d []byte, o int64) { d[o+frameHeaderSize+4] ^= 1 }, "crc mismatch"},
		{"crc byte flipped", 2, func(d []byte, o int64) { d[o+5] ^= 0x80 }, "crc mismatch"},
		{"length zeroed", 3, func(d []byte, o int64) { clear(d[o : o+4]) }, "empty record"},
		{"first frame zeroed", 0, func(d []byte, o int64) { clear(d[o : o+frameHeaderSize+10]) }, "empty record"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeHistory(t, dir, recs)
			seg := segPath(dir, 1)
			off := frameOffsets(t, seg)[c.frame]
			data, err := os.ReadFile(seg)
			if err != nil {
				t.Fatal(err)
			}
			c.damage(data, off)
			if err := os.WriteFile(seg, data, 0o644); err != nil {
				t.Fatal(err)
			}
			before := dirContents(t, dir)

			l, err := Open(Options{Dir: dir})
			if err == nil {
				l.Close()
				t.Fatal("Open succeeded on a damaged log")
			}
			for _, want := range []string{seg, fmt.Sprintf("offset %d", off), c.reason} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
			var de *DamageError
			if !errors.As(err, &de) || de.File != seg || de.Offset != off {
				t.Errorf("error %v is not a *DamageError for %s at %d", err, seg, off)
			}
			if after := dirContents(t, dir); !reflect.DeepEqual(after, before) {
				t.Fatalf("Open changed the directory:\nbefore %v\nafter  %v", keys(before), keys(after))
			}
		})
	}
}

// TestOpenRefusesTornNonLastSegment: a cut is only a torn tail in the last
// segment; earlier segments were synced before the next one was started.
func TestOpenRefusesTornNonLastSegment(t *testing.T) {
	dir := t.TempDir()
	writeHistory(t, dir, fiveRecords())
	seg1 := segPath(dir, 1)
	offs := frameOffsets(t, seg1)
	if err := os.Truncate(seg1, offs[len(offs)-1]+3); err != nil {
		t.Fatal(err)
	}
	frame, err := appendRecordFrame(nil, &messages.Record{Kind: messages.RecBoot, Incarnation: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(segPath(dir, 2), frame, 0o644); err != nil {
		t.Fatal(err)
	}
	before := dirContents(t, dir)
	_, err = Open(Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), seg1) || !strings.Contains(err.Error(), fmt.Sprintf("offset %d", offs[len(offs)-1])) {
		t.Fatalf("Open: err = %v, want damage in %s", err, seg1)
	}
	if !reflect.DeepEqual(dirContents(t, dir), before) {
		t.Fatal("Open changed the directory")
	}
}

func TestOpenRefusesMissingSegment(t *testing.T) {
	dir := t.TempDir()
	writeHistory(t, dir, fiveRecords())
	// Segment 1 gone with no snapshot covering it.
	if err := os.Rename(segPath(dir, 1), segPath(dir, 2)); err != nil {
		t.Fatal(err)
	}
	_, err := Open(Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), segName(1)) || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("Open: err = %v, want segment 1 reported missing", err)
	}
}

func TestOpenRefusesDamagedSnapshot(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, newSystem(t), dir, -1)
	n.mustAppend(true, fiveRecords()...)
	if rep := request[*messages.SnapshotTaken](t, n, &messages.TakeSnapshot{}); rep.Err != nil {
		t.Fatal(rep.Err)
	}
	n.stop()
	snap := filepath.Join(dir, snapName(2))
	data, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 1
	if err := os.WriteFile(snap, data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Open(Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), snap) || !strings.Contains(err.Error(), "damaged snapshot") {
		t.Fatalf("Open: err = %v, want a damaged snapshot %s", err, snap)
	}
}

// TestSnapshotReplayEqualsFullReplay writes the same history to a log that
// never snapshots and to one that snapshots every few records; both must
// recover the same fold, and the second must have dropped covered files.
func TestSnapshotReplayEqualsFullReplay(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	history := randomHistory(rng, 600)
	sys := newSystem(t)
	fullDir, snapDir := t.TempDir(), t.TempDir()
	full := startNode(t, sys, fullDir, -1)
	snapped := startNode(t, sys, snapDir, 25)
	for rest := history; len(rest) > 0; {
		k := min(1+rng.IntN(6), len(rest))
		force := rng.IntN(3) > 0
		full.mustAppend(force, rest[:k]...)
		snapped.mustAppend(force, rest[:k]...)
		rest = rest[k:]
	}
	stats := request[*messages.LogStats](t, snapped, &messages.StatsRequest{})
	full.stop()
	snapped.stop()
	if stats.Snapshots < 5 {
		t.Fatalf("only %d snapshots taken; the test needs several", stats.Snapshots)
	}

	want := foldOf(history)
	lf := openLog(t, fullDir, -1)
	defer lf.Close()
	ls := openLog(t, snapDir, -1)
	defer ls.Close()
	if got := lf.State(); !reflect.DeepEqual(got, want) {
		t.Fatalf("full replay differs from the fold of the history")
	}
	if got := ls.State(); !reflect.DeepEqual(got, lf.State()) {
		t.Fatalf("snapshot + tail replay differs from full replay:\n got %+v\nwant %+v", got, lf.State())
	}

	var segs, snaps []string
	for name := range dirContents(t, snapDir) {
		switch {
		case strings.HasPrefix(name, segPrefix):
			segs = append(segs, name)
		case strings.HasPrefix(name, snapPrefix):
			snaps = append(snaps, name)
		}
	}
	if len(snaps) != 1 || snaps[0] != stats.LastSnapshot {
		t.Fatalf("snapshots on disk %v, want only the newest %q", snaps, stats.LastSnapshot)
	}
	idx, _ := parseIndex(snaps[0], snapPrefix, snapSuffix)
	if len(segs) != 1 || segs[0] != segName(idx) {
		t.Fatalf("segments on disk %v, want only %s (older ones are covered by the snapshot)", segs, segName(idx))
	}
	if _, err := os.Stat(segPath(snapDir, 1)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("segment 1 still exists (%v)", err)
	}
	t.Logf("%d records, %d snapshots, newest %s", len(history), stats.Snapshots, stats.LastSnapshot)
}

// TestReplayAfterInterruptedSnapshot: a crash after the new segment was
// started but before the snapshot landed leaves two live segments and maybe
// a temp file; replay reads both and cleans up.
func TestReplayAfterInterruptedSnapshot(t *testing.T) {
	dir := t.TempDir()
	recs := fiveRecords()
	l := openLog(t, dir, -1)
	frames, err := appendRecordFrame(nil, &recs[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := l.writeBatch(frames, 1, 1, true); err != nil {
		t.Fatal(err)
	}
	l.state.Apply(recs[0])
	// Rotate by hand the way snapshot does, then "crash" before writing it.
	f, err := l.newSegmentFile(2)
	if err != nil {
		t.Fatal(err)
	}
	l.seg.Close()
	l.seg, l.segIndex, l.segSize, l.syncedSize = f, 2, 0, 0
	frames = frames[:0]
	for i := 1; i < len(recs); i++ {
		if frames, err = appendRecordFrame(frames, &recs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.writeBatch(frames, len(recs)-1, 1, true); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "snap-123.tmp"), []byte("half a snapshot"), 0o644); err != nil {
		t.Fatal(err)
	}

	l2 := openLog(t, dir, -1)
	defer l2.Close()
	if got := l2.State(); !reflect.DeepEqual(got, foldOf(recs)) {
		t.Fatalf("state:\n got %+v\nwant %+v", got, foldOf(recs))
	}
	if _, err := os.Stat(filepath.Join(dir, "snap-123.tmp")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temp file left behind (%v)", err)
	}
	if got := l2.Stats().LogBytes; got != fileSize(t, segPath(dir, 1))+fileSize(t, segPath(dir, 2)) {
		t.Fatalf("LogBytes = %d, want both segments", got)
	}
}

func TestCrashForTestLosesOnlyUnsyncedRecords(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, newSystem(t), dir, -1)
	durable := []messages.Record{{Kind: messages.RecBoot, Incarnation: 1}, prepared(1, messages.Set("a", 1))}
	n.mustAppend(true, durable...)
	syncedSize := fileSize(t, segPath(dir, 1))
	// Unforced: written to the file but not synced, so a power cut may lose it.
	n.mustAppend(false, committed(1), messages.Record{Kind: messages.RecCommitDecision, Tx: tx(9), Participants: []int32{1}})
	if fileSize(t, segPath(dir, 1)) <= syncedSize {
		t.Fatal("the unforced append was not written")
	}
	request[*CrashSimulated](t, n, &SimulateCrash{})
	if err := n.appendRecs(true, committed(1)); !errors.Is(err, errCrashed) {
		t.Fatalf("append after crash: err = %v, want refusal", err)
	}
	n.stop()

	if got := fileSize(t, segPath(dir, 1)); got != syncedSize {
		t.Fatalf("segment is %d bytes after the crash, want %d (its size at the last fsync)", got, syncedSize)
	}
	l := openLog(t, dir, -1)
	defer l.Close()
	if got, want := l.State(), foldOf(durable); !reflect.DeepEqual(got, want) {
		t.Fatalf("state after crash:\n got %+v\nwant %+v", got, want)
	}
}

func TestOpenCreatesDirAndStartsEmpty(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs", "node-3")
	l := openLog(t, dir, 0)
	defer l.Close()
	if l.Dir() != dir || l.every != DefaultSnapshotEvery {
		t.Fatalf("Dir %q every %d", l.Dir(), l.every)
	}
	if !reflect.DeepEqual(l.State(), NewState()) {
		t.Fatalf("fresh log state %+v", l.State())
	}
	if _, err := os.Stat(segPath(dir, 1)); err != nil {
		t.Fatalf("no first segment: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func dirContents(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = string(data)
	}
	return m
}

func keys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// PowerCut is called from outside the persistence actor (a crash-point test
// calls it at a protocol step). From then on nothing reaches the disk, and
// closing the log drops what was written but not synced.
func TestPowerCutStopsWritesAtOnce(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, newSystem(t), dir, -1)
	durable := []messages.Record{{Kind: messages.RecBoot, Incarnation: 1}, prepared(1, messages.Set("a", 1))}
	n.mustAppend(true, durable...)
	syncedSize := fileSize(t, segPath(dir, 1))
	n.mustAppend(false, committed(1)) // written, not synced
	n.log.PowerCut()
	if err := n.appendRecs(true, prepared(2, messages.Set("b", 2))); !errors.Is(err, errCrashed) {
		t.Fatalf("append after the power cut: err = %v, want %v", err, errCrashed)
	}
	n.stop() // the actor's Stopping closes the log: no flush, no fsync

	if got := fileSize(t, segPath(dir, 1)); got != syncedSize {
		t.Fatalf("segment is %d bytes after the power cut, want %d (its size at the last fsync)", got, syncedSize)
	}
	l := openLog(t, dir, -1)
	defer l.Close()
	if got, want := l.State(), foldOf(durable); !reflect.DeepEqual(got, want) {
		t.Fatalf("state after the power cut:\n got %+v\nwant %+v", got, want)
	}
}

// An fsync asked for after the power cut does not happen, even from inside
// a batch that got past the first check: what was written is lost.
func TestPowerCutRefusesFsync(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, -1)
	frames, err := appendRecordFrame(nil, &messages.Record{Kind: messages.RecBoot, Incarnation: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.writeBatch(frames, 1, 1, true); err != nil {
		t.Fatal(err)
	}
	synced := l.syncedSize
	more, err := appendRecordFrame(nil, &messages.Record{Kind: messages.RecBoot, Incarnation: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.writeBatch(more, 1, 1, false); err != nil { // written, not synced
		t.Fatal(err)
	}
	l.PowerCut()
	if err := l.sync(); !errors.Is(err, errCrashed) {
		t.Fatalf("fsync after the power cut: %v, want %v", err, errCrashed)
	}
	if l.syncedSize != synced {
		t.Fatalf("synced size moved from %d to %d after the power cut", synced, l.syncedSize)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2 := openLog(t, dir, -1)
	defer l2.Close()
	if got := l2.State().Incarnation; got != 1 {
		t.Fatalf("incarnation %d after the power cut, want 1 (the unsynced BOOT lost)", got)
	}
}
