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
// "http: serving on http://<addr>" first.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
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
	tlsDir       string            // "": an in-memory CA made at start
	http         string            // --http: where metrics, health and the web view are served ("": nowhere)
	web          *metrics.Endpoint // serving --http (nil without it)
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
	fs.StringVar(&o.http, "http", "", "serve the live web view at /, and /metrics, /healthz and /readyz for every node, on this host:port (\"\": no HTTP server)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "log-level" {
			o.levelGiven = true
		}
	})
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
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
	r, err := startREPL(o, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	if o.view != nil {
		defer o.view.Close() // before the endpoint closes: browsers are let go first
	}
	// Ctrl-C (outside the line editor, which reads it as a key) still shuts
	// the nodes down cleanly.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer func() { // ends the goroutine below
		signal.Stop(sig)
		close(sig)
	}()
	go func() {
		if _, ok := <-sig; ok {
			o.web.Stopping()
			r.shutdown()
			os.Exit(130)
		}
	}()

	ok := runDemo(r.c, stdout)
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
		Tracer: r.tracer, CrashAtSteps: true, TLS: nodeTLS, Observers: observers,
	}, cluster.WithTLS(client))
	if err != nil {
		return nil, err
	}
	o.web.ServeLocal(c.Local)
	if view != nil {
		view.Attach(c.Local)
		o.view = web.NewHandler(view, web.Options{})
		o.web.Handle("/", o.view)
	}
	r.c = c
	return r, nil
}

// localCluster is every node of the cluster, in this process, and a client
// connected to each for the demo (which uses the network, as any client
// would; the prompt's commands talk to the nodes directly, so that they
// keep working across crashes and restarts).
type localCluster struct {
	*cluster.Local
	clients []*cluster.Client
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

func startCluster(cfg cluster.LocalConfig, dial ...cluster.DialOption) (*localCluster, error) {
	l, err := cluster.StartLocal(cfg)
	if err != nil {
		return nil, err
	}
	c := &localCluster{Local: l}
	for _, addr := range l.Members() {
		cl, err := cluster.Dial(addr, dial...)
		if err != nil {
			c.stop()
			return nil, err
		}
		c.clients = append(c.clients, cl)
	}
	return c, nil
}

func (c *localCluster) stop() {
	for _, cl := range c.clients {
		cl.Close()
	}
	c.clients = nil
	c.Local.Stop()
}

// runDemo is the seed's demo: sequential transactions adding 1 to value on
// every node, each coordinated by a different node, then every node's value.
func runDemo(c *localCluster, out io.Writer) bool {
	order := []int{0, 1, 3, 2}
	ok := true
	for i, via := range order {
		if via >= len(c.clients) {
			via %= len(c.clients)
		}
		start := time.Now()
		o, err := c.clients[via].Submit(messages.Add(messages.EverywhereKey, 1))
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
	vals, err := c.clients[0].Read(messages.EverywhereKey)
	if err != nil {
		fmt.Fprintln(out, "error:", err)
		return false
	}
	for _, v := range vals {
		fmt.Fprintf(out, "node %d: value = %d\n", v.Node, v.Value)
	}
	return ok
}
