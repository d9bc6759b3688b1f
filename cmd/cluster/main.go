// Command cluster runs a four-node twopc cluster in one process on
// consecutive ports, runs the seed's demo on it (four transactions, each
// adding 1 to `value` on every node, coordinated by nodes 0, 1, 3 and 2 in
// turn), and then reads commands: at a prompt with line editing, history and
// tab completion when stdin is a terminal, or line by line from stdin
// otherwise, exiting at the end of input. `help` lists the commands. State
// is kept under --data-dir, so a second run continues from the first.
//
// With --http ADDR it also serves Prometheus /metrics, /healthz and /readyz
// for all its nodes on ADDR (see package twopc/metrics), and the live web
// view of the cluster at / (package twopc/web), and prints
// "http: serving on http://<addr>" first. --no-demo skips the demo.
//
// With --connect H:P,H:P,... --tls-dir DIR it runs no nodes: the same
// prompt drives nodes started with cmd/node (every member, in node-id
// order), with the admin certificate from DIR; the demo runs only with
// --demo. Ctrl-C cancels the command running (a spawn stops submitting
// and reports what it did) and never kills the cluster.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"twopc/actors"
	"twopc/cluster"
	"twopc/identity"
	"twopc/messages"
	"twopc/metrics"
	"twopc/web"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// options are the command line's flags.
type options struct {
	dataDir      string
	basePort     int
	nodes        int
	logLevel     string
	levelGiven   bool // --log-level was on the command line
	history      string
	voteTimeout  time.Duration
	inDoubtAfter time.Duration
	protocol     actors.Protocol
	tlsDir       string            // "": an in-memory CA made at start
	http         string            // --http: where metrics, health and the web view are served ("": nowhere)
	web          *metrics.Endpoint // serving --http (nil without it)
	connect      []string          // --connect: the nodes to drive, running elsewhere (nil: run them here)
	demo         bool              // run the demo first
	view         *web.Handler      // the web view on --http (nil without it)
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.dataDir, "data-dir", cluster.DefaultDataDir, "directory for the nodes' logs and snapshots (one subdirectory per node)")
	fs.IntVar(&o.basePort, "base-port", 3000, "node i listens on 127.0.0.1:base-port+i; 0 picks free ports")
	fs.IntVar(&o.nodes, "nodes", 4, "number of nodes")
	fs.StringVar(&o.logLevel, "log-level", "info", "trace, debug, info, warn or error (after the demo the prompt lowers info to warn unless this flag is given; `loglevel` changes it)")
	fs.StringVar(&o.history, "history", defaultHistory(), "file keeping the prompt's command history across runs (\"\" keeps none)")
	fs.DurationVar(&o.voteTimeout, "vote-timeout", actors.DefaultTiming.VoteTimeout, "how long a coordinator waits for votes before it aborts")
	fs.DurationVar(&o.inDoubtAfter, "in-doubt-after", actors.DefaultTiming.InDoubtAfter, "how long a prepared participant waits for the decision before it asks")
	fs.StringVar(&o.tlsDir, "tls-dir", "", "directory with the cluster's certificates (go run ./cmd/certs --hosts 127.0.0.1 makes them); default: a CA made in memory at start")
	fs.Func("protocol", fmt.Sprintf("commit protocol: 2pc (classic, blocks while a coordinator is down) or nonblocking (Paxos Commit: a majority of three acceptors chooses the outcome) (default %s)", actors.DefaultProtocol), func(v string) error {
		p, err := actors.ParseProtocol(v)
		o.protocol = p
		return err
	})
	fs.StringVar(&o.http, "http", "", "serve the live web view at /, and /metrics, /healthz and /readyz for every node, on this host:port (\"\": no HTTP server)")
	connect := fs.String("connect", "", "drive nodes started with cmd/node instead of running any: every member's host:port, comma-separated, in node-id order (needs --tls-dir with the admin certificate)")
	noDemo := fs.Bool("no-demo", false, "skip the demo: open the prompt at once")
	demo := fs.Bool("demo", false, "run the demo even with --connect (it adds 4 to `value`)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	o.levelGiven = set["log-level"]
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *noDemo && *demo {
		return nil, fmt.Errorf("--demo and --no-demo together: choose one")
	}
	if set["connect"] {
		var err error
		if o.connect, err = parseConnect(*connect); err != nil {
			return nil, err
		}
		for _, name := range []string{"nodes", "base-port", "data-dir", "vote-timeout", "in-doubt-after", "http"} {
			if set[name] {
				return nil, fmt.Errorf("--%s does not apply with --connect: the nodes run in their own processes (give it to cmd/node)", name)
			}
		}
		if o.tlsDir == "" {
			return nil, fmt.Errorf("--connect needs --tls-dir DIR: the nodes' cluster's ca.crt and the admin certificate (admin.crt, admin.key), as cmd/certs writes them")
		}
		o.nodes = len(o.connect)
	}
	o.demo = (o.connect == nil && !*noDemo) || *demo
	if hclog.LevelFromString(o.logLevel) == hclog.NoLevel {
		return nil, fmt.Errorf("unknown --log-level %q (want trace, debug, info, warn or error)", o.logLevel)
	}
	if o.nodes < 1 {
		return nil, fmt.Errorf("--nodes %d: a cluster needs at least one node", o.nodes)
	}
	if o.basePort < 0 || o.basePort+o.nodes-1 > 65535 {
		return nil, fmt.Errorf("--nodes %d from --base-port %d does not fit in 1-65535", o.nodes, o.basePort)
	}
	if o.voteTimeout <= 0 || o.inDoubtAfter <= 0 {
		return nil, fmt.Errorf("--vote-timeout and --in-doubt-after must be positive")
	}
	return o, nil
}

// parseConnect checks every entry of --connect as cmd/node checks --peers.
func parseConnect(list string) ([]string, error) {
	if strings.TrimSpace(list) == "" {
		return nil, fmt.Errorf("--connect is empty: list every node's host:port in node-id order")
	}
	var addrs []string
	seen := map[string]int{}
	for i, e := range strings.Split(list, ",") {
		e = strings.TrimSpace(e)
		host, port, err := net.SplitHostPort(e)
		if err != nil || host == "" {
			return nil, fmt.Errorf("--connect entry %d %q is not host:port", i, e)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("--connect entry %d %q: port %q is not a number in 1-65535", i, e, port)
		}
		if j, dup := seen[e]; dup {
			return nil, fmt.Errorf("--connect entries %d and %d are both %q: each node has its own address", j, i, e)
		}
		seen[e] = i
		addrs = append(addrs, e)
	}
	return addrs, nil
}

// defaultHistory is ~/.twopc_history, or none without a home directory.
func defaultHistory() string {
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".twopc_history")
}

// run is the whole command, with its streams passed in so that tests drive
// it as a user would. It returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err == flag.ErrHelp {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 2
	}
	if o.http != "" {
		// Up before the nodes recover, so that /readyz can say they are not ready yet.
		if o.web, err = metrics.ForLocal(o.http, o.nodes); err != nil {
			fmt.Fprintln(stderr, "error:", err)
			return 1
		}
		defer o.web.Close()
		fmt.Fprintf(stdout, "http: serving on %s\n", o.web.URL())
	}
	var r *repl
	if o.connect != nil {
		r, err = connectREPL(o, stderr)
	} else {
		r, err = startREPL(o, stderr)
	}
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	if o.view != nil {
		defer o.view.Close() // before the endpoint closes: browsers are let go first
	}
	// Ctrl-C while a command runs cancels that command. Otherwise (the
	// demo, or piped input waiting for its next line; at a terminal's
	// prompt the line editor reads Ctrl-C as a key), and on SIGTERM, the
	// nodes are stopped cleanly before the process exits.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer func() { // ends the goroutine below
		signal.Stop(sig)
		close(sig)
	}()
	go func() {
		for s := range sig {
			if s == os.Interrupt && r.interrupt() {
				continue
			}
			o.web.Stopping()
			r.shutdown()
			os.Exit(130)
		}
	}()

	ok := true
	if o.demo {
		ok = runDemo(r.c, stdout)
	}
	code := r.loop(stdin, stdout, stderr)
	o.web.Stopping()
	r.shutdown()
	if !ok && code == 0 {
		code = 1
	}
	return code
}

// startREPL starts the cluster o describes, and a prompt for it.
func startREPL(o *options, stderr io.Writer) (*repl, error) {
	cluster.TuneProcs(o.nodes)
	// The log's destination changes when a prompt opens: log lines must then
	// go through the line editor so that they do not overwrite the prompt.
	logOut := &switchWriter{w: stderr}
	logger := hclog.New(&hclog.LoggerOptions{Name: "twopc", Level: hclog.LevelFromString(o.logLevel), Output: logOut})
	r := newREPL(o, logger, logOut)
	nodeTLS, client, err := tlsSetup(o.tlsDir)
	if err != nil {
		return nil, err
	}
	observers := o.web.Observers()
	var view *web.LocalSource
	if o.web != nil {
		// The page draws from the prompt's own traces, and hears of each
		// transaction's end beside the metrics.
		view = web.NewLocalSource(o.nodes, r.tracer)
		observers = view.Observers(observers)
	}
	c, err := startCluster(cluster.LocalConfig{
		Nodes: o.nodes, BasePort: o.basePort, DataDir: o.dataDir, Logger: logger,
		Timing: actors.Timing{VoteTimeout: o.voteTimeout, InDoubtAfter: o.inDoubtAfter},
		Tracer: r.tracer, CrashAtSteps: true, TLS: nodeTLS, Observers: observers, Protocol: o.protocol,
	}, cluster.WithTLS(client))
	if err != nil {
		return nil, err
	}
	o.web.ServeLocal(c.Local)
	c.armed = r.awaitArmed
	if view != nil {
		view.Attach(c.Local)
		o.view = web.NewHandler(view, web.Options{})
		o.web.Handle("/", o.view)
	}
	r.c = c
	return r, nil
}

// connectREPL opens the prompt on nodes running elsewhere (--connect),
// as the operator: with the admin certificate from --tls-dir. Each node
// that answers must be the member its place in the list says; one that
// does not answer yet is only warned about (it may be starting).
func connectREPL(o *options, stderr io.Writer) (*repl, error) {
	admin, err := identity.Load(o.tlsDir, identity.Admin)
	if err != nil {
		return nil, fmt.Errorf("--tls-dir %s: the prompt acts as the operator and needs the admin certificate: %w", o.tlsDir, err)
	}
	rc := newRemoteCluster(o.connect, admin.ClientConfig())
	sts, errs := rc.remote.Statuses()
	for i, st := range sts {
		switch {
		case errs[i] != nil:
			fmt.Fprintf(stderr, "warning: node %d at %s does not answer (yet): %v\n", i, o.connect[i], errs[i])
		case st.Members != len(o.connect):
			rc.stop()
			return nil, fmt.Errorf("--connect lists %d nodes, but the node at %s is a member of a cluster of %d", len(o.connect), o.connect[i], st.Members)
		case int(st.Node) != i:
			rc.stop()
			return nil, fmt.Errorf("--connect entry %d is %s, which is node %d: list the nodes in node-id order, as their --peers", i, o.connect[i], st.Node)
		}
	}
	logOut := &switchWriter{w: stderr}
	logger := hclog.New(&hclog.LoggerOptions{Name: "twopc", Level: hclog.LevelFromString(o.logLevel), Output: logOut})
	r := newREPL(o, logger, logOut)
	r.c = rc
	return r, nil
}

// tlsSetup gives the nodes' identities and the demo client's TLS settings:
// from the files in dir, or, with no dir, from a CA made in memory now
// (so `make run` stays one command and its nodes still talk TLS; nothing
// outside this process holds a certificate of that cluster).
func tlsSetup(dir string) (func(int32) (*identity.Identity, error), *tls.Config, error) {
	if dir != "" {
		client, err := identity.Load(dir, identity.Client)
		if err != nil {
			return nil, nil, fmt.Errorf("--tls-dir %s: %w", dir, err)
		}
		return func(i int32) (*identity.Identity, error) { return identity.Load(dir, identity.Node(i)) }, client.ClientConfig(), nil
	}
	ca, err := identity.NewCA("twopc in-memory CA")
	if err != nil {
		return nil, nil, err
	}
	client, err := ca.Issue(identity.Client)
	if err != nil {
		return nil, nil, err
	}
	return func(i int32) (*identity.Identity, error) { return ca.Issue(identity.Node(i), "127.0.0.1") }, client.ClientConfig(), nil
}

// demoCluster is what the demo needs: a client of each node.
type demoCluster interface {
	size() int
	client(i int) (*cluster.Client, error)
}

// runDemo is the seed's demo: sequential transactions adding 1 to value on
// every node, each coordinated by a different node, then every node's value.
func runDemo(c demoCluster, out io.Writer) bool {
	order := []int{0, 1, 3, 2}
	ok := true
	for i, via := range order {
		if via >= c.size() {
			via %= c.size()
		}
		start := time.Now()
		cl, err := c.client(via)
		var o *messages.Outcome
		if err == nil {
			o, err = cl.Submit(messages.Add(messages.EverywhereKey, 1))
		}
		ms := time.Since(start).Milliseconds()
		switch {
		case err != nil:
			fmt.Fprintf(out, "transaction %d via node %d: error: %v\n", i+1, via, err)
			ok = false
		case o.Committed:
			fmt.Fprintf(out, "transaction %d via node %d: committed %v (%d ms)\n", i+1, via, o.Tx, ms)
		default:
			fmt.Fprintf(out, "transaction %d via node %d: aborted %v: %s\n", i+1, via, o.Tx, o.Reason)
			ok = false
		}
	}
	cl, err := c.client(0)
	var vals []cluster.NodeValue
	if err == nil {
		vals, err = cl.Read(messages.EverywhereKey)
	}
	if err != nil {
		fmt.Fprintln(out, "error:", err)
		return false
	}
	for _, v := range vals {
		fmt.Fprintf(out, "node %d: value = %d\n", v.Node, v.Value)
	}
	return ok
}
