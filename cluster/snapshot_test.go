package cluster

import (
	"errors"
	"math/rand"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"twopc/internal/bank"
)

// totalReaders reads every account of b in one call, over and over, from n
// goroutines, until stopped: every read that returns must add up to the
// bank's total (a read that fails proves nothing and is only counted).
type totalReaders struct {
	wg           sync.WaitGroup
	stop         atomic.Bool
	good, failed atomic.Int64
	mu           sync.Mutex
	wrong        []error
}

func startTotalReaders(t *testing.T, b *bank.Bank, c bank.Client, n int) *totalReaders {
	r := &totalReaders{}
	t.Cleanup(func() { // also when the test ends early
		r.stop.Store(true)
		r.wg.Wait()
	})
	for i := 0; i < n; i++ {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			for !r.stop.Load() {
				err := b.CheckTotal(c)
				switch {
				case err == nil:
					r.good.Add(1)
				case errors.Is(err, bank.ErrReadFailed):
					r.failed.Add(1)
				default:
					r.mu.Lock()
					r.wrong = append(r.wrong, err)
					r.mu.Unlock()
				}
			}
		}()
	}
	return r
}

// finish stops the readers and fails t for every wrong total seen (the
// first few are shown).
func (r *totalReaders) finish(t *testing.T, what string) (good, failed int64) {
	t.Helper()
	r.stop.Store(true)
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, err := range r.wrong {
		if i == 5 {
			t.Errorf("%s: ... %d wrong totals in all", what, len(r.wrong))
			break
		}
		t.Errorf("%s: %v", what, err)
	}
	return r.good.Load(), r.failed.Load()
}

// Readers of every account, while transfers run through every node, never
// see a total other than the bank's: Node.Read of keys on several nodes is
// one snapshot.
func TestSnapshotReadSeesTheBankTotalWhileTransfersRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs transfers for a while")
	}
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	l, err := StartLocal(LocalConfig{
		Nodes: 4, DataDir: t.TempDir(), Timing: crashTiming,
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Off}),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	c := localBank{l}
	b := bank.New(bank.Config{Nodes: 4, AccountsPerNode: 3, Prefix: strconv.FormatInt(seed, 36)})
	if err := b.Setup(c); err != nil {
		t.Fatal(err)
	}
	readers := startTotalReaders(t, b, c, 4)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		rng := rand.New(rand.NewSource(seed + int64(w)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 60; i++ {
				b.Run(c, b.Transfer(rng, rng.Intn(4)))
			}
		}()
	}
	wg.Wait()
	good, failed := readers.finish(t, "read during transfers")
	committed, aborted, unknown := b.Counts()
	t.Logf("%d transfers committed, %d aborted, %d unknown; %d reads of every account right, %d failed", committed, aborted, unknown, good, failed)
	if good < 10 || committed < 10 {
		t.Fatalf("too little happened to prove anything: %d good reads, %d commits", good, committed)
	}
	settled(t, l, time.Minute)
	if err := b.Check(c); err != nil {
		t.Fatalf("bank invariant broken: %v", err)
	}
}
