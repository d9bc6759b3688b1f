package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/rpc"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"twopc/actors"
	"twopc/actors/actortest"
	"twopc/bridge"
	"twopc/identity"
	"twopc/internal/bank"
	"twopc/messages"
	"twopc/trace"
)

// Every test must leave nothing running: nodes, bridges, connections and timers are stopped by their owners.
func TestMain(m *testing.M) { actortest.VerifyNoLeaks(m) }

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	actortest.Eventually(tb, 20*time.Second, func() string {
		if cond() {
			return ""
		}
		return what
	})
}

func listenLoopback(tb testing.TB) net.Listener {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen on a free loopback port: %v", err)
	}
	return ln
}

// mutePeer is a peer that accepts connections and reads everything sent
// to it, but never answers. accepts counts the connections it took, read
// the bytes it got.
type mutePeer struct {
	addr    string
	accepts atomic.Int64
	read    atomic.Int64
}

func startMutePeer(t *testing.T) *mutePeer {
	t.Helper()
	ln := listenLoopback(t)
	p := &mutePeer{addr: ln.Addr().String()}
	srv := serveConns(ln, func(c net.Conn) {
		p.accepts.Add(1)
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			p.read.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	t.Cleanup(func() { srv.stop(); srv.wait() })
	return p
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func outcomeString(o *messages.Outcome) string {
	if o == nil {
		return "<nil>"
	}
	return o.String()
}

func (r *crashRig) armCrash(node int32, at actors.StepKind, peer int32, after func(actors.Step) bool) *crashAt {
	return r.arm(&crashAt{node: node, at: at, peer: peer, after: after}, true)
}

func (r *crashRig) waitCrashed(c *crashAt) actors.Step { return r.crashed(c) }

func (r *crashRig) valueOf(key string) int64 {
	r.t.Helper()
	for i := range r.l.Members() {
		if n := r.l.Node(i); n != nil {
			vals, err := n.Read(key)
			if err != nil {
				r.t.Fatal(err)
			}
			return vals[0].Value
		}
	}
	r.t.Fatal("no node up")
	return 0
}

// gateLogger wraps an hclog.Logger and, when the node named gateNode logs
// "node started" for incarnation gateInc, blocks the logging goroutine (the
// one running cluster.Start) until release is closed. It makes the window
// between a node serving and Start returning as wide as a slow machine
// could make it, without changing anything else.
type gateLogger struct {
	hclog.Logger
	g *startGate
}

func (l *gateLogger) Named(name string) hclog.Logger {
	return &gateLogger{Logger: l.Logger.Named(name), g: l.g}
}

func (l *gateLogger) ResetNamed(name string) hclog.Logger {
	return &gateLogger{Logger: l.Logger.ResetNamed(name), g: l.g}
}

func (l *gateLogger) With(args ...interface{}) hclog.Logger {
	return &gateLogger{Logger: l.Logger.With(args...), g: l.g}
}

func (l *gateLogger) Info(msg string, args ...interface{}) {
	if msg == "node started" && strings.HasSuffix(l.Name(), l.g.node) {
		for i := 0; i+1 < len(args); i += 2 {
			if args[i] == "incarnation" && args[i+1] == l.g.inc {
				l.g.once.Do(func() { close(l.g.reached) })
				<-l.g.release
			}
		}
	}
	l.Logger.Info(msg, args...)
}

type startGate struct {
	node    string // logger name suffix, e.g. "node-1"
	inc     uint32
	once    sync.Once
	reached chan struct{}
	release chan struct{}
}

// replyBoxID is the id protoactor's registry gives its k-th NextId (a
// copy of its base-64 encoding), so a test can name a Submit's reply box.
func replyBoxID(k uint64) string {
	const digits = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ~+"
	var buf [13]byte
	i := 13
	for k >= 64 {
		i--
		buf[i] = digits[k&0x3f]
		k >>= 6
	}
	i--
	buf[i] = digits[k]
	i--
	buf[i] = '$'
	return "submit" + string(buf[i:])
}

func quietLogger() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Level: hclog.Off, Output: io.Discard})
}

// hookedCluster is a cluster of n nodes whose protocol steps go to hook (if set
// by the test, through the returned pointer).
func hookedCluster(t *testing.T, n int, timing actors.Timing) (*Local, *atomic.Pointer[func(actors.Step)]) {
	t.Helper()
	return hookedClusterRunning(t, n, timing, actors.DefaultProtocol)
}

// hookedClusterRunning is hookedCluster running protocol proto: tests of
// what only one protocol does (2PC's blocking, its forced COMMIT) name it.
func hookedClusterRunning(t *testing.T, n int, timing actors.Timing, proto actors.Protocol) (*Local, *atomic.Pointer[func(actors.Step)]) {
	t.Helper()
	hook := new(atomic.Pointer[func(actors.Step)])
	l, err := StartLocal(LocalConfig{
		Nodes: n, DataDir: t.TempDir(), Timing: timing, Protocol: proto,
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Off}),
		Steps: func(s actors.Step) {
			if f := hook.Load(); f != nil {
				(*f)(s)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	return l, hook
}

// settledWithin waits until every node that is up has nothing left to
// finish (nodeBusy), failing after bound.
func settledWithin(t *testing.T, l *Local, bound time.Duration, what string) {
	t.Helper()
	t.Logf("waiting: %s", what)
	settled(t, l, bound)
}

func valueVia(t *testing.T, l *Local, via int, key string) int64 {
	t.Helper()
	vals, err := l.Node(via).Read(key)
	if err != nil {
		t.Fatal(err)
	}
	return vals[0].Value
}

// waitProgress waits until the workload has submitted n more transactions:
// load measured in work done, not in time slept.
func waitProgress(t *testing.T, submitted *atomic.Int64, n int64) {
	t.Helper()
	from := submitted.Load()
	actortest.Eventually(t, 30*time.Second, func() string {
		if got := submitted.Load() - from; got < n {
			return fmt.Sprintf("%d of %d more transactions submitted", got, n)
		}
		return ""
	})
}

// waitInFlight waits until node's coordinator runs want txn actors.
func waitInFlight(t *testing.T, n *Node, want int) {
	t.Helper()
	actortest.Eventually(t, 5*time.Second, func() string {
		cs, err := n.CoordinatorStatus()
		if err != nil {
			return err.Error()
		}
		if cs.InFlight != want {
			return fmt.Sprintf("node %d: %d transactions in flight, want %d", n.ID(), cs.InFlight, want)
		}
		return ""
	})
}

// timing for the pinned scenarios: short clocks, so "long" is a second.
var termTiming = actors.Timing{
	VoteTimeout:       time.Second,
	ClockSkew:         50 * time.Millisecond,
	ResendInterval:    20 * time.Millisecond,
	MaxResendInterval: 200 * time.Millisecond,
	InDoubtAfter:      100 * time.Millisecond,
	MaxQueryInterval:  400 * time.Millisecond,
}

// settledValues waits until nothing is left in flight and reads x and y.
func settledValues(t *testing.T, l *Local, x, y string) []NodeValue {
	t.Helper()
	settled(t, l, 10*time.Second)
	vals, err := l.Node(1).Read(x, y)
	if err != nil {
		t.Fatal(err)
	}
	return vals
}

// wantRunningRefusal: Resolve refused because node 0, the coordinator,
// runs.
func wantRunningRefusal(t *testing.T, rerr error) {
	t.Helper()
	var running *CoordinatorRunningError
	if !errors.As(rerr, &running) || running.Node != 0 {
		t.Fatalf("Resolve refused with %v, want a CoordinatorRunningError naming node 0", rerr)
	}
}

// testCluster starts n in-process nodes on free ports with their data in a
// temporary directory, stopped when the test ends.
func testCluster(t *testing.T, n int, timing actors.Timing) *Local {
	t.Helper()
	return testClusterRunning(t, n, timing, actors.DefaultProtocol)
}

// testClusterRunning is testCluster running protocol proto.
func testClusterRunning(t *testing.T, n int, timing actors.Timing, proto actors.Protocol) *Local {
	t.Helper()
	l, err := StartLocal(LocalConfig{
		Nodes: n, DataDir: t.TempDir(), Timing: timing, Protocol: proto,
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Off}),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	return l
}

func dial(t *testing.T, l *Local, node int) *Client {
	t.Helper()
	c, err := Dial(l.Members()[node])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func mustCommit(t *testing.T, c *Client, ops ...messages.Op) messages.TxID {
	t.Helper()
	o, err := c.Submit(ops...)
	if err != nil {
		t.Fatal(err)
	}
	if !o.Committed {
		t.Fatalf("%v: want committed, got %v", ops, o)
	}
	return o.Tx
}

// values reads key through c and returns node → value.
func values(t *testing.T, c *Client, key string) map[int32]int64 {
	t.Helper()
	vals, err := c.Read(key)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	for _, v := range vals {
		out[v.Node] = v.Value
	}
	return out
}

func wantEverywhere(t *testing.T, c *Client, key string, nodes int, want int64) {
	t.Helper()
	got := values(t, c, key)
	if len(got) != nodes {
		t.Fatalf("%s read from %d nodes, want %d: %v", key, len(got), nodes, got)
	}
	for n, v := range got {
		if v != want {
			t.Fatalf("%s on node %d = %d, want %d (all: %v)", key, n, v, want, got)
		}
	}
}

// holdLock prepares a transaction directly on a participant, so that the
// participant holds its keys until the test aborts it. begun sets its age:
// transactions younger than the holder wait for it, older ones are refused.
func holdLock(t *testing.T, l *Local, node int, begun int64, ops ...messages.Op) func() {
	t.Helper()
	n := l.Node(node)
	txn := actortest.NewProbe(t, n.System(), "blocker")
	held := messages.TxID{Node: int32(node), Incarnation: 1 << 30, Seq: 1}
	n.System().Root.RequestWithCustomSender(n.Participant(), &messages.Prepare{Tx: held, Ops: ops, Participants: []int32{int32(node)}, Begun: begun}, txn.PID)
	v, _ := actortest.Expect[*messages.Vote](t, txn, 5*time.Second)
	if v.Kind != messages.VoteYes {
		t.Fatalf("blocker not prepared: %+v", v)
	}
	return func() { n.System().Root.Send(n.Participant(), &messages.Abort{Tx: held}) }
}

// waitStatus polls node's participant until ok holds, failing with what
// after five seconds.
func waitStatus(t *testing.T, l *Local, node int, what string, ok func(*actors.ParticipantStatus) bool) {
	t.Helper()
	actortest.Eventually(t, 5*time.Second, func() string {
		st, err := l.Node(node).ParticipantStatus()
		if err != nil {
			return err.Error()
		}
		if !ok(st) {
			return fmt.Sprintf("node %d: %s: %+v", node, what, st)
		}
		return ""
	})
}

func waitLocksFree(t *testing.T, l *Local) {
	t.Helper()
	actortest.Eventually(t, 5*time.Second, func() string {
		for i := range l.Members() {
			n := l.Node(i)
			if n == nil {
				continue
			}
			st, err := n.ParticipantStatus()
			if err != nil {
				return err.Error()
			}
			if st.LocksHeld != 0 || len(st.InDoubt) != 0 || st.Preparing != 0 || st.Committing != 0 {
				return fmt.Sprintf("node %d still holds locks: %+v", i, st)
			}
		}
		return ""
	})
}

// settled waits until none of nodes (all that are up, if none are given)
// holds a lock, is in doubt, runs a txn actor or has a commit without END
// in its log.
func settled(tb testing.TB, l *Local, within time.Duration, nodes ...int) {
	tb.Helper()
	if len(nodes) == 0 {
		for i := range l.Members() {
			nodes = append(nodes, i)
		}
	}
	actortest.Eventually(tb, within, func() string {
		for _, i := range nodes {
			if n := l.Node(i); n != nil {
				if busy := nodeBusy(n); busy != "" {
					return fmt.Sprintf("node %d not settled: %s", i, busy)
				}
			}
		}
		return ""
	})
}

// opTiming: short clocks, as crashTiming, and outcomes remembered only as
// long as the protocol allows (VoteTimeout + 2 × ClockSkew, rounded up), so
// that what happens once a participant forgets shows within the test.
var opTiming = actors.Timing{
	VoteTimeout:       time.Second,
	ClockSkew:         50 * time.Millisecond,
	ResendInterval:    50 * time.Millisecond,
	MaxResendInterval: 200 * time.Millisecond,
	InDoubtAfter:      100 * time.Millisecond,
	MaxQueryInterval:  400 * time.Millisecond,
	RememberOutcomes:  1200 * time.Millisecond,
}

// opRig is a three-node crash rig: node 0 coordinates, nodes 1 and 2 take
// part, each with one key set to 100. log, if set, gets every node's log
// lines (at ERROR and above).
type opRig struct {
	*crashRig
	x, y string // n1/..., n2/...
}

func newOpRig(t *testing.T, timing actors.Timing, log hclog.Logger) *opRig {
	if log == nil {
		log = hclog.New(&hclog.LoggerOptions{Level: hclog.Off})
	}
	cr := &crashRig{t: t}
	// 2PC: heuristic decisions are for transactions that block, and under
	// the non-blocking commit they are refused while recovery can decide.
	l, err := StartLocal(LocalConfig{Nodes: 3, DataDir: t.TempDir(), Timing: timing, Logger: log, CrashAtSteps: true, Protocol: actors.TwoPC})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	cr.l = l
	r := &opRig{crashRig: cr, x: "n1/op-x", y: "n2/op-y"}
	if o, err := l.Node(0).Submit(messages.Set(r.x, 100), messages.Set(r.y, 100)); err != nil || !o.Committed {
		t.Fatalf("setup: %v %v", o, err)
	}
	settled(t, l, 10*time.Second)
	return r
}

// transferCrashingAt submits "move 10 from x to y" through node 0 and cuts
// node 0's power at the armed step; it returns the step and Submit's error,
// then takes node 0 down.
func (r *opRig) transferCrashingAt(c *crashAt) (actors.Step, error) {
	r.t.Helper()
	errc := make(chan error, 1)
	go func() {
		o, err := r.l.Node(0).Submit(messages.Add(r.x, -10), messages.Add(r.y, 10))
		if err == nil {
			r.t.Errorf("a client of a crashed coordinator got an outcome: %v", o)
		}
		errc <- err
	}()
	at := r.waitCrashed(c)
	var err error
	select {
	case err = <-errc:
	case <-time.After(5 * time.Second):
		r.t.Fatal("Submit still waiting after its node's power was cut")
	}
	if err := r.l.Crash(0); err != nil {
		r.t.Fatal(err)
	}
	return at, err
}

// values reads x and y (from their owners, through node 1).
func (r *opRig) values() (int64, int64) {
	r.t.Helper()
	vals, err := r.l.Node(1).Read(r.x, r.y)
	if err != nil {
		r.t.Fatal(err)
	}
	return vals[0].Value, vals[1].Value
}

func (r *opRig) wantValues(x, y int64, when string) {
	r.t.Helper()
	if gx, gy := r.values(); gx != x || gy != y {
		r.t.Fatalf("%s: x=%d y=%d, want %d %d", when, gx, gy, x, y)
	}
}

func (r *opRig) wantKnown(tx messages.TxID, d messages.Decision, source string) {
	r.t.Helper()
	got, src, err := r.l.KnownOutcome(tx)
	if err != nil || got != d || !strings.Contains(src, source) {
		r.t.Fatalf("KnownOutcome(%v) = %v %q %v, want %v %q", tx, got, src, err, d, source)
	}
}

func newBufferLogger(level hclog.Level) (hclog.Logger, *actortest.Buffer) {
	buf := &actortest.Buffer{}
	return hclog.New(&hclog.LoggerOptions{Name: "test", Level: level, Output: buf}), buf
}

// dirContents maps every file of dir to its bytes.
func dirContents(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(b)
	}
	return out
}

// onlySegment is the path of the node's one log segment.
func onlySegment(t *testing.T, dir string) string {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "wal-*.log"))
	if err != nil || len(segs) != 1 {
		t.Fatalf("want one segment in %s, got %v %v", dir, segs, err)
	}
	return segs[0]
}

func keys(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, fmt.Sprintf("%s(%d)", k, len(v)))
	}
	return out
}

// localBank is the bank's view of an in-process cluster.
type localBank struct{ l *Local }

func (c localBank) Submit(via int, ops ...messages.Op) (*messages.Outcome, error) {
	n := c.l.Node(via)
	if n == nil {
		return nil, fmt.Errorf("node %d is down", via)
	}
	o, err := n.Submit(ops...)
	if err == nil && o.Unknown {
		return nil, errors.New(o.String()) // the bank counts it unknown, not aborted
	}
	return o, err
}

// Read asks the first node that is up and answers.
func (c localBank) Read(keys ...string) (map[string]int64, error) {
	var errs []error
	for i := range c.l.Members() {
		n := c.l.Node(i)
		if n == nil {
			continue
		}
		vals, err := n.Read(keys...)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out := make(map[string]int64, len(vals))
		for _, v := range vals {
			out[v.Key] = v.Value
		}
		return out, nil
	}
	return nil, fmt.Errorf("no node could read: %w", errors.Join(errs...))
}

func testSeed(t *testing.T) int64 {
	seed, err := bank.Seed()
	if err != nil {
		t.Fatal(err)
	}
	return seed
}

// afterTransfers waits until n more transfers have been started.
func afterTransfers(t *testing.T, b *bank.Bank, n int) {
	t.Helper()
	started := func() int { c, a, u := b.Counts(); return c + a + u }
	from := started()
	actortest.Eventually(t, time.Minute, func() string {
		if got := started() - from; got < n {
			return fmt.Sprintf("%d of %d transfers started", got, n)
		}
		return ""
	})
}

// tracedCluster is a four-node cluster recording into rec. It runs 2PC:
// the trace tests look for its records (a forced COMMIT at the coordinator).
func tracedCluster(t *testing.T, rec *trace.Recorder, steps actors.StepHook) *Local {
	t.Helper()
	l, err := StartLocal(LocalConfig{
		Nodes: 4, DataDir: t.TempDir(), Timing: crashTiming, Tracer: rec, Steps: steps, Protocol: actors.TwoPC,
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Off}),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	return l
}

// find returns the index of the first event matching ok, or -1.
func find(evs []trace.Event, ok func(trace.Event) bool) int {
	for i, e := range evs {
		if ok(e) {
			return i
		}
	}
	return -1
}

func isEvent(kind trace.Kind, node, peer int32, what string) func(trace.Event) bool {
	return func(e trace.Event) bool { return e.Kind == kind && e.Node == node && e.Peer == peer && e.What == what }
}

func isLog(node int32, rec messages.RecordKind, forced bool) func(trace.Event) bool {
	return func(e trace.Event) bool {
		return e.Kind == trace.LogWrite && e.Node == node && e.What == rec.String() && e.Forced == forced
	}
}

func render(t *testing.T, rec *trace.Recorder, tx messages.TxID) string {
	t.Helper()
	var b strings.Builder
	if err := rec.Render(&b, tx, 4); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// tlsCluster is testCluster with mutual TLS: an in-memory CA issues every
// node's certificate (host 127.0.0.1), and limits bound its connections.
func tlsCluster(t *testing.T, n int, limits ConnLimits) (*Local, *identity.CA) {
	t.Helper()
	ca, err := identity.NewCA("test cluster")
	if err != nil {
		t.Fatal(err)
	}
	l, err := StartLocal(LocalConfig{
		Nodes: n, DataDir: t.TempDir(), ConnLimits: limits,
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Warn}),
		TLS:    func(i int32) (*identity.Identity, error) { return ca.Issue(identity.Node(i), "127.0.0.1") },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	return l, ca
}

// issue makes p's identity or fails the test.
func issue(t *testing.T, ca *identity.CA, p identity.Peer, hosts ...string) *identity.Identity {
	t.Helper()
	id, err := ca.Issue(p, hosts...)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// dialAs connects a Client to node with id's certificate.
func dialAs(t *testing.T, l *Local, node int, id *identity.Identity) *Client {
	t.Helper()
	c, err := Dial(l.Members()[node], WithTLS(id.ClientConfig()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// rpcAs opens a raw rpc connection to node with id's certificate, for
// calling services by name as an attacker holding that certificate would.
func rpcAs(t *testing.T, l *Local, node int, id *identity.Identity) *rpc.Client {
	t.Helper()
	conn, err := tls.Dial("tcp", l.Members()[node], id.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	c := rpc.NewClientWithCodec(bridge.NewClientCodec(conn, bridge.Limits{}))
	t.Cleanup(func() { c.Close() })
	return c
}

// submitCounter is an Observer counting, per node, the transactions
// submitted to it that ended (with an outcome or without): how many times
// a client's transaction reached a coordinator.
type submitCounter struct{ ended []atomic.Int64 }

func newSubmitCounter(nodes int) *submitCounter {
	return &submitCounter{ended: make([]atomic.Int64, nodes)}
}

// observer is node id's Observer (LocalConfig.Observers).
func (s *submitCounter) observer(id int32) Observer { return submitCounterNode{s, id} }

type submitCounterNode struct {
	s  *submitCounter
	id int32
}

func (o submitCounterNode) TransactionEnded(*messages.Outcome, error, time.Duration) {
	o.s.ended[o.id].Add(1)
}
func (submitCounterNode) LogSynced(time.Duration, int)      {}
func (submitCounterNode) HeuristicLogged(messages.Decision) {}
func (submitCounterNode) RecoveryRound(messages.Decision)   {}

// clientCluster starts n nodes, with c counting the transactions each
// ended, and a client of all of them whose own node is node 0.
func clientCluster(t *testing.T, n int, timing actors.Timing) (*Local, *Client, *submitCounter) {
	t.Helper()
	count := newSubmitCounter(n)
	l, err := StartLocal(LocalConfig{
		Nodes: n, DataDir: t.TempDir(), Timing: timing, Logger: quietLogger(), Observers: count.observer,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	c, err := DialCluster(l.Members())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return l, c, count
}

// waitConnEnded waits until the client has seen its connection to the
// node at slot i end (its node died), so that the next call finds it
// over rather than racing the news.
func waitConnEnded(t *testing.T, c *Client, i int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("the client to see its connection to %s end", c.slots[i].addr), func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		cn := c.slots[i].conn
		if cn == nil {
			return true
		}
		select {
		case <-cn.ended:
			return true
		default:
			return false
		}
	})
}

// waitDialFailed waits until the client has failed to dial the node at
// slot i (some call is waiting for it).
func waitDialFailed(t *testing.T, c *Client, i int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("a failed dial of %s", c.slots[i].addr), func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.slots[i].lastErr != nil
	})
}

// countLines counts the lines of log that contain every one of parts.
func countLines(log string, parts ...string) int {
	n := 0
	for _, l := range strings.Split(log, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if all {
			n++
		}
	}
	return n
}

// adminCluster is a plaintext cluster (every connection may call Admin, as
// in --insecure) whose nodes trace, log to nowhere at warn, and use the
// crash rig's short clocks, but remember outcomes for longer than the
// test: letting go of one logs a MARK, which would land in a trace being
// compared.
func adminCluster(t *testing.T, n int) (*Local, *trace.Recorder, hclog.Logger) {
	t.Helper()
	rec := trace.NewRecorder(100)
	log := hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: io.Discard})
	timing := crashTiming
	timing.RememberOutcomes = time.Minute
	l, err := StartLocal(LocalConfig{Nodes: n, DataDir: t.TempDir(), Timing: timing, Tracer: rec, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	return l, rec, log
}

// withoutMarks drops the participants' MARK records from a trace: each
// node logs them lazily on its own tick, so two snapshots of one trace
// taken a moment apart may differ by them.
func withoutMarks(evs []trace.Event) []trace.Event {
	var out []trace.Event
	for _, e := range evs {
		if e.Kind == trace.LogWrite && e.What == messages.RecMark.String() {
			continue
		}
		out = append(out, e)
	}
	return out
}

// sameEvents: the same events in the same order, times compared as
// instants (a time from the wire has no monotonic reading).
func sameEvents(a, b []trace.Event) bool {
	return slices.EqualFunc(a, b, func(x, y trace.Event) bool {
		x.At, y.At = x.At.Round(0), y.At.Round(0)
		return x.At.Equal(y.At) && x.Node == y.Node && x.Kind == y.Kind && x.Peer == y.Peer && x.Tx == y.Tx &&
			x.What == y.What && x.Forced == y.Forced && x.Detail == y.Detail
	})
}

// withCodec makes a Client speak through the codec f makes of each
// connection instead of the wire's.
func withCodec(f func(net.Conn) rpc.ClientCodec) DialOption {
	return func(o *dialOptions) { o.codec = f }
}

// instantCodec answers every call itself, and so quickly that net/rpc has
// delivered the answer before Go returns: WriteRequest waits until the
// reader has handed it over and come back for the next one. Reads answer
// key "k" = 42 on node 0; Run commits; Named names the transaction 0.1.1.
type instantCodec struct {
	conn   net.Conn
	mu     sync.Mutex
	cond   sync.Cond
	queue  []rpc.Response
	reads  int // ReadResponseHeader calls begun
	closed bool
	method string // of the response being read
}

func newInstantCodec(conn net.Conn) rpc.ClientCodec {
	c := &instantCodec{conn: conn}
	c.cond.L = &c.mu
	return c
}

func (c *instantCodec) WriteRequest(r *rpc.Request, _ any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.queue = append(c.queue, rpc.Response{Seq: r.Seq, ServiceMethod: r.ServiceMethod})
	c.cond.Broadcast()
	for n := c.reads; c.reads <= n && !c.closed; {
		c.cond.Wait()
	}
	return nil
}

func (c *instantCodec) ReadResponseHeader(r *rpc.Response) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads++
	c.cond.Broadcast()
	for len(c.queue) == 0 && !c.closed {
		c.cond.Wait()
	}
	if c.closed {
		return io.EOF
	}
	*r, c.queue = c.queue[0], c.queue[1:]
	c.method = r.ServiceMethod
	return nil
}

func (c *instantCodec) ReadResponseBody(v any) error {
	tx := messages.TxID{Node: 0, Incarnation: 1, Seq: 1}
	switch r := v.(type) {
	case *ReadResult:
		r.Values = []NodeValue{{Key: "k", Node: 0, Value: 42}}
	case *RunReply:
		r.Outcome = messages.Outcome{Tx: tx, Committed: true}
	case *NamedReply:
		r.Tx = tx
	}
	return nil
}

func (c *instantCodec) Close() error {
	c.mu.Lock()
	c.closed = true
	c.cond.Broadcast()
	c.mu.Unlock()
	return c.conn.Close()
}

// --- simulation helpers (simulation_test.go) ---------------------------------

// simSteps are every protocol step with a name (actors/steps.go), so a step
// added later is crashed at too.
func simSteps() []actors.StepKind {
	var out []actors.StepKind
	for k := actors.StepKind(1); k != 0; k++ {
		if !strings.HasPrefix(k.String(), "step(") {
			out = append(out, k)
		}
	}
	return out
}

// sendingStep: the step sends a message to another node, so a crash there
// may wait for its delivery (Delivered).
func sendingStep(k actors.StepKind) bool {
	_, ok := sendArrival(actors.Step{Kind: k})
	return ok
}

// randomSimBase picks the simulation's first seed when -sim.base is not
// given: each run explores new schedules, and logs how to run them again.
func randomSimBase() uint64 { return mrand.Uint64N(1 << 40) }

// simLogger is the nodes' logger in the simulation: silent, or -sim.log's
// level to stderr, each line naming the test (and so the seed).
func simLogger(t *testing.T) hclog.Logger {
	if *simLog == "" {
		return quietLogger()
	}
	return hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.LevelFromString(*simLog), Output: os.Stderr})
}

// bubbleStacks are the stacks of every goroutine in a synctest bubble (of
// any simulation running at the time), at most 64 KiB of them: what a
// deadlocked schedule left blocked.
func bubbleStacks() string {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out strings.Builder
	for _, g := range strings.Split(string(buf), "\n\n") {
		if first, _, _ := strings.Cut(g, "\n"); strings.Contains(first, "synctest bubble") {
			out.WriteString(g)
			out.WriteString("\n\n")
		}
		if out.Len() > 64<<10 {
			out.WriteString("... (more)\n")
			break
		}
	}
	return out.String()
}
