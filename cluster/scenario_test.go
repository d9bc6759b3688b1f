package cluster

import (
	"fmt"
	"math"
	"math/rand"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"twopc/actors"
	"twopc/messages"
)

func TestHappyPath(t *testing.T) {
	l := testCluster(t, 4, actors.Timing{})
	c := dial(t, l, 0)
	mustCommit(t, c, messages.Add("value", 1))
	wantEverywhere(t, c, "value", 4, 1)

	// Keys on three different nodes, in one transaction.
	mustCommit(t, c, messages.Set("n1/a", 10), messages.Set("n2/b", 20), messages.Add("n3/c", -5))
	for key, want := range map[string]int64{"n1/a": 10, "n2/b": 20, "n3/c": -5} {
		if got := values(t, dial(t, l, 2), key); len(got) != 1 || got[int32(key[1]-'0')] != want {
			t.Fatalf("%s = %v, want %d on its owner", key, got, want)
		}
	}
	// One read of several keys: one entry per key per owner, in the order asked.
	vals, err := c.Read("n3/c", "value", "n1/a")
	if err != nil {
		t.Fatal(err)
	}
	want := []NodeValue{{"n3/c", 3, -5}, {"value", 0, 1}, {"value", 1, 1}, {"value", 2, 1}, {"value", 3, 1}, {"n1/a", 1, 10}}
	if fmt.Sprint(vals) != fmt.Sprint(want) {
		t.Fatalf("read of three keys: %v, want %v", vals, want)
	}
	mustCommit(t, c, messages.Delete("n1/a"))
	if got := values(t, c, "n1/a"); got[1] != 0 {
		t.Fatalf("deleted key reads %v", got)
	}
}

// The seed's demo: four sequential transactions, each coordinated by another
// node, and then a fifth.
func TestSequentialTransactions(t *testing.T) {
	l := testCluster(t, 4, actors.Timing{})
	seen := map[messages.TxID]bool{}
	for i, via := range []int{0, 1, 3, 2, 0} {
		tx := mustCommit(t, dial(t, l, via), messages.Add("value", 1))
		if seen[tx] || tx.Node != int32(via) {
			t.Fatalf("transaction %d via node %d got id %v (seen before: %v)", i, via, tx, seen[tx])
		}
		seen[tx] = true
		wantEverywhere(t, dial(t, l, via), "value", 4, int64(i+1))
	}
}

func TestAbortWhenParticipantRefuses(t *testing.T) {
	l := testCluster(t, 4, actors.Timing{})
	c := dial(t, l, 0)
	mustCommit(t, c, messages.Set("n1/x", 1), messages.Set("n2/y", 2), messages.Set("n3/z", 3))
	// The holder is younger than any transaction the test begins: those
	// are refused at once rather than made to wait for it.
	release := holdLock(t, l, 2, math.MaxInt64, messages.Set("n2/y", 99))

	o, err := c.Submit(messages.Set("n1/x", 10), messages.Set("n2/y", 20), messages.Set("n3/z", 30))
	if err != nil {
		t.Fatal(err)
	}
	if o.Committed || !strings.Contains(o.Reason, "node 2 voted no") || !strings.Contains(o.Reason, "n2/y is locked") {
		t.Fatalf("want abort naming node 2's lock, got %v", o)
	}
	// A read of n2/y waits for the blocker's decision (it may have been told
	// "committed" elsewhere), so release it first.
	release()
	waitLocksFree(t, l)
	// Unchanged everywhere: the yes-voters were told to abort.
	for key, want := range map[string]int64{"n1/x": 1, "n2/y": 2, "n3/z": 3} {
		if got := values(t, c, key); got[int32(key[1]-'0')] != want {
			t.Fatalf("%s = %v after abort, want %d", key, got, want)
		}
	}
	mustCommit(t, c, messages.Set("n2/y", 20))
}

func TestRecoveryAfterRestart(t *testing.T) {
	l := testCluster(t, 4, actors.Timing{})
	c := dial(t, l, 0)
	for i := 0; i < 3; i++ {
		mustCommit(t, c, messages.Add("value", 1), messages.Set("n2/k", int64(i)))
	}
	if err := l.StopNode(2); err != nil {
		t.Fatal(err)
	}
	if err := l.RestartNode(2); err != nil {
		t.Fatal(err)
	}
	wantEverywhere(t, c, "value", 4, 3)
	if got := values(t, c, "n2/k"); got[2] != 2 {
		t.Fatalf("n2/k = %v after restart, want 2", got)
	}
	// The restarted node coordinates with a new incarnation: ids do not repeat.
	before := l.Node(2).Incarnation()
	tx := mustCommit(t, dial(t, l, 2), messages.Add("value", 1))
	if tx.Incarnation != before || before < 2 {
		t.Fatalf("restarted node's transaction %v, incarnation %d", tx, before)
	}
	wantEverywhere(t, c, "value", 4, 4)
}

func TestCoordinatorAbortsWhenParticipantIsDown(t *testing.T) {
	timeout := 300 * time.Millisecond
	l := testCluster(t, 4, actors.Timing{VoteTimeout: timeout})
	c := dial(t, l, 0)
	mustCommit(t, c, messages.Add("value", 1))
	if err := l.StopNode(3); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	o, err := c.Submit(messages.Add("value", 1))
	if err != nil {
		t.Fatal(err)
	}
	if o.Committed || !strings.Contains(o.Reason, "vote timeout: no vote from node(s) 3") {
		t.Fatalf("want vote timeout naming node 3, got %v", o)
	}
	if waited := time.Since(start); waited < timeout {
		t.Fatalf("aborted after %v, before the %v timeout", waited, timeout)
	}
	for i := 0; i < 3; i++ {
		vals, err := l.Node(i).Read("n" + fmt.Sprint(i) + "/probe")
		if err != nil || len(vals) != 1 {
			t.Fatalf("node %d read: %v %v", i, vals, err)
		}
	}
	// Nodes 0-2 voted yes and were told to abort: value unchanged, locks free.
	waitLocksFree(t, l)
	for i := 0; i < 3; i++ {
		v, _ := l.Node(i).readLocal("value")
		if v != 1 {
			t.Fatalf("node %d value = %d after the abort, want 1", i, v)
		}
	}
}

func TestDisjointKeysCommitConcurrently(t *testing.T) {
	l := testCluster(t, 4, actors.Timing{})
	clients := make([]*Client, 4)
	for i := range clients {
		clients[i] = dial(t, l, i)
	}
	const n = 64
	var wg sync.WaitGroup
	outcomes := make([]*messages.Outcome, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			// Each transaction touches its own keys on two nodes.
			outcomes[i], errs[i] = clients[i%4].Submit(
				messages.Set(fmt.Sprintf("n%d/k%d", i%4, i), int64(i)),
				messages.Add(fmt.Sprintf("n%d/k%d", (i+1)%4, i), int64(i)))
		}(i)
	}
	wg.Wait()
	for i := 0; i < n; i++ {
		if errs[i] != nil || !outcomes[i].Committed {
			t.Fatalf("transaction %d on disjoint keys: %v %v", i, outcomes[i], errs[i])
		}
	}
	for i := 0; i < n; i++ {
		if got := values(t, clients[0], fmt.Sprintf("n%d/k%d", i%4, i)); got[int32(i%4)] != int64(i) {
			t.Fatalf("k%d = %v", i, got)
		}
	}
}

// A transaction that finds its key held by an older, undecided one waits
// for it instead of failing, holding nothing meanwhile; when the holder
// aborts, the waiter commits. The two never both hold the key.
func TestYoungerWriterWaitsForOlderHolder(t *testing.T) {
	l := testCluster(t, 4, actors.Timing{VoteTimeout: 5 * time.Second})
	c := dial(t, l, 2)
	release := holdLock(t, l, 1, 0, messages.Set("n1/k", 1)) // begun at 0: older than anything
	done := make(chan *messages.Outcome, 1)
	go func() {
		o, err := c.Submit(messages.Set("n1/k", 2), messages.Set("n2/y", 2))
		if err != nil {
			t.Error(err)
		}
		done <- o
	}()
	// The waiter is parked at node 1 and has no answer while the holder is undecided.
	waitStatus(t, l, 1, "second writer never waited at node 1", func(st *actors.ParticipantStatus) bool { return st.Waiting == 1 })
	select {
	case o := <-done:
		t.Fatalf("second writer finished while the older holder was undecided: %v", o)
	default:
	}
	release()
	o := <-done
	if o == nil || !o.Committed {
		t.Fatalf("second writer after the holder aborted: %v", o)
	}
	if got := values(t, c, "n1/k")[1]; got != 2 {
		t.Fatalf("n1/k = %d, want the waiter's 2 (the holder aborted)", got)
	}
}

// Two client transactions on the same key, the first kept undecided by an
// unreachable participant: they never both commit, and the first one's
// abort is complete.
func TestConflictingTransactionsNeverBothCommit(t *testing.T) {
	l := testCluster(t, 4, actors.Timing{VoteTimeout: time.Second})
	a, b := dial(t, l, 0), dial(t, l, 2)
	if err := l.StopNode(3); err != nil {
		t.Fatal(err)
	}
	first := make(chan *messages.Outcome, 1)
	go func() {
		o, err := a.Submit(messages.Set("n1/k", 1), messages.Set("n3/x", 1))
		if err != nil {
			t.Error(err)
		}
		first <- o
	}()
	waitStatus(t, l, 1, "first transaction never locked n1/k", func(st *actors.ParticipantStatus) bool { return st.LocksHeld == 1 })
	second, err := b.Submit(messages.Set("n1/k", 2), messages.Set("n2/y", 2))
	if err != nil {
		t.Fatal(err)
	}
	o := <-first
	if o == nil || o.Committed {
		t.Fatalf("first transaction could not reach node 3 and still: %v", o)
	}
	k, y := values(t, b, "n1/k")[1], values(t, b, "n2/y")[2]
	if second.Committed {
		if k != 2 || y != 2 {
			t.Fatalf("second committed but n1/k=%d n2/y=%d", k, y)
		}
	} else if k != 0 || y != 0 {
		t.Fatalf("both aborted but n1/k=%d n2/y=%d", k, y)
	}
	t.Logf("first: %v; second: %v", o, second)
}

// Racing writers of one key, each also writing a key of its own elsewhere:
// whatever commits is applied whole, and the contested key holds the value
// of a writer that committed.
func TestRacingWritersStayAtomic(t *testing.T) {
	l := testCluster(t, 4, actors.Timing{})
	a, b := dial(t, l, 0), dial(t, l, 3)
	outcomes := map[string]int{}
	for round := 0; round < 40; round++ {
		key := fmt.Sprintf("n%d/c%d", round%4, round)
		sideA, sideB := fmt.Sprintf("n%d/a%d", (round+1)%4, round), fmt.Sprintf("n%d/b%d", (round+2)%4, round)
		var oa, ob *messages.Outcome
		var ea, eb error
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); oa, ea = a.Submit(messages.Set(key, 1), messages.Set(sideA, 1)) }()
		go func() { defer wg.Done(); ob, eb = b.Submit(messages.Set(key, 2), messages.Set(sideB, 1)) }()
		wg.Wait()
		if ea != nil || eb != nil {
			t.Fatal(ea, eb)
		}
		got := values(t, a, key)[int32(round%4)]
		gotA := values(t, a, sideA)[int32((round+1)%4)]
		gotB := values(t, a, sideB)[int32((round+2)%4)]
		if (gotA == 1) != oa.Committed || (gotB == 1) != ob.Committed {
			t.Fatalf("round %d: outcomes %v / %v but side keys %d / %d", round, oa, ob, gotA, gotB)
		}
		switch {
		case oa.Committed && ob.Committed:
			outcomes["both, one after the other"]++
			if got != 1 && got != 2 {
				t.Fatalf("round %d: both committed but %s = %d", round, key, got)
			}
		case oa.Committed && got != 1, ob.Committed && got != 2:
			t.Fatalf("round %d: %v / %v but %s = %d", round, oa, ob, key, got)
		case !oa.Committed && !ob.Committed && got != 0:
			t.Fatalf("round %d: both aborted but %s = %d", round, key, got)
		case oa.Committed || ob.Committed:
			outcomes["one"]++
		default:
			outcomes["neither"]++
		}
	}
	t.Logf("40 rounds: %v", outcomes)
}

// TestBankKeepsItsTotal runs concurrent transfers between accounts spread
// over the nodes; each transfer debits with a floor of 0. Money is neither
// created nor lost, no account goes negative, and every committed transfer
// is accounted for.
func TestBankKeepsItsTotal(t *testing.T) {
	l := testCluster(t, 4, actors.Timing{})
	const accounts, initial = 8, 100
	acct := func(i int) string { return fmt.Sprintf("n%d/acct%d", i%4, i) }
	setup := dial(t, l, 0)
	var ops []messages.Op
	for i := 0; i < accounts; i++ {
		ops = append(ops, messages.Set(acct(i), initial))
	}
	mustCommit(t, setup, ops...)

	const workers, perWorker = 16, 25
	var wg sync.WaitGroup
	var mu sync.Mutex
	net := make([]int64, accounts) // expected change per account, from committed transfers
	committed, aborted := 0, 0
	for w := 0; w < workers; w++ {
		c := dial(t, l, w%4)
		rng := rand.New(rand.NewSource(int64(w)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWorker; i++ {
				from, to := rng.Intn(accounts), rng.Intn(accounts)
				if from == to {
					to = (to + 1) % accounts
				}
				amount := int64(1 + rng.Intn(60))
				o, err := c.Submit(messages.AddFloor(acct(from), -amount, 0), messages.Add(acct(to), amount))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if o.Committed {
					committed++
					net[from] -= amount
					net[to] += amount
				} else {
					aborted++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	waitLocksFree(t, l)
	var total int64
	for i := 0; i < accounts; i++ {
		v := values(t, setup, acct(i))[int32(i%4)]
		if v < 0 {
			t.Fatalf("%s = %d: below its floor", acct(i), v)
		}
		if v != initial+net[i] {
			t.Fatalf("%s = %d, but committed transfers add up to %d", acct(i), v, initial+net[i])
		}
		total += v
	}
	if total != accounts*initial {
		t.Fatalf("total %d, want %d", total, accounts*initial)
	}
	if committed == 0 {
		t.Fatal("no transfer committed")
	}
	t.Logf("%d transfers committed, %d aborted; total %d", committed, aborted, total)
}

func TestBadInputGetsClearErrors(t *testing.T) {
	l := testCluster(t, 4, actors.Timing{})
	c := dial(t, l, 1)
	cases := []struct {
		name string
		ops  []messages.Op
		want string
	}{
		{"no ops", nil, "no operations"},
		{"unknown node", []messages.Op{messages.Set("n9/x", 1)}, "unknown node 9"},
		{"malformed key", []messages.Op{messages.Set("a b", 1)}, `key "a b"`},
		{"empty key", []messages.Op{messages.Set("", 1)}, "empty key"},
		{"floor on set", []messages.Op{{Key: "k", Kind: messages.OpSet, HasFloor: true}}, "floor applies only to add"},
		{"unknown op", []messages.Op{{Key: "k", Kind: 42}}, "unknown operation"},
		{"overdraft", []messages.Op{messages.AddFloor("n0/poor", -1, 0), messages.Add("n1/rich", 1)}, "below its floor 0"},
		{"overflow", []messages.Op{messages.Set("n2/big", 1<<62), messages.Add("n2/big", 1<<62), messages.Add("n2/big", 1<<62)}, "overflows"},
	}
	for _, tc := range cases {
		o, err := c.Submit(tc.ops...)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if o.Committed || !strings.Contains(o.Reason, tc.want) {
			t.Errorf("%s: want an abort mentioning %q, got %v", tc.name, tc.want, o)
		}
	}
	// Nothing of it was applied anywhere.
	if got := values(t, c, "n1/rich")[1]; got != 0 {
		t.Fatalf("partial commit: n1/rich = %d", got)
	}
	if got := values(t, c, "n2/big")[2]; got != 0 {
		t.Fatalf("partial commit: n2/big = %d", got)
	}
	if _, err := c.Read("bad key"); err == nil || !strings.Contains(err.Error(), `key "bad key"`) {
		t.Fatalf("read of a malformed key: %v", err)
	}
	mustCommit(t, c, messages.Add("value", 1)) // and the cluster goes on
}

func TestSecondStartOnSamePortFails(t *testing.T) {
	l := testCluster(t, 2, actors.Timing{})
	_, err := Start(Config{ID: 0, Members: l.Members(), DataDir: t.TempDir(), Logger: hclog.NewNullLogger()})
	port := portOf(l.Members()[0])
	if err == nil || !strings.Contains(err.Error(), "port "+port) {
		t.Fatalf("want an error naming port %s, got %v", port, err)
	}
	// The running node is unharmed.
	mustCommit(t, dial(t, l, 0), messages.Add("value", 1))
}

// A node's data belongs to the cluster that wrote it: keys are placed by a
// hash over the members, so a restart with another cluster size is refused
// with the reason, and nothing is touched.
func TestRestartWithAnotherClusterSizeIsRefused(t *testing.T) {
	dir := t.TempDir()
	l, err := StartLocal(LocalConfig{Nodes: 4, DataDir: dir, Logger: hclog.NewNullLogger()})
	if err != nil {
		t.Fatal(err)
	}
	c, err := Dial(l.Members()[0])
	if err != nil {
		t.Fatal(err)
	}
	mustCommit(t, c, messages.Set("alice", 7))
	c.Close()
	l.Stop()

	_, err = StartLocal(LocalConfig{Nodes: 2, DataDir: dir, Logger: hclog.NewNullLogger()})
	if err == nil || !strings.Contains(err.Error(), `holds the data of "node 0 of 4", but this is "node 0 of 2"`) {
		t.Fatalf("want a refusal naming both sizes, got %v", err)
	}
	l, err = StartLocal(LocalConfig{Nodes: 4, DataDir: dir, Logger: hclog.NewNullLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	c = dial(t, l, 3)
	if got := values(t, c, "alice"); len(got) != 1 {
		t.Fatalf("alice read from %v", got)
	} else {
		for _, v := range got {
			if v != 7 {
				t.Fatalf("alice = %d after the refused start, want 7", v)
			}
		}
	}
}
