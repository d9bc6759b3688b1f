package metrics

import (
	"errors"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"twopc/cluster"
	"twopc/messages"
)

// The closed label sets: every value a label can take is listed here, and
// every series is made when its Recorder is, so a series that is still 0
// is there to be seen (and to be rated) from the first scrape.
var (
	outcomes = []string{"committed", "aborted", "unknown"}
	// reasons: why a transaction ended as it did. "none" for a plain
	// commit, "read_only" for one where no participant had anything to
	// write; the rest name what made it abort, or left it unknown.
	reasons   = []string{"none", "read_only", "vote_no", "lock_conflict", "vote_timeout", "node_down", "log_failed", "other"}
	decisions = []string{"commit", "abort"}
	// roundResults: how a round of asking about an in-doubt transaction
	// ended (see actors.ParticipantConfig.Rounds).
	roundResults = []string{"commit", "abort", "unanswered"}
)

// Recorder is what one node's hot paths count: a cluster.Observer. It
// outlives the node (a restarted node of a Local is given the same one),
// and each method is an atomic add or a histogram observation on a series
// made in advance: no label is looked up while a transaction runs.
type Recorder struct {
	txs       map[[2]string]prometheus.Counter // by outcome, reason
	duration  prometheus.Histogram
	fsync     prometheus.Histogram
	perFsync  prometheus.Histogram
	heuristic [2]prometheus.Counter // commit, abort
	rounds    [3]prometheus.Counter // commit, abort, unanswered

	all []prometheus.Collector
}

var _ cluster.Observer = (*Recorder)(nil)

// NewRecorder makes a node's Recorder; labels (e.g. node="2") are put on
// every series it holds.
func NewRecorder(labels prometheus.Labels) *Recorder {
	r := &Recorder{txs: make(map[[2]string]prometheus.Counter)}
	txs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "twopc_transactions_total", ConstLabels: labels,
		Help: "Transactions submitted to this node's coordinator, by outcome (committed, aborted, unknown) and reason (none, read_only, vote_no, lock_conflict, vote_timeout, node_down, log_failed, other).",
	}, []string{"outcome", "reason"})
	for _, o := range outcomes {
		for _, why := range reasons {
			r.txs[[2]string{o, why}] = txs.WithLabelValues(o, why)
		}
	}
	r.duration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "twopc_transaction_duration_seconds", ConstLabels: labels,
		Help:    "Time from a transaction's submission to its outcome at this node's coordinator, whatever the outcome.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16), // 0.5 ms to 16 s: past the client timeout
	})
	r.fsync = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "twopc_wal_fsync_duration_seconds", ConstLabels: labels,
		Help:    "Duration of each fsync of the write-ahead log.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14), // 0.1 ms to 0.8 s
	})
	r.perFsync = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "twopc_wal_records_per_fsync", ConstLabels: labels,
		Help:    "Records made durable by each fsync of the write-ahead log (group commit's batch size).",
		Buckets: prometheus.ExponentialBuckets(1, 2, 12), // 1 to 2048
	})
	heur := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "twopc_heuristic_decisions_total", ConstLabels: labels,
		Help: "Operators' heuristic decisions made durable on this node, by decision (commit, abort).",
	}, []string{"decision"})
	for i, d := range decisions {
		r.heuristic[i] = heur.WithLabelValues(d)
	}
	rounds := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "twopc_recovery_rounds_total", ConstLabels: labels,
		Help: "Rounds of asking the coordinator and peers about an in-doubt transaction, by how each ended: the decision learned (commit, abort) or none before the next round (unanswered).",
	}, []string{"result"})
	for i, res := range roundResults {
		r.rounds[i] = rounds.WithLabelValues(res)
	}
	r.all = []prometheus.Collector{txs, r.duration, r.fsync, r.perFsync, heur, rounds}
	return r
}

// Describe and Collect make a Recorder one prometheus.Collector.
func (r *Recorder) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range r.all {
		c.Describe(ch)
	}
}

func (r *Recorder) Collect(ch chan<- prometheus.Metric) {
	for _, c := range r.all {
		c.Collect(ch)
	}
}

// TransactionEnded counts a transaction by outcome and reason, and
// observes how long it took.
func (r *Recorder) TransactionEnded(o *messages.Outcome, err error, took time.Duration) {
	r.txs[Classify(o, err)].Inc()
	r.duration.Observe(took.Seconds())
}

// LogSynced observes an fsync.
func (r *Recorder) LogSynced(took time.Duration, records int) {
	r.fsync.Observe(took.Seconds())
	r.perFsync.Observe(float64(records))
}

// HeuristicLogged counts an operator's decision.
func (r *Recorder) HeuristicLogged(d messages.Decision) {
	switch d {
	case messages.DecisionCommit:
		r.heuristic[0].Inc()
	case messages.DecisionAbort:
		r.heuristic[1].Inc()
	}
}

// RecoveryRound counts how a round of asking ended.
func (r *Recorder) RecoveryRound(d messages.Decision) {
	switch d {
	case messages.DecisionCommit:
		r.rounds[0].Inc()
	case messages.DecisionAbort:
		r.rounds[1].Inc()
	default:
		r.rounds[2].Inc()
	}
}

// Classify names a transaction's outcome and reason, from the closed sets,
// given what Submit returned. Reasons are matched on the texts the roles
// give (actors/txn.go, actors/participant.go, actors/locks.go, ...); a
// text none of them matches counts as "other".
func Classify(o *messages.Outcome, err error) [2]string {
	switch {
	case o == nil:
		var no *cluster.NoOutcomeError
		if errors.As(err, &no) && no.Err != nil && !strings.HasPrefix(no.Err.Error(), "no answer within") {
			return [2]string{"unknown", "node_down"} // crashed, stopping, or its coordinator gone
		}
		return [2]string{"unknown", "other"}
	case o.Committed && o.Reason == "read-only":
		return [2]string{"committed", "read_only"}
	case o.Committed:
		return [2]string{"committed", "none"}
	}
	outcome := "aborted"
	if o.Unknown {
		outcome = "unknown"
	}
	return [2]string{outcome, abortReason(o.Reason)}
}

// abortReason classifies a reason text; the order matters, as a vote no
// carries the voter's own reason (a lock conflict, a failed log write).
func abortReason(why string) string {
	switch {
	case strings.Contains(why, "log write failed"):
		return "log_failed"
	case strings.Contains(why, "is locked by transaction"),
		strings.Contains(why, "held by transaction"),
		strings.Contains(why, "locks held by older transactions"):
		return "lock_conflict"
	case strings.HasPrefix(why, "vote timeout"):
		return "vote_timeout"
	case strings.Contains(why, "restarted and cannot vouch"),
		strings.Contains(why, "txn actor crashed"),
		strings.Contains(why, "node crashed"):
		return "node_down"
	case strings.Contains(why, "voted no"):
		return "vote_no"
	}
	return "other"
}
