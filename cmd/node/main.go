// Command node runs one twopc node in this process, so the members of a
// cluster can run as separate processes, on one host or several:
//
//	node --id N --peers host:port,host:port,... --tls-dir DIR [--data-dir ./logs] [--log-level info] [--http 127.0.0.1:9100]
//
// --tls-dir holds the cluster's certificates as cmd/certs writes them
// (ca.crt, node-<id>.crt, node-<id>.key): every connection, to peers and
// from clients, is then mutual TLS. Without it the node refuses to start
// (exit 2) unless --insecure is given, which serves plain TCP and believes
// anyone who can reach the port; it says so in a warning.
//
// --peers lists every member in node-id order, this node's own address
// included, so every process is given the same list. The node listens on
// its own entry and keeps its data in <data-dir>/node-<id>.
//
// Once serving it prints "node <id> serving on <addr> (incarnation <n>)" to
// stdout; its log goes to stderr. SIGINT or SIGTERM stops it cleanly
// (pending log appends flushed, listener and connections closed) and it
// prints "node <id> stopped" and exits 0. A second signal while stopping
// exits at once with 1. Usage errors exit 2, a failed start 1. A node whose
// log fails (a write or fsync error: a full or failing disk) stops serving
// at once and exits 3, so that a supervisor restarts it: started again, it
// recovers from what its log really holds.
//
// With --http ADDR it also serves Prometheus /metrics, /healthz and /readyz
// on ADDR (see package twopc/metrics), and the live web view of this node at
// / (package twopc/web; it watches, actions stay with the prompt), and
// prints "http: serving on http://<addr>" first.
//
// An operator drives the node with `cmd/cluster --connect`, through its
// Admin service (cluster/admin.go), which only the admin certificate
// reaches. For that prompt's `trace` the node keeps its part of the traces
// of its last transactions in memory (cluster.NodeTraceTransactions).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"twopc/actors"
	"twopc/cluster"
	"twopc/identity"
	"twopc/metrics"
	"twopc/trace"
	"twopc/web"
)

func main() {
	// Buffered for two: the first starts the shutdown, the second must
	// still be caught if it arrives before the shutdown listens for it.
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	// One node per process: one extra P for its persistence actor's fsyncs.
	cluster.TuneProcs(1)
	os.Exit(exitCode(run(os.Args[1:], os.Stdout, os.Stderr, sig), os.Stderr))
}

// usageError is a mistake in the command line: exit code 2, as flag does.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// exitLogFailed is the exit code of a node that stopped because its log
// failed: distinct from usage (2) and start failures (1), so a supervisor
// can tell "restart me" from "fix my command line".
const exitLogFailed = 3

// logFailedError ends a node whose log failed (cluster.Node.FailStopped).
type logFailedError struct {
	id  int32
	err error
}

func (e *logFailedError) Error() string {
	return fmt.Sprintf("node %d stopped: its log failed: %v; start it again to recover from its log", e.id, e.err)
}

func (e *logFailedError) Unwrap() error { return e.err }

// viewTraces is how many transactions' traces a node served over --http
// keeps for the web view's diagrams.
const viewTraces = 1000

// errSecondSignal ends a shutdown that the operator no longer waits for.
var errSecondSignal = errors.New("second signal during shutdown: exiting without waiting")

// exitCode reports err on stderr and maps it to the process's exit code.
func exitCode(err error, stderr io.Writer) int {
	var ue *usageError
	var lf *logFailedError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "node: %v\nrun 'node -h' for usage\n", err)
		return 2
	case errors.As(err, &lf):
		fmt.Fprintf(stderr, "node: %v\n", err)
		return exitLogFailed
	}
	fmt.Fprintf(stderr, "node: %v\n", err)
	return 1
}

// options is the parsed command line.
type options struct {
	id      int32
	peers   []string
	dataDir string
	level   hclog.Level
	timing  actors.Timing

	tlsDir   string // "" only with insecure
	insecure bool
	maxConns int    // client connections (0: cluster.DefaultMaxConns)
	http     string // --http: where metrics and health are served ("": nowhere)
	protocol actors.Protocol
}

// parseArgs reads the command line; every error is a *usageError naming
// the flag or entry at fault (or flag.ErrHelp after printing the usage).
func parseArgs(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	// A string, parsed below, so a bad id is reported with the valid range
	// and the help shows no made-up default.
	id := fs.String("id", "", "this node's id: its index in --peers (required)")
	peers := fs.String("peers", "", "every member's host:port, comma-separated, in node-id order, this node's own included (required)")
	dataDir := fs.String("data-dir", cluster.DefaultDataDir, "parent directory of the nodes' data; this node uses <data-dir>/node-<id>")
	logLevel := fs.String("log-level", "info", "trace, debug, info, warn or error")
	voteTimeout := fs.Duration("vote-timeout", 0, "how long a coordinator waits for votes (0: "+actors.DefaultTiming.VoteTimeout.String()+"); every node should use the same")
	inDoubtAfter := fs.Duration("in-doubt-after", 0, "how long a prepared participant waits before asking for the decision (0: "+actors.DefaultTiming.InDoubtAfter.String()+")")
	tlsDir := fs.String("tls-dir", "", "directory with ca.crt, node-<id>.crt and node-<id>.key (go run ./cmd/certs makes them); required unless --insecure")
	insecure := fs.Bool("insecure", false, "serve plain TCP without certificates: anyone who reaches the port is believed to be a member")
	maxConns := fs.Int("max-conns", 0, fmt.Sprintf("client and admin connections served at once (0: %d); members' connections do not count", cluster.DefaultMaxConns))
	httpAddr := fs.String("http", "", "serve the live web view at /, and /metrics, /healthz and /readyz, on this host:port (\"\": no HTTP server)")
	protocol := fs.String("protocol", string(actors.DefaultProtocol), "commit protocol: 2pc (classic, blocks while a coordinator is down) or nonblocking (Paxos Commit: a majority of three acceptors chooses the outcome); every node must run the same")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: node --id N --peers host:port,host:port,... [flags]\n\nRuns one twopc node; it listens on its own entry of --peers.\n\n")
		fs.PrintDefaults()
	}
	// flag prints its own error and the usage on a parse error; the error
	// is reported once, by exitCode, so only -h writes the usage here.
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			fs.Usage()
			return nil, err
		}
		return nil, usagef("%v", err)
	}
	if fs.NArg() > 0 {
		return nil, usagef("unexpected argument %q (flags start with --)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	o := &options{dataDir: *dataDir, http: *httpAddr}
	var err error
	if o.peers, err = parsePeers(*peers, set["peers"]); err != nil {
		return nil, err
	}
	if !set["id"] {
		return nil, usagef("missing --id: this node's index in --peers (0-%d)", len(o.peers)-1)
	}
	n, err := strconv.Atoi(strings.TrimSpace(*id))
	switch {
	case err != nil:
		return nil, usagef("--id %q is not a node id: want a number in 0-%d", *id, len(o.peers)-1)
	case n < 0 || n >= len(o.peers):
		return nil, usagef("--id %d is out of range: --peers lists %d nodes, ids 0-%d", n, len(o.peers), len(o.peers)-1)
	}
	o.id = int32(n)
	if o.dataDir == "" {
		return nil, usagef("--data-dir is empty")
	}
	if o.level = hclog.LevelFromString(*logLevel); o.level == hclog.NoLevel {
		return nil, usagef("--log-level %q: want trace, debug, info, warn or error", *logLevel)
	}
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"vote-timeout", *voteTimeout}, {"in-doubt-after", *inDoubtAfter}} { // in a fixed order: one error, always the same
		if f.d < 0 {
			return nil, usagef("--%s %v: must not be negative", f.name, f.d)
		}
	}
	o.timing = actors.Timing{VoteTimeout: *voteTimeout, InDoubtAfter: *inDoubtAfter}
	if o.protocol, err = actors.ParseProtocol(*protocol); err != nil {
		return nil, usagef("--protocol: %v", err)
	}
	if *maxConns < 0 {
		return nil, usagef("--max-conns %d: must not be negative", *maxConns)
	}
	o.tlsDir, o.insecure, o.maxConns = *tlsDir, *insecure, *maxConns
	return o, nil
}

// requireTLS is the secure default: a node serves TLS from --tls-dir, or
// plain TCP only when told so with --insecure.
func requireTLS(o *options) error {
	switch {
	case o.tlsDir != "" && o.insecure:
		return usagef("--tls-dir and --insecure together: choose one")
	case o.tlsDir == "" && !o.insecure:
		return usagef("missing --tls-dir DIR: the cluster's certificates (make them with go run ./cmd/certs), or --insecure to serve without TLS")
	}
	return nil
}

// parsePeers checks every entry of --peers: peers on other hosts will dial
// these addresses, so each needs a host and a numeric port, and a member
// listed twice would be two ids for one node.
func parsePeers(list string, given bool) ([]string, error) {
	if !given || strings.TrimSpace(list) == "" {
		return nil, usagef("missing --peers: every member's host:port in node-id order, this node's own included")
	}
	entries := strings.Split(list, ",")
	seen := map[string]int{}
	peers := make([]string, len(entries))
	for i, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" {
			return nil, usagef("--peers entry %d is empty (in %q)", i, list)
		}
		host, port, err := net.SplitHostPort(e)
		if err != nil {
			return nil, usagef("--peers entry %d %q is not host:port: %v", i, e, err)
		}
		if host == "" {
			return nil, usagef("--peers entry %d %q has no host (other nodes must be able to dial it)", i, e)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65535 {
			return nil, usagef("--peers entry %d %q: port %q is not a number in 1-65535", i, e, port)
		}
		// One spelling per address: every process must compute the same
		// cluster id from the same list, and two spellings of one address
		// would make two members of one listener.
		canon := net.JoinHostPort(canonicalHost(host), strconv.Itoa(p))
		if j, dup := seen[canon]; dup {
			return nil, usagef("--peers entries %d and %d are both %q: each member needs its own address", j, i, canon)
		}
		seen[canon] = i
		peers[i] = canon
	}
	return peers, nil
}

// canonicalHost spells an IP address one way and a host name in lower case.
func canonicalHost(h string) string {
	if ip := net.ParseIP(h); ip != nil {
		return ip.String()
	}
	return strings.ToLower(h)
}

// run is the whole command: it starts the node, serves until a signal
// arrives on signals (or signals is closed), and stops it cleanly. main
// passes os.Args and the process's signals; tests pass their own.
func run(args []string, stdout, stderr io.Writer, signals <-chan os.Signal) error {
	o, err := parseArgs(args, stderr)
	if err != nil {
		return err
	}
	if err := requireTLS(o); err != nil {
		return err
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "twopc", Level: o.level, Output: stderr})
	var ep *metrics.Endpoint // nil without --http: every call on it does nothing
	var view *web.NodeSource // the web view's source; nil without --http
	var tracer *trace.Recorder
	observer := ep.Observer(o.id)
	if o.http != "" {
		// Up before the node recovers, so that /readyz can say it is not ready yet.
		if ep, err = metrics.ForNode(o.http, o.id); err != nil {
			return err
		}
		defer ep.Close()
		fmt.Fprintf(stdout, "http: serving on %s\n", ep.URL())
		// The page draws this node's messages and diagrams from its own
		// traces, kept only when it is served.
		tracer = trace.NewRecorder(viewTraces)
		view = web.NewNodeSource(o.id, o.peers, tracer)
		observer = view.Observer(ep.Observer(o.id))
	}
	if tracer == nil {
		// The node's part of each transaction's trace, for the operator's
		// `trace` (cmd/cluster --connect gathers every node's part).
		tracer = trace.NewRecorder(cluster.NodeTraceTransactions)
	}
	var id *identity.Identity
	if o.insecure {
		logger.Warn("INSECURE: --insecure given: serving plain TCP without certificates; anyone who can reach " + o.peers[o.id] + " can act as any member or client")
	} else if id, err = identity.Load(o.tlsDir, identity.Node(o.id)); err != nil {
		return fmt.Errorf("--tls-dir %s: %w", o.tlsDir, err)
	}
	n, err := cluster.Start(cluster.Config{
		ID: o.id, Members: o.peers, DataDir: o.dataDir, Timing: o.timing, Logger: logger,
		TLS: id, ConnLimits: cluster.ConnLimits{MaxConns: o.maxConns},
		Observer: observer, Tracer: tracer, Protocol: o.protocol,
	})
	if err != nil {
		return err
	}
	ep.Serve(n)
	if view != nil {
		view.Serve(n)
		h := web.NewHandler(view, web.Options{})
		defer h.Close() // before the endpoint closes: browsers are let go first
		ep.Handle("/", h)
	}
	fmt.Fprintf(stdout, "node %d serving on %s (incarnation %d)\n", o.id, n.Addr(), n.Incarnation())

	var s os.Signal
	select {
	case s = <-signals:
	case <-n.FailStopped():
		// The node has stopped itself, logging why; nothing is left to stop.
		return &logFailedError{id: o.id, err: n.Failure()}
	}
	logger.Named(fmt.Sprintf("node-%d", o.id)).Info("stopping", "signal", fmt.Sprint(s))
	ep.Stopping()
	if err := shutdown(n.Stop, signals); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "node %d stopped\n", o.id)
	return nil
}

// shutdown runs stop, but gives up on it when another signal arrives: an
// operator who signals again wants the process gone. Exiting mid-stop is
// no worse than a crash, which the node recovers from its log.
func shutdown(stop func() error, signals <-chan os.Signal) error {
	done := make(chan error, 1)
	go func() { done <- stop() }()
	for {
		select {
		case err := <-done:
			return err
		case _, ok := <-signals:
			if !ok { // no more signals will come: just wait
				signals = nil
				continue
			}
			return errSecondSignal
		}
	}
}
