package cluster

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"twopc/actors"
	"twopc/actors/actortest"
	"twopc/bridge"
	"twopc/identity"
	"twopc/messages"
	"twopc/trace"
)

// Every Admin call made with a client's certificate is refused with the
// same clear error, before it touches the node: nothing it asked for
// changes. A member's certificate does not reach the service at all. The
// admin's certificate reaches it.
func TestAdminServiceRefusesEveryoneButTheAdmin(t *testing.T) {
	l, ca := tlsCluster(t, 2, ConnLimits{})
	addr := l.Members()[0]
	a := NewAdminClient(addr, issue(t, ca, identity.Client).ClientConfig())
	defer a.Close()
	tx := messages.TxID{Node: 0, Incarnation: 1, Seq: 1}
	calls := map[string]func() error{
		"Status":    func() error { _, err := a.Status(); return err },
		"InDoubt":   func() error { _, err := a.InDoubt(); return err },
		"Outcome":   func() error { _, err := a.Outcome(tx, true); return err },
		"Force":     func() error { _, err := a.Force(tx, true); return err },
		"Trace":     func() error { _, err := a.Trace(tx); return err },
		"LogLevel":  func() error { _, err := a.LogLevel("trace"); return err },
		"Partition": func() error { _, err := a.Partition(1); return err },
		"Heal":      func() error { _, err := a.Heal(); return err },
		"SetFaults": func() error { _, err := a.SetFaults(bridge.Faults{Drop: 1}); return err },
		"Faults":    func() error { _, err := a.Faults(); return err },
		"SetSkew":   func() error { _, err := a.SetSkew(time.Hour); return err },
		"ReadLocal": func() error { _, err := a.ReadLocal(messages.EverywhereKey); return err },
		"SyncLog":   a.SyncLog,
	}
	for name, call := range calls {
		err := call()
		if err == nil || err.Error() != errAdminOnly.Error() {
			t.Errorf("%s with a client certificate: %v, want %q", name, err, errAdminOnly)
		}
	}
	n := l.Node(0)
	if n.Skew() != 0 || len(n.Bridge().CutPeers()) != 0 || n.Bridge().Faults() != (bridge.Faults{}) || n.log.GetLevel() == hclog.Trace {
		t.Fatalf("a refused call changed the node: skew %v, cut %v, faults %+v, level %v", n.Skew(), n.Bridge().CutPeers(), n.Bridge().Faults(), n.log.GetLevel())
	}
	// The same connection still serves what a client may do.
	c := dialAs(t, l, 0, issue(t, ca, identity.Client))
	mustCommit(t, c, messages.Add(messages.EverywhereKey, 1))

	// A member's certificate reaches only the Bridge.
	raw := rpcAs(t, l, 0, issue(t, ca, identity.Node(1), "127.0.0.1"))
	if err := raw.Call("Admin.Status", &AdminNone{}, &NodeStatus{}); err == nil || !strings.Contains(err.Error(), "can't find service Admin.Status") {
		t.Fatalf("Admin.Status with node 1's certificate: %v, want no such service", err)
	}

	admin := NewAdminClient(addr, issue(t, ca, identity.Admin).ClientConfig())
	defer admin.Close()
	st, err := admin.Status()
	if err != nil || st.Node != 0 || st.Members != 2 || st.Addr != addr || st.Incarnation != 1 {
		t.Fatalf("Status with the admin certificate: %+v %v", st, err)
	}
}

// Each action on one node: status, log level, skew, links, faults, a read
// of its own replica, a log sync, its part of a trace.
func TestAdminActionsOnOneNode(t *testing.T) {
	l, rec, log := adminCluster(t, 3)
	r := NewRemote(l.Members(), nil)
	defer r.Close()
	a0, a1, a2 := r.Admin(0), r.Admin(1), r.Admin(2)

	st, err := a1.Status()
	if err != nil {
		t.Fatal(err)
	}
	want := &NodeStatus{Node: 1, Members: 3, Addr: l.Members()[1], Incarnation: 1, LogBytes: st.LogBytes, LogLevel: "warn", Protocol: "nonblocking"}
	if !reflect.DeepEqual(st, want) || st.LogBytes <= 0 {
		t.Fatalf("status of an idle node: %+v, want %+v with log bytes", st, want)
	}

	// Log level: the node's logger (shared by a Local's nodes).
	if lv, err := a1.LogLevel(""); err != nil || lv != "warn" {
		t.Fatalf("log level: %q %v", lv, err)
	}
	if lv, err := a1.LogLevel("error"); err != nil || lv != "error" || log.GetLevel() != hclog.Error {
		t.Fatalf("log level set to error: %q %v, logger at %v", lv, err, log.GetLevel())
	}
	if _, err := a1.LogLevel("loud"); err == nil || !strings.Contains(err.Error(), `unknown log level "loud"`) {
		t.Fatalf("log level loud: %v", err)
	}
	if _, err := a1.LogLevel(strings.Repeat("x", 1000)); err == nil || !strings.Contains(err.Error(), "unknown log level of 1000 bytes") {
		t.Fatalf("a long log level: %v", err)
	}

	// Skew: the node's clock, at once.
	if d, err := a2.SetSkew(5 * time.Second); err != nil || d != 5*time.Second {
		t.Fatalf("skew +5s: %v %v", d, err)
	}
	if ahead := time.Until(l.Node(2).Now()); ahead < 4*time.Second {
		t.Fatalf("node 2's clock is %v ahead after a 5s skew", ahead)
	}
	if l.Skew(2) != 5*time.Second {
		t.Fatalf("the Local sees node 2's skew as %v (it keeps it across restarts)", l.Skew(2))
	}
	if _, err := a2.SetSkew(25 * time.Hour); err == nil || !strings.Contains(err.Error(), "more than 24h0m0s either way") {
		t.Fatalf("skew 25h: %v", err)
	}
	if d, err := a2.SetSkew(0); err != nil || d != 0 {
		t.Fatalf("skew cleared: %v %v", d, err)
	}

	// Links: this end only.
	if cut, err := a0.Partition(1); err != nil || !slices.Equal(cut, []int32{1}) {
		t.Fatalf("partition 0 from 1: %v %v", cut, err)
	}
	if got := l.Node(0).Bridge().CutPeers(); !slices.Equal(got, []int32{1}) || len(l.Node(1).Bridge().CutPeers()) != 0 {
		t.Fatalf("cut at node 0: %v, at node 1: %v", got, l.Node(1).Bridge().CutPeers())
	}
	if st, _ := a0.Status(); !slices.Equal(st.Cut, []int32{1}) {
		t.Fatalf("status after the cut: %+v", st)
	}
	if _, err := a0.Partition(0); err == nil || !strings.Contains(err.Error(), "link to itself") {
		t.Fatalf("partition from itself: %v", err)
	}
	if _, err := a0.Partition(7); err == nil || !strings.Contains(err.Error(), "not a member") {
		t.Fatalf("partition from node 7: %v", err)
	}
	if _, err := a0.Partition(); err == nil || !strings.Contains(err.Error(), "no peer given") {
		t.Fatalf("partition from nobody: %v", err)
	}
	if cut, err := a0.Heal(); err != nil || len(cut) != 0 {
		t.Fatalf("heal: %v %v", cut, err)
	}

	// Faults on node 0's outbound messages: with every one dropped, a
	// transaction it coordinates that needs node 1 cannot commit.
	if res, err := a0.SetFaults(bridge.Faults{Drop: 1}); err != nil || res.Faults.Drop != 1 {
		t.Fatalf("faults drop=1: %+v %v", res, err)
	}
	if o, err := l.Node(0).Submit(messages.Set("n1/fx", 1)); err != nil || o.Committed {
		t.Fatalf("a transaction through a node dropping everything: %v %v, want an abort", outcomeString(o), err)
	}
	res, err := a0.Faults()
	if err != nil || res.Stats.Dropped == 0 || res.Faults.Drop != 1 {
		t.Fatalf("faults after the abort: %+v %v, want drops counted", res, err)
	}
	if _, err := a0.SetFaults(bridge.Faults{Drop: 2}); err == nil || !strings.Contains(err.Error(), "Drop = 2") {
		t.Fatalf("faults drop=2: %v", err)
	}
	// The node checks too (a client need not be this one).
	if _, err := a0.faults(&FaultArgs{Set: true, Faults: bridge.Faults{Reorder: math.NaN()}}); err == nil || !strings.Contains(err.Error(), "Reorder") {
		t.Fatalf("faults reorder=NaN sent as is: %v", err)
	}
	if res, err := a0.SetFaults(bridge.Faults{}); err != nil || res.Faults != (bridge.Faults{}) {
		t.Fatalf("faults off: %+v %v", res, err)
	}
	o, err := l.Node(0).Submit(messages.Set("n1/fx", 2), messages.Add(messages.EverywhereKey, 3))
	if err != nil || !o.Committed {
		t.Fatalf("a transaction once the faults are off: %v %v", outcomeString(o), err)
	}

	// A node's own replica; a key it does not own is refused.
	if vals, err := a2.ReadLocal(messages.EverywhereKey); err != nil || len(vals) != 1 || vals[0] != (NodeValue{Key: messages.EverywhereKey, Node: 2, Value: 3}) {
		t.Fatalf("read value on node 2: %v %v", vals, err)
	}
	if _, err := a2.ReadLocal("n1/fx"); err == nil || !strings.Contains(err.Error(), "owned by node 1") {
		t.Fatalf("read n1/fx on node 2: %v", err)
	}
	if err := a2.SyncLog(); err != nil {
		t.Fatal(err)
	}

	// Its part of a trace: its own events only, as its recorder kept them.
	settled(t, l, 10*time.Second)
	for i := range 3 {
		if err := r.Admin(i).SyncLog(); err != nil {
			t.Fatal(err)
		}
	}
	part, err := a1.Trace(o.Tx)
	if err != nil || len(part.Events) == 0 || part.Cut != 0 {
		t.Fatalf("node 1's part of %v: %+v %v", o.Tx, part, err)
	}
	var mine []trace.Event
	for _, ev := range rec.Events(o.Tx) {
		if ev.Node == 1 {
			mine = append(mine, ev)
		}
	}
	if !sameEvents(withoutMarks(part.Events), withoutMarks(mine)) {
		t.Fatalf("node 1's part of %v:\n%v\nwant its recorder's:\n%v", o.Tx, part.Events, mine)
	}
	// Merged, the parts are the whole trace.
	merged, missing, err := r.Trace(o.Tx)
	if err != nil || len(missing) != 0 {
		t.Fatalf("trace of %v: %v %v", o.Tx, missing, err)
	}
	if got, want := withoutMarks(merged.Events(o.Tx)), withoutMarks(rec.Events(o.Tx)); !sameEvents(got, want) {
		t.Fatalf("merged trace:\n%v\nwant:\n%v", got, want)
	}
	if _, _, err := r.Trace(messages.TxID{Node: 2, Incarnation: 1, Seq: 999}); err == nil || !strings.Contains(err.Error(), "no trace of 2.1.999") {
		t.Fatalf("trace of a transaction nobody saw: %v", err)
	}
	if _, _, err := r.Trace(messages.TxID{Node: 5, Incarnation: 1, Seq: 1}); err == nil || !strings.Contains(err.Error(), "not a member") {
		t.Fatalf("trace naming node 5: %v", err)
	}
}

// A node started without a recorder says so, rather than answering with
// an empty trace.
func TestAdminTraceOfANodeThatKeepsNone(t *testing.T) {
	l := testCluster(t, 2, actors.Timing{})
	a := NewAdminClient(l.Members()[1], nil)
	defer a.Close()
	if _, err := a.Trace(messages.TxID{Node: 0, Incarnation: 1, Seq: 1}); err == nil || !strings.Contains(err.Error(), "node 1 keeps no trace") {
		t.Fatalf("trace on a node without a recorder: %v", err)
	}
}

// Over the wire, the operator's heuristic decision follows Local's rules:
// with the coordinator down and nobody knowing, it is applied on each
// in-doubt participant; once a participant knows, it is refused.
func TestRemoteResolveAppliesAndRefusesAsLocalDoes(t *testing.T) {
	r := newOpRig(t, crashTiming, nil)
	rem := NewRemote(r.l.Members(), nil)
	defer rem.Close()
	at, err := r.transferCrashingAt(r.armCrash(0, actors.StepCommitDecided, -1, nil))
	if ne := (*NoOutcomeError)(nil); !errors.As(err, &ne) || ne.Tx != at.Tx {
		t.Fatalf("Submit: %v, want a *NoOutcomeError for %v", err, at.Tx)
	}
	tx := at.Tx
	var doubts []InDoubt
	actortest.Eventually(t, 5*time.Second, func() string {
		if doubts, err = rem.InDoubt(); err != nil || len(doubts) != 2 {
			return "want both participants in doubt"
		}
		return ""
	})
	for i, d := range doubts {
		if d.Node != int32(i+1) || d.Tx != tx || d.CoordinatorUp || !slices.Equal(d.Participants, []int32{1, 2}) || time.Since(d.Since) < 0 || time.Since(d.Since) > time.Minute {
			t.Fatalf("in doubt over the wire: %+v, want nodes 1 and 2 in doubt about %v with the coordinator down", doubts, tx)
		}
	}
	if d, src, err := rem.KnownOutcome(tx); err != nil || d != messages.DecisionUnknown || src != "" {
		t.Fatalf("known outcome: %v %q %v, want unknown", d, src, err)
	}
	res, err := rem.Resolve(tx, true)
	if err != nil || res.Tx != tx || !res.Commit || len(res.Nodes) == 0 || len(res.Nodes)+len(res.Refused) != 2 {
		t.Fatalf("Resolve over the wire: %+v %v", res, err)
	}
	r.wantValues(90, 110, "after the heuristic commit")
	if _, err := rem.Resolve(tx, false); err == nil || !strings.Contains(err.Error(), tx.String()+" is not in doubt on any running node") {
		t.Fatalf("Resolve of a settled transaction: %v", err)
	}
	if d, src, _ := rem.KnownOutcome(tx); d != messages.DecisionCommit || !strings.Contains(src, "by the operator's heuristic decision") {
		t.Fatalf("known outcome after the decision: %v %q", d, src)
	}
	if _, err := rem.Resolve(messages.TxID{Node: 3, Incarnation: 1, Seq: 1}, true); err == nil || !strings.Contains(err.Error(), "not a member") {
		t.Fatalf("Resolve naming node 3: %v", err)
	}

	// Node 1 committed before the coordinator died, node 2 (cut off from
	// node 1) is in doubt: the decision is refused, naming node 1.
	if err := r.l.RestartNode(0); err != nil {
		t.Fatal(err)
	}
	settled(t, r.l, 10*time.Second)
	if err := r.l.Partition(1, 2); err != nil {
		t.Fatal(err)
	}
	at, _ = r.transferCrashingAt(r.armCrash(0, actors.StepCommitSent, 1,
		func(s actors.Step) bool { return s.Node == 1 && s.Kind == actors.StepCommittedLogged }))
	_, err = rem.Resolve(at.Tx, false)
	var known *OutcomeKnownError
	if !errors.As(err, &known) || !known.Committed || known.Source != "node 1 committed it" {
		t.Fatalf("Resolve with node 1 knowing: %v, want an OutcomeKnownError naming node 1's commit", err)
	}
	r.l.Heal()
}

// A coordinator that runs decides: the operator may not, over the wire as
// in process. Node 0 collects votes, node 2's Prepare is lost to a
// partition, node 1 voted yes and is in doubt: Resolve is refused, and the
// coordinator aborts at its vote timeout. A node whose port is closed is
// down: it may not decide.
func TestRemoteResolveRefusedWhileTheCoordinatorRuns(t *testing.T) {
	timing := opTiming
	timing.VoteTimeout = time.Second
	timing.InDoubtAfter = 3 * time.Second // asks only after the vote timeout
	l, err := StartLocal(LocalConfig{Nodes: 3, DataDir: t.TempDir(), Timing: timing, Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Off})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	rem := NewRemote(l.Members(), nil)
	defer rem.Close()
	if err := l.Partition(0, 2); err != nil {
		t.Fatal(err)
	}
	outc := make(chan *messages.Outcome, 1)
	go func() {
		o, err := l.Node(0).Submit(messages.Set("n1/rr-x", 1), messages.Set("n2/rr-y", 1))
		if err != nil {
			t.Errorf("Submit: %v", err)
		}
		outc <- o
	}()
	var tx messages.TxID
	actortest.Eventually(t, 5*time.Second, func() string {
		d, err := rem.InDoubt()
		if err != nil || len(d) != 1 || d[0].Node != 1 || !d[0].CoordinatorUp {
			return fmt.Sprintf("in doubt: %+v %v, want node 1 (coordinator up)", d, err)
		}
		tx = d[0].Tx
		return ""
	})
	res, rerr := rem.Resolve(tx, true)
	o := <-outc
	l.Heal()
	if rerr == nil {
		t.Fatalf("Resolve(%v, commit) over the wire was applied on nodes %v while the coordinator was collecting votes; it then decided %v", tx, res.Nodes, outcomeString(o))
	}
	wantRunningRefusal(t, rerr)
	if o == nil || o.Committed {
		t.Fatalf("the transaction missing node 2's vote: %v, want an abort", outcomeString(o))
	}

	if may, why := rem.mayDecide(0); !may || why != "" {
		t.Fatalf("mayDecide of a running node: %v %q", may, why)
	}
	if err := l.StopNode(0); err != nil {
		t.Fatal(err)
	}
	if may, why := rem.mayDecide(0); may {
		t.Fatalf("mayDecide of a stopped node (its port closed): %v %q", may, why)
	}
}

// The Admin service's values survive the wire as they were, and a frame
// that lies about its counts or carries what no value can be is refused.
func TestAdminWireValuesRoundTripAndRefuseLies(t *testing.T) {
	tx := messages.TxID{Node: 2, Incarnation: 3, Seq: 44}
	at := time.Unix(1700000000, 123456789)
	values := []bridge.WireValue{
		&NodeStatus{Node: 1, Members: 4, Addr: "127.0.0.1:5", Incarnation: 2, InFlight: -1, LocksHeld: 3, InDoubt: 1, Preparing: 1, Committing: 2,
			Waiting: 3, LogBytes: 9000, LastSnapshot: "snap-1.snap", Skew: -5 * time.Second, Cut: []int32{0, 2}, LogLevel: "info", Errs: []string{"node 1: x"}},
		&NodeDoubts{Doubts: []NodeDoubt{{Tx: tx, Age: time.Minute, Participants: []int32{1, 2}, Asked: 3}}, Total: 5},
		&OutcomeArgs{Tx: tx, Coordinator: true},
		&OutcomeReply{actors.OutcomeAnswer{Tx: tx, From: 2, Decision: messages.DecisionAbort, Why: "presumed", Presumed: true}},
		&ForceArgs{Tx: tx, Commit: true},
		&ForceReply{Applied: false, Refusal: "not in doubt"},
		&TraceArgs{Tx: tx},
		&TraceReply{Events: []trace.Event{{At: at, Node: 1, Kind: trace.LogWrite, Peer: trace.NoPeer, Tx: tx, What: "PREPARED", Forced: true, Detail: "d"}}, Cut: 2},
		&LevelArgs{Level: "debug"},
		&LevelReply{Level: "warn"},
		&LinkArgs{Peers: []int32{3}},
		&LinkReply{Cut: []int32{1, 2}},
		&FaultArgs{Set: true, Faults: bridge.Faults{Drop: 0.1, Duplicate: 0.2, Delay: 0.3, MaxDelay: time.Second, Reorder: 0.4, Seed: -7}},
		&FaultReply{Faults: bridge.Faults{Drop: 1}, Stats: bridge.FaultStats{Dropped: 1, Duplicated: 2, Delayed: 3, Reordered: 4, CutOff: 5}},
		&SkewArgs{Set: true, Skew: -time.Hour},
		&SkewReply{Skew: time.Hour},
	}
	for _, v := range values {
		var e bridge.Encoder
		v.EncodeWire(&e)
		got := reflect.New(reflect.TypeOf(v).Elem()).Interface().(bridge.WireValue)
		d := bridge.NewDecoder(e.Bytes(), bridge.Limits{})
		got.DecodeWire(d)
		if d.Err() != nil || d.Remaining() != 0 {
			t.Fatalf("%T: decoding what was encoded: %v (%d bytes left)", v, d.Err(), d.Remaining())
		}
		if tr, ok := got.(*TraceReply); ok {
			if !sameEvents(tr.Events, v.(*TraceReply).Events) || tr.Cut != 2 {
				t.Fatalf("%T: %+v, want %+v", v, got, v)
			}
			continue
		}
		if !reflect.DeepEqual(got, v) {
			t.Fatalf("%T: %+v, want %+v", v, got, v)
		}
		// Cut short anywhere, it is refused or read as a shorter value
		// (an empty list), never read past its end.
		for n := 0; n < len(e.Bytes()); n++ {
			d := bridge.NewDecoder(e.Bytes()[:n], bridge.Limits{})
			reflect.New(reflect.TypeOf(v).Elem()).Interface().(bridge.WireValue).DecodeWire(d)
			if d.Err() == nil && d.Remaining() != 0 {
				t.Fatalf("%T cut to %d bytes: read without error, %d bytes left", v, n, d.Remaining())
			}
		}
	}

	lie := func(what string, build func(e *bridge.Encoder), v bridge.WireValue, want string) {
		t.Helper()
		var e bridge.Encoder
		build(&e)
		d := bridge.NewDecoder(e.Bytes(), bridge.Limits{})
		v.DecodeWire(d)
		if d.Err() == nil || !strings.Contains(d.Err().Error(), want) {
			t.Errorf("%s: %v, want an error with %q", what, d.Err(), want)
		}
	}
	lie("a million in-doubt transactions in a few bytes", func(e *bridge.Encoder) { e.Count(1 << 20); e.Varint(0) }, &NodeDoubts{}, "more than the limit")
	lie("ten in-doubt transactions in a few bytes", func(e *bridge.Encoder) { e.Count(10); e.Varint(0) }, &NodeDoubts{}, "bytes left in the frame")
	lie("a trace event of an unknown kind", func(e *bridge.Encoder) {
		(&TraceReply{Events: []trace.Event{{At: at, Kind: trace.Kind(99)}}}).EncodeWire(e)
	}, &TraceReply{}, "trace event kind 99")
	lie("a decision that is none", func(e *bridge.Encoder) {
		(&OutcomeReply{actors.OutcomeAnswer{Tx: tx, Decision: messages.Decision(9)}}).EncodeWire(e)
	}, &OutcomeReply{}, "decision 9")
	lie("more peers than a cluster has", func(e *bridge.Encoder) { e.Count(5000) }, &LinkArgs{}, "more than the limit")
}
