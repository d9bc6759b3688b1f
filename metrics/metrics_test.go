package metrics

import (
	"errors"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	dto "github.com/prometheus/client_model/go"

	"twopc/actors"
	"twopc/cluster"
	"twopc/messages"
)

var timing = actors.Timing{
	VoteTimeout:       time.Second,
	ClockSkew:         50 * time.Millisecond, // one process, one clock
	ResendInterval:    50 * time.Millisecond,
	MaxResendInterval: 200 * time.Millisecond,
	// A participant asks only after the vote timeout: asking earlier makes
	// a coordinator still counting votes abort.
	InDoubtAfter:     1200 * time.Millisecond,
	MaxQueryInterval: 1200 * time.Millisecond,
}

// startLocal starts a Local of nodes served by a fresh Endpoint.
func startLocal(t *testing.T, nodes int) (*cluster.Local, *Endpoint) {
	t.Helper()
	return startLocalRunning(t, nodes, actors.DefaultProtocol)
}

// startLocalRunning is startLocal running protocol proto.
func startLocalRunning(t *testing.T, nodes int, proto actors.Protocol) (*cluster.Local, *Endpoint) {
	t.Helper()
	ep, err := ForLocal("127.0.0.1:0", nodes)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ep.Close() })
	// Up, and not ready, before the nodes are.
	if code, body := get(t, ep.URL()+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz before start: %d %q", code, body)
	}
	if code, body := get(t, ep.URL()+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "recovering") {
		t.Fatalf("/readyz before start: %d %q, want 503 saying it recovers", code, body)
	}
	l, err := cluster.StartLocal(cluster.LocalConfig{Nodes: nodes, DataDir: t.TempDir(), Timing: timing, CrashAtSteps: true, Protocol: proto,
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Off}), Observers: ep.Observers()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	ep.ServeLocal(l)
	return l, ep
}

func node(i string) map[string]string { return map[string]string{"node": i} }

func with(m map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// Transactions are counted by outcome and reason on their coordinator's
// node, with nothing per transaction in any label; the readiness follows
// the nodes through a crash and a restart.
func TestLocalMetricsAndHealth(t *testing.T) {
	l, ep := startLocal(t, 3)
	base := ep.URL()
	if code, body := get(t, base+"/readyz"); code != http.StatusOK || body != "ready\n" {
		t.Fatalf("/readyz once started: %d %q", code, body)
	}

	n0 := l.Node(0)
	for _, ops := range [][]messages.Op{
		{messages.Add(messages.EverywhereKey, 1)},
		{messages.Set("n1/a", 5)},
		{messages.AddFloor("n1/a", -10, 0), messages.Add("n2/b", 10)}, // node 1 votes no: a would fall below 0
	} {
		if _, err := n0.Submit(ops...); err != nil {
			t.Fatal(err)
		}
	}
	fams := scrape(t, base)
	for _, c := range []struct {
		labels map[string]string
		want   float64
	}{
		{with(node("0"), "outcome", "committed", "reason", "none"), 2},
		{with(node("0"), "outcome", "aborted", "reason", "vote_no"), 1},
		{with(node("0"), "outcome", "aborted", "reason", "lock_conflict"), 0},
		{with(node("1"), "outcome", "committed", "reason", "none"), 0},
	} {
		if got, ok := value(fams, "twopc_transactions_total", c.labels); !ok || got != c.want {
			t.Errorf("twopc_transactions_total%v = %v (present %v), want %v", c.labels, got, ok, c.want)
		}
	}
	if got, _ := value(fams, "twopc_transaction_duration_seconds", node("0")); got != 3 {
		t.Errorf("twopc_transaction_duration_seconds{node=0} counts %v transactions, want 3", got)
	}
	for _, name := range []string{"twopc_wal_fsync_duration_seconds", "twopc_wal_records_per_fsync"} {
		for _, id := range []string{"0", "1", "2"} {
			// Each node's start forced its BOOT record, and every node took part.
			if got, _ := value(fams, name, node(id)); got < 1 {
				t.Errorf("%s{node=%s} counts %v, want at least 1", name, id, got)
			}
		}
	}
	for _, id := range []string{"0", "1", "2"} {
		if got, ok := value(fams, "twopc_up", node(id)); !ok || got != 1 {
			t.Errorf("twopc_up{node=%s} = %v (present %v), want 1", id, got, ok)
		}
		for _, g := range []string{"twopc_locks_held", "twopc_in_doubt_transactions", "twopc_in_doubt_oldest_age_seconds", "twopc_transactions_in_flight", "twopc_wal_bytes"} {
			if _, ok := value(fams, g, node(id)); !ok {
				t.Errorf("%s{node=%s} missing", g, id)
			}
		}
	}
	// Node 0 sent to both peers: each has a link, and it is up.
	for _, peer := range []string{"1", "2"} {
		if got, ok := value(fams, "twopc_peer_up", with(node("0"), "peer", peer)); !ok || got != 1 {
			t.Errorf("twopc_peer_up{node=0,peer=%s} = %v (present %v), want 1", peer, got, ok)
		}
		if _, ok := value(fams, "twopc_bridge_queue_depth", with(node("0"), "peer", peer)); !ok {
			t.Errorf("twopc_bridge_queue_depth{node=0,peer=%s} missing", peer)
		}
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if fams[name] == nil {
			t.Errorf("%s missing: the runtime's collectors are not registered", name)
		}
	}
	checkClosedLabels(t, fams)

	// A crashed node: not ready, and said to be down.
	if err := l.Crash(2); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "node 2 down") || strings.Count(body, "\n") != 1 {
		t.Errorf("/readyz with node 2 crashed: %d %q, want 503 and one line naming node 2", code, body)
	}
	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz with node 2 crashed: %d, want 200 (the process is up)", code)
	}
	fams = scrape(t, base)
	if got, ok := value(fams, "twopc_up", node("2")); !ok || got != 0 {
		t.Errorf("twopc_up{node=2} after its crash = %v (present %v), want 0", got, ok)
	}
	if _, ok := value(fams, "twopc_locks_held", node("2")); ok {
		t.Error("twopc_locks_held{node=2} reported for a crashed node")
	}
	if err := l.RestartNode(2); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after node 2's restart: %d %q", code, body)
	}
	// The counts outlive the restart: the Recorder is the node id's.
	fams = scrape(t, base)
	if got, _ := value(fams, "twopc_transactions_total", with(node("0"), "outcome", "committed", "reason", "none")); got != 2 {
		t.Errorf("committed on node 0 after node 2's restart = %v, want 2", got)
	}
}

// Allowed label names, and what a per-transaction value would look like.
var (
	closedLabels = map[string]bool{"node": true, "outcome": true, "reason": true, "peer": true, "decision": true, "result": true}
	txLike       = regexp.MustCompile(`^\d+\.\d+\.\d+$`)
)

// checkClosedLabels fails on any twopc_ label outside the closed sets.
func checkClosedLabels(t *testing.T, fams map[string]*dto.MetricFamily) {
	t.Helper()
	allowed := map[string]map[string]bool{
		"outcome": set(outcomes...), "reason": set(reasons...), "decision": set(decisions...), "result": set(roundResults...),
	}
	for name, f := range fams {
		if !strings.HasPrefix(name, "twopc_") {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if !closedLabels[l.GetName()] {
					t.Errorf("%s has label %s=%q: not one of the closed label names", name, l.GetName(), l.GetValue())
				}
				if txLike.MatchString(l.GetValue()) {
					t.Errorf("%s has label %s=%q: a transaction id", name, l.GetName(), l.GetValue())
				}
				if vals := allowed[l.GetName()]; vals != nil && !vals[l.GetValue()] {
					t.Errorf("%s has %s=%q: not in the closed set", name, l.GetName(), l.GetValue())
				}
			}
		}
	}
}

func set(vs ...string) map[string]bool {
	m := map[string]bool{}
	for _, v := range vs {
		m[v] = true
	}
	return m
}

// In-doubt participants count their rounds of asking, unanswered while the
// coordinator is down and answered (commit) once it is back; an operator's
// heuristic decision is counted on each node it was applied to.
func TestRecoveryRoundsAndHeuristicDecisions(t *testing.T) {
	// 2PC: rounds go unanswered while the coordinator is down, and the
	// operator may decide.
	l, ep := startLocalRunning(t, 3, actors.TwoPC)
	base := ep.URL()

	// The coordinator dies with COMMIT durable, before any Commit.
	a, err := l.CrashAt(0, actors.StepCommitLogged)
	if err != nil {
		t.Fatal(err)
	}
	if o, err := l.Node(0).Submit(messages.Add(messages.EverywhereKey, 1)); err == nil && !o.Unknown {
		t.Fatalf("submit via a node crashing at commit-logged: %+v, want no outcome", o)
	}
	<-a.Down()
	eventually(t, base, "node 1 asked twice without an answer", func(f map[string]*dto.MetricFamily) bool {
		v, _ := value(f, "twopc_recovery_rounds_total", with(node("1"), "result", "unanswered"))
		return v >= 1
	})
	if v, _ := value(scrape(t, base), "twopc_in_doubt_transactions", node("1")); v != 1 {
		t.Errorf("twopc_in_doubt_transactions{node=1} = %v while the coordinator is down, want 1", v)
	}
	if err := l.RestartNode(0); err != nil {
		t.Fatal(err)
	}
	eventually(t, base, "node 1's last round answered commit", func(f map[string]*dto.MetricFamily) bool {
		v, _ := value(f, "twopc_recovery_rounds_total", with(node("1"), "result", "commit"))
		return v == 1
	})

	// The coordinator dies before deciding; the operator aborts for it.
	a, err = l.CrashAt(0, actors.StepCommitDecided)
	if err != nil {
		t.Fatal(err)
	}
	o, err := l.Node(0).Submit(messages.Add(messages.EverywhereKey, 1))
	var no *cluster.NoOutcomeError
	var tx messages.TxID
	switch {
	case errors.As(err, &no):
		tx = no.Tx
	case err == nil && o.Unknown:
		tx = o.Tx
	default:
		t.Fatalf("submit via a node crashing at commit-decided: %+v %v, want no outcome", o, err)
	}
	<-a.Down()
	if got := Classify(o, err); got[0] != "unknown" {
		t.Errorf("Classify of a crashed coordinator's answer = %v, want outcome unknown", got)
	}
	if _, err := l.Resolve(tx, false); err != nil {
		t.Fatal(err)
	}
	fams := scrape(t, base)
	for _, id := range []string{"1", "2"} {
		if v, _ := value(fams, "twopc_heuristic_decisions_total", with(node(id), "decision", "abort")); v != 1 {
			t.Errorf("twopc_heuristic_decisions_total{node=%s,decision=abort} = %v, want 1", id, v)
		}
		if v, _ := value(fams, "twopc_heuristic_decisions_total", with(node(id), "decision", "commit")); v != 0 {
			t.Errorf("twopc_heuristic_decisions_total{node=%s,decision=commit} = %v, want 0", id, v)
		}
	}
	checkClosedLabels(t, fams)
	if err := l.RestartNode(0); err != nil {
		t.Fatal(err)
	}
}

// The abort reasons the roles give, each in its class.
func TestClassify(t *testing.T) {
	for _, c := range []struct {
		o    *messages.Outcome
		err  error
		want [2]string
	}{
		{&messages.Outcome{Committed: true}, nil, [2]string{"committed", "none"}},
		{&messages.Outcome{Committed: true, Reason: "read-only"}, nil, [2]string{"committed", "read_only"}},
		{&messages.Outcome{Reason: "node 1 voted no: node 1: key n1/a would fall to -5, below its floor 0"}, nil, [2]string{"aborted", "vote_no"}},
		{&messages.Outcome{Reason: "node 2 voted no: node 2: key n2/x is locked by transaction 0.1.7"}, nil, [2]string{"aborted", "lock_conflict"}},
		{&messages.Outcome{Reason: "node 2 voted no: node 2: gave up waiting for locks held by older transactions"}, nil, [2]string{"aborted", "lock_conflict"}},
		{&messages.Outcome{Reason: "vote timeout: no vote from node(s) 2 within 2s"}, nil, [2]string{"aborted", "vote_timeout"}},
		{&messages.Outcome{Reason: "node 3 voted no: node 3 restarted and cannot vouch for transactions begun before 2026-01-01T00:00:00Z"}, nil, [2]string{"aborted", "node_down"}},
		{&messages.Outcome{Reason: "node 1 voted no: node 1: log write failed: disk full"}, nil, [2]string{"aborted", "log_failed"}},
		{&messages.Outcome{Unknown: true, Reason: "outcome unknown: coordinator's log write failed: disk full"}, nil, [2]string{"unknown", "log_failed"}},
		{&messages.Outcome{Reason: "node 2 asked for the decision before all votes arrived"}, nil, [2]string{"aborted", "other"}},
		{nil, &cluster.NoOutcomeError{Err: errors.New("node crashed")}, [2]string{"unknown", "node_down"}},
		{nil, &cluster.NoOutcomeError{Err: errors.New("no answer within 8s")}, [2]string{"unknown", "other"}},
	} {
		if got := Classify(c.o, c.err); got != c.want {
			t.Errorf("Classify(%+v, %v) = %v, want %v", c.o, c.err, got, c.want)
		}
	}
}

// One node per process: no node label, not ready until the node is handed
// over once recovered, and not ready once its power is cut.
func TestSingleNodeEndpoint(t *testing.T) {
	ep, err := ForNode("127.0.0.1:0", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Close()
	base := ep.URL()
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || body != "not ready: starting: recovering from the log\n" {
		t.Fatalf("/readyz before the node started: %d %q", code, body)
	}
	if ep.Observer(1) != nil {
		t.Error("an Observer for a node this endpoint does not serve")
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n, err := cluster.Start(cluster.Config{ID: 0, Members: []string{lis.Addr().String()}, Listener: lis, DataDir: t.TempDir(),
		Timing: timing, Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Off}), Observer: ep.Observer(0)})
	if err != nil {
		t.Fatal(err)
	}
	ep.Serve(n)
	if code, body := get(t, base+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz once serving: %d %q", code, body)
	}
	if o, err := n.Submit(messages.Set("k", 1)); err != nil || !o.Committed {
		t.Fatalf("submit: %+v %v", o, err)
	}
	fams := scrape(t, base)
	if v, _ := value(fams, "twopc_transactions_total", map[string]string{"outcome": "committed", "reason": "none"}); v != 1 {
		t.Errorf("committed = %v, want 1", v)
	}
	for name, labels := range labelsOf(fams) {
		for _, l := range labels {
			if l == "node" {
				t.Errorf("%s has a node label in a one-node endpoint", name)
			}
		}
	}
	checkClosedLabels(t, fams)
	n.Crash()
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || body != "not ready: node 0 crashed (power cut)\n" {
		t.Errorf("/readyz after a power cut: %d %q", code, body)
	}
	if v, _ := value(scrape(t, base), "twopc_up", nil); v != 0 {
		t.Errorf("twopc_up after a power cut = %v", v)
	}
}
