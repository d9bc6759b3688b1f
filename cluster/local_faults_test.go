package cluster

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
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
