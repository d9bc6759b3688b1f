package cluster

import (
	"fmt"
	mrand "math/rand"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"twopc/actors"
	"twopc/bridge"
	"twopc/messages"
)

// TestLocalFaultControlsRejectBadInput: the Local's controls check their
// arguments before touching any node.
func TestLocalFaultControlsRejectBadInput(t *testing.T) {
	l := &Local{members: []string{"a:1", "b:1", "c:1"}}
	for _, c := range []struct {
		a, b int
		want string
	}{{0, 0, "cannot be cut off from itself"}, {3, 0, "unknown node 3"}, {1, -1, "unknown node -1"}} {
		if err := l.Partition(c.a, c.b); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Partition(%d, %d): want an error containing %q, got %v", c.a, c.b, c.want, err)
		}
	}
	if err := l.SetFaults(bridge.Faults{Drop: 2}); err == nil || !strings.Contains(err.Error(), "fault Drop = 2") {
		t.Errorf("Local.SetFaults with Drop 2: %v", err)
	}
	if p := l.Partitions(); len(p) != 0 {
		t.Errorf("Partitions after refused ones: %v", p)
	}
}

func TestFaultPartitionAbortsThenHealCommits(t *testing.T) {
	l := testCluster(t, 3, actors.Timing{VoteTimeout: time.Second})
	n0 := l.Node(0)
	mustCommit(t, dial(t, l, 0), messages.Add("n0/x", 1), messages.Add("n1/x", 1), messages.Add("n2/x", 1))

	if err := l.Partition(0, 1); err != nil {
		t.Fatal(err)
	}
	if p := l.Partitions(); len(p) != 1 || p[0] != [2]int{0, 1} {
		t.Fatalf("Partitions = %v, want [[0 1]]", p)
	}
	o, err := n0.Submit(messages.Add("n0/x", 1), messages.Add("n1/x", 1))
	if err != nil {
		t.Fatal(err)
	}
	if o.Committed || !strings.Contains(o.Reason, "vote timeout: no vote from node(s) 1") {
		t.Fatalf("a transaction across the partition: want a vote timeout naming node 1, got %v", o)
	}
	o, err = n0.Submit(messages.Add("n0/x", 1), messages.Add("n2/x", 1))
	if err != nil || !o.Committed {
		t.Fatalf("a transaction on the same side: want committed, got %v %v", o, err)
	}

	// A restart does not heal it.
	if err := l.StopNode(1); err != nil {
		t.Fatal(err)
	}
	if err := l.RestartNode(1); err != nil {
		t.Fatal(err)
	}
	if cut := l.Node(1).Bridge().CutPeers(); !slices.Equal(cut, []int32{0}) {
		t.Fatalf("restarted node 1 cut from %v, want [0]", cut)
	}

	l.Heal()
	if p := l.Partitions(); len(p) != 0 {
		t.Fatalf("Partitions after Heal = %v", p)
	}
	for i := 0; i < 3; i++ {
		if cut := l.Node(i).Bridge().CutPeers(); len(cut) != 0 {
			t.Fatalf("node %d still cut from %v after Heal", i, cut)
		}
	}
	o, err = n0.Submit(messages.Add("n0/x", 1), messages.Add("n1/x", 1))
	if err != nil || !o.Committed {
		t.Fatalf("after the heal: want committed, got %v %v", o, err)
	}
	waitLocksFree(t, l)
	c := dial(t, l, 2)
	for key, want := range map[string]int64{"n0/x": 3, "n1/x": 2, "n2/x": 2} {
		if got := values(t, c, key)[int32(key[1]-'0')]; got != want {
			t.Errorf("%s = %d, want %d (the aborted transaction must have left nothing)", key, got, want)
		}
	}
}

// Duplicate Prepare, Vote, Commit, Abort and Ack are harmless: with every
// message sent twice, and half of the copies held back so they arrive late
// and out of order, concurrent transfers keep the total, and every transfer
// a client saw committed is applied exactly once.
func TestFaultDuplicatesAreHarmless(t *testing.T) {
	l := testCluster(t, 3, actors.Timing{})
	const accounts, initial, transfers = 5, 100, 50
	acctA := func(i int) string { return fmt.Sprintf("n1/a%d", i) }
	acctB := func(i int) string { return fmt.Sprintf("n2/b%d", i) }
	var setup []messages.Op
	for i := range accounts {
		setup = append(setup, messages.Set(acctA(i), initial), messages.Set(acctB(i), initial))
	}
	if o, err := l.Node(0).Submit(setup...); err != nil || !o.Committed {
		t.Fatalf("setup: %v %v", o, err)
	}

	if err := l.SetFaults(bridge.Faults{Duplicate: 1, Delay: 0.5, MaxDelay: 20 * time.Millisecond, Seed: 42}); err != nil {
		t.Fatal(err)
	}
	var (
		wg         sync.WaitGroup
		mu         sync.Mutex
		net        = map[string]int64{} // expected change per account, from committed transfers
		committed  int
		aborted    []string
		unanswered []string
	)
	for i := range transfers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(i), 1))
			k := r.IntN(accounts)
			from, to := acctA(k), acctB(k)
			if r.IntN(2) == 0 {
				from, to = to, from
			}
			amount := int64(1 + r.IntN(100))
			o, err := l.Node(i%3).Submit(messages.AddFloor(from, -amount, 0), messages.Add(to, amount))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				unanswered = append(unanswered, err.Error())
			case o.Unknown:
				unanswered = append(unanswered, o.String())
			case o.Committed:
				committed++
				net[from] -= amount
				net[to] += amount
			default:
				aborted = append(aborted, o.Reason)
			}
		}()
	}
	wg.Wait()
	if err := l.SetFaults(bridge.Faults{}); err != nil {
		t.Fatal(err)
	}
	if len(unanswered) > 0 {
		t.Fatalf("%d transfers got no outcome (nothing is lost, so every one must): %v", len(unanswered), unanswered)
	}
	waitLocksFree(t, l)

	var total int64
	c := dial(t, l, 0)
	for i := range accounts {
		for _, key := range []string{acctA(i), acctB(i)} {
			got := values(t, c, key)[int32(key[1]-'0')]
			if got != initial+net[key] {
				t.Errorf("%s = %d, but the committed transfers add up to %d: a duplicate was applied twice, or a commit lost", key, got, initial+net[key])
			}
			if got < 0 {
				t.Errorf("%s = %d: below its floor", key, got)
			}
			total += got
		}
	}
	if total != 2*accounts*initial {
		t.Errorf("total %d, want %d", total, 2*accounts*initial)
	}
	if committed == 0 {
		t.Fatalf("no transfer committed; aborts: %v", aborted)
	}
	var dup, delayed uint64
	for i := range 3 {
		fs := l.Node(i).Bridge().FaultStats()
		dup += fs.Duplicated
		delayed += fs.Delayed
	}
	if dup == 0 || delayed == 0 {
		t.Errorf("no fault was injected: %d duplicated, %d delayed", dup, delayed)
	}
	t.Logf("%d committed, %d aborted; %d messages duplicated, %d copies delayed; first aborts: %q", committed, len(aborted), dup, delayed, aborted[:min(3, len(aborted))])
}

// A Local remembers its faults so that "a restarted node keeps its faults
// and partitions" (README) and SetFaults acts on "the nodes up now and those
// started later". A restarted node serves connections and runs recovery
// (re-driven Commits, in-doubt DecisionQueries) before cluster.Start
// returns, so the faults must reach its bridge before that
// (Config.BridgeReady), not after Start.
//
// Here node 1 drops everything it sends (Drop 1, node 0 none). Node 1 is
// crashed and restarted; while its Start is still finishing (held at its
// "node started" log line, as a slow scheduler could hold it), node 0 reads
// n1/x: node 1's ReadReply must be dropped, so the read must fail.
func TestRestartedNodeMeetsRememberedFaultsAtOnce(t *testing.T) {
	g := &startGate{node: "node-1", inc: 2, reached: make(chan struct{}), release: make(chan struct{})}
	var released atomic.Bool
	release := func() {
		if released.CompareAndSwap(false, true) {
			close(g.release)
		}
	}
	defer release()
	l, err := StartLocal(LocalConfig{
		Nodes: 2, DataDir: t.TempDir(), Timing: actors.Timing{VoteTimeout: 500 * time.Millisecond},
		Logger: &gateLogger{Logger: quietLogger(), g: g},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	if o, err := l.Node(0).Submit(messages.Set("n1/x", 5)); err != nil || !o.Committed {
		t.Fatalf("setup: %v %v", o, err)
	}
	if err := l.SetFaults(bridge.Faults{Drop: 1, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	if err := l.Node(0).Bridge().SetFaults(bridge.Faults{}); err != nil { // only node 1 drops
		t.Fatal(err)
	}
	if vals, err := l.Node(0).Read("n1/x"); err == nil {
		t.Fatalf("sanity: node 1 drops everything it sends, yet its read reply arrived: %v", vals)
	}

	if err := l.Crash(1); err != nil {
		t.Fatal(err)
	}
	restarted := make(chan error, 1)
	go func() { restarted <- l.RestartNode(1) }()
	select {
	case <-g.reached:
	case err := <-restarted:
		t.Fatalf("restart returned before its gate: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("restarted node 1 never logged that it started")
	}
	// Node 1 is serving now, with the same Local faults in force as before
	// the crash: Drop 1.
	var leaked []NodeValue
	for range 3 { // a request lost on node 0's reconnect would hide the leak: try again
		if vals, err := l.Node(0).Read("n1/x"); err == nil {
			leaked = vals
			break
		}
	}
	release()
	if err := <-restarted; err != nil {
		t.Fatal(err)
	}
	if leaked != nil {
		t.Errorf("restarted node 1 answered a read (%v) although Local.SetFaults(Drop: 1) is in force for it: its faults are applied only after Start returns, after it already serves and sends", leaked)
	}
	// Once Start has returned the faults are back.
	if vals, err := l.Node(0).Read("n1/x"); err == nil {
		t.Errorf("after the restart completed node 1 still answers: %v", vals)
	}
}

// With a third of all messages between nodes lost, for good, every
// Submit still ends (committed or aborted, within its client timeout), and
// once the faults are cleared every node settles: no lock, nothing in
// doubt, no txn actor, no commit without END. Transfers keep the total.
func TestLossyNetworkStillTerminatesAndSettles(t *testing.T) {
	l, _ := hookedCluster(t, 4, termTiming)
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	if err := l.SetFaults(bridge.Faults{Drop: 0.3, Seed: seed}); err != nil {
		t.Fatal(err)
	}
	const clients, each = 8, 12
	var committed, aborted, unknown atomic.Int64
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := mrand.New(mrand.NewSource(seed + int64(c))) // math/rand: the seeded sequence the test always used
			for range each {
				a, b := rng.Intn(4), rng.Intn(4)
				o, err := l.Node(c%4).Submit(messages.Add(fmt.Sprintf("n%d/acct%d", a, c%3), -1), messages.Add(fmt.Sprintf("n%d/acct%d", b, (c+1)%3), 1))
				switch {
				case err != nil || o.Unknown:
					unknown.Add(1)
				case o.Committed:
					committed.Add(1)
				default:
					aborted.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("committed %d, aborted %d, unknown %d", committed.Load(), aborted.Load(), unknown.Load())
	if err := l.SetFaults(bridge.Faults{}); err != nil {
		t.Fatal(err)
	}
	settledWithin(t, l, 15*time.Second, "after the faults are cleared")
	var total int64
	for n := range 4 {
		for a := range 3 {
			total += valueVia(t, l, 0, fmt.Sprintf("n%d/acct%d", n, a))
		}
	}
	if total != 0 {
		t.Fatalf("transfers made or lost money: total %d", total)
	}
}
