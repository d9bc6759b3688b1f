package cluster

import (
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"twopc/messages"
)

// What a consistent read costs beside a single-key read, on an idle
// four-node loopback cluster: each benchmark reports the median and the
// 99th percentile of one read's latency (p50-µs, p99-µs) besides ns/op.
//
//	go test ./cluster -run '^$' -bench 'Read' -benchtime 2000x -count 3
func BenchmarkReadOneKey(b *testing.B) { benchmarkRead(b, "n1/a") }

func BenchmarkSnapshotReadTwoNodes(b *testing.B) { benchmarkRead(b, "n1/a", "n2/b") }

func BenchmarkSnapshotReadFourNodes(b *testing.B) {
	benchmarkRead(b, "n0/d", "n1/a", "n2/b", "n3/c")
}

func benchmarkRead(b *testing.B, keys ...string) {
	l, err := StartLocal(LocalConfig{Nodes: 4, DataDir: b.TempDir(), Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Off})})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Stop()
	var ops []messages.Op
	for i, k := range keys {
		ops = append(ops, messages.Set(k, int64(i+1)))
	}
	if o, err := l.Node(0).Submit(ops...); err != nil || !o.Committed {
		b.Fatalf("setup: %v %v", o, err)
	}
	n := l.Node(3) // a node that owns at most one of the keys
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		vals, err := n.Read(keys...)
		lat = append(lat, time.Since(start))
		if err != nil || len(vals) != len(keys) {
			b.Fatalf("read %v: %v %v", keys, vals, err)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
