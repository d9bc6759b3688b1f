package trace

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"twopc/messages"
)

var (
	t0  = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	tx1 = messages.TxID{Node: 0, Incarnation: 1, Seq: 5}
	tx2 = messages.TxID{Node: 0, Incarnation: 1, Seq: 6}
)

func at(ms float64) time.Time { return t0.Add(time.Duration(ms * float64(time.Millisecond))) }

func send(ms float64, from, to int32, tx messages.TxID, what, detail string) Event {
	return Event{At: at(ms), Node: from, Kind: Send, Peer: to, Tx: tx, What: what, Detail: detail}
}

func recv(ms float64, at_, from int32, tx messages.TxID, what, detail string) Event {
	return Event{At: at(ms), Node: at_, Kind: Receive, Peer: from, Tx: tx, What: what, Detail: detail}
}

func logw(ms float64, node int32, tx messages.TxID, rec string, forced bool) Event {
	return Event{At: at(ms), Node: node, Kind: LogWrite, Peer: NoPeer, Tx: tx, What: rec, Forced: forced}
}

// Events come back in time order whatever order they were recorded in (the
// nodes' goroutines stamp and record them concurrently).
func TestEventsInTimeOrder(t *testing.T) {
	r := NewRecorder(10)
	r.Record(recv(0.4, 1, 0, tx1, "Prepare", ""))
	r.Record(send(0.1, 0, 1, tx1, "Prepare", ""))
	r.Record(logw(1.9, 1, tx1, "PREPARED", true))
	r.Record(send(0.2, 0, 2, tx1, "Prepare", ""))
	r.Record(send(0.1, 0, 3, tx1, "Prepare", "")) // a tie keeps recording order
	evs := r.Events(tx1)
	var got []string
	for _, e := range evs {
		got = append(got, e.String())
	}
	want := []string{"Prepare 0 → 1", "Prepare 0 → 3", "Prepare 0 → 2", "Prepare 0 → 1 received", "node 1 log PREPARED (forced)"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("order:\n got %q\nwant %q", got, want)
	}
	if r.Events(tx2) != nil {
		t.Fatalf("events of an unknown transaction: %v", r.Events(tx2))
	}
}

// The oldest transaction goes first once more than maxTxs are kept; a later
// event of a kept transaction does not make it new.
func TestEvictionAtMaxTxs(t *testing.T) {
	r := NewRecorder(3)
	ids := make([]messages.TxID, 5)
	for i := range ids {
		ids[i] = messages.TxID{Node: 1, Incarnation: 1, Seq: uint64(i + 1)}
	}
	for i := 0; i < 3; i++ {
		r.Record(send(float64(i), 1, 2, ids[i], "Prepare", ""))
	}
	r.Record(send(10, 1, 2, ids[0], "Commit", "")) // still the oldest
	r.Record(send(11, 1, 2, ids[3], "Prepare", ""))
	if r.Events(ids[0]) != nil {
		t.Fatal("the oldest transaction was kept beyond maxTxs")
	}
	for _, id := range ids[1:4] {
		if len(r.Events(id)) == 0 {
			t.Fatalf("%v evicted, want kept", id)
		}
	}
	r.Record(send(12, 1, 2, ids[4], "Prepare", ""))
	if r.Events(ids[1]) != nil || len(r.Events(ids[4])) != 1 {
		t.Fatalf("second eviction: kept %v", r.Transactions())
	}
	if got := fmt.Sprint(r.Transactions()); got != "[1.1.3 1.1.4 1.1.5]" {
		t.Fatalf("transactions kept: %s", got)
	}
}

// One transaction cannot grow without bound; what is not kept is counted.
func TestEventsPerTxBounded(t *testing.T) {
	r := NewRecorder(2)
	for i := 0; i < MaxEventsPerTx+7; i++ {
		r.Record(send(float64(i), 1, 0, tx1, "DecisionQuery", ""))
	}
	evs := r.Events(tx1)
	if len(evs) != MaxEventsPerTx+1 {
		t.Fatalf("%d events, want %d kept and a note", len(evs), MaxEventsPerTx)
	}
	if last := evs[len(evs)-1]; last.Kind != Note || !strings.HasPrefix(last.What, "7 later events not kept") {
		t.Fatalf("last event %+v, want a note of 7 dropped", last)
	}
}

// A node event shows in a trace only if it happened between the
// transaction's first and last event.
func TestNodeEventsWithinSpan(t *testing.T) {
	r := NewRecorder(10)
	r.Record(Event{At: at(-1), Node: 2, Kind: NodeEvent, Peer: NoPeer, What: "crashed (power cut)"})
	r.Record(send(0, 0, 1, tx1, "Prepare", ""))
	r.Record(Event{At: at(3), Node: 2, Kind: NodeEvent, Peer: NoPeer, What: "restarted (incarnation 2)"})
	r.Record(Event{At: at(4), Node: 1, Kind: NodeEvent, Peer: 3, What: "partitioned from node 3"})
	r.Record(recv(5, 1, 0, tx1, "Prepare", ""))
	r.Record(Event{At: at(6), Node: 0, Kind: NodeEvent, Peer: NoPeer, What: "crashed (power cut)"})
	r.Record(send(20, 2, 3, tx2, "Prepare", "")) // another transaction, later
	var got []string
	for _, e := range r.Events(tx1) {
		got = append(got, e.String())
	}
	want := []string{"Prepare 0 → 1", "node 2 restarted (incarnation 2)", "node 1 partitioned from node 3", "Prepare 0 → 1 received"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("tx1:\n got %q\nwant %q", got, want)
	}
	if evs := r.Events(tx2); len(evs) != 1 {
		t.Fatalf("tx2 shows node events outside its span: %v", evs)
	}
}

func TestRenderUnknownTx(t *testing.T) {
	r := NewRecorder(10)
	r.NodeEvent(1, "crashed (power cut)") // node events alone are no trace
	var b strings.Builder
	err := r.Render(&b, tx1, 4)
	if err == nil || !strings.HasPrefix(err.Error(), "no trace of 0.1.5 (") {
		t.Fatalf("error %v, want no trace of 0.1.5 (…)", err)
	}
	if b.Len() != 0 {
		t.Fatalf("wrote %q for an unknown transaction", b.String())
	}
}

// The rendered diagram is an interface operators script against: this is
// its exact text for a committed transaction in which the coordinator is a
// participant too, and a node crashes before the end.
func TestRenderCommitted(t *testing.T) {
	r := NewRecorder(10)
	for _, e := range []Event{
		send(0, 0, 1, tx1, "Prepare", ""),
		send(0.041, 0, 2, tx1, "Prepare", ""),
		send(0.05, 0, 0, tx1, "Prepare", ""),
		recv(0.39, 1, 0, tx1, "Prepare", ""),
		recv(0.4, 0, 0, tx1, "Prepare", ""),
		recv(0.5, 2, 0, tx1, "Prepare", ""),
		logw(1.904, 1, tx1, "PREPARED", true),
		logw(1.95, 2, tx1, "PREPARED", true),
		logw(1.96, 0, tx1, "PREPARED", true),
		send(2, 2, 0, tx1, "Vote yes", ""),
		send(2.1, 1, 0, tx1, "Vote yes", ""),
		send(2.2, 0, 0, tx1, "Vote yes", ""),
		recv(2.5, 0, 2, tx1, "Vote yes", ""),
		recv(2.6, 0, 1, tx1, "Vote yes", ""),
		recv(2.7, 0, 0, tx1, "Vote yes", ""),
		{At: at(2.8), Node: 0, Kind: Decision, Peer: NoPeer, Tx: tx1, What: "commit"},
		logw(5.771, 0, tx1, "COMMIT", true),
		send(5.8, 0, 1, tx1, "Commit", ""),
		send(5.9, 0, PeerClient, tx1, "Outcome", "committed"),
		{At: at(6), Node: 3, Kind: NodeEvent, Peer: NoPeer, What: "crashed (power cut)"},
		recv(6.2, 1, 0, tx1, "Commit", ""),
		logw(7.5, 1, tx1, "COMMITTED", true),
		send(7.6, 1, 0, tx1, "Ack", ""),
		logw(9.25, 0, tx1, "END", false),
	} {
		r.Record(e)
	}
	var b strings.Builder
	if err := r.Render(&b, tx1, 4); err != nil {
		t.Fatal(err)
	}
	want := `trace 0.1.5: committed; coordinator node 0, participants 0 1 2
      +ms  n0 n1 n2 n3
    0.000   o-->  .  .    Prepare 0 → 1
    0.041   o----->  .    Prepare 0 → 2
    0.050   o> .  .  .    Prepare 0 → 0
    0.390   .  >  .  .    Prepare 0 → 1 received
    0.400   >  .  .  .    Prepare 0 → 0 received
    0.500   .  .  >  .    Prepare 0 → 2 received
    1.904   .  #  .  .    node 1 log PREPARED (forced)
    1.950   .  .  #  .    node 2 log PREPARED (forced)
    1.960   #  .  .  .    node 0 log PREPARED (forced)
    2.000   <-----o  .    Vote yes 2 → 0
    2.100   <--o  .  .    Vote yes 1 → 0
    2.200   o> .  .  .    Vote yes 0 → 0
    2.500   <  .  .  .    Vote yes 2 → 0 received
    2.600   <  .  .  .    Vote yes 1 → 0 received
    2.700   >  .  .  .    Vote yes 0 → 0 received
    2.800   *  .  .  .    node 0 decision: commit
    5.771   #  .  .  .    node 0 log COMMIT (forced)
    5.800   o-->  .  .    Commit 0 → 1
    5.900   o---------->  Outcome 0 → client: committed
    6.000   .  .  .  X    node 3 crashed (power cut)
    6.200   .  >  .  .    Commit 0 → 1 received
    7.500   .  #  .  .    node 1 log COMMITTED (forced)
    7.600   <--o  .  .    Ack 1 → 0
    9.250   #  .  .  .    node 0 log END (lazy)
`
	if got := b.String(); got != want {
		t.Fatalf("render:\n%s\nwant:\n%s", got, want)
	}
}

// An abort: the summary carries the reason; lines longer than MaxLineWidth
// are cut; partitions mark both ends.
func TestRenderAborted(t *testing.T) {
	r := NewRecorder(10)
	reason := "node 2 voted no: " + strings.Repeat("x", 80)
	for _, e := range []Event{
		send(0, 1, 2, tx2, "Prepare", ""),
		{At: at(0.5), Node: 0, Kind: NodeEvent, Peer: 3, What: "partitioned from node 3"},
		recv(1, 2, 1, tx2, "Prepare", ""),
		send(2, 2, 1, tx2, "Vote no", "floor"),
		recv(3, 1, 2, tx2, "Vote no", "floor"),
		{At: at(4), Node: 1, Kind: Decision, Peer: NoPeer, Tx: tx2, What: "abort", Detail: reason},
	} {
		r.Record(e)
	}
	var b strings.Builder
	if err := r.Render(&b, messages.TxID{Node: 0, Incarnation: 1, Seq: 6}, 4); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	want := []string{
		"trace 0.1.6: aborted: " + reason + "; coordinator node 0, participants 2",
		"      +ms  n0 n1 n2 n3",
		"    0.000   .  o-->  .    Prepare 1 → 2",
		"    0.500   !  .  .  !    node 0 partitioned from node 3",
		"    1.000   .  .  >  .    Prepare 1 → 2 received",
		"    2.000   .  <--o  .    Vote no 2 → 1: floor",
		"    3.000   .  <  .  .    Vote no 2 → 1 received: floor",
		"    4.000   .  *  .  .    node 1 decision: abort: node 2 voted no: " + strings.Repeat("x", 32) + "…",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("render:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if n := len([]rune(lines[len(lines)-1])); n != MaxLineWidth {
		t.Fatalf("cut line is %d characters, want %d", n, MaxLineWidth)
	}
}

// A heuristic decision that met the coordinator's commit: the summary says
// so, not just "committed".
func TestRenderHeuristicDamage(t *testing.T) {
	evs := []Event{
		{At: at(0), Node: 0, Kind: LogWrite, Peer: NoPeer, Tx: tx2, What: messages.RecCommitDecision.String(), Forced: true},
		{At: at(1), Node: 2, Kind: LogWrite, Peer: NoPeer, Tx: tx2, What: messages.RecHeuristic.String(), Forced: true},
		{At: at(2), Node: 1, Kind: LogWrite, Peer: NoPeer, Tx: tx2, What: messages.RecHeuristic.String(), Forced: true},
		send(3, 2, 0, tx2, "Ack", "heuristic damage"),
	}
	want := "trace 0.1.6: committed (the operator forced a heuristic decision on node 1 2; heuristic damage on node 2); coordinator node 0, participants 1 2"
	if first := summary(t, evs); first != want {
		t.Fatalf("summary:\n%s\nwant:\n%s", first, want)
	}
}

// A coordinator that crashed before deciding answers, once restarted, with
// a presumed abort: that is the outcome the summary gives. A heuristic
// commit on another node then disagrees with it, and the summary says so
// (found by the forced node's COMMITTED against the abort, no ack needed).
func TestRenderPresumedAbortAndHeuristicCommit(t *testing.T) {
	evs := []Event{
		send(0, 0, 1, tx2, "Prepare", ""),
		{At: at(1), Node: 0, Kind: NodeEvent, Peer: NoPeer, What: "crashed (power cut)"},
		{At: at(2), Node: 2, Kind: LogWrite, Peer: NoPeer, Tx: tx2, What: messages.RecHeuristic.String(), Forced: true},
		{At: at(3), Node: 2, Kind: LogWrite, Peer: NoPeer, Tx: tx2, What: messages.RecCommitted.String(), Forced: true},
		send(4, 0, 1, tx2, "DecisionReply", messages.DecisionAbort.String()),
		{At: at(5), Node: 1, Kind: LogWrite, Peer: NoPeer, Tx: tx2, What: messages.RecAborted.String()},
	}
	want := "trace 0.1.6: aborted (presumed: no COMMIT in the coordinator's log) (the operator forced a heuristic decision on node 2; heuristic damage on node 2); coordinator node 0, participants 1 2"
	if first := summary(t, evs); first != want {
		t.Fatalf("summary:\n%s\nwant:\n%s", first, want)
	}
}

// summary records evs and renders tx2: its first line.
func summary(t *testing.T, evs []Event) string {
	t.Helper()
	r := NewRecorder(10)
	for _, e := range evs {
		r.Record(e)
	}
	var b strings.Builder
	if err := r.Render(&b, tx2, 3); err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(b.String(), "\n")
	return first
}

// Many goroutines record at once (every node's actors do): run under -race.
func TestRecordConcurrently(t *testing.T) {
	r := NewRecorder(50)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				tx := messages.TxID{Node: int32(g % 4), Incarnation: 1, Seq: uint64(i%60 + 1)}
				r.Record(Event{Node: int32(g % 4), Kind: Send, Peer: 1, Tx: tx, What: "Prepare"})
				if i%50 == 0 {
					r.NodeEvent(int32(g%4), "healed")
				}
				_ = r.Events(tx)
			}
		}(g)
	}
	wg.Wait()
	if n := len(r.Transactions()); n > 50 {
		t.Fatalf("%d transactions kept, want at most 50", n)
	}
}
