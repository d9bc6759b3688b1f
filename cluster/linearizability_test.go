package cluster

import (
	"fmt"
	"math"
	"math/rand"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/hashicorp/go-hclog"

	"twopc/bridge"
	"twopc/messages"
)

// Linearizability of single-key operations (issue 15), checked by porcupine
// over histories recorded from an in-process cluster: three hot keys on
// three nodes, 16 clients, 10% sets and deletes, 50% adds, 40% reads, each
// through a node picked at random (so every node coordinates and reads).
//
// A write whose outcome its client never learned (an error, or an Outcome
// marked Unknown) may have taken effect at any moment after it was called,
// or never: it is recorded without a return (Return = MaxInt64), which
// lets the checker place it anywhere after its call — at the very end, if
// it had no visible effect. A write told "aborted" has no effect; a read
// that failed tells nothing and is left out.

type linOpKind uint8

const (
	linRead linOpKind = iota
	linAdd
	linSet
	linDelete
)

type linInput struct {
	key   string
	kind  linOpKind
	value int64
}

type linOutput struct {
	committed bool  // a write: its client was told committed, or does not know
	value     int64 // a read: the value returned
}

// linModel is one key's sequential specification: an int64 that adds, sets
// and deletes change and reads return. Partitioned by key.
var linModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(linInput).key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() interface{} { return int64(0) },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		v, in, out := state.(int64), input.(linInput), output.(linOutput)
		switch in.kind {
		case linRead:
			return out.value == v, v
		}
		if !out.committed {
			return true, v // aborted: no effect
		}
		switch in.kind {
		case linAdd:
			return true, v + in.value
		case linSet:
			return true, in.value
		default: // delete
			return true, int64(0)
		}
	},
	DescribeOperation: func(input, output interface{}) string {
		in, out := input.(linInput), output.(linOutput)
		switch in.kind {
		case linRead:
			return fmt.Sprintf("read %s -> %d", in.key, out.value)
		case linAdd:
			return fmt.Sprintf("add %s %+d (%v)", in.key, in.value, out.committed)
		case linSet:
			return fmt.Sprintf("set %s %d (%v)", in.key, in.value, out.committed)
		default:
			return fmt.Sprintf("delete %s (%v)", in.key, out.committed)
		}
	},
}

// linHistory records operations from many goroutines.
type linHistory struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
	// counts, for the log and to make sure the run proved something
	reads, writes, unknown, failedReads int
}

func (h *linHistory) now() int64 { return int64(time.Since(h.start)) }

func (h *linHistory) add(op porcupine.Operation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, op)
}

// opCounter counts operations started, and lets a test wait until a
// number of them have: moments of a run measured in work, not time.
type opCounter struct {
	mu   sync.Mutex
	cond sync.Cond
	n    int64
}

func newOpCounter() *opCounter {
	c := &opCounter{}
	c.cond.L = &c.mu
	return c
}

func (c *opCounter) Add(d int64) {
	c.mu.Lock()
	c.n += d
	c.mu.Unlock()
	c.cond.Broadcast()
}

func (c *opCounter) waitFor(n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.n < n {
		c.cond.Wait()
	}
}

// linClient runs ops operations against l, through random nodes that are up.
func linClient(l *Local, h *linHistory, id int, rng *rand.Rand, keys []string, ops int, done *opCounter) {
	for i := 0; i < ops; i++ {
		done.Add(1)
		n := l.Node(rng.Intn(len(l.Members())))
		if n == nil {
			continue // down: pick another next time
		}
		key := keys[rng.Intn(len(keys))]
		in := linInput{key: key}
		switch r := rng.Intn(100); {
		case r < 5:
			in.kind, in.value = linSet, int64(rng.Intn(1000))
		case r < 10:
			in.kind = linDelete
		case r < 60:
			in.kind, in.value = linAdd, int64(rng.Intn(2001)-1000)
		default:
			in.kind = linRead
		}
		call := h.now()
		if in.kind == linRead {
			vals, err := n.Read(key)
			ret := h.now()
			h.mu.Lock()
			if err != nil {
				h.failedReads++
				h.mu.Unlock()
				continue
			}
			h.reads++
			h.mu.Unlock()
			h.add(porcupine.Operation{ClientId: id, Input: in, Call: call, Output: linOutput{value: vals[0].Value}, Return: ret})
			continue
		}
		var op messages.Op
		switch in.kind {
		case linAdd:
			op = messages.Add(key, in.value)
		case linSet:
			op = messages.Set(key, in.value)
		default:
			op = messages.Delete(key)
		}
		o, err := n.Submit(op)
		ret := h.now()
		h.mu.Lock()
		h.writes++
		if err != nil || o.Unknown {
			h.unknown++
			ret = math.MaxInt64 // may take effect at any time after its call, or never
		}
		h.mu.Unlock()
		h.add(porcupine.Operation{ClientId: id, Input: in, Call: call, Output: linOutput{committed: err != nil || o.Unknown || o.Committed}, Return: ret})
	}
}

// checkLinearizable fails t unless porcupine finds h linearizable.
func checkLinearizable(t *testing.T, h *linHistory) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	t.Logf("history: %d operations (%d reads, %d writes of which %d with unknown outcome; %d reads failed)",
		len(h.ops), h.reads, h.writes, h.unknown, h.failedReads)
	if h.reads < 50 || h.writes < 50 {
		t.Fatalf("too few operations to prove anything: %d reads, %d writes", h.reads, h.writes)
	}
	res, info := porcupine.CheckOperationsVerbose(linModel, h.ops, 2*time.Minute)
	switch res {
	case porcupine.Ok:
		return
	case porcupine.Unknown:
		t.Fatalf("porcupine could not decide within its time limit (%d operations)", len(h.ops))
	}
	// Illegal: show, for each key, the longest order the checker could
	// build and the operations it could not place after it.
	for i, part := range info.PartialLinearizationsOperations() {
		longest := []porcupine.Operation{}
		for _, lin := range part {
			if len(lin) > len(longest) {
				longest = lin
			}
		}
		if len(longest) == 0 {
			continue
		}
		tail := longest[max(0, len(longest)-8):]
		var desc []string
		for _, op := range tail {
			desc = append(desc, fmt.Sprintf("[%.1fms..%s] %s", float64(op.Call)/1e6, retString(op.Return), linModel.DescribeOperation(op.Input, op.Output)))
		}
		t.Logf("partition %d: longest linearizable prefix has %d operations; its last ones: %v", i, len(longest), desc)
	}
	t.Fatal("history is not linearizable")
}

func retString(r int64) string {
	if r == math.MaxInt64 {
		return "?"
	}
	return fmt.Sprintf("%.1fms", float64(r)/1e6)
}

// linKeys are the three hot keys, one on each of nodes 0-2.
var linKeys = []string{"n0/hot", "n1/hot", "n2/hot"}

func startLinCluster(t *testing.T) *Local {
	t.Helper()
	l, err := StartLocal(LocalConfig{
		Nodes: 4, DataDir: t.TempDir(), Timing: crashTiming,
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Off}),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	return l
}

const linClients, linOpsPerClient = 16, 40

func TestLinearizableSingleKeyOperations(t *testing.T) {
	if testing.Short() {
		t.Skip("records a history of 640 operations")
	}
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	l := startLinCluster(t)
	h := &linHistory{start: time.Now()}
	var wg sync.WaitGroup
	done := newOpCounter()
	for c := 0; c < linClients; c++ {
		rng := rand.New(rand.NewSource(seed + int64(c)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			linClient(l, h, c, rng, linKeys, linOpsPerClient, done)
		}()
	}
	wg.Wait()
	checkLinearizable(t, h)
}

// The same workload while the bridges delay, duplicate, reorder and drop
// messages, a link is cut, and a node loses power and is restarted.
func TestLinearizableSingleKeyOperationsUnderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("records a history under faults")
	}
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewSource(seed))
	l := startLinCluster(t)
	if err := l.SetFaults(bridge.Faults{Drop: 0.01, Duplicate: 0.1, Delay: 0.3, MaxDelay: 20 * time.Millisecond, Reorder: 0.1, Seed: seed}); err != nil {
		t.Fatal(err)
	}
	h := &linHistory{start: time.Now()}
	var wg sync.WaitGroup
	done := newOpCounter()
	for c := 0; c < linClients; c++ {
		crng := rand.New(rand.NewSource(seed + int64(c) + 1))
		wg.Add(1)
		go func() {
			defer wg.Done()
			linClient(l, h, c, crng, linKeys, linOpsPerClient, done)
		}()
	}
	// Moments measured in operations started, not in time.
	total := int64(linClients * linOpsPerClient)
	waitOps := done.waitFor
	a := rng.Intn(3)
	b := (a + 1 + rng.Intn(3)) % 4
	waitOps(total / 8)
	if err := l.Partition(a, b); err != nil {
		t.Fatal(err)
	}
	t.Logf("partition %d-%d", a, b)
	waitOps(total / 4)
	victim := rng.Intn(4)
	if err := l.Crash(victim); err != nil {
		t.Fatal(err)
	}
	t.Logf("power cut on node %d", victim)
	waitOps(total / 2)
	if err := l.RestartNode(victim); err != nil {
		t.Fatal(err)
	}
	l.Heal()
	t.Logf("node %d restarted, partition healed", victim)
	wg.Wait()
	if err := l.SetFaults(bridge.Faults{}); err != nil {
		t.Fatal(err)
	}
	// Once everything settled, each key is read once more: every write
	// whose outcome was unknown has then taken effect or never will.
	settled(t, l, time.Minute)
	for _, k := range linKeys {
		call := h.now()
		vals, err := l.Node(0).Read(k)
		if err != nil {
			t.Fatalf("final read of %s: %v", k, err)
		}
		h.add(porcupine.Operation{ClientId: linClients, Input: linInput{key: k}, Call: call, Output: linOutput{value: vals[0].Value}, Return: h.now()})
	}
	checkLinearizable(t, h)
}
