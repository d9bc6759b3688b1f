package main

// The prompt's commands. Their output lines are an interface: scripts read
// them, so change them only with the README.

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

	"github.com/hashicorp/go-hclog"

	"twopc/actors"
	"twopc/cluster"
	"twopc/messages"
)

type command struct {
	name   string
	syntax string
	help   string
	run    func(r *repl, args []string) error
}

var commands []*command

var commandsByName = map[string]*command{}

func init() {
	commands = []*command{
		{"help", "help", "this list", (*repl).help},
		{"add", "add <delta> [via <node>]", "one transaction adding delta to `value` on every node", txCommand("add")},
		{"set", "set <key>=<int> [<key>=<int> ...] [via <node>]", "one transaction setting every key given", txCommand("set")},
		{"transfer", "transfer <from> <to> <amount> [via <node>]", "one transaction moving amount from one key to another; from may not go below 0", txCommand("transfer")},
		{"get", "get <key> [<key> ...]", "each key's committed value on every node that holds it (a missing key reads 0)", (*repl).get},
		{"spawn", "spawn <n> <add|set|transfer ...>", "n concurrent transactions of that command (round-robin over the nodes that are up unless via is given)", (*repl).spawn},
		{"status", "status", "every node: address, up or down, transactions in flight, locks, in doubt, log size, last snapshot", (*repl).status},
		{"crash", "crash <node> [at <step>]", "cut the node's power now, or when it next reaches step (see below); unsynced log writes are lost", (*repl).crash},
		{"restart", "restart <node>", "start a crashed node again: it recovers from its log and rejoins", (*repl).restart},
		{"partition", "partition <a> <b>", "cut the links between nodes a and b (both ways)", (*repl).partition},
		{"heal", "heal", "restore every link", (*repl).heal},
		{"indoubt", "indoubt", "every transaction a participant voted yes on and has no decision for: id, node, age, whom it waits for", (*repl).indoubt},
		{"resolve", "resolve <txid> commit|abort", "an operator's forced (heuristic) decision for an in-doubt transaction; refused when the real outcome is known", (*repl).resolve},
		{"trace", "trace <txid>", "the transaction's messages, log writes and decision across nodes, as a sequence diagram", (*repl).trace},
		{"loglevel", "loglevel <trace|debug|info|warn|error>", "how much of the protocol the nodes log (to stderr)", (*repl).loglevel},
		{"quit", "quit", "stop the cluster cleanly and leave (also Ctrl-D, or the end of piped input)", nil},
	}
	for _, c := range commands {
		commandsByName[c.name] = c
	}
}

func (r *repl) help(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("help takes no arguments")
	}
	w := tabwriter.NewWriter(r.out, 0, 0, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(w, "  %s\t%s\n", c.syntax, c.help)
	}
	w.Flush()
	nodes := fmt.Sprintf("Nodes are 0-%d.", r.opts.nodes-1)
	if r.opts.nodes == 1 {
		nodes = "The only node is 0."
	}
	fmt.Fprintf(r.out, "%s Keys \"n<id>/...\" live on node <id>, `value` on every node, others on a node chosen by hash.\n", nodes)
	fmt.Fprintln(r.out, "Steps for `crash <node> at <step>`:")
	w = tabwriter.NewWriter(r.out, 0, 0, 2, ' ', 0)
	for _, s := range crashSteps {
		fmt.Fprintf(w, "  %s\t%s\n", s.name, s.what)
	}
	w.Flush()
	return nil
}

// --- transactions ---

// txSpec is a parsed transaction command.
type txSpec struct {
	ops          []messages.Op
	participants []int32 // the nodes holding its keys
	via          int     // -1: the prompt chooses
}

// parseTx parses add, set and transfer with their arguments.
func (r *repl) parseTx(name string, args []string) (*txSpec, error) {
	spec := &txSpec{via: -1}
	if n := len(args); n >= 2 && args[n-2] == "via" {
		node, err := r.parseNode(args[n-1])
		if err != nil {
			return nil, err
		}
		spec.via, args = node, args[:n-2]
	}
	if name != "add" && name != "set" && name != "transfer" {
		return nil, fmt.Errorf("%q is not a transaction command (add, set or transfer)", name)
	}
	usage := commandsByName[name].syntax
	switch name {
	case "add":
		if len(args) != 1 {
			return nil, fmt.Errorf("usage: %s", usage)
		}
		d, err := parseInt("delta", args[0])
		if err != nil {
			return nil, err
		}
		spec.ops = []messages.Op{messages.Add(messages.EverywhereKey, d)}
	case "set":
		if len(args) == 0 {
			return nil, fmt.Errorf("usage: %s", usage)
		}
		seen := map[string]bool{}
		for _, a := range args {
			k, v, ok := strings.Cut(a, "=")
			if !ok || k == "" {
				return nil, fmt.Errorf("%q is not <key>=<int> (usage: %s)", a, usage)
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
	case "transfer":
		if len(args) != 3 {
			return nil, fmt.Errorf("usage: %s", usage)
		}
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
		spec.ops = []messages.Op{messages.AddFloor(from, -amount, 0), messages.Add(to, amount)}
	default:
		return nil, fmt.Errorf("%q is not a transaction command (add, set or transfer)", name)
	}
	parts, _, err := messages.Split(spec.ops, r.opts.nodes)
	if err != nil {
		return nil, err
	}
	spec.participants = parts
	return spec, nil
}

func parseInt(what, s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s %q is not an integer", what, s)
	}
	return n, nil
}

func (r *repl) parseNode(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n >= r.opts.nodes {
		return 0, fmt.Errorf("no node %q (nodes are 0-%d)", s, r.opts.nodes-1)
	}
	return n, nil
}

func txCommand(name string) func(*repl, []string) error {
	return func(r *repl, args []string) error {
		spec, err := r.parseTx(name, args)
		if err != nil {
			return err
		}
		via := spec.via
		if via < 0 {
			if via = r.firstUp(); via < 0 {
				return errors.New("every node is down (restart <node> brings one back)")
			}
		}
		res := r.submit(via, spec.ops)
		if res.err != nil {
			return res.err
		}
		if res.outcome == "committed" {
			// The commit goes on after the answer: let a crash armed on a
			// node taking part fire now rather than during the next command.
			r.awaitArmed(append(spec.participants, int32(via)), time.Second)
		}
		r.flushNotes()
		fmt.Fprintln(r.out, res.line())
		return nil
	}
}

func (r *repl) firstUp() int {
	for i := 0; i < r.opts.nodes; i++ {
		if r.c.Up(i) != nil {
			return i
		}
	}
	return -1
}

// txResult is what became of one submitted transaction.
type txResult struct {
	tx      messages.TxID
	outcome string // committed, aborted or unknown
	reason  string
	took    time.Duration
	err     error // not submitted at all (node down)
}

func (t *txResult) line() string {
	switch t.outcome {
	case "committed":
		return fmt.Sprintf("committed %v (%d ms)", t.tx, t.took.Milliseconds())
	case "aborted":
		return fmt.Sprintf("aborted %v: %s", t.tx, t.reason)
	}
	if t.tx.IsZero() {
		return "unknown: " + t.reason
	}
	return fmt.Sprintf("unknown %v: %s", t.tx, t.reason)
}

// submit runs one transaction coordinated by node via. An outcome that the
// coordinator could not give (it crashed, or its log failed) is "unknown",
// never "aborted": the transaction may well have committed.
func (r *repl) submit(via int, ops []messages.Op) *txResult {
	n := r.c.Up(via)
	if n == nil {
		return &txResult{err: fmt.Errorf("node %d is down (restart %d brings it back)", via, via)}
	}
	start := time.Now()
	o, err := n.Submit(ops...)
	res := &txResult{took: time.Since(start)}
	var no *cluster.NoOutcomeError
	switch {
	case errors.As(err, &no):
		res.tx, res.outcome, res.reason = no.Tx, "unknown", no.Err.Error()
		if !no.Tx.IsZero() {
			res.reason += fmt.Sprintf("; the participants settle it (see indoubt, trace %v)", no.Tx)
		}
	case err != nil:
		res.outcome, res.reason = "unknown", err.Error()
	case o.Committed:
		res.tx, res.outcome = o.Tx, "committed"
	case o.Unknown:
		res.tx, res.outcome, res.reason = o.Tx, "unknown", o.Reason
	default:
		res.tx, res.outcome, res.reason = o.Tx, "aborted", o.Reason
	}
	if !res.tx.IsZero() {
		r.remember(res.tx.String())
	}
	return res
}

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
	usage := "usage: " + commandsByName["spawn"].syntax
	if len(args) < 2 {
		return errors.New(usage)
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 || n > maxSpawn {
		return fmt.Errorf("spawn count %q must be 1-%d", args[0], maxSpawn)
	}
	spec, err := r.parseTx(args[1], args[2:])
	if err != nil {
		return err
	}
	var vias []int
	if spec.via >= 0 {
		vias = []int{spec.via}
	} else {
		for i := 0; i < r.opts.nodes; i++ {
			if r.c.Up(i) != nil {
				vias = append(vias, i)
			}
		}
		if len(vias) == 0 {
			return errors.New("every node is down (restart <node> brings one back)")
		}
	}
	start := time.Now()
	results := make([]*txResult, n)
	var wg sync.WaitGroup
	slots := make(chan struct{}, spawnInFlight)
	for i := range results {
		slots <- struct{}{}
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
	for _, res := range results {
		switch {
		case res.err != nil:
			reasons["not submitted: "+res.err.Error()]++
		case res.outcome == "committed":
			committed++
		case res.outcome == "aborted":
			aborted++
			reasons[generalize(res.reason)]++
		default:
			reasons["outcome unknown: "+generalize(res.reason)]++
		}
	}
	r.flushNotes()
	fmt.Fprintf(r.out, "spawned %d: committed %d, aborted %d (%d ms)\n", n, committed, aborted, took.Milliseconds())
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

// get reads each key from every node that holds it, each node asked
// directly: a down or cut-off node costs its own line, not the others'.
func (r *repl) get(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: %s", commandsByName["get"].syntax)
	}
	type ask struct {
		key  string
		node int32
	}
	var asks []ask
	for _, k := range args {
		owners, err := messages.Owners(k, r.opts.nodes)
		if err != nil {
			return err
		}
		for _, o := range owners {
			asks = append(asks, ask{k, o})
		}
	}
	lines := make([]string, len(asks))
	var wg sync.WaitGroup
	for i, a := range asks {
		n := r.c.Up(int(a.node))
		if n == nil {
			lines[i] = fmt.Sprintf("error: %s on node %d: node %d is down", a.key, a.node, a.node)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			kv, err := n.ReadLocal(a.key)
			if err != nil {
				// The line names key and node already.
				msg := strings.TrimPrefix(err.Error(), "read "+a.key+": ")
				msg = strings.TrimPrefix(msg, fmt.Sprintf("node %d: ", a.node))
				lines[i] = fmt.Sprintf("error: %s on node %d: %s", a.key, a.node, msg)
				return
			}
			lines[i] = fmt.Sprintf("%s = %d  (node %d)", a.key, kv[0].Value, a.node)
		}()
	}
	wg.Wait()
	for _, l := range lines {
		fmt.Fprintln(r.out, l)
	}
	return nil
}

// --- the cluster's state ---

func (r *repl) status(args []string) error {
	if len(args) > 0 {
		return errors.New("status takes no arguments")
	}
	members := r.c.Members()
	w := tabwriter.NewWriter(r.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "node\taddress\tstate\tin-flight\tlocks\tin-doubt\tlog\tlast snapshot")
	for i, addr := range members {
		n := r.c.Up(i)
		if n == nil {
			fmt.Fprintf(w, "%d\t%s\tdown\t-\t-\t-\t-\t-\n", i, addr)
			continue
		}
		inFlight, locks, inDoubt := "?", "?", "?"
		if cs, err := n.CoordinatorStatus(); err == nil {
			inFlight = fmt.Sprint(cs.InFlight)
		}
		if ps, err := n.ParticipantStatus(); err == nil {
			locks, inDoubt = fmt.Sprint(ps.LocksHeld), fmt.Sprint(len(ps.InDoubt))
		}
		st := n.LogStats()
		snap := st.LastSnapshot
		if snap == "" {
			snap = "none"
		}
		fmt.Fprintf(w, "%d\t%s\tup\t%s\t%s\t%s\t%s\t%s\n", i, addr, inFlight, locks, inDoubt, bytesString(st.LogBytes), snap)
	}
	w.Flush()
	if parts := r.c.Partitions(); len(parts) > 0 {
		var s []string
		for _, p := range parts {
			s = append(s, fmt.Sprintf("%d-%d", p[0], p[1]))
		}
		fmt.Fprintln(r.out, "partitioned:", strings.Join(s, " "))
	}
	return nil
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

// --- breaking it ---

// crashStep is a point of the protocol at which `crash <node> at` cuts the
// node's power.
type crashStep struct {
	name string
	kind actors.StepKind
	what string
	// delivered, for a step that sends a message, is the step at which its
	// receiver shows it arrived. The crash waits for it: a power cut at the
	// sending step itself drops the message still queued in the bridge, and
	// "vote sent" would be no different from "PREPARED logged".
	delivered actors.StepKind
}

var crashSteps = []crashStep{
	{"prepare-sent", actors.StepPrepareSent, "coordinator: a Prepare has reached a participant on another node", actors.StepPrepareReceived},
	{"vote-received", actors.StepVoteReceived, "coordinator: a vote has just been counted", 0},
	{"commit-decided", actors.StepCommitDecided, "coordinator: every vote is yes, COMMIT not yet logged", 0},
	{"commit-logged", actors.StepCommitLogged, "coordinator: COMMIT durable, no Commit sent yet", 0},
	{"commit-sent", actors.StepCommitSent, "coordinator: Commit has reached a participant on another node", actors.StepCommitReceived},
	{"ack-received", actors.StepAckReceived, "coordinator: one participant's ack counted", 0},
	{"all-acked", actors.StepAllAcked, "coordinator: every participant acked, END not yet logged", 0},
	{"abort-decided", actors.StepAbortDecided, "coordinator: decided abort (a no vote, or the vote timeout), no Abort sent yet", 0},
	{"prepare-received", actors.StepPrepareReceived, "participant: locks taken, PREPARED not yet logged", 0},
	{"prepared-logged", actors.StepPreparedLogged, "participant: PREPARED durable, vote not yet sent", 0},
	{"voted", actors.StepVoted, "participant: its vote has reached the coordinator", actors.StepVoteReceived},
	{"commit-received", actors.StepCommitReceived, "participant: Commit arrived, COMMITTED not yet logged", 0},
	{"committed-logged", actors.StepCommittedLogged, "participant: COMMITTED durable and applied, ack not yet sent", 0},
}

// armedCrash is a crash waiting for its node to reach a step (and, for a
// step that sends, for the message to arrive).
type armedCrash struct {
	node int
	step crashStep
	// sent are the arrivals to wait for, one per message sent at the step
	// (the latest maxAwaited): any of them fires the crash. Not only the
	// first — that one may never arrive (cut by a partition, or a vote for
	// a transaction already over), and the crash would wait for ever.
	sent  []actors.Step
	fired chan struct{} // closed when the power is cut
}

const maxAwaited = 256

// sending: s is the step this crash waits for, at a message that leaves.
func (a *armedCrash) sending(s actors.Step) bool {
	return int(s.Node) == a.node && s.Kind == a.step.kind
}

// arrived: s shows one of the awaited messages arrived.
func (a *armedCrash) arrived(s actors.Step) bool {
	for _, w := range a.sent {
		if s.Kind == w.Kind && s.Tx == w.Tx && s.Node == w.Node && (w.Peer < 0 || s.Peer == w.Peer) {
			return true
		}
	}
	return false
}

// arrival is the step at which the message sent at s shows it arrived.
func (a *armedCrash) arrival(s actors.Step) *actors.Step {
	w := &actors.Step{Kind: a.step.delivered, Tx: s.Tx, Node: s.Peer, Peer: -1}
	if s.Kind == actors.StepVoted {
		// The vote is counted by the coordinator's txn actor, which names
		// the voter as its peer.
		w.Node, w.Peer = s.Tx.Node, s.Node
	}
	return w
}

// onStep is every node's step hook. It runs on the reporting actor's
// goroutine, so it only cuts the power there; tearing the node down waits
// for that actor, and is done elsewhere.
func (r *repl) onStep(s actors.Step) {
	if r.nArmed.Load() == 0 {
		return // the usual case: no lock taken on the protocol's hot path
	}
	// Under the lock to the end: a command waiting for this crash
	// (awaitArmed) or a restart must find it either armed or done.
	r.armMu.Lock()
	defer r.armMu.Unlock()
	var fire *armedCrash
	for node, a := range r.armed {
		switch {
		case a.step.delivered == 0 && a.sending(s), a.step.delivered != 0 && a.arrived(s):
			fire = a
			delete(r.armed, node)
			r.nArmed.Add(-1)
		case a.step.delivered != 0 && a.sending(s):
			// A message to the node's own participant dies with it: only
			// one sent to another node counts.
			if a.step.kind == actors.StepVoted || s.Peer != s.Node {
				a.sent = append(a.sent, *a.arrival(s))
				if len(a.sent) > maxAwaited {
					a.sent = a.sent[1:]
				}
			}
		}
		if fire != nil {
			break
		}
	}
	if fire == nil {
		return
	}
	defer close(fire.fired)
	n := r.c.Node(fire.node)
	if n == nil {
		return
	}
	// The note first: the power cut wakes the command waiting on this node,
	// and it prints the notes before its own line.
	r.note(fmt.Sprintf("node %d crashed at %s of %v (power cut)", fire.node, fire.step.name, s.Tx))
	n.PowerCut()
	done := make(chan struct{})
	r.crashMu.Lock()
	r.crashing = append(r.crashing, done)
	r.crashMu.Unlock()
	go func() {
		defer close(done)
		_ = r.c.Crash(fire.node)
	}()
}

// arm sets node's crash at step, replacing one armed before, and says what
// it replaced.
func (r *repl) arm(node int, step crashStep) (replaced string) {
	r.armMu.Lock()
	defer r.armMu.Unlock()
	if old := r.armed[node]; old != nil {
		replaced = old.step.name
	} else {
		r.nArmed.Add(1)
	}
	r.armed[node] = &armedCrash{node: node, step: step, fired: make(chan struct{})}
	return replaced
}

// disarm cancels node's armed crash, if any, and says which step it was.
func (r *repl) disarm(node int) string {
	r.armMu.Lock()
	defer r.armMu.Unlock()
	old := r.armed[node]
	if old == nil {
		return ""
	}
	delete(r.armed, node)
	r.nArmed.Add(-1)
	return old.step.name
}

// awaitArmed gives a crash armed on one of nodes a moment to fire: steps
// after the client's answer (a participant's commit-received, say) come
// just after the command's own line, and the next command — a restart —
// must find the node down.
func (r *repl) awaitArmed(nodes []int32, within time.Duration) {
	r.armMu.Lock()
	var waits []chan struct{}
	for _, n := range nodes {
		if a := r.armed[int(n)]; a != nil {
			waits = append(waits, a.fired)
		}
	}
	r.armMu.Unlock()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for _, w := range waits {
		select {
		case <-w:
		case <-deadline.C:
			return
		}
	}
}

func (r *repl) crash(args []string) error {
	usage := "usage: " + commandsByName["crash"].syntax
	if len(args) != 1 && len(args) != 3 {
		return errors.New(usage)
	}
	node, err := r.parseNode(args[0])
	if err != nil {
		return err
	}
	if r.c.Up(node) == nil {
		return fmt.Errorf("node %d is already down", node)
	}
	if len(args) == 3 {
		if args[1] != "at" {
			return errors.New(usage)
		}
		for _, s := range crashSteps {
			if s.name == args[2] {
				note := ""
				if old := r.arm(node, s); old != "" {
					note = fmt.Sprintf("; this replaces its crash at %s", old)
				}
				fmt.Fprintf(r.out, "node %d will crash when it next reaches %s (%s)%s\n", node, s.name, s.what, note)
				return nil
			}
		}
		var names []string
		for _, s := range crashSteps {
			names = append(names, s.name)
		}
		return fmt.Errorf("unknown step %q (steps: %s)", args[2], strings.Join(names, ", "))
	}
	cancelled := r.disarm(node)
	if err := r.c.Crash(node); err != nil {
		return err
	}
	fmt.Fprintf(r.out, "node %d crashed (power cut: log writes not yet synced are lost)\n", node)
	if cancelled != "" {
		fmt.Fprintf(r.out, "its crash armed at %s is cancelled\n", cancelled)
	}
	return nil
}

func (r *repl) restart(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: %s", commandsByName["restart"].syntax)
	}
	node, err := r.parseNode(args[0])
	if err != nil {
		return err
	}
	r.waitCrashes() // a crash at a step may still be tearing the node down
	if r.c.Node(node) != nil {
		return fmt.Errorf("node %d is up (crash %d first)", node, node)
	}
	if err := r.c.RestartNode(node); err != nil {
		return err
	}
	n := r.c.Node(node)
	if n == nil {
		return fmt.Errorf("node %d did not come up", node)
	}
	extra := ""
	if ps, err := n.ParticipantStatus(); err == nil && len(ps.InDoubt) > 0 {
		extra = fmt.Sprintf(", %d in doubt", len(ps.InDoubt))
	}
	fmt.Fprintf(r.out, "node %d restarted (incarnation %d%s)\n", node, n.Incarnation(), extra)
	return nil
}

func (r *repl) partition(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: %s", commandsByName["partition"].syntax)
	}
	a, err := r.parseNode(args[0])
	if err != nil {
		return err
	}
	b, err := r.parseNode(args[1])
	if err != nil {
		return err
	}
	if a == b {
		return fmt.Errorf("cannot partition node %d from itself", a)
	}
	if err := r.c.Partition(a, b); err != nil {
		return err
	}
	fmt.Fprintf(r.out, "partitioned node %d from node %d\n", a, b)
	return nil
}

func (r *repl) heal(args []string) error {
	if len(args) > 0 {
		return errors.New("heal takes no arguments")
	}
	r.c.Heal()
	fmt.Fprintln(r.out, "healed: every link restored")
	return nil
}

// --- in doubt ---

func (r *repl) indoubt(args []string) error {
	if len(args) > 0 {
		return errors.New("indoubt takes no arguments")
	}
	list, err := r.c.InDoubt()
	if err != nil {
		return err
	}
	if len(list) == 0 {
		fmt.Fprintln(r.out, "no transaction is in doubt")
		return nil
	}
	w := tabwriter.NewWriter(r.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "tx\tnode\tage\twaits for")
	for _, d := range list {
		coord := fmt.Sprintf("coordinator node %d", d.Tx.Node)
		if !d.CoordinatorUp {
			coord += " (down)"
		}
		var peers []string
		for _, p := range d.Participants {
			if p != d.Node {
				peers = append(peers, fmt.Sprint(p))
			}
		}
		waits := coord
		if len(peers) > 0 {
			waits += "; also asks node " + strings.Join(peers, ", ")
		}
		fmt.Fprintf(w, "%v\t%d\t%s\t%s\n", d.Tx, d.Node, time.Since(d.Since).Round(100*time.Millisecond), waits)
		r.remember(d.Tx.String())
	}
	return w.Flush()
}

func (r *repl) resolve(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: %s", commandsByName["resolve"].syntax)
	}
	tx, err := r.parseTxID(args[0])
	if err != nil {
		return err
	}
	var commit bool
	switch args[1] {
	case "commit":
		commit = true
	case "abort":
	default:
		return fmt.Errorf("resolve %v: want commit or abort, got %q", tx, args[1])
	}
	res, err := r.c.Resolve(tx, commit)
	// A refusal is an answer, not a mistake in the command: it says why.
	var known *cluster.OutcomeKnownError
	var running *cluster.CoordinatorRunningError
	if errors.As(err, &known) || errors.As(err, &running) {
		fmt.Fprintln(r.out, err.Error())
		return nil
	}
	if err != nil {
		return err
	}
	decision := "abort"
	if res.Commit {
		decision = "commit"
	}
	var nodes []string
	for _, n := range res.Nodes {
		nodes = append(nodes, fmt.Sprint(n))
	}
	fmt.Fprintf(r.out, "resolved %v: heuristic %s on node %s (the coordinator's decision was unknown; if it decided otherwise, the nodes now disagree)\n",
		tx, decision, strings.Join(nodes, ", "))
	return nil
}

func (r *repl) parseTxID(s string) (messages.TxID, error) {
	tx, err := messages.ParseTxID(s)
	if err != nil {
		return tx, fmt.Errorf("%q is not a transaction id (node.incarnation.seq, as printed by committed/aborted lines)", s)
	}
	if int(tx.Node) >= r.opts.nodes {
		return tx, fmt.Errorf("transaction %v names node %d, which does not exist (nodes are 0-%d)", tx, tx.Node, r.opts.nodes-1)
	}
	return tx, nil
}

// --- looking inside ---

func (r *repl) trace(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: %s", commandsByName["trace"].syntax)
	}
	tx, err := r.parseTxID(args[0])
	if err != nil {
		return err
	}
	return r.tracer.Render(r.out, tx, r.opts.nodes)
}

func (r *repl) loglevel(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: %s", commandsByName["loglevel"].syntax)
	}
	level := hclog.LevelFromString(args[0])
	if level == hclog.NoLevel || level == hclog.Off {
		return fmt.Errorf("unknown log level %q (want trace, debug, info, warn or error)", args[0])
	}
	r.logger.SetLevel(level)
	fmt.Fprintf(r.out, "log level is %s\n", strings.ToLower(args[0]))
	return nil
}
