package cluster

import (
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"twopc/actors"
	"twopc/actors/actortest"
	"twopc/messages"
	"twopc/trace"
)

// A committed transaction's trace holds both phases at every participant,
// in protocol order: every Prepare out before COMMIT is durable, COMMIT
// durable before any Commit goes out.
func TestTraceCommittedTransaction(t *testing.T) {
	rec := trace.NewRecorder(100)
	l := tracedCluster(t, rec, nil)
	o, err := l.Node(0).Submit(messages.Set("n1/a", 1), messages.Set("n2/a", 2), messages.Set("n3/a", 3))
	if err != nil || !o.Committed {
		t.Fatalf("submit: %v %v", o, err)
	}
	tx := o.Tx
	var want []func(trace.Event) bool
	var names []string
	expect := func(name string, ok func(trace.Event) bool) {
		names = append(names, name)
		want = append(want, ok)
	}
	for p := int32(1); p <= 3; p++ {
		expect(fmt.Sprintf("Prepare 0 → %d", p), isEvent(trace.Send, 0, p, "Prepare"))
		expect(fmt.Sprintf("Prepare received by %d", p), isEvent(trace.Receive, p, 0, "Prepare"))
		expect(fmt.Sprintf("PREPARED forced on %d", p), isLog(p, messages.RecPrepared, true))
		expect(fmt.Sprintf("Vote yes %d → 0", p), isEvent(trace.Send, p, 0, "Vote yes"))
		expect(fmt.Sprintf("Vote yes of %d received", p), isEvent(trace.Receive, 0, p, "Vote yes"))
		expect(fmt.Sprintf("Commit 0 → %d", p), isEvent(trace.Send, 0, p, "Commit"))
		expect(fmt.Sprintf("Commit received by %d", p), isEvent(trace.Receive, p, 0, "Commit"))
		expect(fmt.Sprintf("COMMITTED forced on %d", p), isLog(p, messages.RecCommitted, true))
		expect(fmt.Sprintf("Ack %d → 0", p), isEvent(trace.Send, p, 0, "Ack"))
		expect(fmt.Sprintf("Ack of %d received", p), isEvent(trace.Receive, 0, p, "Ack"))
	}
	expect("decision commit on 0", isEvent(trace.Decision, 0, trace.NoPeer, "commit"))
	expect("COMMIT forced on 0", isLog(0, messages.RecCommitDecision, true))
	expect("Outcome to the client", func(e trace.Event) bool {
		return e.Kind == trace.Send && e.Node == 0 && e.Peer == trace.PeerClient && e.What == "Outcome" && e.Detail == "committed"
	})
	expect("END on 0", isLog(0, messages.RecEnd, false))
	var evs []trace.Event
	actortest.Eventually(t, 5*time.Second, func() string {
		evs = rec.Events(tx)
		for i, ok := range want {
			if find(evs, ok) < 0 {
				return "no " + names[i] + " in the trace"
			}
		}
		return ""
	})

	commitLogged := find(evs, isLog(0, messages.RecCommitDecision, true))
	if d := find(evs, isEvent(trace.Decision, 0, trace.NoPeer, "commit")); d > commitLogged {
		t.Errorf("decision (event %d) after COMMIT was written (event %d)", d, commitLogged)
	}
	for i, e := range evs {
		switch {
		case e.Kind == trace.Send && e.What == "Prepare" && i > commitLogged:
			t.Errorf("Prepare to %d (event %d) after COMMIT was written (event %d)", e.Peer, i, commitLogged)
		case e.Kind == trace.Send && e.What == "Commit" && i < commitLogged:
			t.Errorf("Commit to %d (event %d) before COMMIT was written (event %d)", e.Peer, i, commitLogged)
		case e.Kind == trace.Send && e.What == "Vote no", e.Kind == trace.Decision && e.What == "abort":
			t.Errorf("abort in a committed transaction: %v", e)
		}
		if i > 0 && e.At.Before(evs[i-1].At) {
			t.Errorf("event %d (%v) before event %d", i, e, i-1)
		}
	}
	out := render(t, rec, tx)
	if first := strings.SplitN(out, "\n", 2)[0]; first != fmt.Sprintf("trace %v: committed; coordinator node 0, participants 1 2 3", tx) {
		t.Errorf("first line %q", first)
	}
	t.Logf("\n%s", out)
}

// A no vote: the trace shows it with its reason, and the abort decision
// with the reason the client hears; no COMMIT is ever written.
func TestTraceAbortedTransaction(t *testing.T) {
	rec := trace.NewRecorder(100)
	l := tracedCluster(t, rec, nil)
	o, err := l.Node(0).Submit(messages.Set("n1/b", 1), messages.AddFloor("n2/b", -5, 0))
	if err != nil || o.Committed || o.Unknown {
		t.Fatalf("submit: %v %v, want an abort", o, err)
	}
	tx := o.Tx
	var evs []trace.Event
	actortest.Eventually(t, 5*time.Second, func() string {
		evs = rec.Events(tx)
		switch {
		case find(evs, isEvent(trace.Receive, 0, 2, "Vote no")) < 0:
			return "no Vote no of node 2 received"
		case find(evs, isEvent(trace.Decision, 0, trace.NoPeer, "abort")) < 0:
			return "no abort decision"
		case find(evs, isEvent(trace.Receive, 1, 0, "Abort")) < 0:
			return "no Abort received by node 1"
		}
		return ""
	})
	no := evs[find(evs, isEvent(trace.Send, 2, 0, "Vote no"))]
	if no.Detail == "" {
		t.Errorf("Vote no without its reason: %+v", no)
	}
	d := evs[find(evs, isEvent(trace.Decision, 0, trace.NoPeer, "abort"))]
	if d.Detail != o.Reason || !strings.Contains(d.Detail, no.Detail) {
		t.Errorf("abort decision's reason %q; the client heard %q, node 2 said %q", d.Detail, o.Reason, no.Detail)
	}
	for _, e := range evs {
		if e.What == messages.RecCommitDecision.String() || e.What == "Commit" || (e.Kind == trace.Decision && e.What == "commit") {
			t.Errorf("commit in an aborted transaction: %v", e)
		}
	}
	out := render(t, rec, tx)
	if first := strings.SplitN(out, "\n", 2)[0]; !strings.HasPrefix(first, fmt.Sprintf("trace %v: aborted: node 2 voted no: ", tx)) ||
		!strings.HasSuffix(first, "; coordinator node 0, participants 1 2") {
		t.Errorf("first line %q", first)
	}
	t.Logf("\n%s", out)
}

// The coordinator's power is cut once COMMIT is durable: the trace shows
// the crash and nothing the dead node did after it — no Commit goes out
// until it has restarted and re-drives the decision.
func TestTraceCoordinatorPowerCut(t *testing.T) {
	rec := trace.NewRecorder(100)
	var lp atomic.Pointer[Local]
	cutTx := make(chan messages.TxID, 1)
	var fired atomic.Bool
	l := tracedCluster(t, rec, func(s actors.Step) {
		if s.Kind == actors.StepCommitLogged && s.Node == 0 && fired.CompareAndSwap(false, true) {
			lp.Load().Node(0).PowerCut() // the Local is known: this runs long after StartLocal
			cutTx <- s.Tx
		}
	})
	lp.Store(l)
	if _, err := l.Node(0).Submit(messages.Set("n1/c", 1), messages.Set("n2/c", 2)); err == nil {
		t.Fatal("a node whose power was cut answered its client")
	}
	tx := <-cutTx
	crashed := isEvent(trace.NodeEvent, 0, trace.NoPeer, "crashed (power cut)")
	var evs []trace.Event
	// Participants in doubt ask the dead coordinator: the crash falls within
	// the transaction's span.
	actortest.Eventually(t, 5*time.Second, func() string {
		evs = rec.Events(tx)
		c := find(evs, crashed)
		if c < 0 {
			return "no crash in the trace"
		}
		if find(evs[c:], isEvent(trace.Send, 1, 0, "DecisionQuery")) < 0 {
			return "no DecisionQuery from node 1 after the crash"
		}
		return ""
	})
	c := find(evs, crashed)
	if find(evs[:c], isLog(0, messages.RecCommitDecision, true)) < 0 {
		t.Errorf("no COMMIT write before the crash")
	}
	for _, e := range evs {
		if e.Node == 0 && e.Kind == trace.Send && e.What == "Commit" {
			t.Errorf("Commit sent by the cut node: %v", e)
		}
		if e.Node == 0 && e.Kind == trace.Receive && e.At.After(evs[c].At) {
			t.Errorf("the cut node received after the crash: %v", e)
		}
	}

	// A partition and its healing while the transaction is in doubt fall
	// within its span, drawn on both ends of the link.
	if err := l.Partition(1, 3); err != nil {
		t.Fatal(err)
	}
	l.Heal()

	// Back from its log, the coordinator re-drives the commit.
	if err := l.Crash(0); err != nil {
		t.Fatal(err)
	}
	if err := l.RestartNode(0); err != nil {
		t.Fatal(err)
	}
	restarted := isEvent(trace.NodeEvent, 0, trace.NoPeer, "restarted (incarnation 2)")
	actortest.Eventually(t, 5*time.Second, func() string {
		evs = rec.Events(tx)
		r := find(evs, restarted)
		switch {
		case r < 0:
			return "no restart in the trace"
		case find(evs[r:], isEvent(trace.Receive, 0, 2, "Ack")) < 0:
			return "no Ack of node 2 after the restart"
		}
		return ""
	})
	if s := find(evs, isEvent(trace.Send, 0, 1, "Commit")); s < find(evs, restarted) {
		t.Errorf("Commit to node 1 (event %d) before the restart", s)
	}
	if p, h := find(evs, isEvent(trace.NodeEvent, 1, 3, "partitioned from node 3")), find(evs, isEvent(trace.NodeEvent, 1, 3, "healed (link to node 3)")); p < 0 || h < p || h > find(evs, restarted) {
		t.Errorf("partition (event %d) and heal (event %d) not in the trace before the restart", p, h)
	}
	out := render(t, rec, tx)
	if !strings.Contains(out, "  .  !  .  !    node 1 partitioned from node 3\n") {
		t.Errorf("partition not drawn:\n%s", out)
	}
	if !strings.Contains(out, "  X  .  .  .    node 0 crashed (power cut)\n") || !strings.Contains(out, "  ^  .  .  .    node 0 restarted (incarnation 2)\n") {
		t.Errorf("crash or restart not drawn:\n%s", out)
	}
	t.Logf("\n%s", out)
}

// Without a Tracer the roles' props get no middleware, the log no observer
// and the step hook stays as given: the benchmarks pay nothing.
func TestNoTracerNoMiddleware(t *testing.T) {
	middleware := func(p *actor.Props) int {
		v := reflect.ValueOf(p).Elem()
		return v.FieldByName("receiverMiddleware").Len() + v.FieldByName("senderMiddleware").Len()
	}
	l := testCluster(t, 2, crashTiming)
	for i := 0; i < 2; i++ {
		n := l.Node(i)
		if n.tracer != nil || n.tracer.written() != nil || n.cfg.Steps != nil {
			t.Fatalf("node %d traces without a Tracer", i)
		}
	}
	var untraced *nodeTracer
	p := actor.PropsFromFunc(func(actor.Context) {})
	if got := untraced.props(p); got != p || middleware(p) != 0 || untraced.txnProps() != nil {
		t.Fatalf("props changed without a tracer (%d middleware)", middleware(p))
	}
	// The same check sees middleware when there is some.
	traced := &nodeTracer{rec: trace.NewRecorder(1), cut: new(atomic.Bool)}
	if n := middleware(traced.props(actor.PropsFromFunc(func(actor.Context) {}))); n != 2 {
		t.Fatalf("traced props carry %d middleware, want 2", n)
	}
	if _, err := l.Node(0).Submit(messages.Set("n1/d", 1)); err != nil {
		t.Fatal(err)
	}
}
