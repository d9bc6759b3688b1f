// Command bench measures twopc: committed transactions per second with many
// concurrent clients on a local cluster, latency percentiles, and fsyncs per
// transaction, side by side with the raw fsync rate of the same disk — the
// ceiling a design with one fsync per record cannot pass.
//
// The last line it prints is the summary that results are quoted from.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"twopc/cluster"
	"twopc/messages"
)

func main() {
	clients := flag.Int("clients", 64, "concurrent clients, each submitting one transaction at a time")
	duration := flag.Duration("duration", 5*time.Second, "how long to run")
	nodes := flag.Int("nodes", 4, "cluster size")
	dataDir := flag.String("data-dir", ".", "directory on the disk to measure; a temporary subdirectory is made and removed")
	mode := flag.String("keys", "disjoint", "disjoint: every client has its own keys; shared: all clients add to the same few keys")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	flag.Parse()
	if *clients < 1 || *nodes < 2 || *duration <= 0 {
		fmt.Fprintln(os.Stderr, "error: need --clients >= 1, --nodes >= 2, --duration > 0")
		os.Exit(2)
	}
	if *mode != "disjoint" && *mode != "shared" {
		fmt.Fprintf(os.Stderr, "error: unknown --keys %q (want disjoint or shared)\n", *mode)
		os.Exit(2)
	}
	cluster.TuneProcs(*nodes)
	dir, err := os.MkdirTemp(*dataDir, "twopc-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)

	// The disk's speed drifts on a shared machine: measure it before and
	// after the run and use the mean.
	rawBefore, err := rawFsyncRate(filepath.Join(dir, "raw"), 2*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error: measuring raw fsync:", err)
		os.Exit(1)
	}

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	r, err := run(*clients, *nodes, *duration, filepath.Join(dir, "cluster"), *mode)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
	rawAfter, err := rawFsyncRate(filepath.Join(dir, "raw"), 2*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error: measuring raw fsync:", err)
		os.Exit(1)
	}
	raw := (rawBefore + rawAfter) / 2
	fmt.Printf("raw fsync (64-byte write + fsync, one at a time): %.0f/s before, %.0f/s after the run\n", rawBefore, rawAfter)
	fmt.Printf("transactions: %d committed, %d aborted, %d errors in %v\n", r.committed, r.aborted, r.errors, r.elapsed.Round(time.Millisecond))
	fmt.Printf("latency: p50 %v  p90 %v  p99 %v  max %v\n", r.pct(50), r.pct(90), r.pct(99), r.pct(100))
	fmt.Printf("log: %d appends, %d fsyncs, %d records (%.1f records per fsync)\n", r.appends, r.fsyncs, r.records, float64(r.records)/float64(max(r.fsyncs, 1)))
	tps := float64(r.committed) / r.elapsed.Seconds()
	fmt.Printf("bench: clients=%d nodes=%d keys=%s commits/s=%.0f p50=%v p99=%v fsyncs/commit=%.2f raw-fsync/s=%.0f commits-per-raw-fsync=%.2fx\n",
		*clients, *nodes, *mode, tps, r.pct(50), r.pct(99), float64(r.fsyncs)/float64(max(r.committed, 1)), raw, tps/raw)
}

// rawFsyncRate is the disk's speed for the naive design: append a small
// record and fsync it, one at a time.
func rawFsyncRate(path string, d time.Duration) (float64, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer os.Remove(path)
	defer f.Close()
	buf := make([]byte, 64)
	n := 0
	start := time.Now()
	for time.Since(start) < d {
		if _, err := f.Write(buf); err != nil {
			return 0, err
		}
		if err := f.Sync(); err != nil {
			return 0, err
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

type result struct {
	committed, aborted, errors int64
	elapsed                    time.Duration
	latencies                  []time.Duration
	appends, fsyncs, records   uint64
}

func (r *result) pct(p int) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := (len(r.latencies) - 1) * p / 100
	return r.latencies[i].Round(10 * time.Microsecond)
}

func run(clients, nodes int, d time.Duration, dir, mode string) (*result, error) {
	l, err := cluster.StartLocal(cluster.LocalConfig{
		Nodes: nodes, DataDir: dir,
		Logger: hclog.New(&hclog.LoggerOptions{Name: "twopc", Level: hclog.Warn}),
	})
	if err != nil {
		return nil, err
	}
	defer l.Stop()
	conns := make([]*cluster.Client, nodes)
	for i, addr := range l.Members() {
		if conns[i], err = cluster.Dial(addr); err != nil {
			return nil, err
		}
		defer conns[i].Close()
	}
	before := logTotals(l, nodes)

	var committed, aborted, errs atomic.Int64
	lat := make([][]time.Duration, clients)
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			via := conns[c%nodes]
			// A transfer between two nodes: two participants, each with a
			// PREPARED and a COMMITTED to force, plus the coordinator's COMMIT.
			from, to := c%nodes, (c+1)%nodes
			a, b := fmt.Sprintf("n%d/c%d", from, c), fmt.Sprintf("n%d/c%d", to, c)
			if mode == "shared" {
				a, b = fmt.Sprintf("n%d/hot", from), fmt.Sprintf("n%d/hot", to)
			}
			for time.Now().Before(stop) {
				t0 := time.Now()
				o, err := via.Submit(messages.Add(a, -1), messages.Add(b, 1))
				switch {
				case err != nil:
					errs.Add(1)
				case o.Committed:
					committed.Add(1)
					lat[c] = append(lat[c], time.Since(t0))
				default:
					aborted.Add(1)
				}
			}
		}(c)
	}
	wg.Wait()
	elapsed := time.Since(start)
	after := logTotals(l, nodes)
	r := &result{committed: committed.Load(), aborted: aborted.Load(), errors: errs.Load(), elapsed: elapsed,
		appends: after.Appends - before.Appends, fsyncs: after.Fsyncs - before.Fsyncs, records: after.Records - before.Records}
	for _, ls := range lat {
		r.latencies = append(r.latencies, ls...)
	}
	sort.Slice(r.latencies, func(i, j int) bool { return r.latencies[i] < r.latencies[j] })
	return r, nil
}

func logTotals(l *cluster.Local, nodes int) messages.LogStats {
	var t messages.LogStats
	for i := 0; i < nodes; i++ {
		s := l.Node(i).LogStats()
		t.Appends += s.Appends
		t.Fsyncs += s.Fsyncs
		t.Records += s.Records
	}
	return t
}
