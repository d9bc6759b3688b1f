package persistence

import (
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/asynkron/protoactor-go/actor"

	"twopc/messages"
)

func TestAppendSurvivesCloseAndOpen(t *testing.T) {
	dir := t.TempDir()
	sys := newSystem(t)
	n := startNode(t, sys, dir, -1)
	recs := []messages.Record{
		{Kind: messages.RecBoot, Incarnation: 1},
		prepared(1, messages.Set("a", 3), messages.Add("value", 1)),
		committed(1),
		prepared(2, messages.Set("b", 4)),
		{Kind: messages.RecCommitDecision, Tx: tx(3), Participants: []int32{0, 2}},
		{Kind: messages.RecCommitDecision, Tx: tx(4), Participants: []int32{1}},
		{Kind: messages.RecEnd, Tx: tx(4)},
	}
	n.mustAppend(true, recs[:3]...)
	n.mustAppend(false, recs[3:5]...)
	n.mustAppend(true, recs[5:]...)
	stats := request[*messages.LogStats](t, n, &messages.StatsRequest{})
	n.stop()

	if stats.Appends != 3 || stats.Records != uint64(len(recs)) || stats.Batches != 3 || stats.Fsyncs != 2 {
		t.Errorf("stats %+v: want 3 appends, %d records, 3 batches, 2 fsyncs", stats, len(recs))
	}
	if stats.LogBytes != fileSize(t, segPath(dir, 1)) {
		t.Errorf("LogBytes %d, segment is %d bytes", stats.LogBytes, fileSize(t, segPath(dir, 1)))
	}
	if got := n.log.State(); !reflect.DeepEqual(got, foldOf(recs)) {
		t.Fatalf("live state:\n got %+v\nwant %+v", got, foldOf(recs))
	}

	l := openLog(t, dir, -1)
	defer l.Close()
	want := &State{
		Incarnation: 1,
		KV:          map[string]int64{"a": 3, "value": 1},
		InDoubt:     map[messages.TxID]messages.Record{tx(2): recs[3]},
		Pending:     map[messages.TxID][]int32{tx(3): {0, 2}},
		Heuristic:   map[messages.TxID]bool{},
		Outcomes:    map[messages.TxID]messages.RecordKind{tx(1): messages.RecCommitted},
		Marks:       map[int32]messages.TxID{},
		Acceptor:    map[messages.TxID]Acceptance{},
	}
	if got := l.State(); !reflect.DeepEqual(got, want) {
		t.Fatalf("replayed state:\n got %+v\nwant %+v", got, want)
	}
}

func TestGroupCommit(t *testing.T) {
	const requesters, each = 64, 40
	dir := t.TempDir()
	sys := newSystem(t)
	n := startNode(t, sys, dir, -1)
	done := make(chan []string, requesters)
	for i := range requesters {
		r := &requester{wal: n.pid, base: uint64(i) * 1000, count: each, done: done}
		pid := sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return r }))
		t.Cleanup(func() { sys.Root.Stop(pid) })
		sys.Root.Send(pid, &startRequests{})
	}
	for range requesters {
		if errs := <-done; len(errs) > 0 {
			t.Errorf("requester: %s", strings.Join(errs, "; "))
		}
	}
	stats := request[*messages.LogStats](t, n, &messages.StatsRequest{})
	n.stop()
	const total = requesters * each
	if stats.Records != total || stats.Appends != total {
		t.Fatalf("stats %+v: want %d records and appends", stats, total)
	}
	if stats.Fsyncs >= stats.Appends {
		t.Fatalf("%d fsyncs for %d forced appends: no group commit", stats.Fsyncs, stats.Appends)
	}
	t.Logf("%d forced appends, %d fsyncs, %d batches: %.1f records per fsync",
		stats.Appends, stats.Fsyncs, stats.Batches, float64(stats.Records)/float64(stats.Fsyncs))

	l := openLog(t, dir, -1)
	defer l.Close()
	if got := len(l.State().Pending); got != total {
		t.Fatalf("replay found %d commit decisions, want %d", got, total)
	}
}

// TestGroupCommitFutures drives the actor from goroutines instead of actors.
func TestGroupCommitFutures(t *testing.T) {
	const requesters, each = 64, 20
	sys := newSystem(t)
	n := startNode(t, sys, t.TempDir(), -1)
	var wg sync.WaitGroup
	errs := make(chan error, requesters*each)
	for g := range requesters {
		wg.Go(func() {
			for i := range each {
				id := uint64(g*1000 + i)
				res, err := sys.Root.RequestFuture(n.pid, &messages.Append{ID: id, Force: true,
					Records: []messages.Record{{Kind: messages.RecBoot, Incarnation: uint32(id)}}}, replyTimeout).Result()
				if err != nil {
					errs <- fmt.Errorf("append %d: %w", id, err)
					return
				}
				if rep := res.(*messages.Appended); rep.ID != id || rep.Err != nil {
					errs <- fmt.Errorf("append %d: reply %+v", id, rep)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	stats := request[*messages.LogStats](t, n, &messages.StatsRequest{})
	if stats.Records != requesters*each || stats.Fsyncs >= stats.Appends {
		t.Fatalf("stats %+v", stats)
	}
	t.Logf("%.1f records per fsync", float64(stats.Records)/float64(stats.Fsyncs))
}

func TestDecisionLookupSeesQueuedAppends(t *testing.T) {
	sys := newSystem(t)
	n := startNode(t, sys, t.TempDir(), -1)
	decision := messages.Record{Kind: messages.RecCommitDecision, Tx: tx(5), Participants: []int32{0, 3}}

	rep := request[*messages.DecisionLookupReply](t, n, &messages.DecisionLookup{Tx: tx(5)})
	if rep.CommitPending {
		t.Fatalf("commit pending before any decision: %+v", rep)
	}
	// Fire-and-forget, so nothing waits for the flush: the lookup queued
	// right behind must still see it.
	sys.Root.Send(n.pid, &messages.Append{ID: 1, Records: []messages.Record{decision}})
	rep = request[*messages.DecisionLookupReply](t, n, &messages.DecisionLookup{Tx: tx(5)})
	if !rep.CommitPending || rep.Tx != tx(5) || !reflect.DeepEqual(rep.Participants, []int32{0, 3}) {
		t.Fatalf("lookup after COMMIT: %+v", rep)
	}
	if other := request[*messages.DecisionLookupReply](t, n, &messages.DecisionLookup{Tx: tx(6)}); other.CommitPending {
		t.Fatalf("lookup of another tx: %+v", other)
	}

	sys.Root.Send(n.pid, &messages.Append{ID: 2, Records: []messages.Record{{Kind: messages.RecEnd, Tx: tx(5)}}})
	rep = request[*messages.DecisionLookupReply](t, n, &messages.DecisionLookup{Tx: tx(5)})
	if rep.CommitPending || rep.Participants != nil {
		t.Fatalf("lookup after END: %+v", rep)
	}
}

// TestPoisonFlushesBufferedAppends: the flush marker lands behind the poison
// pill, so appends still buffered must be written while stopping.
func TestPoisonFlushesBufferedAppends(t *testing.T) {
	const count = 20
	dir := t.TempDir()
	sys := newSystem(t)
	n := startNode(t, sys, dir, -1)
	futures := make([]*actor.Future, count)
	for i := range futures {
		futures[i] = sys.Root.RequestFuture(n.pid, &messages.Append{ID: uint64(i), Force: true,
			Records: []messages.Record{prepared(uint64(i+1), messages.Set("k", int64(i)))}}, replyTimeout)
	}
	stopped := sys.Root.PoisonFuture(n.pid)
	for i, f := range futures {
		res, err := f.Result()
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		if rep := res.(*messages.Appended); rep.ID != uint64(i) || rep.Err != nil {
			t.Fatalf("append %d: reply %+v", i, rep)
		}
	}
	if err := stopped.Wait(); err != nil {
		t.Fatal(err)
	}
	l := openLog(t, dir, -1)
	defer l.Close()
	if got := len(l.State().InDoubt); got != count {
		t.Fatalf("replay found %d prepared records, want %d", got, count)
	}
}

func TestAppendRefusesInvalidRecord(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, newSystem(t), dir, -1)
	err := n.appendRecs(true, prepared(1, messages.Set("a", 1)), messages.Record{Kind: 42})
	if err == nil || !strings.Contains(err.Error(), "record 1") || !strings.Contains(err.Error(), "unknown record kind 42") {
		t.Fatalf("append of a bad record: err = %v", err)
	}
	// The good record of the refused append must not be written either, and
	// the log stays usable.
	n.mustAppend(true, prepared(2, messages.Set("b", 1)))
	n.stop()
	l := openLog(t, dir, -1)
	defer l.Close()
	if _, ok := l.State().InDoubt[tx(1)]; ok || len(l.State().InDoubt) != 1 {
		t.Fatalf("in doubt after replay: %v", l.State().InDoubt)
	}
}

// TestWriteFailureStopsTheLog: once a write fails, the whole batch is told
// so and every later append is refused.
func TestWriteFailureStopsTheLog(t *testing.T) {
	l := openLog(t, t.TempDir(), -1)
	l.seg.Close() // every write to the segment now fails
	n := spawnNode(t, newSystem(t), l)
	err := n.appendRecs(true, committed(1))
	if err == nil || !strings.Contains(err.Error(), "write at offset 0") || !strings.Contains(err.Error(), segName(1)) {
		t.Fatalf("append: err = %v, want a write error naming the segment", err)
	}
	err2 := n.appendRecs(false, committed(2))
	if err2 == nil || err2.Error() != err.Error() {
		t.Fatalf("append after failure: err = %v, want the same failure", err2)
	}
	if rep := request[*messages.SnapshotTaken](t, n, &messages.TakeSnapshot{}); rep.Err == nil {
		t.Fatal("snapshot of a failed log succeeded")
	}
	if st := l.Stats(); st.Records != 0 || st.Appends != 0 {
		t.Fatalf("stats count failed appends: %+v", st)
	}
}

func TestTakeSnapshotRotates(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, newSystem(t), dir, -1)
	recs := fiveRecords()
	n.mustAppend(true, recs[:3]...)
	if rep := request[*messages.SnapshotTaken](t, n, &messages.TakeSnapshot{}); rep.Err != nil {
		t.Fatal(rep.Err)
	}
	n.mustAppend(false, recs[3:]...)
	stats := request[*messages.LogStats](t, n, &messages.StatsRequest{})
	n.stop()
	if stats.Snapshots != 1 || stats.LastSnapshot != snapName(2) || stats.LogBytes != fileSize(t, segPath(dir, 2)) {
		t.Fatalf("stats %+v", stats)
	}
	if got := keys(dirContents(t, dir)); !reflect.DeepEqual(got, []string{snapName(2), segName(2)}) {
		t.Fatalf("files %v", got)
	}
	l := openLog(t, dir, -1)
	defer l.Close()
	if got := l.State(); !reflect.DeepEqual(got, foldOf(recs)) {
		t.Fatalf("state:\n got %+v\nwant %+v", got, foldOf(recs))
	}
	if st := l.Stats(); st.LastSnapshot != snapName(2) {
		t.Fatalf("reopened stats %+v", st)
	}
}

// TestEmptyForcedAppendSyncsLazyRecords pins that a forced Append
// with no records still makes earlier lazy records durable before it is
// answered.
func TestEmptyForcedAppendSyncsLazyRecords(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, newSystem(t), dir, -1)
	recs := fiveRecords()
	n.mustAppend(false, recs...)
	n.mustAppend(true)
	crashThenReplay(t, n, dir, recs)
}

// TestStatsReadableWhileAppendingAndSnapshotting pins that Stats may be read
// from any goroutine while the actor writes and snapshots (run with -race).
func TestStatsReadableWhileAppendingAndSnapshotting(t *testing.T) {
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
