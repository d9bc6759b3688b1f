package cluster

// Sixth review: liveness across nodes — things that should end but do not.
// Tests named TestReview6... that fail against the current code are
// findings (each says what should happen instead); the others pin liveness
// behaviour the review verified.

import (
	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"twopc/actors"
	"twopc/actors/actortest"
	"twopc/bridge"
	"twopc/messages"
)

// r6Cluster is a cluster of n nodes whose protocol steps go to hook (if set
// by the test, through the returned pointer).
func r6Cluster(t *testing.T, n int, timing actors.Timing) (*Local, *atomic.Pointer[func(actors.Step)]) {
	t.Helper()
	hook := new(atomic.Pointer[func(actors.Step)])
	l, err := StartLocal(LocalConfig{
		Nodes: n, DataDir: t.TempDir(), Timing: timing,
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

// r6WaitSettled waits until every node that is up has nothing left to
// finish (nodeBusy), failing after bound.
func r6WaitSettled(t *testing.T, l *Local, bound time.Duration, what string) {
	t.Helper()
	t.Logf("waiting: %s", what)
	settled(t, l, bound)
}

func r6Value(t *testing.T, l *Local, via int, key string) int64 {
	t.Helper()
	vals, err := l.Node(via).Read(key)
	if err != nil {
		t.Fatal(err)
	}
	return vals[0].Value
}

// r6Progress waits until the workload has submitted n more transactions:
// load measured in work done, not in time slept.
func r6Progress(t *testing.T, submitted *atomic.Int64, n int64) {
	t.Helper()
	from := submitted.Load()
	actortest.Eventually(t, 30*time.Second, func() string {
		if got := submitted.Load() - from; got < n {
			return fmt.Sprintf("%d of %d more transactions submitted", got, n)
		}
		return ""
	})
}

// r6WaitInFlight waits until node's coordinator runs want txn actors.
func r6WaitInFlight(t *testing.T, n *Node, want int) {
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

// ---------------------------------------------------------------------------
// Findings

// FINDING. Node.Stop ("cleanly: ... listener and connections closed",
// what cmd/node does on SIGTERM) with a client's Submit in flight: teardown
// closes the client's connection and stops the coordinator, whose txn
// actors die without answering; but net/rpc's ServeConn waits for the calls
// it is serving before it returns, and the call is clientService.Submit →
// Node.Submit, which now waits for an answer nobody will send until its
// clientTimeout (3 × VoteTimeout + 2 s: 8 s by default, minutes with a long
// vote timeout). teardown's server.wait() waits for it, so Stop hangs that
// long — with every client that was mid-Submit, the cluster's Local.Stop too.
//
// Should: Stop returns promptly; the Submits it cut short end at once with
// an error ("node stopping": no known outcome).
// Fix: close a "stopping" channel at the start of teardown and select on it
// in Node.Submit (as on cutCh), or have the coordinator answer its waiting
// clients when it stops.
func TestReview6StopReturnsWithAClientSubmitInFlight(t *testing.T) {
	l, _ := r6Cluster(t, 2, actors.Timing{VoteTimeout: 3 * time.Second}) // clientTimeout 11 s
	c, err := Dial(l.Members()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Node 1 never gets the Prepare: the transaction keeps collecting votes.
	if err := l.Partition(0, 1); err != nil {
		t.Fatal(err)
	}
	submitted := make(chan error, 1)
	go func() {
		_, err := c.Submit(messages.Set("n0/a", 1), messages.Set("n1/b", 1))
		submitted <- err
	}()
	r6WaitInFlight(t, l.Node(0), 1)

	stopped := make(chan error, 1)
	go func() { stopped <- l.StopNode(0) }()
	select {
	case <-stopped:
	case <-time.After(2500 * time.Millisecond):
		t.Errorf("Node.Stop has not returned: it waits for the in-flight client Submit, whose transaction it stopped, to time out")
		<-stopped // bounded by the client timeout
	}
	<-submitted // the client's connection was closed: it has an error at once
}

// FINDING (same cause, in-process). A Go caller of Node.Submit whose
// transaction is cut short by Node.Stop is never answered: it waits for its
// full client timeout, although the node is gone (PowerCut ends such waits
// at once through cutCh; a clean Stop has nothing alike).
//
// Should: Submit returns an error as soon as the node stops.
// Fix: as above.
func TestReview6InProcessSubmitEndsWhenItsNodeStops(t *testing.T) {
	l, _ := r6Cluster(t, 2, actors.Timing{VoteTimeout: 3 * time.Second}) // clientTimeout 11 s
	if err := l.Partition(0, 1); err != nil {
		t.Fatal(err)
	}
	n0 := l.Node(0)
	type result struct {
		o   *messages.Outcome
		err error
	}
	submitted := make(chan result, 1)
	go func() {
		o, err := n0.Submit(messages.Set("n0/a", 1), messages.Set("n1/b", 1))
		submitted <- result{o, err}
	}()
	r6WaitInFlight(t, n0, 1)
	if err := l.StopNode(0); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-submitted:
		if res.err == nil && !res.o.Unknown && res.o.Committed {
			t.Errorf("a transaction cut short by Stop reported committed: %v", res.o)
		}
	case <-time.After(2500 * time.Millisecond):
		t.Errorf("Node.Submit still waiting after its node stopped: it returns only at its client timeout")
		<-submitted
	}
}

// ---------------------------------------------------------------------------
// Pinned

// timing for the pinned scenarios: short clocks, so "long" is a second.
var r6Timing = actors.Timing{
	VoteTimeout:       time.Second,
	ClockSkew:         50 * time.Millisecond,
	ResendInterval:    20 * time.Millisecond,
	MaxResendInterval: 200 * time.Millisecond,
	InDoubtAfter:      100 * time.Millisecond,
	MaxQueryInterval:  400 * time.Millisecond,
}

// PINNED. The Commit of a transaction is lost in a partition between the
// coordinator and a participant that voted yes (and has no peer to ask:
// the coordinator's own node is the other participant, cut off too). The
// participant stays in doubt, locks held, for as long as the partition
// lasts — many Commit re-sends and queries, all at their capped pauses —
// and the coordinator keeps the transaction. Once healed, the participant
// settles, the coordinator writes END and forgets.
func TestReview6InDoubtAcrossAPartitionSettlesAfterHeal(t *testing.T) {
	l, hook := r6Cluster(t, 3, r6Timing)
	if o, err := l.Node(0).Submit(messages.Set("n0/x", 1), messages.Set("n1/y", 1)); err != nil || !o.Committed {
		t.Fatalf("setup: %v %v", o, err)
	}
	r6WaitSettled(t, l, 10*time.Second, "setup")

	var fired atomic.Bool
	f := func(s actors.Step) {
		if s.Node == 0 && s.Kind == actors.StepCommitLogged && fired.CompareAndSwap(false, true) {
			if err := l.Partition(0, 1); err != nil {
				t.Error(err)
			}
		}
	}
	hook.Store(&f)
	o, err := l.Node(0).Submit(messages.Add("n0/x", 1), messages.Add("n1/y", 1))
	if err != nil || !o.Committed {
		t.Fatalf("want committed (the decision is durable before the cut takes effect), got %v %v", o, err)
	}
	hook.Store(nil)
	// Long, next to every clock: node 1 asks ten more times (each query
	// counted in its in-doubt entry, each lost to the partition) and stays
	// in doubt holding its lock all along.
	before := -1
	actortest.Eventually(t, 30*time.Second, func() string {
		st, err := l.Node(1).ParticipantStatus()
		if err != nil || len(st.Doubts) != 1 || st.LocksHeld != 1 {
			t.Fatalf("node 1 during the partition: %+v %v, want one transaction in doubt holding n1/y", st, err)
		}
		if before < 0 {
			before = st.Doubts[0].Asked
		}
		if n := st.Doubts[0].Asked - before; n < 10 {
			return fmt.Sprintf("node 1 asked %d more times, want 10", n)
		}
		return ""
	})
	if cs, _ := l.Node(0).CoordinatorStatus(); cs.InFlight != 1 {
		t.Fatalf("coordinator during the partition: %+v, want the transaction still driven", cs)
	}
	l.Heal()
	r6WaitSettled(t, l, 5*time.Second, "after heal")
	if x, y := r6Value(t, l, 0, "n0/x"), r6Value(t, l, 0, "n1/y"); x != 2 || y != 2 {
		t.Fatalf("after heal n0/x = %d, n1/y = %d, want 2 and 2", x, y)
	}
}

// PINNED. The coordinator loses power just after logging COMMIT, and so
// does a participant that voted yes; the coordinator comes back and
// re-drives the commit while that participant stays down for long (its
// Commits queue at the bridge, which keeps redialling). Once the
// participant is back it learns the commit, acks, and the coordinator writes
// END and forgets: no commit without END, nothing in doubt anywhere.
func TestReview6RedrivenCommitEndsOnceALongDownParticipantReturns(t *testing.T) {
	l, hook := r6Cluster(t, 3, r6Timing)
	if o, err := l.Node(0).Submit(messages.Set("n1/x", 10), messages.Set("n2/y", 10)); err != nil || !o.Committed {
		t.Fatalf("setup: %v %v", o, err)
	}
	r6WaitSettled(t, l, 10*time.Second, "setup")

	cut := make(chan struct{})
	var fired atomic.Bool
	f := func(s actors.Step) {
		if s.Node == 0 && s.Kind == actors.StepCommitLogged && fired.CompareAndSwap(false, true) {
			l.Node(2).PowerCut()
			l.Node(0).PowerCut()
			close(cut)
		}
	}
	hook.Store(&f)
	n0 := l.Node(0)
	submitted := make(chan struct{})
	go func() {
		defer close(submitted)
		_, _ = n0.Submit(messages.Add("n1/x", 1), messages.Add("n2/y", 1)) // its client dies with node 0
	}()
	select {
	case <-cut:
	case <-time.After(10 * time.Second):
		t.Fatal("the transaction never logged its commit decision")
	}
	hook.Store(nil)
	<-submitted
	for _, i := range []int{2, 0} {
		if err := l.Crash(i); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.RestartNode(0); err != nil {
		t.Fatal(err)
	}
	// Node 2 stays down for long: the re-driven commit keeps going.
	for range 10 {
		time.Sleep(r6Timing.MaxResendInterval + 100*time.Millisecond)
		if cs, err := l.Node(0).CoordinatorStatus(); err != nil || cs.InFlight != 1 {
			t.Fatalf("coordinator while node 2 is down: %+v %v, want the re-driven commit in flight", cs, err)
		}
	}
	if err := l.RestartNode(2); err != nil {
		t.Fatal(err)
	}
	r6WaitSettled(t, l, 10*time.Second, "after node 2 is back")
	if x, y := r6Value(t, l, 0, "n1/x"), r6Value(t, l, 0, "n2/y"); x != 11 || y != 11 {
		t.Fatalf("n1/x = %d, n2/y = %d, want 11 and 11", x, y)
	}
}

// PINNED. With a third of all messages between nodes lost, for good, every
// Submit still ends (committed or aborted, within its client timeout), and
// once the faults are cleared every node settles: no lock, nothing in
// doubt, no txn actor, no commit without END. Transfers keep the total.
func TestReview6LossyNetworkStillTerminatesAndSettles(t *testing.T) {
	l, _ := r6Cluster(t, 4, r6Timing)
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
			rng := rand.New(rand.NewSource(seed + int64(c)))
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
	r6WaitSettled(t, l, 15*time.Second, "after the faults are cleared")
	var total int64
	for n := range 4 {
		for a := range 3 {
			total += r6Value(t, l, 0, fmt.Sprintf("n%d/acct%d", n, a))
		}
	}
	if total != 0 {
		t.Fatalf("transfers made or lost money: total %d", total)
	}
}

// PINNED. Node.Stop under load, with in-process callers only, returns; the
// callers of the other nodes get answers; the node restarts and everything
// settles. Local.Stop also returns with a node whose power was cut but that
// was never Crash()ed.
func TestReview6StopUnderLoadAndWithAPowerCutNode(t *testing.T) {
	l, _ := r6Cluster(t, 4, r6Timing)
	var stop atomic.Bool
	var submitted atomic.Int64
	var wg sync.WaitGroup
	for c := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			via := []int{0, 2, 3}[c%3] // node 1 is stopped under them
			for i := 0; !stop.Load(); i++ {
				n := l.Node(via)
				_, _ = n.Submit(messages.Add(fmt.Sprintf("n1/k%d", c), 1), messages.Add(fmt.Sprintf("n%d/k%d", via, c), 1))
				submitted.Add(1)
			}
		}()
	}
	r6Progress(t, &submitted, 40) // under load
	stopped := make(chan error, 1)
	go func() { stopped <- l.StopNode(1) }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(10 * time.Second):
		t.Error("Node.Stop under load has not returned")
		<-stopped
	}
	r6Progress(t, &submitted, 20) // the callers keep getting answers with node 1 stopped
	stop.Store(true)
	wg.Wait()
	if err := l.RestartNode(1); err != nil {
		t.Fatal(err)
	}
	r6WaitSettled(t, l, 15*time.Second, "after node 1 restarted")

	l.Node(3).PowerCut()
	done := make(chan error, 1)
	go func() { done <- l.Stop() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Error("Local.Stop with a power-cut node has not returned")
		<-done
	}
}

// PINNED. Bounded memory after a burst with crashes: transfers through
// every node while one participant loses power and restarts three times in
// a row; once the traffic stops, every coordinator runs no txn actor, no
// participant holds a lock, a wait or anything in doubt, no log has a commit
// without END or an undecided PREPARED, and — RememberOutcomes later —
// no participant remembers a single outcome.
func TestReview6BurstWithCrashesLeavesNothingBehind(t *testing.T) {
	timing := r6Timing
	timing.RememberOutcomes = 300 * time.Millisecond // raised to VoteTimeout + 2 × ClockSkew
	l, _ := r6Cluster(t, 4, timing)
	var stop atomic.Bool
	var submitted atomic.Int64
	var wg sync.WaitGroup
	for c := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			via := []int{0, 1, 3}[c%3] // node 2 is the one that crashes
			for !stop.Load() {
				if n := l.Node(via); n != nil {
					_, _ = n.Submit(messages.Add(fmt.Sprintf("n2/k%d", c), -1), messages.Add(fmt.Sprintf("n%d/k%d", via, c), 1))
					submitted.Add(1)
				}
			}
		}()
	}
	for range 3 {
		r6Progress(t, &submitted, 30)
		l.Node(2).PowerCut()
		if err := l.Crash(2); err != nil {
			t.Fatal(err)
		}
		if err := l.RestartNode(2); err != nil {
			t.Fatal(err)
		}
	}
	r6Progress(t, &submitted, 30)
	stop.Store(true)
	wg.Wait()
	r6WaitSettled(t, l, 15*time.Second, "after the burst")
	actortest.Eventually(t, 10*time.Second, func() string {
		for i := range l.Members() {
			ps, err := l.Node(i).ParticipantStatus()
			if err != nil {
				return err.Error()
			}
			if ps.Remembered != 0 || ps.Reads != 0 || ps.Waiting != 0 {
				return fmt.Sprintf("node %d still remembers: %+v", i, ps)
			}
		}
		return ""
	})
	// The transfers kept the total.
	var total int64
	for c := range 8 {
		total += r6Value(t, l, 0, fmt.Sprintf("n2/k%d", c)) + r6Value(t, l, 0, fmt.Sprintf("n%d/k%d", []int{0, 1, 3}[c%3], c))
	}
	if total != 0 {
		t.Fatalf("money made or lost: total %d", total)
	}
}
