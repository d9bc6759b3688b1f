package main

// Breaking it and looking inside: crash, restart, partition, heal, skew,
// faults, indoubt, resolve, trace, loglevel, wait, sleep.

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"twopc/actors"
	"twopc/bridge"
	"twopc/cluster"
	"twopc/messages"
)

// crashStep is a point of the protocol at which `crash <node> at` cuts the
// node's power.
type crashStep struct {
	name string
	kind actors.StepKind
	what string
	// sends: the step sends a message, and the crash waits for it to
	// arrive (cluster.Delivered): a power cut at the sending step itself
	// drops the message still queued in the bridge, and "vote sent" would
	// be no different from "PREPARED logged".
	sends bool
}

var crashSteps = []crashStep{
	{"prepare-sent", actors.StepPrepareSent, "coordinator: a Prepare has reached a participant on another node", true},
	{"vote-received", actors.StepVoteReceived, "coordinator: a vote has just been counted", false},
	{"commit-decided", actors.StepCommitDecided, "coordinator: every vote is yes, COMMIT not yet logged", false},
	{"commit-logged", actors.StepCommitLogged, "coordinator: COMMIT durable, no Commit sent yet", false},
	{"commit-sent", actors.StepCommitSent, "coordinator: Commit has reached a participant on another node", true},
	{"ack-received", actors.StepAckReceived, "coordinator: one participant's ack counted", false},
	{"all-acked", actors.StepAllAcked, "coordinator: every participant acked, END not yet logged", false},
	{"abort-decided", actors.StepAbortDecided, "coordinator: decided abort (a no vote, or the vote timeout), no Abort sent yet", false},
	{"prepare-received", actors.StepPrepareReceived, "participant: locks taken, PREPARED not yet logged", false},
	{"prepared-logged", actors.StepPreparedLogged, "participant: PREPARED durable, vote not yet sent", false},
	{"voted", actors.StepVoted, "participant: its vote has reached the coordinator", true},
	{"commit-received", actors.StepCommitReceived, "participant: Commit arrived, COMMITTED not yet logged", false},
	{"committed-logged", actors.StepCommittedLogged, "participant: COMMITTED durable and applied, ack not yet sent", false},
	// The non-blocking commit's own steps (--protocol nonblocking).
	{"accept-sent", actors.StepAcceptSent, "coordinator (nonblocking): its ballot-0 AcceptRequest has reached an acceptor on another node", true},
	{"accepted-logged", actors.StepAcceptedLogged, "acceptor (nonblocking): ACCEPTED durable, its answer not yet sent", false},
	{"promised-logged", actors.StepPromisedLogged, "acceptor (nonblocking): PROMISED durable for a recovery ballot, its answer not yet sent", false},
	{"recovery-started", actors.StepRecoveryStarted, "participant in doubt (nonblocking): its recovery round's PromiseRequests are out", false},
	{"recovery-chosen", actors.StepRecoveryChosen, "participant (nonblocking): its recovery round chose the outcome, not yet applied or passed on", false},
}

// stepName is the prompt's name for kind.
func stepName(kind actors.StepKind) string {
	for _, s := range crashSteps {
		if s.kind == kind {
			return s.name
		}
	}
	return kind.String()
}

// ownProcess is the error of crash and restart against nodes this
// process does not run: only a signal to the node's own process does that.
func (r *repl) ownProcess(what string, node int) error {
	return fmt.Errorf("%s needs to own node %d's process, which runs elsewhere: crash it with a signal (kill -9 <pid> of node %d's process, or kill -KILL the container), and restart it by starting that process again with the same flags (it recovers from its log)", what, node, node)
}

func (r *repl) crash(args []string) error {
	node, err := r.parseNode(args[0])
	if err != nil {
		return err
	}
	c := r.c.local()
	if c == nil {
		return r.ownProcess("crash", node)
	}
	if c.Up(node) == nil {
		return fmt.Errorf("node %d is already down", node)
	}
	if len(args) == 3 {
		if args[1] != "at" {
			return fmt.Errorf("usage: %s", commandsByName["crash"].syntax)
		}
		return r.crashAt(node, args[2])
	}
	cancelled := c.Disarm(node)
	if err := c.Crash(node); err != nil {
		return err
	}
	fmt.Fprintf(r.out, "node %d crashed (power cut: log writes not yet synced are lost)\n", node)
	if cancelled != nil {
		fmt.Fprintf(r.out, "its crash armed at %s is cancelled\n", stepName(cancelled.Step()))
	}
	return nil
}

// crashAt arms node's crash at the named step, replacing one armed before.
func (r *repl) crashAt(node int, name string) error {
	for _, s := range crashSteps {
		if s.name != name {
			continue
		}
		// The note is said under the crash's lock, before the power cut:
		// the cut wakes the command waiting on this node, and it prints
		// the notes before its own line.
		opts := []cluster.CrashOption{cluster.Notify(func(at actors.Step) {
			r.note(fmt.Sprintf("node %d crashed at %s of %v (power cut)", node, s.name, at.Tx))
		})}
		if s.sends {
			opts = append(opts, cluster.Delivered())
		}
		a, err := r.c.local().CrashAt(node, s.kind, opts...)
		if err != nil {
			return err
		}
		note := ""
		if old := a.Replaced(); old != nil {
			note = fmt.Sprintf("; this replaces its crash at %s", stepName(old.Step()))
		}
		fmt.Fprintf(r.out, "node %d will crash when it next reaches %s (%s)%s\n", node, s.name, s.what, note)
		return nil
	}
	var names []string
	for _, s := range crashSteps {
		names = append(names, s.name)
	}
	return fmt.Errorf("unknown step %q (steps: %s)", name, strings.Join(names, ", "))
}

func (r *repl) restart(args []string) error {
	node, err := r.parseNode(args[0])
	if err != nil {
		return err
	}
	c := r.c.local()
	if c == nil {
		return r.ownProcess("restart", node)
	}
	c.WaitCrashed(node) // a crash at a step may still be tearing the node down
	if c.Node(node) != nil {
		return fmt.Errorf("node %d is up (crash %d first)", node, node)
	}
	if err := c.RestartNode(node); err != nil {
		return err
	}
	n := c.Node(node)
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

// maxSkew bounds the skew command (the nodes refuse more too).
const maxSkew = cluster.MaxSkew

// skew sets a node's clock off by a duration (cluster.Local.SetSkew).
func (r *repl) skew(args []string) error {
	n, err := r.parseNode(args[0])
	if err != nil {
		return err
	}
	d, err := time.ParseDuration(args[1])
	if err != nil {
		return fmt.Errorf("skew %q is not a duration (e.g. +5s, -500ms, 0)", args[1])
	}
	if d > maxSkew || d < -maxSkew {
		return fmt.Errorf("skew %v is more than %v either way", d, maxSkew)
	}
	if err := r.c.setSkew(n, d); err != nil {
		return err
	}
	if d == 0 {
		fmt.Fprintf(r.out, "node %d clock skew cleared\n", n)
	} else {
		fmt.Fprintf(r.out, "node %d clock skew %s\n", n, skewString(d))
	}
	return nil
}

// skewString shows a skew with its sign: +5s, -5s, 0.
func skewString(d time.Duration) string {
	if d > 0 {
		return "+" + d.String()
	}
	if d == 0 {
		return "0"
	}
	return d.String()
}

func (r *repl) partition(args []string) error {
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
	if err := r.c.partition(a, b); err != nil {
		return err
	}
	fmt.Fprintf(r.out, "partitioned node %d from node %d\n", a, b)
	return nil
}

func (r *repl) heal([]string) error {
	if err := r.c.heal(); err != nil {
		return err
	}
	fmt.Fprintln(r.out, "healed: every link restored")
	return nil
}

// --- in doubt ---

// indoubt lists what the nodes that answered are in doubt about; a node
// that did not answer (or a list cut short) gets an error line after it.
func (r *repl) indoubt([]string) error {
	list, err := r.c.inDoubt()
	if err != nil && len(list) == 0 {
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
	w.Flush()
	return err
}

func (r *repl) resolve(args []string) error {
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
	res, err := r.c.resolve(tx, commit)
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
	tx, err := r.parseTxID(args[0])
	if err != nil {
		return err
	}
	return r.c.trace(r.out, tx)
}

// loglevel sets how much the nodes log, or with no argument says it.
func (r *repl) loglevel(args []string) error {
	if len(args) == 0 {
		level, err := r.c.logLevel()
		if err != nil {
			return err
		}
		fmt.Fprintf(r.out, "log level is %s\n", level)
		return nil
	}
	level, err := cluster.ParseLogLevel(strings.ToLower(args[0]))
	if err != nil {
		return err
	}
	if err := r.c.setLogLevel(level); err != nil {
		return err
	}
	fmt.Fprintf(r.out, "log level is %s\n", strings.ToLower(args[0]))
	return nil
}

// --- waiting ---

// waitLimit bounds `wait`; maxSleep bounds `sleep`.
const (
	waitLimit = 30 * time.Second
	maxSleep  = 10 * time.Minute
)

// wait waits for a state of the cluster rather than for a time: a script
// that waits for what it means does not depend on how busy the machine is.
// The state is spread over the nodes, with no single event to wait on, so
// it is looked at every waitPoll.
func (r *repl) wait(args []string) error {
	var want func() (ok bool, now string)
	var done string
	switch {
	case len(args) == 1 && args[0] == "settled":
		want, done = r.settled, "settled: nothing in flight, locked or in doubt on the running nodes"
	case len(args) == 2 && args[0] == "indoubt":
		n, err := parseInt("count", args[1])
		if err != nil || n < 0 {
			return fmt.Errorf("in-doubt count %q must be 0 or more", args[1])
		}
		want = func() (bool, string) {
			list, err := r.c.inDoubt()
			if err != nil {
				return false, err.Error()
			}
			return len(list) == int(n), fmt.Sprintf("%d in doubt", len(list))
		}
		done = fmt.Sprintf("%d in doubt", n)
	default:
		return fmt.Errorf("usage: %s", commandsByName["wait"].syntax)
	}
	deadline := time.Now().Add(waitLimit)
	poll := time.NewTicker(waitPoll)
	defer poll.Stop()
	for {
		ok, now := want()
		if ok {
			fmt.Fprintln(r.out, done)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still %s after %v", now, waitLimit)
		}
		select {
		case <-poll.C:
		case <-r.ctx.Done():
			return fmt.Errorf("interrupted (Ctrl-C) while still %s", now)
		}
	}
}

const waitPoll = 20 * time.Millisecond

// settled: no running node coordinates a transaction, holds a lock, is in
// doubt, or has a Prepare or COMMITTED under way; and their logs are synced.
func (r *repl) settled() (bool, string) { return r.c.settled() }

func (r *repl) sleep(args []string) error {
	d, err := time.ParseDuration(args[0])
	if err != nil || d <= 0 || d > maxSleep {
		return fmt.Errorf("sleep %q: want a duration from 1ms to %v, such as 500ms or 2s", args[0], maxSleep)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-r.ctx.Done():
		return errors.New("sleep interrupted (Ctrl-C)")
	}
}

// --- message faults ---

// maxFaultDelay bounds how long `faults ... delay=<p>:<max>` holds a
// message back: longer than any vote timeout worth testing with.
const maxFaultDelay = time.Minute

// faults sets, clears or shows the message faults on a node's outbound
// messages.
func (r *repl) faults(args []string) error {
	node, err := r.parseNode(args[0])
	if err != nil {
		return err
	}
	switch {
	case len(args) == 1:
		f, st, err := r.c.faults(node)
		if err != nil {
			return err
		}
		fmt.Fprintf(r.out, "%s (so far %d dropped, %d duplicated, %d delayed, %d reordered)\n",
			faultsLine(node, f), st.Dropped, st.Duplicated, st.Delayed, st.Reordered)
		return nil
	case len(args) == 2 && args[1] == "off":
		if err := r.c.setFaults(node, bridge.Faults{}); err != nil {
			return err
		}
		fmt.Fprintln(r.out, faultsLine(node, bridge.Faults{}))
		return nil
	}
	f, err := parseFaults(args[1:])
	if err != nil {
		return err
	}
	if err := r.c.setFaults(node, f); err != nil {
		return err
	}
	fmt.Fprintln(r.out, faultsLine(node, f))
	return nil
}

// parseFaults reads drop=<p> dup=<p> delay=<p>[:<max>] reorder=<p>, each
// at most once, in any order; those not given are 0.
func parseFaults(args []string) (bridge.Faults, error) {
	var f bridge.Faults
	seen := map[string]bool{}
	for _, a := range args {
		name, val, ok := strings.Cut(a, "=")
		if !ok {
			if a == "off" {
				return f, errors.New("off stands alone: faults <node> off")
			}
			return f, fmt.Errorf("%q is not <fault>=<probability> (usage: %s)", a, commandsByName["faults"].syntax)
		}
		if seen[name] {
			return f, fmt.Errorf("fault %s is given twice", name)
		}
		seen[name] = true
		var p *float64
		switch name {
		case "drop":
			p = &f.Drop
		case "dup":
			p = &f.Duplicate
		case "delay":
			p = &f.Delay
			if prob, max, ok := strings.Cut(val, ":"); ok {
				d, err := time.ParseDuration(max)
				if err != nil || d <= 0 || d > maxFaultDelay {
					return f, fmt.Errorf("delay=%s: the longest hold %q must be a duration from 1ms to %v, such as 50ms", val, max, maxFaultDelay)
				}
				f.MaxDelay, val = d, prob
			}
		case "reorder":
			p = &f.Reorder
		default:
			return f, fmt.Errorf("unknown fault %q (faults are drop, dup, delay and reorder)", name)
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil || !(v >= 0 && v <= 1) {
			return f, fmt.Errorf("%s=%s: want a probability from 0 to 1, such as 0.1", name, val)
		}
		*p = v
	}
	return f, nil
}

// faultsLine is `node <id> faults: drop=<p> dup=<p> delay=<p>:<max>
// reorder=<p>`, or `node <id> faults off`.
func faultsLine(node int, f bridge.Faults) string {
	if f.Drop == 0 && f.Duplicate == 0 && f.Delay == 0 && f.Reorder == 0 {
		return fmt.Sprintf("node %d faults off", node)
	}
	max := f.MaxDelay
	if max == 0 {
		max = bridge.DefaultMaxDelay
	}
	p := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	return fmt.Sprintf("node %d faults: drop=%s dup=%s delay=%s:%v reorder=%s", node, p(f.Drop), p(f.Duplicate), p(f.Delay), max, p(f.Reorder))
}
