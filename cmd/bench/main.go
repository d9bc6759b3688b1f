// Command bench measures twopc: committed transactions per second with many
// concurrent clients on a local cluster, latency percentiles, and fsyncs per
// transaction, side by side with the raw fsync rate of the same disk — the
// ceiling a design with one fsync per record cannot pass.
//
// The last line it prints is the summary that results are quoted from.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"twopc/actors"
	"twopc/cluster"
	"twopc/identity"
	"twopc/messages"
	"twopc/metrics"
	"twopc/trace"
	webview "twopc/web"
)

func main() {
	clients := flag.Int("clients", 64, "concurrent clients, each submitting one transaction at a time")
	duration := flag.Duration("duration", 5*time.Second, "how long to run")
	nodes := flag.Int("nodes", 4, "cluster size")
	dataDir := flag.String("data-dir", ".", "directory on the disk to measure; a temporary subdirectory is made and removed")
	mode := flag.String("keys", "disjoint", "disjoint: every client has its own keys; shared: all clients add to the same few keys")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	txs := flag.Int64("txs", 0, "stop after this many commits instead of after --duration")
	memProfile := flag.String("memprofile", "", "with --memory: write a heap profile, taken once finished transactions are forgotten, to this file")
	useTLS := flag.Bool("tls", true, "mutual TLS between the nodes and from the clients (an in-memory CA); --tls=false measures plain TCP")
	memory := flag.Bool("memory", false, "after the run, report heap and on-disk size once the cluster settled and again once finished transactions are forgotten")
	protocol := flag.String("protocol", string(actors.DefaultProtocol), "commit protocol: 2pc or nonblocking")
	view := flag.Bool("view", false, "with --http: also serve the live web view at / (tracing every transaction for it) and keep one browser-like reader attached to its event stream for the whole run, to measure what watching costs")
	httpAddr := flag.String("http", "", "serve the nodes' /metrics, /healthz and /readyz on this host:port during the run (\"\": metrics off), to measure what they cost")
	flag.Parse()
	if *httpAddr != "" {
		var err error
		if web, err = metrics.ForLocal(*httpAddr, *nodes); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		defer web.Close()
		fmt.Fprintf(os.Stderr, "http: serving on %s\n", web.URL())
	}
	if *view && *httpAddr == "" {
		fmt.Fprintln(os.Stderr, "error: --view needs --http (the page is served there)")
		os.Exit(2)
	}
	watchView = *view
	if *clients < 1 || *nodes < 2 || *duration <= 0 || *txs < 0 {
		fmt.Fprintln(os.Stderr, "error: need --clients >= 1, --nodes >= 2, --duration > 0, --txs >= 0")
		os.Exit(2)
	}
	if *mode != "disjoint" && *mode != "shared" {
		fmt.Fprintf(os.Stderr, "error: unknown --keys %q (want disjoint or shared)\n", *mode)
		os.Exit(2)
	}
	proto, err := actors.ParseProtocol(*protocol)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error: --protocol:", err)
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
	heapProfile = *memProfile
	r, err := run(*clients, *nodes, *duration, *txs, *memory, *useTLS, filepath.Join(dir, "cluster"), *mode, proto)
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
	fmt.Printf("wire: %d messages between nodes (%.1f per committed transaction)\n", r.msgs, float64(r.msgs)/float64(max(r.committed, 1)))
	fmt.Printf("bench: protocol=%s tls=%v clients=%d nodes=%d keys=%s commits/s=%.0f p50=%v p99=%v fsyncs/commit=%.2f msgs/commit=%.1f raw-fsync/s=%.0f commits-per-raw-fsync=%.2fx\n",
		proto, *useTLS, *clients, *nodes, *mode, tps, r.pct(50), r.pct(99), float64(r.fsyncs)/float64(max(r.committed, 1)), float64(r.msgs)/float64(max(r.committed, 1)), raw, tps/raw)
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
	msgs                       uint64 // sent between nodes (over the wire)
}

func (r *result) pct(p int) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := (len(r.latencies) - 1) * p / 100
	return r.latencies[i].Round(10 * time.Microsecond)
}

// web serves the nodes' metrics with --http (nil: metrics off).
var web *metrics.Endpoint

// watchView: --view, the web view served and watched during the run.
var watchView bool

// attachView serves the web view of l on the --http endpoint and keeps a
// reader on its event stream, as an open browser tab would, until stop is
// called. src is the view's source, made before the cluster started (its
// Recorder is the cluster's Tracer, its Observers the cluster's).
func attachView(l *cluster.Local, src *webview.LocalSource) (stop func(), err error) {
	src.Attach(l)
	h := webview.NewHandler(src, webview.Options{})
	web.Handle("/", h)
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, web.URL()+"/events", nil)
	if err != nil {
		cancel()
		return nil, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("--view: attaching to the event stream: %w", err)
	}
	read := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(io.Discard, res.Body) // what a browser would parse and draw
		read <- n
	}()
	return func() {
		cancel()
		res.Body.Close()
		n := <-read
		h.Close()
		fmt.Printf("view: one reader attached for the run, %d bytes of events streamed to it\n", n)
	}, nil
}

func run(clients, nodes int, d time.Duration, txs int64, memory, useTLS bool, dir, mode string, proto actors.Protocol) (*result, error) {
	cfg := cluster.LocalConfig{
		Nodes: nodes, DataDir: dir, Protocol: proto,
		Logger:    hclog.New(&hclog.LoggerOptions{Name: "twopc", Level: hclog.Warn}),
		Observers: web.Observers(),
	}
	var dial []cluster.DialOption
	if useTLS {
		ca, err := identity.NewCA("twopc bench CA")
		if err != nil {
			return nil, err
		}
		client, err := ca.Issue(identity.Client)
		if err != nil {
			return nil, err
		}
		cfg.TLS = func(i int32) (*identity.Identity, error) { return ca.Issue(identity.Node(i), "127.0.0.1") }
		dial = append(dial, cluster.WithTLS(client.ClientConfig()))
	}
	var src *webview.LocalSource
	if watchView {
		rec := trace.NewRecorder(1000)
		src = webview.NewLocalSource(nodes, rec)
		cfg.Tracer, cfg.Observers = rec, src.Observers(web.Observers())
	}
	l, err := cluster.StartLocal(cfg)
	if err != nil {
		return nil, err
	}
	web.ServeLocal(l)
	if src != nil {
		stopView, err := attachView(l, src)
		if err != nil {
			l.Stop()
			return nil, err
		}
		defer stopView()
	}
	defer l.Stop()
	conns := make([]*cluster.Client, nodes)
	for i, addr := range l.Members() {
		if conns[i], err = cluster.Dial(addr, dial...); err != nil {
			return nil, err
		}
		defer conns[i].Close()
	}
	before := logTotals(l, nodes)
	msgsBefore := wireMessages(l, nodes)

	var committed, aborted, errs atomic.Int64
	lat := make([][]time.Duration, clients)
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	if txs > 0 {
		stop = time.Now().Add(24 * time.Hour) // until txs commits
	}
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
			for time.Now().Before(stop) && (txs == 0 || committed.Load() < txs) {
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
		appends: after.Appends - before.Appends, fsyncs: after.Fsyncs - before.Fsyncs, records: after.Records - before.Records,
		msgs: wireMessages(l, nodes) - msgsBefore}
	for _, ls := range lat {
		r.latencies = append(r.latencies, ls...)
	}
	sort.Slice(r.latencies, func(i, j int) bool { return r.latencies[i] < r.latencies[j] })
	if memory {
		if err := reportMemory(l, nodes, dir, r.committed); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// reportMemory shows what a long run leaves behind: once every transaction
// is acked and ended, and again once participants have forgotten the
// outcomes they keep for late messages (Timing.RememberOutcomes). Both
// should stay the same whether the run was 10k or 100k transactions long.
func reportMemory(l *cluster.Local, nodes int, dir string, committed int64) error {
	deadline := time.Now().Add(30 * time.Second)
	for !settled(l, nodes) {
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster did not settle within 30 s after the run")
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Printf("memory: after %d commits, settled: %s\n", committed, footprint(l, nodes, dir))
	wait := actors.DefaultTiming.RememberOutcomes + time.Second
	time.Sleep(wait)
	fmt.Printf("memory: %v later, outcomes forgotten: %s\n", wait, footprint(l, nodes, dir))
	if heapProfile != "" {
		f, err := os.Create(heapProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		return pprof.WriteHeapProfile(f)
	}
	return nil
}

// heapProfile is where --memprofile writes, if set.
var heapProfile string

func settled(l *cluster.Local, nodes int) bool {
	for i := 0; i < nodes; i++ {
		n := l.Node(i)
		ps, err1 := n.ParticipantStatus()
		cs, err2 := n.CoordinatorStatus()
		if err1 != nil || err2 != nil || ps.LocksHeld > 0 || len(ps.InDoubt) > 0 || ps.Committing > 0 || cs.InFlight > 0 {
			return false
		}
	}
	return true
}

func footprint(l *cluster.Local, nodes int, dir string) string {
	remembered := 0
	for i := 0; i < nodes; i++ {
		if ps, err := l.Node(i).ParticipantStatus(); err == nil {
			remembered += ps.Remembered
		}
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	var bytes int64
	files := 0
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				bytes += info.Size()
				files++
			}
		}
		return nil
	})
	return fmt.Sprintf("heap %.1f MiB (%d objects), outcomes remembered %d, disk %.1f KiB in %d files",
		float64(ms.HeapAlloc)/(1<<20), ms.HeapObjects, remembered, float64(bytes)/1024, files)
}

// wireMessages counts the messages the nodes sent one another.
func wireMessages(l *cluster.Local, nodes int) uint64 {
	var n uint64
	for i := 0; i < nodes; i++ {
		n += l.Node(i).Bridge().Stats().SentMessages
	}
	return n
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
