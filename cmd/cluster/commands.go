package main

// The prompt's commands, as one table: each entry has its syntax, its
// help, how many arguments it takes (checked once, in exec), how to
// complete its next word, and what it does. Their output lines are an
// interface: scripts read them, so change them only with the README.

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

type command struct {
	name   string
	syntax string
	help   string
	args   arity
	// complete lists the candidates for the word after args (those typed
	// so far after the command's name); nil: nothing to offer.
	complete func(r *repl, args []string) []string
	// tx, for a transaction command, parses its arguments (without `via
	// <node>`) into operations; run is then txCommand.
	tx  func(args []string) (*txSpec, error)
	run func(r *repl, args []string) error
}

// arity is the argument counts a command takes: exactly one of counts, or
// with more, counts[0] or more.
type arity struct {
	counts []int
	more   bool
}

func exactly(n ...int) arity { return arity{counts: n} }
func atLeast(n int) arity    { return arity{counts: []int{n}, more: true} }

func (a arity) allows(n int) bool {
	if a.more {
		return n >= a.counts[0]
	}
	for _, c := range a.counts {
		if c == n {
			return true
		}
	}
	return false
}

// check is the one place a command's argument count is checked.
func (c *command) check(args []string) error {
	if c.args.allows(len(args)) {
		return nil
	}
	if !c.args.more && len(c.args.counts) == 1 && c.args.counts[0] == 0 {
		return fmt.Errorf("%s takes no arguments", c.name)
	}
	return fmt.Errorf("usage: %s", c.syntax)
}

var commands []*command

var commandsByName = map[string]*command{}

func init() {
	commands = []*command{
		{name: "help", syntax: "help", help: "this list", args: exactly(0), run: (*repl).help},
		{name: "add", syntax: "add <delta> [via <node>]", help: "one transaction adding delta to `value` on every node",
			args: exactly(1), tx: parseAdd},
		{name: "set", syntax: "set <key>=<int> [<key>=<int> ...] [via <node>]", help: "one transaction setting every key given",
			args: atLeast(1), tx: parseSet, complete: completeSet},
		{name: "transfer", syntax: "transfer <from> <to> <amount> [via <node>]", help: "one transaction moving amount from one key to another; from may not go below 0",
			args: exactly(3), tx: parseTransfer, complete: completeTransfer},
		{name: "get", syntax: "get <key> [<key> ...]", help: "each key's committed value on every node that holds it (a missing key reads 0)",
			args: atLeast(1), run: (*repl).get, complete: func(r *repl, _ []string) []string { return r.keys.list(true) }},
		{name: "spawn", syntax: "spawn <n> <add|set|transfer ...>", help: "n concurrent transactions of that command (round-robin over the nodes that are up unless via is given)",
			args: atLeast(2), run: (*repl).spawn, complete: completeSpawn},
		{name: "status", syntax: "status", help: "every node: address, up or down, transactions in flight, locks, in doubt, log size, last snapshot, clock skew",
			args: exactly(0), run: (*repl).status},
		{name: "crash", syntax: "crash <node> [at <step>]", help: "cut the node's power now, or when it next reaches step (see below); unsynced log writes are lost",
			args: exactly(1, 3), run: (*repl).crash, complete: completeCrash},
		{name: "restart", syntax: "restart <node>", help: "start a crashed node again: it recovers from its log and rejoins",
			args: exactly(1), run: (*repl).restart, complete: completeNodes(1)},
		{name: "partition", syntax: "partition <a> <b>", help: "cut the links between nodes a and b (both ways)",
			args: exactly(2), run: (*repl).partition, complete: completeNodes(2)},
		{name: "heal", syntax: "heal", help: "restore every link", args: exactly(0), run: (*repl).heal},
		{name: "faults", syntax: "faults <node> [drop=<p>] [dup=<p>] [delay=<p>[:<max>]] [reorder=<p>] | off", help: "message faults on the node's outbound messages: lost, sent twice, held back (up to max, default 50ms), swapped; off stops them; with the node alone, what is set and what it did",
			args: atLeast(1), run: (*repl).faults, complete: completeFaults},
		{name: "skew", syntax: "skew <node> <±duration>", help: "set the node's clock off by duration (e.g. +5s, -5s; 0 clears it), kept across its restarts; no outcome depends on it",
			args: exactly(2), run: (*repl).skew, complete: completeSkew},
		{name: "indoubt", syntax: "indoubt", help: "every transaction a participant voted yes on and has no decision for: id, node, age, whom it waits for",
			args: exactly(0), run: (*repl).indoubt},
		{name: "resolve", syntax: "resolve <txid> commit|abort", help: "an operator's forced (heuristic) decision for an in-doubt transaction; refused when the real outcome is known",
			args: exactly(2), run: (*repl).resolve, complete: completeResolve},
		{name: "trace", syntax: "trace <txid>", help: "the transaction's messages, log writes and decision across nodes, as a sequence diagram",
			args: exactly(1), run: (*repl).trace, complete: completeTrace},
		{name: "wait", syntax: "wait settled|indoubt <n>", help: "wait (at most " + waitLimit.String() + ") until the running nodes have nothing in flight, locked or in doubt, or until n transactions are in doubt",
			args: exactly(1, 2), run: (*repl).wait, complete: completeWait},
		{name: "sleep", syntax: "sleep <duration>", help: "do nothing for a while (at most " + maxSleep.String() + "), e.g. 500ms or 2s",
			args: exactly(1), run: (*repl).sleep, complete: func(_ *repl, args []string) []string { return first(args, "1s") }},
		{name: "loglevel", syntax: "loglevel [trace|debug|info|warn|error]", help: "how much of the protocol the nodes log (to stderr); alone, the level now",
			args: exactly(0, 1), run: (*repl).loglevel, complete: func(_ *repl, args []string) []string { return first(args, logLevels...) }},
		{name: "quit", syntax: "quit", help: "stop the cluster cleanly and leave (also Ctrl-D, or the end of piped input); with --connect the nodes keep running", args: exactly(0)},
	}
	for _, c := range commands {
		if c.tx != nil {
			c.run = txCommand(c)
			c.complete = completeTx(c.complete, c.args)
		}
		commandsByName[c.name] = c
	}
}

var logLevels = []string{"trace", "debug", "info", "warn", "error"}

func (r *repl) help([]string) error {
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

// --- completion ---

// completer completes a line from the table: the command's name, then
// whatever the command offers for its next word.
type completer struct{ r *repl }

func (r *repl) completer() completer { return completer{r} }

// Do is readline's AutoCompleter: the candidates' rest after the word
// being typed, and that word's length.
func (c completer) Do(line []rune, pos int) ([][]rune, int) {
	text := string(line[:pos])
	words := strings.Fields(text)
	typed := ""
	if len(words) > 0 && !strings.HasSuffix(text, " ") {
		typed, words = words[len(words)-1], words[:len(words)-1]
	}
	var candidates []string
	if len(words) == 0 {
		for _, cmd := range commands {
			candidates = append(candidates, cmd.name)
		}
	} else if cmd := commandsByName[words[0]]; cmd != nil && cmd.complete != nil {
		candidates = cmd.complete(c.r, words[1:])
	}
	var out [][]rune
	for _, cand := range candidates {
		if strings.HasPrefix(cand, typed) {
			rest := cand[len(typed):]
			if !strings.HasSuffix(cand, "=") { // a key to set goes on with its value
				rest += " "
			}
			out = append(out, []rune(rest))
		}
	}
	return out, len([]rune(typed))
}

// first offers candidates for a command's first argument only.
func first(args []string, candidates ...string) []string {
	if len(args) > 0 {
		return nil
	}
	return candidates
}

func (r *repl) nodeNames() []string {
	var out []string
	for i := 0; i < r.opts.nodes; i++ {
		out = append(out, strconv.Itoa(i))
	}
	return out
}

// completeNodes offers node ids for the first n arguments.
func completeNodes(n int) func(*repl, []string) []string {
	return func(r *repl, args []string) []string {
		if len(args) >= n {
			return nil
		}
		return r.nodeNames()
	}
}

// completeTx wraps a transaction command's own completion: `via <node>`
// once its arguments could be complete, and the node after `via`.
func completeTx(own func(*repl, []string) []string, a arity) func(*repl, []string) []string {
	return func(r *repl, args []string) []string {
		for i, w := range args {
			if w == "via" {
				if i == len(args)-1 {
					return r.nodeNames()
				}
				return nil // via is the end
			}
		}
		var out []string
		if own != nil {
			out = own(r, args)
		}
		if a.allows(len(args)) {
			out = append(out, "via")
		}
		return out
	}
}

func completeSet(r *repl, _ []string) []string {
	var out []string
	for _, k := range r.keys.list(false) {
		out = append(out, k+"=")
	}
	return out
}

func completeTransfer(r *repl, args []string) []string {
	if len(args) < 2 {
		return r.keys.list(false)
	}
	return nil
}

func completeSpawn(r *repl, args []string) []string {
	switch {
	case len(args) == 0:
		return []string{"10", "100", "1000"}
	case len(args) == 1:
		var out []string
		for _, c := range commands {
			if c.tx != nil {
				out = append(out, c.name)
			}
		}
		return out
	}
	if c := commandsByName[args[1]]; c != nil && c.tx != nil {
		return c.complete(r, args[2:])
	}
	return nil
}

func completeCrash(r *repl, args []string) []string {
	switch len(args) {
	case 0:
		return r.nodeNames()
	case 1:
		return []string{"at"}
	case 2:
		var out []string
		for _, s := range crashSteps {
			out = append(out, s.name)
		}
		return out
	}
	return nil
}

func completeSkew(r *repl, args []string) []string {
	switch len(args) {
	case 0:
		return r.nodeNames()
	case 1:
		return []string{"+5s", "-5s", "0"}
	}
	return nil
}

func completeFaults(r *repl, args []string) []string {
	if len(args) == 0 {
		return r.nodeNames()
	}
	if slices.Contains(args[1:], "off") {
		return nil
	}
	var out []string
	if len(args) == 1 {
		out = append(out, "off")
	}
	for _, f := range []string{"drop=", "dup=", "delay=", "reorder="} {
		given := false
		for _, a := range args[1:] {
			given = given || strings.HasPrefix(a, f)
		}
		if !given {
			out = append(out, f)
		}
	}
	return out
}

func completeTrace(r *repl, args []string) []string { return first(args, r.recentTxs()...) }

func completeResolve(r *repl, args []string) []string {
	switch len(args) {
	case 0:
		return r.recentTxs()
	case 1:
		return []string{"commit", "abort"}
	}
	return nil
}

func completeWait(_ *repl, args []string) []string {
	switch {
	case len(args) == 0:
		return []string{"settled", "indoubt"}
	case len(args) == 1 && args[0] == "indoubt":
		return []string{"0"}
	}
	return nil
}
