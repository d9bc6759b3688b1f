package persistence

import (
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"

	"twopc/messages"
)

// BenchmarkAppendForced: 64 goroutines, each with one forced append in
// flight, through the persistence actor. Compare ns/op with
// BenchmarkRawFsync to see what group commit buys.
func BenchmarkAppendForced(b *testing.B) {
	sys := newSystem(b)
	n := startNode(b, sys, b.TempDir(), -1)
	rec := []messages.Record{{Kind: messages.RecCommitDecision, Tx: tx(1), Participants: []int32{0, 1, 2}}}
	var ids atomic.Uint64
	before := n.log.Stats()
	b.SetParallelism((requesterCount + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := ids.Add(1)
			res, err := sys.Root.RequestFuture(n.pid, &messages.Append{ID: id, Records: rec, Force: true}, replyTimeout).Result()
			if err != nil {
				b.Error(err)
				return
			}
			if rep := res.(*messages.Appended); rep.ID != id || rep.Err != nil {
				b.Errorf("reply %+v to append %d", rep, id)
				return
			}
		}
	})
	b.StopTimer()
	after := n.log.Stats()
	fsyncs := after.Fsyncs - before.Fsyncs
	if fsyncs > 0 {
		b.ReportMetric(float64(after.Records-before.Records)/float64(fsyncs), "records/fsync")
	}
	n.stop()
}

// BenchmarkRawFsync: one 64-byte write and one fsync at a time, the cost
// an append would pay without group commit.
func BenchmarkRawFsync(b *testing.B) {
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "raw"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64)
	for b.Loop() {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
}
