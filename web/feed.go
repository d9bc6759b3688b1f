package web

import (
	"math"
	"slices"
	"sync"
	"time"

	"twopc/messages"
	"twopc/trace"
)

// feed is the Sink the view watches with: bounded buffers that coalesce
// whatever the nodes report between two frames. However fast the cluster
// goes, a frame holds at most maxSamples messages (a uniform sample of
// those sent, by reservoir), maxMarks node events and maxTxs finished
// transactions (the newest); the rest are counted. Each report takes one
// short lock and a few counter updates, never an allocation that grows.
type feed struct {
	nodes      int
	maxSamples int
	maxMarks   int
	maxTxs     int

	mu  sync.Mutex
	cur drained // since the last drain
	rng uint64  // xorshift state for the reservoir

	// open maps each transaction still running to the participants its
	// Prepares went to (a bit per node), so its end can say them; at
	// most maxOpen, forgotten at its end (or all at once past the bound).
	open map[messages.TxID]uint64

	bins []bin // per second, a ring over the chart's window
}

// maxOpen bounds feed.open: transactions whose end is never seen (their
// coordinator crashed) must not pile up.
const maxOpen = 1 << 14

// drained is what a frame takes from the feed.
type drained struct {
	msgs      []msgSample
	msgSeen   int   // messages between two different nodes (the reservoir's population)
	links     []int // messages sent from*nodes+to, self-sends included
	forced    []int // forced log writes per node
	lazy      []int // lazy log writes per node
	commits   []int // commit decisions per node
	aborts    []int // abort decisions per node
	marks     []trace.Event
	marksLost int
	txs       []TxEnd // the newest maxTxs, oldest first
	txsLost   int
}

// msgSample is one message drawn on the page.
type msgSample struct {
	At       time.Time
	From, To int32
	What     string
	Tx       messages.TxID
}

// bin is one second of finished transactions.
type bin struct {
	sec                       int64
	commits, aborts, unknowns int
	lat                       [latBuckets]uint32
}

// Latency buckets: bucket i holds latencies up to latBase·latGrowth^i, so
// a quantile is known to within one step (12%), from 50 µs to past a
// minute.
const (
	latBuckets = 64
	latGrowth  = 1.25
	latBase    = 50 * time.Microsecond
)

func latBucket(d time.Duration) int {
	if d <= latBase {
		return 0
	}
	i := int(math.Ceil(math.Log(float64(d)/float64(latBase)) / math.Log(latGrowth)))
	return min(i, latBuckets-1)
}

// latUpper is bucket i's upper bound.
func latUpper(i int) time.Duration {
	return time.Duration(float64(latBase) * math.Pow(latGrowth, float64(i)))
}

func newFeed(nodes, maxSamples, maxMarks, maxTxs int, window time.Duration) *feed {
	f := &feed{nodes: nodes, maxSamples: maxSamples, maxMarks: maxMarks, maxTxs: maxTxs,
		rng: uint64(time.Now().UnixNano()) | 1, open: make(map[messages.TxID]uint64),
		bins: make([]bin, int(window/time.Second)+2)}
	f.cur = f.fresh()
	return f
}

func (f *feed) fresh() drained {
	n := max(f.nodes, 1)
	return drained{
		msgs:  make([]msgSample, 0, f.maxSamples),
		links: make([]int, n*n), forced: make([]int, n), lazy: make([]int, n),
		commits: make([]int, n), aborts: make([]int, n),
	}
}

func (f *feed) node(i int32) bool { return i >= 0 && int(i) < f.nodes }

// Event implements Sink.
func (f *feed) Event(e trace.Event) {
	switch e.Kind {
	case trace.Send, trace.LogWrite, trace.Decision, trace.NodeEvent:
	default:
		return // a receive is drawn as its send's arrival; notes are for diagrams
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c := &f.cur
	switch e.Kind {
	case trace.Send:
		if !f.node(e.Node) || !f.node(e.Peer) {
			return // to a client
		}
		c.links[int(e.Node)*f.nodes+int(e.Peer)]++
		if e.What == "Prepare" {
			if len(f.open) >= maxOpen {
				clear(f.open)
			}
			f.open[e.Tx] |= 1 << uint(e.Peer%64)
		}
		if e.Peer == e.Node {
			return // to its own participant: counted, not drawn
		}
		c.msgSeen++
		m := msgSample{At: e.At, From: e.Node, To: e.Peer, What: e.What, Tx: e.Tx}
		if len(c.msgs) < f.maxSamples {
			c.msgs = append(c.msgs, m)
		} else if j := f.rand(c.msgSeen); j < f.maxSamples {
			c.msgs[j] = m
		}
	case trace.LogWrite:
		if f.node(e.Node) {
			if e.Forced {
				c.forced[e.Node]++
			} else {
				c.lazy[e.Node]++
			}
		}
	case trace.Decision:
		if f.node(e.Node) {
			if e.What == "commit" {
				c.commits[e.Node]++
			} else {
				c.aborts[e.Node]++
			}
		}
	case trace.NodeEvent:
		if len(c.marks) < f.maxMarks {
			c.marks = append(c.marks, e)
		} else {
			c.marksLost++
		}
	}
}

// rand is uniform in [0, n), n > 0 (xorshift64: the reservoir needs no
// more, and it takes no lock of its own).
func (f *feed) rand(n int) int {
	x := f.rng
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	f.rng = x
	return int(x % uint64(n))
}

// TxEnded implements Sink.
func (f *feed) TxEnded(t TxEnd) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if bits, ok := f.open[t.Tx]; ok {
		delete(f.open, t.Tx)
		for i := 0; i < f.nodes && i < 64; i++ {
			if bits&(1<<uint(i)) != 0 {
				t.Participants = append(t.Participants, int32(i))
			}
		}
	}
	c := &f.cur
	if len(c.txs) < f.maxTxs {
		c.txs = append(c.txs, t)
	} else {
		// Keep the newest: the page lists what just happened.
		copy(c.txs, c.txs[1:])
		c.txs[len(c.txs)-1] = t
		c.txsLost++
	}
	sec := t.At.Unix()
	b := &f.bins[int(sec%int64(len(f.bins)))]
	if b.sec != sec {
		*b = bin{sec: sec}
	}
	switch t.Outcome {
	case OutcomeCommitted:
		b.commits++
	case OutcomeAborted:
		b.aborts++
	default:
		b.unknowns++
	}
	b.lat[latBucket(t.Took)]++
}

// drain takes what was reported since the last drain.
func (f *feed) drain() drained {
	f.mu.Lock()
	d := f.cur
	f.cur = f.fresh()
	f.mu.Unlock()
	slices.SortFunc(d.msgs, func(a, b msgSample) int { return a.At.Compare(b.At) })
	return d
}

// point is one second of the chart.
type point struct {
	Sec                       int64
	Commits, Aborts, Unknowns int
	P50, P99                  time.Duration // 0: no transaction that second
}

// second is the chart's point for second sec (zero counts if nothing
// ended then, or if it is out of the ring).
func (f *feed) second(sec int64) point {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := &f.bins[int(sec%int64(len(f.bins)))]
	p := point{Sec: sec}
	if b.sec != sec {
		return p
	}
	p.Commits, p.Aborts, p.Unknowns = b.commits, b.aborts, b.unknowns
	p.P50, p.P99 = quantile(&b.lat, 0.50), quantile(&b.lat, 0.99)
	return p
}

// quantile is the upper bound of the bucket holding the q-quantile; 0 for
// no samples.
func quantile(h *[latBuckets]uint32, q float64) time.Duration {
	var total uint64
	for _, c := range h {
		total += uint64(c)
	}
	if total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(total)))
	var cum uint64
	for i, c := range h {
		cum += uint64(c)
		if cum >= rank {
			return latUpper(i)
		}
	}
	return latUpper(latBuckets - 1)
}
