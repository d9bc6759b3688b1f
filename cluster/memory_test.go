package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"twopc/actors"
	"twopc/actors/actortest"
	"twopc/messages"
)

// Bounded memory: a decided transaction is forgotten once nobody can ask
// about it, so what a node holds — in its roles, its log's fold and on disk
// — does not grow with the number of transactions it has run. (Heap figures
// come from `go run ./cmd/bench -txs N -memory`; tests do not time or weigh.)
func TestDecidedTransactionsAreForgotten(t *testing.T) {
	dir := t.TempDir()
	const snapEvery = 200
	l, err := StartLocal(LocalConfig{
		Nodes: 4, DataDir: dir, SnapshotEvery: snapEvery,
		Timing: actors.Timing{VoteTimeout: 2 * time.Second, ClockSkew: 10 * time.Millisecond, RememberOutcomes: 2020 * time.Millisecond},
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Off}),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })

	// 16 clients, each moving 1 back and forth between its own two keys on
	// two nodes: the key set stays the same however long it runs.
	run := func(perClient int) {
		var wg sync.WaitGroup
		for c := 0; c < 16; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				a, b := fmt.Sprintf("n%d/k%d", c%4, c), fmt.Sprintf("n%d/k%d", (c+1)%4, c)
				for i := 0; i < perClient; i++ {
					if o, err := l.Node(c%4).Submit(messages.Add(a, -1), messages.Add(b, 1)); err != nil || !o.Committed {
						t.Errorf("client %d: %v %v", c, o, err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	footprint := func(after int) map[string]int64 {
		actortest.Eventually(t, 10*time.Second, func() string {
			for i := range l.Members() {
				busy := nodeBusy(l.Node(i))
				ps, err := l.Node(i).ParticipantStatus()
				if err != nil {
					return err.Error()
				}
				if busy != "" || ps.Remembered != 0 || ps.Keys > 8 {
					return fmt.Sprintf("after %d transactions node %d still holds: %s; %+v", after, i, busy, ps)
				}
			}
			return ""
		})
		// Every decided transaction is gone from every role and from the
		// log's fold (nodeBusy); what is left on disk is one snapshot and the
		// segments written since it.
		sizes := map[string]int64{}
		for i := range l.Members() {
			entries, err := os.ReadDir(filepath.Join(dir, fmt.Sprintf("node-%d", i)))
			if err != nil {
				t.Fatal(err)
			}
			segs, snaps := 0, 0
			for _, e := range entries {
				info, err := e.Info()
				if err != nil {
					t.Fatal(err)
				}
				sizes[fmt.Sprintf("node-%d", i)] += info.Size()
				switch {
				case strings.HasPrefix(e.Name(), "wal-"):
					segs++
				case strings.HasPrefix(e.Name(), "snap-"):
					snaps++
				}
			}
			if segs > 2 || snaps > 1 {
				t.Errorf("after %d transactions node %d keeps %d segments and %d snapshots, want at most 2 and 1: %v", after, i, segs, snaps, entries)
			}
		}
		return sizes
	}

	run(50) // 800 transactions: every node has snapshotted several times
	first := footprint(800)
	run(150) // 2,400 more
	second := footprint(3200)
	// A snapshot holds the same 32 keys both times, and a segment at most
	// snapEvery records: four times the transactions, the same bound.
	limit := int64(snapEvery*512 + 64<<10)
	for node, size := range second {
		if size > limit {
			t.Errorf("%s: %d bytes on disk after 3,200 transactions (%d after 800), want at most %d", node, size, first[node], limit)
		}
	}
	t.Logf("bytes on disk per node after 800 transactions: %v; after 3,200: %v", first, second)
}

// Bounded memory after a burst with crashes: transfers through
// every node while one participant loses power and restarts three times in
// a row; once the traffic stops, every coordinator runs no txn actor, no
// participant holds a lock, a wait or anything in doubt, no log has a commit
// without END or an undecided PREPARED, and — RememberOutcomes later —
// no participant remembers a single outcome.
func TestBurstWithCrashesLeavesNothingBehind(t *testing.T) {
	timing := termTiming
	timing.RememberOutcomes = 1100 * time.Millisecond // VoteTimeout + 2 × ClockSkew, the least Validate allows
	l, _ := hookedCluster(t, 4, timing)
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
		waitProgress(t, &submitted, 30)
		l.Node(2).PowerCut()
		if err := l.Crash(2); err != nil {
			t.Fatal(err)
		}
		if err := l.RestartNode(2); err != nil {
			t.Fatal(err)
		}
	}
	waitProgress(t, &submitted, 30)
	stop.Store(true)
	wg.Wait()
	settledWithin(t, l, 15*time.Second, "after the burst")
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
		total += valueVia(t, l, 0, fmt.Sprintf("n2/k%d", c)) + valueVia(t, l, 0, fmt.Sprintf("n%d/k%d", []int{0, 1, 3}[c%3], c))
	}
	if total != 0 {
		t.Fatalf("money made or lost: total %d", total)
	}
}
