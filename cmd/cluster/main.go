// Command cluster runs a four-node twopc cluster in one process on
// consecutive ports, and runs the seed's demo on it: four transactions, each
// adding 1 to `value` on every node, coordinated by nodes 0, 1, 3 and 2 in
// turn. State is kept under --data-dir, so a second run continues from the
// first.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"twopc/cluster"
	"twopc/messages"
)

func main() {
	dataDir := flag.String("data-dir", cluster.DefaultDataDir, "directory for the nodes' logs and snapshots (one subdirectory per node)")
	basePort := flag.Int("base-port", 3000, "node i listens on 127.0.0.1:base-port+i")
	nodes := flag.Int("nodes", 4, "number of nodes")
	logLevel := flag.String("log-level", "info", "trace, debug, info, warn or error")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "error: unexpected argument %q\n", flag.Arg(0))
		flag.Usage()
		os.Exit(2)
	}
	level := hclog.LevelFromString(*logLevel)
	if level == hclog.NoLevel {
		fmt.Fprintf(os.Stderr, "error: unknown --log-level %q (want trace, debug, info, warn or error)\n", *logLevel)
		os.Exit(2)
	}
	if *nodes < 1 || *basePort < 1 || *basePort+*nodes-1 > 65535 {
		fmt.Fprintf(os.Stderr, "error: --nodes %d from --base-port %d does not fit in 1-65535\n", *nodes, *basePort)
		os.Exit(2)
	}
	cluster.TuneProcs(*nodes)
	logger := hclog.New(&hclog.LoggerOptions{Name: "twopc", Level: level, Output: os.Stderr})

	c, err := startCluster(cluster.LocalConfig{Nodes: *nodes, BasePort: *basePort, DataDir: *dataDir, Logger: logger})
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
	// Ctrl-C during the demo still shuts the nodes down cleanly.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		c.stop()
		os.Exit(130)
	}()

	ok := runDemo(c, os.Stdout)
	c.stop()
	if !ok {
		os.Exit(1)
	}
}

// localCluster is every node of the cluster, in this process, and a client
// connected to each.
type localCluster struct {
	*cluster.Local
	clients []*cluster.Client
}

func startCluster(cfg cluster.LocalConfig) (*localCluster, error) {
	l, err := cluster.StartLocal(cfg)
	if err != nil {
		return nil, err
	}
	c := &localCluster{Local: l}
	for _, addr := range l.Members() {
		cl, err := cluster.Dial(addr)
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
