package main

// Transactions and reads: add, set, transfer, spawn, get, status.

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"twopc/actors"
	"twopc/cluster"
	"twopc/messages"
)

// txSpec is a parsed transaction command.
type txSpec struct {
	ops          []messages.Op
	participants []int32 // the nodes holding its keys
	via          int     // -1: the prompt chooses
}

// parseTx parses a transaction command's arguments: `via <node>` at the
// end, then the command's own (counted by its arity).
func (r *repl) parseTx(c *command, args []string) (*txSpec, error) {
	via := -1
	if n := len(args); n >= 2 && args[n-2] == "via" {
		node, err := r.parseNode(args[n-1])
		if err != nil {
			return nil, err
		}
		via, args = node, args[:n-2]
	}
	if err := c.check(args); err != nil {
		return nil, err
	}
	spec, err := c.tx(args)
	if err != nil {
		return nil, err
	}
	spec.via = via
	parts, _, err := messages.Split(spec.ops, r.opts.nodes)
	if err != nil {
		return nil, err
	}
	spec.participants = parts
	for _, op := range spec.ops {
		r.keys.add(op.Key)
	}
	return spec, nil
}

func parseAdd(args []string) (*txSpec, error) {
	d, err := parseInt("delta", args[0])
	if err != nil {
		return nil, err
	}
	return &txSpec{ops: []messages.Op{messages.Add(messages.EverywhereKey, d)}}, nil
}

func parseSet(args []string) (*txSpec, error) {
	spec := &txSpec{}
	seen := map[string]bool{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not <key>=<int> (usage: %s)", a, commandsByName["set"].syntax)
		}
		if err := messages.ValidateKey(k); err != nil {
			return nil, err
		}
		if seen[k] {
			return nil, fmt.Errorf("key %q is set twice", k)
		}
		seen[k] = true
		n, err := parseInt("value of "+k, v)
		if err != nil {
			return nil, err
		}
		spec.ops = append(spec.ops, messages.Set(k, n))
	}
	return spec, nil
}

func parseTransfer(args []string) (*txSpec, error) {
	from, to := args[0], args[1]
	for _, k := range []string{from, to} {
		if err := messages.ValidateKey(k); err != nil {
			return nil, err
		}
	}
	if from == to {
		return nil, fmt.Errorf("transfer from %q to itself", from)
	}
	amount, err := parseInt("amount", args[2])
	if err != nil {
		return nil, err
	}
	if amount <= 0 {
		return nil, fmt.Errorf("amount must be positive, got %d", amount)
	}
	return &txSpec{ops: []messages.Op{messages.AddFloor(from, -amount, 0), messages.Add(to, amount)}}, nil
}

// txCommandNames is "add, set or transfer", from the table.
func txCommandNames() string {
	var names []string
	for _, c := range commands {
		if c.tx != nil {
			names = append(names, c.name)
		}
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// armedGrace bounds how long a committed command waits for a crash armed
// on a node taking part: it waits for the crash to fire or for the
// transaction to be over on that node, and only a transaction that cannot
// be over (a node it needs went down) waits this long.
const armedGrace = 5 * time.Second

func txCommand(c *command) func(*repl, []string) error {
	return func(r *repl, args []string) error {
		spec, err := r.parseTx(c, args)
		if err != nil {
			return err
		}
		via := spec.via
		if via < 0 {
			if via = r.firstUp(); via < 0 {
				return r.allDown()
			}
		}
		res := r.submitInterruptible(via, spec.ops)
		if res.err != nil {
			return res.err
		}
		if res.outcome == txCommitted {
			// The commit goes on after the answer: let a crash armed on a
			// node taking part fire now rather than during the next command.
			r.c.afterCommit(res.tx, spec.participants)
		}
		r.flushNotes()
		fmt.Fprintln(r.out, res.line())
		return nil
	}
}

// submitInterruptible is submit, given up on (not cancelled: a
// transaction cannot be called back once submitted) at Ctrl-C.
func (r *repl) submitInterruptible(via int, ops []messages.Op) *txResult {
	done := make(chan *txResult, 1)
	go func() { done <- r.submit(via, ops) }()
	select {
	case res := <-done:
		return res
	case <-r.ctx.Done():
		return &txResult{outcome: txUnknown, reason: "interrupted (Ctrl-C) before the outcome came; the transaction may still commit or abort (get, indoubt and trace show which)"}
	}
}

// awaitArmed waits, for each node of a committed transaction with a crash
// armed, until the crash fires or the node has reported its last step of
// tx (a participant's COMMITTED logged, the coordinator's every ack
// counted): after that the crash waits for a later transaction.
func (r *repl) awaitArmed(tx messages.TxID, participants []int32) {
	l := r.c.local()
	if l == nil {
		return
	}
	last := map[int][]actors.StepKind{int(tx.Node): {actors.StepAllAcked}}
	for _, p := range participants {
		last[int(p)] = append(last[int(p)], actors.StepCommittedLogged)
	}
	for node, kinds := range last {
		a := l.Armed(node)
		if a == nil {
			continue
		}
		for _, k := range kinds {
			l.Await(a, func(s actors.Step) bool { return s.Tx == tx && int(s.Node) == node && s.Kind == k }, armedGrace)
		}
	}
}

func (r *repl) firstUp() int {
	for i := 0; i < r.opts.nodes; i++ {
		if r.c.up(i) {
			return i
		}
	}
	return -1
}

// allDown is the error of a command that needs a node when none is up.
func (r *repl) allDown() error {
	if r.c.local() != nil {
		return errors.New("every node is down (restart <node> brings one back)")
	}
	return errors.New("no node answers (start the nodes' processes, or check --connect)")
}

// txOutcome is what became of a transaction, as its client knows it.
type txOutcome int

const (
	// txUnknown: the coordinator could not say (it crashed, or its log
	// failed); the transaction may well have committed.
	txUnknown txOutcome = iota
	txCommitted
	txAborted
)

// txResult is what became of one submitted transaction.
type txResult struct {
	tx      messages.TxID
	outcome txOutcome
	reason  string
	took    time.Duration
	err     error // not submitted at all (node down)
}

func (t *txResult) line() string {
	switch t.outcome {
	case txCommitted:
		return fmt.Sprintf("committed %v (%d ms)", t.tx, t.took.Milliseconds())
	case txAborted:
		return fmt.Sprintf("aborted %v: %s", t.tx, t.reason)
	}
	if t.tx.IsZero() {
		return "unknown: " + t.reason
	}
	return fmt.Sprintf("unknown %v: %s", t.tx, t.reason)
}

// submit runs one transaction coordinated by node via. An outcome that the
// coordinator could not give (it crashed, or its log failed) is unknown,
// never aborted: the transaction may well have committed.
func (r *repl) submit(via int, ops []messages.Op) *txResult {
	start := time.Now()
	o, err := r.c.submit(via, ops)
	res := &txResult{took: time.Since(start)}
	var no *cluster.NoOutcomeError
	var down *notSubmittedError
	switch {
	case errors.As(err, &down):
		return &txResult{err: err}
	case errors.As(err, &no):
		res.tx, res.outcome, res.reason = no.Tx, txUnknown, no.Err.Error()
		if !no.Tx.IsZero() {
			res.reason += fmt.Sprintf("; the participants settle it (see indoubt, trace %v)", no.Tx)
		}
	case err != nil:
		res.outcome, res.reason = txUnknown, err.Error()
	case o.Committed:
		res.tx, res.outcome = o.Tx, txCommitted
	case o.Unknown:
		res.tx, res.outcome, res.reason = o.Tx, txUnknown, o.Reason
	default:
		res.tx, res.outcome, res.reason = o.Tx, txAborted, o.Reason
	}
	if !res.tx.IsZero() {
		r.remember(res.tx.String())
	}
	return res
}

// notSubmittedError: the transaction was not submitted at all (its node
// is down), so its outcome is known: nothing happened.
type notSubmittedError struct{ err error }

func (e *notSubmittedError) Error() string { return e.err.Error() }
func (e *notSubmittedError) Unwrap() error { return e.err }

// Spawn's bounds. Past about 3,000 transactions begun in the same instant
// the nodes' queues hold Prepares longer than the vote timeout, and nearly
// all abort: an open-loop flood measures the timeout, not the protocol. So
// at most spawnInFlight run at once, the next starting as one ends.
const (
	maxSpawn      = 10000
	spawnInFlight = 1000
)

// spawn runs n transactions concurrently and sums their outcomes up.
func (r *repl) spawn(args []string) error {
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 || n > maxSpawn {
		return fmt.Errorf("spawn count %q must be 1-%d", args[0], maxSpawn)
	}
	c := commandsByName[args[1]]
	if c == nil || c.tx == nil {
		return fmt.Errorf("%q is not a transaction command (%s)", args[1], txCommandNames())
	}
	spec, err := r.parseTx(c, args[2:])
	if err != nil {
		return err
	}
	var vias []int
	if spec.via >= 0 {
		vias = []int{spec.via}
	} else {
		for i := 0; i < r.opts.nodes; i++ {
			if r.c.up(i) {
				vias = append(vias, i)
			}
		}
		if len(vias) == 0 {
			return r.allDown()
		}
	}
	start := time.Now()
	results := make([]*txResult, n)
	var wg sync.WaitGroup
	slots := make(chan struct{}, spawnInFlight)
	// Ctrl-C stops submitting; what is in flight is waited for, so the
	// line counts every transaction submitted.
	submitted := 0
submitting:
	for i := range results {
		select {
		case slots <- struct{}{}:
		case <-r.ctx.Done():
			break submitting
		}
		if r.ctx.Err() != nil { // both were ready: the interrupt wins
			<-slots
			break
		}
		submitted++
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			results[i] = r.submit(vias[i%len(vias)], spec.ops)
		}()
	}
	wg.Wait()
	took := time.Since(start)
	committed, aborted := 0, 0
	reasons := map[string]int{}
	for _, res := range results[:submitted] {
		switch {
		case res.err != nil:
			reasons["not submitted: "+res.err.Error()]++
		case res.outcome == txCommitted:
			committed++
		case res.outcome == txAborted:
			aborted++
			reasons[generalize(res.reason)]++
		default:
			reasons["outcome unknown: "+generalize(res.reason)]++
		}
	}
	r.flushNotes()
	if submitted < n {
		fmt.Fprintf(r.out, "spawned %d of %d (interrupted): committed %d, aborted %d (%d ms)\n", submitted, n, committed, aborted, took.Milliseconds())
	} else {
		fmt.Fprintf(r.out, "spawned %d: committed %d, aborted %d (%d ms)\n", n, committed, aborted, took.Milliseconds())
	}
	type count struct {
		reason string
		n      int
	}
	var counts []count
	for k, v := range reasons {
		counts = append(counts, count{k, v})
	}
	sort.Slice(counts, func(i, j int) bool {
		if counts[i].n != counts[j].n {
			return counts[i].n > counts[j].n
		}
		return counts[i].reason < counts[j].reason
	})
	for _, c := range counts {
		fmt.Fprintf(r.out, "  %d × %s\n", c.n, c.reason)
	}
	return nil
}

var (
	txIDPattern     = regexp.MustCompile(`\b\d+\.\d+\.\d+\b`)
	durationPattern = regexp.MustCompile(`\b\d+\.\d+(ns|µs|ms|s)\b`) // measured, not configured
)

// generalize makes reasons that differ only in transaction ids or in a
// measured duration count as one.
func generalize(reason string) string {
	reason = txIDPattern.ReplaceAllString(reason, "<tx>")
	return durationPattern.ReplaceAllString(reason, "<t>")
}

// --- reading ---

// get reads each key from every node that holds it. Keys held by more than
// one node, with every owner up, are read as one snapshot (no transaction
// shows in part). With an owner down no snapshot can be had: each node that
// is up is asked directly (each value linearizable on its own), and a down
// or cut-off node costs its own line, not the others'.
func (r *repl) get(args []string) error {
	type ask struct {
		key  string
		node int32
	}
	var asks []ask
	var keys []string
	nodes := map[int32]bool{}
	seen := map[string]bool{}
	for _, k := range args {
		owners, err := messages.Owners(k, r.opts.nodes)
		if err != nil {
			return err
		}
		r.keys.add(k)
		if seen[k] {
			continue // each key is listed once, however often it is named
		}
		seen[k] = true
		keys = append(keys, k)
		for _, o := range owners {
			asks = append(asks, ask{k, o})
			nodes[o] = true
		}
	}
	allUp := true
	for o := range nodes {
		allUp = allUp && r.c.up(int(o))
	}
	if len(nodes) > 1 && allUp {
		vals, err := r.c.snapshotRead(keys)
		if err != nil {
			return fmt.Errorf("snapshot read of %s: %w", strings.Join(keys, " "), err)
		}
		for _, v := range vals {
			fmt.Fprintf(r.out, "%s = %d  (node %d)\n", v.Key, v.Value, v.Node)
		}
		return nil
	}
	lines := make([]string, len(asks))
	var wg sync.WaitGroup
	for i, a := range asks {
		if !r.c.up(int(a.node)) {
			lines[i] = fmt.Sprintf("error: %s on node %d: node %d is down", a.key, a.node, a.node)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := r.c.readLocal(int(a.node), a.key)
			if err != nil {
				lines[i] = fmt.Sprintf("error: %s on node %d: %s", a.key, a.node, err)
				return
			}
			lines[i] = fmt.Sprintf("%s = %d  (node %d)", a.key, v, a.node)
		}()
	}
	wg.Wait()
	for _, l := range lines {
		fmt.Fprintln(r.out, l)
	}
	return nil
}

// --- the cluster's state ---

func (r *repl) status([]string) error {
	rows, parts := r.c.statusTable()
	w := tabwriter.NewWriter(r.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "node\taddress\tstate\tin-flight\tlocks\tin-doubt\tlog\tlast snapshot\tskew")
	for i, row := range rows {
		st := row.st
		if st == nil {
			fmt.Fprintf(w, "%d\t%s\tdown\t-\t-\t-\t-\t-\t%s\n", i, row.addr, row.skew)
			continue
		}
		snap := st.LastSnapshot
		if snap == "" {
			snap = "none"
		}
		fmt.Fprintf(w, "%d\t%s\tup\t%s\t%s\t%s\t%s\t%s\t%s\n", i, row.addr, count(st.InFlight), count(st.LocksHeld), count(st.InDoubt),
			bytesString(st.LogBytes), snap, skewString(st.Skew))
	}
	w.Flush()
	if len(parts) > 0 {
		var s []string
		for _, p := range parts {
			s = append(s, fmt.Sprintf("%d-%d", p[0], p[1]))
		}
		fmt.Fprintln(r.out, "partitioned:", strings.Join(s, " "))
	}
	for i, row := range rows {
		if row.err != nil {
			fmt.Fprintf(r.out, "error: node %d did not answer: %v\n", i, row.err)
		}
	}
	// Every node should run the same protocol; say so if they do not.
	protocols := map[string][]string{}
	var names []string
	for i, row := range rows {
		if row.st != nil && row.st.Protocol != "" {
			if protocols[row.st.Protocol] == nil {
				names = append(names, row.st.Protocol)
			}
			protocols[row.st.Protocol] = append(protocols[row.st.Protocol], fmt.Sprint(i))
		}
	}
	switch len(names) {
	case 0:
	case 1:
		fmt.Fprintf(r.out, "protocol: %s\n", names[0])
	default:
		var parts []string
		for _, p := range names {
			parts = append(parts, fmt.Sprintf("%s on node %s", p, strings.Join(protocols[p], ", ")))
		}
		fmt.Fprintf(r.out, "error: the nodes run different protocols: %s\n", strings.Join(parts, "; "))
	}
	return nil
}

// count shows a count a role gave, or ? if it did not answer.
func count(n int) string {
	if n < 0 {
		return "?"
	}
	return fmt.Sprint(n)
}

func bytesString(n int64) string {
	switch {
	case n < 1024:
		return fmt.Sprintf("%d B", n)
	case n < 1024*1024:
		return fmt.Sprintf("%.1f KiB", float64(n)/1024)
	default:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1024*1024))
	}
}
