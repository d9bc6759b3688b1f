package bank

import (
	"errors"
	"fmt"
	"math/rand"
	"regexp"
	"strings"
	"sync"
	"testing"

	"twopc/messages"
)

// fakeCluster is an in-memory Client: each Submit applies its operations
// atomically, or not at all when a floor would break (told "aborted", like
// a participant voting no). decide, if set, overrides that for the
// transactions it cares about, to play a broken cluster.
type fakeCluster struct {
	mu     sync.Mutex
	kv     map[string]int64
	reads  []int // keys per Read call
	decide func(ops []messages.Op) (apply bool, o *messages.Outcome, err error, ok bool)
}

func newFake() *fakeCluster { return &fakeCluster{kv: map[string]int64{}} }

func (f *fakeCluster) Submit(via int, ops ...messages.Op) (*messages.Outcome, error) {
	f.mu.Lock()
	decide := f.decide
	f.mu.Unlock()
	if decide != nil {
		if apply, o, err, ok := decide(ops); ok {
			if apply {
				f.mu.Lock()
				f.apply(ops)
				f.mu.Unlock()
			}
			return o, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, op := range ops {
		if op.HasFloor && f.kv[op.Key]+op.Value < op.Floor {
			return &messages.Outcome{Reason: fmt.Sprintf("%s would fall below its floor %d", op.Key, op.Floor)}, nil
		}
	}
	f.apply(ops)
	return &messages.Outcome{Committed: true}, nil
}

func (f *fakeCluster) apply(ops []messages.Op) {
	for _, op := range ops {
		switch op.Kind {
		case messages.OpSet:
			f.kv[op.Key] = op.Value
		case messages.OpAdd:
			f.kv[op.Key] += op.Value
		case messages.OpDelete:
			delete(f.kv, op.Key)
		}
	}
}

func (f *fakeCluster) Read(keys ...string) (map[string]int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads = append(f.reads, len(keys))
	out := make(map[string]int64, len(keys))
	for _, k := range keys {
		out[k] = f.kv[k]
	}
	return out, nil
}

func (f *fakeCluster) set(decide func(ops []messages.Op) (bool, *messages.Outcome, error, bool)) {
	f.mu.Lock()
	f.decide = decide
	f.mu.Unlock()
}

// markerID is the transfer id of a transaction's marker ops, or 0 for
// another transaction (Setup's).
func markerID(ops []messages.Op) uint64 {
	if len(ops) != 4 {
		return 0
	}
	var id uint64
	i := strings.LastIndexByte(ops[2].Key, '-')
	fmt.Sscanf(ops[2].Key[i+1:], "%d", &id)
	return id
}

// setUp returns a bank over a fake cluster, its accounts set.
func setUp(t *testing.T, cfg Config) (*Bank, *fakeCluster) {
	t.Helper()
	b, f := New(cfg), newFake()
	if err := b.Setup(f); err != nil {
		t.Fatal(err)
	}
	return b, f
}

// runMany runs n random transfers, sequentially so the ids are in order.
func runMany(b *Bank, c Client, rng *rand.Rand, n int) {
	for i := 0; i < n; i++ {
		b.Run(c, b.Transfer(rng, rng.Intn(b.cfg.Nodes)))
	}
}

func TestNewDefaultsAndNames(t *testing.T) {
	b := New(Config{Nodes: 3, Prefix: "r7"})
	if c := b.Config(); c.AccountsPerNode != 4 || c.Initial != 1000 || c.MaxAmount != 100 {
		t.Fatalf("defaults: %+v", c)
	}
	acc := b.Accounts()
	if len(acc) != 12 || acc[0] != "n0/acct-0" || acc[11] != "n2/acct-3" {
		t.Fatalf("accounts: %v", acc)
	}
	if m := b.Marker(2, 17); m != "n2/m-r7-17" {
		t.Fatalf("marker %q", m)
	}
	if m := New(Config{Nodes: 2}).Marker(1, 5); m != "n1/m-5" {
		t.Fatalf("marker without prefix %q", m)
	}
	for _, k := range append(acc, b.Marker(2, 17)) {
		if own, err := messages.Owners(k, 3); err != nil || len(own) != 1 {
			t.Fatalf("key %s: owners %v, %v", k, own, err)
		}
	}
	for _, cfg := range []Config{{Nodes: 1}, {Nodes: 2, Initial: -1}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("New(%+v) did not panic", cfg)
				}
			}()
			New(cfg)
		}()
	}
}

func TestTransferCrossesNodes(t *testing.T) {
	b := New(Config{Nodes: 4, MaxAmount: 7, Prefix: "p"})
	rng := rand.New(rand.NewSource(1))
	seenAmount := map[int64]bool{}
	var last uint64
	for i := 0; i < 2000; i++ {
		tr := b.Transfer(rng, i%4)
		from, _ := nodeOf(tr.From)
		to, _ := nodeOf(tr.To)
		if from == to {
			t.Fatalf("transfer %+v stays on node %d", tr, from)
		}
		if tr.Amount < 1 || tr.Amount > 7 {
			t.Fatalf("amount %d out of [1,7]", tr.Amount)
		}
		if tr.ID <= last || tr.Via != i%4 {
			t.Fatalf("transfer %+v after id %d", tr, last)
		}
		last = tr.ID
		seenAmount[tr.Amount] = true
		ops := b.Ops(tr)
		want := []messages.Op{
			messages.AddFloor(tr.From, -tr.Amount, 0), messages.Add(tr.To, tr.Amount),
			messages.Set(b.Marker(from, tr.ID), 1), messages.Set(b.Marker(to, tr.ID), 1),
		}
		if fmt.Sprint(ops) != fmt.Sprint(want) {
			t.Fatalf("ops %v, want %v", ops, want)
		}
	}
	if len(seenAmount) != 7 {
		t.Fatalf("amounts seen: %v", seenAmount)
	}
}

// A correct cluster passes, with transfers aborted by the floor among the
// committed ones, and Check reads in chunks.
func TestCorrectClusterPasses(t *testing.T) {
	b, f := setUp(t, Config{Nodes: 4, AccountsPerNode: 2, Initial: 50, MaxAmount: 40})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		rng := rand.New(rand.NewSource(int64(w)))
		wg.Add(1)
		go func() { // concurrent Runs: the race detector watches the records
			defer wg.Done()
			runMany(b, f, rng, 100)
		}()
	}
	wg.Wait()
	if err := b.Check(f); err != nil {
		t.Fatal(err)
	}
	c, a, u := b.Counts()
	if c+a+u != 400 || c == 0 || a == 0 || u != 0 {
		t.Fatalf("counts committed=%d aborted=%d unknown=%d", c, a, u)
	}
	// 8 accounts and 800 markers: five reads, none above the chunk size.
	f.mu.Lock()
	reads := append([]int(nil), f.reads...)
	f.mu.Unlock()
	if len(reads) != 5 {
		t.Fatalf("reads of %v keys", reads)
	}
	for _, n := range reads {
		if n > ReadChunk {
			t.Fatalf("a read of %d keys", n)
		}
	}
}

// An outcome the client never learnt may have gone either way.
func TestUnknownOutcomeEitherWay(t *testing.T) {
	b, f := setUp(t, Config{Nodes: 3})
	f.set(func(ops []messages.Op) (bool, *messages.Outcome, error, bool) {
		id := markerID(ops)
		if id%3 == 0 { // the coordinator's log failed: it cannot tell
			return id%2 == 0, &messages.Outcome{Unknown: true, Reason: "log failed"}, nil, true
		}
		return id%2 == 0, nil, errors.New("connection reset"), true
	})
	runMany(b, f, rand.New(rand.NewSource(2)), 20)
	if err := b.Check(f); err != nil {
		t.Fatal(err)
	}
	if c, a, u := b.Counts(); c != 0 || a != 0 || u != 20 {
		t.Fatalf("counts %d/%d/%d", c, a, u)
	}
}

// A transfer still in flight counts as unknown: Check does not trip on
// money it moved before its client heard back.
func TestCheckDuringATransfer(t *testing.T) {
	b, f := setUp(t, Config{Nodes: 2})
	applied, release := make(chan struct{}), make(chan struct{})
	f.set(func(ops []messages.Op) (bool, *messages.Outcome, error, bool) {
		f.mu.Lock()
		f.apply(ops)
		f.mu.Unlock()
		close(applied)
		<-release
		return false, &messages.Outcome{Committed: true}, nil, true
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Run(f, b.Transfer(rand.New(rand.NewSource(3)), 0))
	}()
	<-applied
	err := b.Check(f)
	if _, _, u := b.Counts(); u != 1 {
		t.Errorf("in-flight transfer not counted unknown")
	}
	close(release)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Check(f); err != nil {
		t.Fatal(err)
	}
}

func TestCheckDetects(t *testing.T) {
	const victim = 5 // the transfer each case breaks
	cases := []struct {
		name string
		// decide breaks transfer victim as it is submitted; tamper breaks
		// the state afterwards. Either may be nil.
		decide func(ops []messages.Op) (bool, *messages.Outcome, error, bool)
		tamper func(b *Bank, f *fakeCluster, tr Transfer)
		want   []string
	}{
		{
			name: "half-applied transfer",
			tamper: func(b *Bank, f *fakeCluster, tr Transfer) {
				// The credit side never applied it: its marker and its money are missing.
				to, _ := nodeOf(tr.To)
				f.kv[b.Marker(to, tr.ID)] = 0
				f.kv[tr.To] -= tr.Amount
			},
			want: []string{"transfer 5 ", "half applied", "total"},
		},
		{
			name: "committed transfer not applied",
			decide: func(ops []messages.Op) (bool, *messages.Outcome, error, bool) {
				return false, &messages.Outcome{Committed: true}, nil, markerID(ops) == victim
			},
			want: []string{"transfer 5 ", "client saw committed", "not applied"},
		},
		{
			name: "aborted transfer applied",
			decide: func(ops []messages.Op) (bool, *messages.Outcome, error, bool) {
				return true, &messages.Outcome{Reason: "vote timeout"}, nil, markerID(ops) == victim
			},
			want: []string{"transfer 5 ", "client saw aborted: vote timeout", "applied on both"},
		},
		{
			name:   "money created",
			tamper: func(b *Bank, f *fakeCluster, tr Transfer) { f.kv["n1/acct-2"] += 3 },
			want:   []string{"account n1/acct-2", "(+3)", "total 12003, want 12000 (+3)"},
		},
		{
			name:   "update lost",
			tamper: func(b *Bank, f *fakeCluster, tr Transfer) { f.kv[tr.To] -= tr.Amount },
			want:   []string{"applied transfers add up to", "total"},
		},
		{
			name: "update doubled",
			tamper: func(b *Bank, f *fakeCluster, tr Transfer) {
				f.kv[tr.From] -= tr.Amount
				f.kv[tr.To] += tr.Amount
			},
			want: []string{"account " + "n", "applied transfers add up to"},
		},
		{
			name: "account below its floor",
			tamper: func(b *Bank, f *fakeCluster, tr Transfer) {
				f.kv["n0/acct-0"] = -1
				f.kv["n0/acct-1"] += b.cfg.Initial + 1 // total kept
			},
			want: []string{"account n0/acct-0 = -1: below its floor 0"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, f := setUp(t, Config{Nodes: 3, Prefix: "x"})
			f.set(tc.decide)
			rng := rand.New(rand.NewSource(4))
			var tr Transfer
			for i := 0; i < 10; i++ {
				t1 := b.Transfer(rng, i%3)
				b.Run(f, t1)
				if t1.ID == victim {
					tr = t1
				}
			}
			if tc.tamper != nil {
				f.mu.Lock()
				tc.tamper(b, f, tr)
				f.mu.Unlock()
			}
			err := b.Check(f)
			if err == nil {
				t.Fatal("Check passed")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// Many violations: all counted, the first 20 shown.
func TestCheckReportIsBounded(t *testing.T) {
	b, f := setUp(t, Config{Nodes: 2})
	f.set(func(ops []messages.Op) (bool, *messages.Outcome, error, bool) {
		id := markerID(ops)
		return false, &messages.Outcome{Committed: true}, nil, id > 0
	})
	runMany(b, f, rand.New(rand.NewSource(5)), 50)
	err := b.Check(f)
	if err == nil {
		t.Fatal("Check passed")
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "bank check: 50 violations over 50 transfers (first 20 shown):") {
		t.Fatalf("head: %s", strings.SplitN(msg, "\n", 2)[0])
	}
	if n := len(regexp.MustCompile(`(?m)^  transfer \d+ `).FindAllString(msg, -1)); n != 20 {
		t.Fatalf("%d violations listed:\n%s", n, msg)
	}
}

func TestSetupRetriesThenGivesUp(t *testing.T) {
	old := setupPause
	setupPause = 0
	defer func() { setupPause = old }()

	b, f := New(Config{Nodes: 2, Initial: 7}), newFake()
	attempts := 0
	f.set(func(ops []messages.Op) (bool, *messages.Outcome, error, bool) {
		attempts++
		switch attempts {
		case 1:
			return false, &messages.Outcome{Reason: "key n0/acct-1 is locked"}, nil, true
		case 2:
			return false, nil, errors.New("connection refused"), true
		case 3:
			return false, &messages.Outcome{Unknown: true, Reason: "log failed"}, nil, true
		}
		return false, nil, nil, false
	})
	if err := b.Setup(f); err != nil {
		t.Fatal(err)
	}
	if err := b.Check(f); err != nil {
		t.Fatal(err)
	}
	if f.kv["n1/acct-3"] != 7 {
		t.Fatalf("accounts %v", f.kv)
	}

	f.set(func(ops []messages.Op) (bool, *messages.Outcome, error, bool) {
		return false, &messages.Outcome{Reason: "no"}, nil, true
	})
	err := b.Setup(f)
	if err == nil || !strings.Contains(err.Error(), "node 0") || !strings.Contains(err.Error(), "aborted: no") {
		t.Fatalf("Setup that never commits: %v", err)
	}
}

type failingReads struct{ *fakeCluster }

func (failingReads) Read(keys ...string) (map[string]int64, error) {
	return nil, errors.New("node 2 did not answer")
}

func TestCheckReportsReadErrors(t *testing.T) {
	b, f := setUp(t, Config{Nodes: 3})
	err := b.Check(failingReads{f})
	if err == nil || !strings.Contains(err.Error(), "node 2 did not answer") {
		t.Fatalf("got %v", err)
	}
}
