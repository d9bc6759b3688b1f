package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"twopc/cluster"
)

// nodeCollector reads, when scraped, what one node already keeps: its
// participant's and coordinator's status, its bridge's peers, its log's
// counters. Nothing on the message path is touched; a node that is down
// (or does not answer in time) reports only twopc_up 0.
type nodeCollector struct {
	node func() *cluster.Node // the node as it is now; nil while down

	up, inFlight, locks, inDoubt, oldest, walBytes, walRecords, walFsyncs *prometheus.Desc
	queue, peerUp                                                         *prometheus.Desc
}

// askTimeout bounds each question a scrape asks a role: a scrape must end
// even when a node is stuck (its twopc_up says so).
const askTimeout = 2 * time.Second

func newNodeCollector(node func() *cluster.Node, labels prometheus.Labels) *nodeCollector {
	d := func(name, help string, vars ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, vars, labels)
	}
	return &nodeCollector{
		node:       node,
		up:         d("twopc_up", "1 if the node has recovered from its log and is serving (what /readyz reports), else 0."),
		inFlight:   d("twopc_transactions_in_flight", "Transactions this node coordinates whose txn actor is still running."),
		locks:      d("twopc_locks_held", "Keys locked by this node's participant."),
		inDoubt:    d("twopc_in_doubt_transactions", "Transactions this node's participant voted yes on and has no decision for."),
		oldest:     d("twopc_in_doubt_oldest_age_seconds", "Age of the oldest in-doubt transaction on this node (0 if none)."),
		walBytes:   d("twopc_wal_bytes", "Bytes in the write-ahead log's live segments."),
		walRecords: d("twopc_wal_records_total", "Records written to the write-ahead log since the node started."),
		walFsyncs:  d("twopc_wal_fsyncs_total", "fsync calls on the write-ahead log since the node started."),
		queue:      d("twopc_bridge_queue_depth", "Messages queued at this node's bridge for a peer, not yet sent.", "peer"),
		peerUp:     d("twopc_peer_up", "1 if the bridge's link to the peer is not cut and its last connection attempt succeeded, else 0.", "peer"),
	}
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.inFlight, c.locks, c.inDoubt, c.oldest, c.walBytes, c.walRecords, c.walFsyncs, c.queue, c.peerUp} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	n := c.node()
	if n == nil || n.Ready() != nil {
		gauge(c.up, 0)
		return
	}
	gauge(c.up, 1)
	ls := n.LogStats()
	gauge(c.walBytes, float64(ls.LogBytes))
	counter(c.walRecords, float64(ls.Records))
	counter(c.walFsyncs, float64(ls.Fsyncs))
	if cs, err := n.CoordinatorStatus(); err == nil {
		gauge(c.inFlight, float64(cs.InFlight))
	}
	if ps, err := n.ParticipantStatus(); err == nil {
		gauge(c.locks, float64(ps.LocksHeld))
		gauge(c.inDoubt, float64(len(ps.InDoubt)))
		var oldest time.Duration
		for _, d := range ps.Doubts {
			oldest = max(oldest, time.Since(d.Since))
		}
		gauge(c.oldest, oldest.Seconds())
	}
	if peers, err := n.Bridge().Peers(askTimeout); err == nil {
		for _, p := range peers {
			id := strconv.Itoa(int(p.Node))
			gauge(c.queue, float64(p.Queued), id)
			up := 0.0
			if p.Up {
				up = 1
			}
			gauge(c.peerUp, up, id)
		}
	}
}
