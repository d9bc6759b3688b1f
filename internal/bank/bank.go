// Package bank is a transfer workload for a twopc cluster and the checker of
// its invariant. It is shared by the in-process randomized test and the
// process-level crash test (cmd/node), so both judge a run the same way.
//
// Every node holds AccountsPerNode accounts, "n<node>/acct-<k>", each set to
// Initial by Setup. A transfer is one transaction with four operations:
//
//	AddFloor(from, -amount, 0)        debit, refused below 0
//	Add(to, +amount)                  credit, on another node
//	Set(n<from node>/m-<prefix>-<id>, 1)
//	Set(n<to node>/m-<prefix>-<id>, 1)
//
// The two markers make each participant's application of the transfer
// visible: a participant that applied it has its marker at 1, one that did
// not has it at 0 (a missing key reads 0). Check reads every account and
// every marker and verifies:
//
//	(a) both markers of a transfer are equal: applied on both or neither;
//	(b) a transfer the client saw committed is applied (markers 1), one it
//	    saw aborted is not (markers 0); an unknown outcome (a client error,
//	    an Outcome marked Unknown, or still in flight) may be either;
//	(c) no account is below its floor, 0;
//	(d) every account is Initial plus what the applied transfers moved in,
//	    less what they moved out (catches lost or doubled updates);
//	(e) the total is Nodes*AccountsPerNode*Initial.
//
// The package depends on nothing but twopc/messages, so tests inside
// package cluster can use it without an import cycle: they adapt their
// nodes or clients to the Client interface.
package bank

import (
	"errors"
	"fmt"
	"math/rand"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"twopc/messages"
)

// Client is how the workload reaches a cluster: in-process nodes or the
// net/rpc client.
type Client interface {
	// Submit runs one transaction coordinated by node via. An error means
	// the outcome is unknown to the client.
	Submit(via int, ops ...messages.Op) (*messages.Outcome, error)
	// Read returns the committed value of every key (each key here has
	// exactly one owner).
	Read(keys ...string) (map[string]int64, error)
}

// Config sizes the bank. Zero fields take the defaults below.
type Config struct {
	Nodes           int   // cluster size; at least 2, transfers cross nodes
	AccountsPerNode int   // default 4
	Initial         int64 // every account's balance after Setup; default 1000
	MaxAmount       int64 // transfers move 1..MaxAmount; default 100
	// Prefix makes marker keys unique per run (e.g. "r7"), so a bank can run
	// again on a cluster that kept an earlier run's markers. Empty: markers
	// are "n<node>/m-<id>".
	Prefix string
}

// Defaults for zero Config fields.
const (
	DefaultAccountsPerNode = 4
	DefaultInitial         = 1000
	DefaultMaxAmount       = 100
)

// ReadChunk is how many keys Check asks for per Read: enough to keep the
// number of calls small, few enough that one read stays a small message.
const ReadChunk = 200

// maxViolations bounds the report of a failed Check: the first few name
// the bug; thousands would bury it.
const maxViolations = 20

// Transfer is one transfer: Amount from From to To (accounts on two
// different nodes), coordinated by node Via. ID is unique within its Bank.
type Transfer struct {
	ID       uint64
	From, To string
	Amount   int64
	Via      int
}

// Outcome of a transfer as its client saw it.
type outcome uint8

const (
	outUnknown   outcome = iota // in flight, the client got an error, or an Outcome marked Unknown
	outCommitted                // the client was told "committed"
	outAborted                  // the client was told "aborted"
)

func (o outcome) String() string {
	switch o {
	case outCommitted:
		return "committed"
	case outAborted:
		return "aborted"
	}
	return "unknown"
}

type record struct {
	Transfer
	fromNode, toNode int
	outcome          outcome
	reason           string // the abort reason or the client's error, for reports
}

// Bank is the workload's state: its configuration and every transfer run
// through it with the outcome its client saw. Transfer, Run, Check and Counts
// are safe for concurrent use (each *rand.Rand passed to Transfer is not).
type Bank struct {
	cfg    Config
	nextID atomic.Uint64

	mu        sync.Mutex
	transfers []*record // in the order Run was called
}

// New returns a bank for cfg. It panics if cfg.Nodes < 2 or a field is
// negative: transfers always cross two nodes, and a bad configuration is a
// bug in the test that builds it.
func New(cfg Config) *Bank {
	if cfg.Nodes < 2 {
		panic(fmt.Sprintf("bank: need at least 2 nodes, got %d", cfg.Nodes))
	}
	if cfg.AccountsPerNode < 0 || cfg.Initial < 0 || cfg.MaxAmount < 0 {
		panic(fmt.Sprintf("bank: negative field in %+v", cfg))
	}
	if cfg.AccountsPerNode == 0 {
		cfg.AccountsPerNode = DefaultAccountsPerNode
	}
	if cfg.Initial == 0 {
		cfg.Initial = DefaultInitial
	}
	if cfg.MaxAmount == 0 {
		cfg.MaxAmount = DefaultMaxAmount
	}
	return &Bank{cfg: cfg}
}

// Config is the bank's configuration with defaults filled in.
func (b *Bank) Config() Config { return b.cfg }

func account(node, k int) string { return fmt.Sprintf("n%d/acct-%d", node, k) }

// Marker is the key recording whether node applied transfer id.
func (b *Bank) Marker(node int, id uint64) string {
	if b.cfg.Prefix == "" {
		return fmt.Sprintf("n%d/m-%d", node, id)
	}
	return fmt.Sprintf("n%d/m-%s-%d", node, b.cfg.Prefix, id)
}

// Accounts returns "n<node>/acct-<k>" for every node and k, node by node.
func (b *Bank) Accounts() []string {
	out := make([]string, 0, b.cfg.Nodes*b.cfg.AccountsPerNode)
	for n := 0; n < b.cfg.Nodes; n++ {
		for k := 0; k < b.cfg.AccountsPerNode; k++ {
			out = append(out, account(n, k))
		}
	}
	return out
}

// setupAttempts bounds Setup's retries: an abort there means a conflict
// with something still running (e.g. a previous run's in-doubt
// transactions), which clears within a few vote timeouts.
const setupAttempts = 8

// setupPause is the first pause between Setup's attempts, growing linearly;
// a variable so the package's tests need not sleep.
var setupPause = 100 * time.Millisecond

// Setup sets every account to Initial: one transaction per node, through
// that node, retried a few times if it aborts or its outcome is unknown (a
// set is idempotent, so a retry cannot double anything). It fails if a
// node's transaction never commits.
func (b *Bank) Setup(c Client) error {
	for n := 0; n < b.cfg.Nodes; n++ {
		ops := make([]messages.Op, 0, b.cfg.AccountsPerNode)
		for k := 0; k < b.cfg.AccountsPerNode; k++ {
			ops = append(ops, messages.Set(account(n, k), b.cfg.Initial))
		}
		var last string
		done := false
		for attempt := 0; attempt < setupAttempts && !done; attempt++ {
			if attempt > 0 {
				time.Sleep(time.Duration(attempt) * setupPause)
			}
			o, err := c.Submit(n, ops...)
			switch {
			case err != nil:
				last = err.Error()
			case o.Committed:
				done = true
			case o.Unknown:
				last = o.String()
			default:
				last = "aborted: " + o.Reason
			}
		}
		if !done {
			return fmt.Errorf("bank setup: accounts of node %d not set after %d attempts: %s", n, setupAttempts, last)
		}
	}
	return nil
}

// Transfer picks a transfer coordinated by via: from and to on two
// different nodes, an amount in [1, MaxAmount], and a fresh ID. It does not
// submit anything.
func (b *Bank) Transfer(rng *rand.Rand, via int) Transfer {
	from := rng.Intn(b.cfg.Nodes)
	to := (from + 1 + rng.Intn(b.cfg.Nodes-1)) % b.cfg.Nodes // any node but from
	return Transfer{
		ID:     b.nextID.Add(1),
		From:   account(from, rng.Intn(b.cfg.AccountsPerNode)),
		To:     account(to, rng.Intn(b.cfg.AccountsPerNode)),
		Amount: 1 + rng.Int63n(b.cfg.MaxAmount),
		Via:    via,
	}
}

// nodeOf is the owner in an "n<id>/..." key. Only keys this package made
// (or a caller-built Transfer with such keys) reach it.
func nodeOf(key string) (int, error) {
	var n int
	if _, err := fmt.Sscanf(key, "n%d/", &n); err != nil {
		return 0, fmt.Errorf("key %q does not name its node", key)
	}
	return n, nil
}

// Ops are the operations of transfer t, in the order they are submitted.
func (b *Bank) Ops(t Transfer) []messages.Op {
	fromNode, _ := nodeOf(t.From)
	toNode, _ := nodeOf(t.To)
	return []messages.Op{
		messages.AddFloor(t.From, -t.Amount, 0),
		messages.Add(t.To, t.Amount),
		messages.Set(b.Marker(fromNode, t.ID), 1),
		messages.Set(b.Marker(toNode, t.ID), 1),
	}
}

// Run submits t and records the outcome its client saw. The transfer is
// recorded, as unknown, before it is submitted: a Check running meanwhile
// then accepts it applied or not, instead of finding money it cannot
// explain.
func (b *Bank) Run(c Client, t Transfer) {
	fromNode, err1 := nodeOf(t.From)
	toNode, err2 := nodeOf(t.To)
	if err := errors.Join(err1, err2); err != nil {
		panic("bank: " + err.Error())
	}
	r := &record{Transfer: t, fromNode: fromNode, toNode: toNode}
	b.mu.Lock()
	b.transfers = append(b.transfers, r)
	b.mu.Unlock()

	o, err := c.Submit(t.Via, b.Ops(t)...)
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case err != nil:
		r.reason = err.Error()
	case o.Committed:
		r.outcome = outCommitted
	case o.Unknown:
		// The coordinator could not tell (its log failed): not an abort,
		// whatever Committed says. Clients need not translate it.
		r.reason = o.String()
	default:
		r.outcome = outAborted
		r.reason = o.Reason
	}
}

// Counts says how the transfers run so far ended, as their clients saw
// them; unknown includes those still in flight.
func (b *Bank) Counts() (committed, aborted, unknown int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range b.transfers {
		switch r.outcome {
		case outCommitted:
			committed++
		case outAborted:
			aborted++
		default:
			unknown++
		}
	}
	return committed, aborted, unknown
}

// Check reads every account and every transfer's markers and verifies the
// invariant (see the package comment). The error lists every violation
// found, up to 20, each with its transfer's id; a Read error is returned
// as is, wrapped. Check is meant for a quiet cluster: its reads are not one
// snapshot, so a transfer deciding between two reads can look like a
// violation. Callers that cannot wait for quiet retry it.
func (b *Bank) Check(c Client) error {
	b.mu.Lock()
	recs := make([]record, len(b.transfers))
	for i, r := range b.transfers {
		recs[i] = *r
	}
	b.mu.Unlock()
	sort.Slice(recs, func(i, j int) bool { return recs[i].ID < recs[j].ID })

	keys := b.Accounts()
	for _, r := range recs {
		keys = append(keys, b.Marker(r.fromNode, r.ID), b.Marker(r.toNode, r.ID))
	}
	vals := make(map[string]int64, len(keys))
	for i := 0; i < len(keys); i += ReadChunk {
		chunk := keys[i:min(i+ReadChunk, len(keys))]
		got, err := c.Read(chunk...)
		if err != nil {
			return fmt.Errorf("bank check: read: %w", err)
		}
		for _, k := range chunk {
			v, ok := got[k]
			if !ok {
				return fmt.Errorf("bank check: read returned no value for %s", k)
			}
			vals[k] = v
		}
	}

	v := &violations{}
	expect := make(map[string]int64, b.cfg.Nodes*b.cfg.AccountsPerNode)
	for _, a := range b.Accounts() {
		expect[a] = b.cfg.Initial
	}
	for _, r := range recs {
		mFrom, mTo := vals[b.Marker(r.fromNode, r.ID)], vals[b.Marker(r.toNode, r.ID)]
		desc := fmt.Sprintf("transfer %d (%d from %s to %s via node %d, client saw %v", r.ID, r.Amount, r.From, r.To, r.Via, r.outcome)
		if r.reason != "" {
			desc += ": " + r.reason
		}
		desc += ")"
		for _, m := range []int64{mFrom, mTo} {
			if m != 0 && m != 1 {
				v.add("%s: marker is %d, want 0 or 1", desc, m)
			}
		}
		switch {
		case mFrom != mTo:
			v.add("%s: half applied: marker on node %d is %d, on node %d is %d", desc, r.fromNode, mFrom, r.toNode, mTo)
		case r.outcome == outCommitted && mFrom != 1:
			v.add("%s: not applied on either participant", desc)
		case r.outcome == outAborted && mFrom != 0:
			v.add("%s: applied on both participants", desc)
		}
		// Each side counts where its own participant says it applied: a
		// half-applied transfer is reported once above, not again as a
		// balance mismatch on the side that did apply it.
		if mFrom == 1 {
			expect[r.From] -= r.Amount
		}
		if mTo == 1 {
			expect[r.To] += r.Amount
		}
	}
	var total int64
	for _, a := range b.Accounts() {
		got := vals[a]
		total += got
		if got < 0 {
			v.add("account %s = %d: below its floor 0", a, got)
		}
		if got != expect[a] {
			v.add("account %s = %d, but the applied transfers add up to %d (%+d)", a, got, expect[a], got-expect[a])
		}
	}
	if want := int64(b.cfg.Nodes*b.cfg.AccountsPerNode) * b.cfg.Initial; total != want {
		v.add("total %d, want %d (%+d)", total, want, total-want)
	}
	return v.err(len(recs))
}

// violations collects what Check found, keeping the first maxViolations.
type violations struct {
	list  []string
	count int
}

func (v *violations) add(format string, args ...any) {
	v.count++
	if len(v.list) < maxViolations {
		v.list = append(v.list, fmt.Sprintf(format, args...))
	}
}

func (v *violations) err(transfers int) error {
	if v.count == 0 {
		return nil
	}
	more := ""
	if v.count > len(v.list) {
		more = fmt.Sprintf(" (first %d shown)", len(v.list))
	}
	return fmt.Errorf("bank check: %d violations over %d transfers%s:\n  %s", v.count, transfers, more, strings.Join(v.list, "\n  "))
}

// SeedEnv names the environment variable that replays a randomized run.
const SeedEnv = "TWOPC_SEED"

// Seed is the seed a randomized test draws everything from: TWOPC_SEED if
// set (to replay a failure), else the clock. The test prints it, so a
// failure can be replayed.
func Seed() (int64, error) {
	s := os.Getenv(SeedEnv)
	if s == "" {
		return time.Now().UnixNano(), nil
	}
	seed, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s=%q: not an integer: %w", SeedEnv, s, err)
	}
	return seed, nil
}
