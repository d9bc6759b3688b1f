package main

// What the prompt's commands act on: a backend. One command table serves
// two of them: the cluster this process runs (localCluster), and nodes
// running elsewhere, reached over the authenticated wire with the admin
// certificate (remoteCluster, --connect).

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"twopc/bridge"
	"twopc/cluster"
	"twopc/messages"
	"twopc/trace"
)

type backend interface {
	size() int
	members() []string
	// client is a client connected to node i (the demo's, and the remote
	// prompt's way to submit and read).
	client(i int) (*cluster.Client, error)
	// up: node i is running and answers.
	up(i int) bool
	// downHint says how to bring node i back ("restart 2 brings it back").
	downHint(i int) string
	// local is the in-process cluster, nil for nodes running elsewhere:
	// crash and restart need to own the nodes' processes.
	local() *localCluster

	submit(via int, ops []messages.Op) (*messages.Outcome, error)
	// afterCommit is told of each committed transaction command before its
	// line is printed (the local cluster waits for a crash armed on a node
	// taking part).
	afterCommit(tx messages.TxID, participants []int32)
	// snapshotRead reads keys held by several nodes as one snapshot;
	// readLocal reads one node's replica of key.
	snapshotRead(keys []string) ([]cluster.NodeValue, error)
	readLocal(node int, key string) (int64, error)

	// statusTable is every node's row of `status` and the links cut.
	statusTable() ([]nodeRow, [][2]int)
	inDoubt() ([]cluster.InDoubt, error)
	resolve(tx messages.TxID, commit bool) (*cluster.Resolution, error)
	trace(w io.Writer, tx messages.TxID) error
	// settled: nothing in flight, locked or in doubt on the running nodes,
	// and their logs synced; what is still going on otherwise.
	settled() (bool, string)

	logLevel() (string, error)
	setLogLevel(level hclog.Level) error
	partition(a, b int) error
	heal() error
	faults(node int) (bridge.Faults, bridge.FaultStats, error)
	setFaults(node int, f bridge.Faults) error
	setSkew(node int, d time.Duration) error

	stop()
}

// nodeRow is one node's row of `status`: st nil while it is down.
type nodeRow struct {
	addr string
	st   *cluster.NodeStatus
	skew string // shown while the node is down
	err  error  // it was reached and did not answer
}

// --- in this process ---

// localCluster is every node of the cluster, in this process, and a client
// connected to each for the demo (which uses the network, as any client
// would; the prompt's commands talk to the nodes directly, so that they
// keep working across crashes and restarts).
type localCluster struct {
	*cluster.Local
	clients []*cluster.Client
	tracer  *trace.Recorder
	logger  hclog.Logger // the nodes' logger (nil: leave the level alone)
	// armed waits for a crash armed on a node taking part in a committed
	// transaction (crashAt's); nil: none to wait for.
	armed func(tx messages.TxID, participants []int32)
}

func startCluster(cfg cluster.LocalConfig, dial ...cluster.DialOption) (*localCluster, error) {
	l, err := cluster.StartLocal(cfg)
	if err != nil {
		return nil, err
	}
	c := &localCluster{Local: l, tracer: cfg.Tracer, logger: cfg.Logger}
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

func (c *localCluster) size() int            { return len(c.Local.Members()) }
func (c *localCluster) members() []string    { return c.Local.Members() }
func (c *localCluster) up(i int) bool        { return c.Up(i) != nil }
func (c *localCluster) local() *localCluster { return c }
func (c *localCluster) downHint(i int) string {
	return fmt.Sprintf("restart %d brings it back", i)
}

func (c *localCluster) client(i int) (*cluster.Client, error) {
	if i < 0 || i >= len(c.clients) {
		return nil, fmt.Errorf("no client of node %d", i)
	}
	return c.clients[i], nil
}

func (c *localCluster) submit(via int, ops []messages.Op) (*messages.Outcome, error) {
	n := c.Up(via)
	if n == nil {
		return nil, &notSubmittedError{fmt.Errorf("node %d is down (%s)", via, c.downHint(via))}
	}
	return n.Submit(ops...)
}

func (c *localCluster) afterCommit(tx messages.TxID, participants []int32) {
	if c.armed != nil {
		c.armed(tx, participants)
	}
}

func (c *localCluster) snapshotRead(keys []string) ([]cluster.NodeValue, error) {
	return c.SnapshotRead(keys...)
}

func (c *localCluster) readLocal(node int, key string) (int64, error) {
	n := c.Up(node)
	if n == nil {
		return 0, fmt.Errorf("node %d is down", node)
	}
	kv, err := n.ReadLocal(key)
	if err != nil {
		// The line names key and node already.
		msg := strings.TrimPrefix(err.Error(), "read "+key+": ")
		return 0, errors.New(strings.TrimPrefix(msg, fmt.Sprintf("node %d: ", node)))
	}
	return kv[0].Value, nil
}

func (c *localCluster) statusTable() ([]nodeRow, [][2]int) {
	var rows []nodeRow
	for i, addr := range c.Local.Members() {
		row := nodeRow{addr: addr, skew: skewString(c.Skew(i))} // kept while the node is down, too
		if n := c.Up(i); n != nil {
			row.st = n.Status()
		}
		rows = append(rows, row)
	}
	return rows, c.Partitions()
}

func (c *localCluster) inDoubt() ([]cluster.InDoubt, error) { return c.InDoubt() }

func (c *localCluster) resolve(tx messages.TxID, commit bool) (*cluster.Resolution, error) {
	return c.Resolve(tx, commit)
}

func (c *localCluster) trace(w io.Writer, tx messages.TxID) error {
	if c.tracer == nil {
		return errors.New("this cluster keeps no trace")
	}
	return c.tracer.Render(w, tx, c.size())
}

func (c *localCluster) settled() (bool, string) {
	var up []*cluster.Node
	for i := range c.size() {
		if n := c.Up(i); n != nil {
			up = append(up, n)
		}
	}
	for _, n := range up {
		if ok, now := n.Status().Settled(); !ok {
			return false, now
		}
	}
	// Settled includes the log: the lazy records of what just ended (END,
	// aborts) are written before this says so, and so are in the trace.
	for _, n := range up {
		if err := n.SyncLog(); err != nil {
			return false, err.Error()
		}
	}
	return true, ""
}

func (c *localCluster) logLevel() (string, error) {
	if c.logger == nil {
		return "", errors.New("no logger")
	}
	return levelString(c.logger.GetLevel()), nil
}

func (c *localCluster) setLogLevel(level hclog.Level) error {
	if c.logger == nil {
		return errors.New("no logger")
	}
	c.logger.SetLevel(level)
	return nil
}

func (c *localCluster) partition(a, b int) error { return c.Partition(a, b) }

func (c *localCluster) heal() error {
	c.Heal()
	return nil
}

func (c *localCluster) faults(node int) (bridge.Faults, bridge.FaultStats, error) {
	f := c.NodeFaults(node)
	var st bridge.FaultStats
	if n := c.Up(node); n != nil {
		f, st = n.Bridge().Faults(), n.Bridge().FaultStats()
	}
	return f, st, nil
}

func (c *localCluster) setFaults(node int, f bridge.Faults) error { return c.SetNodeFaults(node, f) }

func (c *localCluster) setSkew(node int, d time.Duration) error { return c.SetSkew(node, d) }

// --- nodes running elsewhere (--connect) ---

// remoteCluster is nodes started with cmd/node, each reached with the
// admin certificate: its Admin service for the operator's actions, a
// cluster.Client for transactions and reads.
type remoteCluster struct {
	remote *cluster.Remote
	tls    *tls.Config

	mu      sync.Mutex
	clients []*cluster.Client // dialled on first use
}

// pingTimeout bounds the question "is node i up?" asked before commands
// that choose nodes: an answer is one round trip away.
const pingTimeout = 3 * time.Second

func newRemoteCluster(addrs []string, cfg *tls.Config) *remoteCluster {
	r := &remoteCluster{remote: cluster.NewRemote(addrs, cfg), tls: cfg, clients: make([]*cluster.Client, len(addrs))}
	for i := range addrs {
		r.remote.Admin(i).SetTimeouts(0, pingTimeout)
	}
	return r
}

func (r *remoteCluster) size() int            { return len(r.clients) }
func (r *remoteCluster) members() []string    { return r.remote.Members() }
func (r *remoteCluster) local() *localCluster { return nil }
func (r *remoteCluster) downHint(i int) string {
	return fmt.Sprintf("start node %d's process again", i)
}

// up asks the node's Admin service the cheapest question there is: one
// that no role of the node has to answer.
func (r *remoteCluster) up(i int) bool {
	_, err := r.remote.Admin(i).Skew()
	return err == nil
}

func (r *remoteCluster) client(i int) (*cluster.Client, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.clients[i]; c != nil {
		return c, nil
	}
	c, err := cluster.Dial(r.remote.Admin(i).Addr(), cluster.WithTLS(r.tls), cluster.WithConnectTimeout(pingTimeout))
	if err != nil {
		return nil, fmt.Errorf("node %d is down or unreachable (%s): %w", i, r.downHint(i), err)
	}
	r.clients[i] = c
	return c, nil
}

func (r *remoteCluster) submit(via int, ops []messages.Op) (*messages.Outcome, error) {
	c, err := r.client(via)
	if err != nil {
		return nil, &notSubmittedError{err}
	}
	return c.Submit(ops...)
}

func (r *remoteCluster) afterCommit(messages.TxID, []int32) {}

// snapshotRead goes through the first node that answers: any node reads
// keys held by several as one snapshot.
func (r *remoteCluster) snapshotRead(keys []string) ([]cluster.NodeValue, error) {
	var errs []error
	for i := range r.size() {
		c, err := r.client(i)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		return c.Read(keys...)
	}
	return nil, errors.Join(errs...)
}

func (r *remoteCluster) readLocal(node int, key string) (int64, error) {
	vals, err := r.remote.Admin(node).ReadLocal(key)
	if err != nil {
		return 0, err
	}
	if len(vals) != 1 {
		return 0, fmt.Errorf("node %d answered %d values for one key", node, len(vals))
	}
	return vals[0].Value, nil
}

func (r *remoteCluster) statusTable() ([]nodeRow, [][2]int) {
	sts, errs := r.remote.Statuses()
	rows := make([]nodeRow, len(sts))
	cut := map[[2]int]bool{}
	for i, st := range sts {
		rows[i] = nodeRow{addr: r.remote.Admin(i).Addr(), st: st, skew: "-"}
		if errs[i] != nil && !cluster.Unreachable(errs[i]) {
			rows[i].err = errs[i]
		}
		if st != nil {
			for _, p := range st.Cut {
				cut[[2]int{min(i, int(p)), max(i, int(p))}] = true
			}
		}
	}
	var parts [][2]int
	for a := range r.size() {
		for b := a + 1; b < r.size(); b++ {
			if cut[[2]int{a, b}] {
				parts = append(parts, [2]int{a, b})
			}
		}
	}
	return rows, parts
}

func (r *remoteCluster) inDoubt() ([]cluster.InDoubt, error) { return r.remote.InDoubt() }

func (r *remoteCluster) resolve(tx messages.TxID, commit bool) (*cluster.Resolution, error) {
	return r.remote.Resolve(tx, commit)
}

// trace draws every node's part, merged in time order, and names below it
// the nodes whose part is missing.
func (r *remoteCluster) trace(w io.Writer, tx messages.TxID) error {
	rec, missing, err := r.remote.Trace(tx)
	if err != nil {
		return err
	}
	if err := rec.Render(w, tx, r.size()); err != nil {
		return err
	}
	for _, m := range missing {
		fmt.Fprintln(w, "error:", m)
	}
	return nil
}

func (r *remoteCluster) settled() (bool, string) {
	sts, errs := r.remote.Statuses()
	for i, st := range sts {
		switch {
		case errs[i] != nil && cluster.Unreachable(errs[i]):
			continue // down
		case errs[i] != nil:
			return false, fmt.Sprintf("node %d: %v", i, errs[i])
		}
		if ok, now := st.Settled(); !ok {
			return false, now
		}
	}
	for i, st := range sts {
		if st != nil {
			if err := r.remote.Admin(i).SyncLog(); err != nil {
				return false, fmt.Sprintf("node %d: %v", i, err)
			}
		}
	}
	return true, ""
}

// logLevel is the nodes' level, or each node's if they differ.
func (r *remoteCluster) logLevel() (string, error) {
	levels := make([]string, r.size())
	errs := make([]error, r.size())
	var wg sync.WaitGroup
	for i := range levels {
		wg.Add(1)
		go func() {
			defer wg.Done()
			levels[i], errs[i] = r.remote.Admin(i).LogLevel("")
		}()
	}
	wg.Wait()
	byLevel := map[string][]string{}
	var order []string
	for i, l := range levels {
		if errs[i] != nil {
			continue
		}
		if byLevel[l] == nil {
			order = append(order, l)
		}
		byLevel[l] = append(byLevel[l], fmt.Sprint(i))
	}
	switch len(order) {
	case 0:
		return "", fmt.Errorf("no node answered: %w", errors.Join(errs...))
	case 1:
		return order[0], nil
	}
	var parts []string
	for _, l := range order {
		parts = append(parts, fmt.Sprintf("%s on node %s", l, strings.Join(byLevel[l], ", ")))
	}
	return strings.Join(parts, "; "), nil
}

func (r *remoteCluster) setLogLevel(level hclog.Level) error {
	var errs []error
	for i := range r.size() {
		if _, err := r.remote.Admin(i).LogLevel(levelString(level)); err != nil && !cluster.Unreachable(err) {
			errs = append(errs, fmt.Errorf("node %d: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

// partition cuts both ends: each node refuses what comes from the other.
func (r *remoteCluster) partition(a, b int) error {
	if _, err := r.remote.Admin(a).Partition(int32(b)); err != nil {
		return fmt.Errorf("node %d: %w", a, err)
	}
	if _, err := r.remote.Admin(b).Partition(int32(a)); err != nil {
		return fmt.Errorf("node %d: %w (node %d's end is cut; heal restores it)", b, err, a)
	}
	return nil
}

// heal restores every link of every node that answers; a node that is
// down has none cut when its process starts again.
func (r *remoteCluster) heal() error {
	var errs []error
	for i := range r.size() {
		if _, err := r.remote.Admin(i).Heal(); err != nil && !cluster.Unreachable(err) {
			errs = append(errs, fmt.Errorf("node %d: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

func (r *remoteCluster) faults(node int) (bridge.Faults, bridge.FaultStats, error) {
	res, err := r.remote.Admin(node).Faults()
	if err != nil {
		return bridge.Faults{}, bridge.FaultStats{}, err
	}
	return res.Faults, res.Stats, nil
}

// setFaults gives each node its own seed, as a Local does, so the nodes
// do not all drop the same positions of their message streams.
func (r *remoteCluster) setFaults(node int, f bridge.Faults) error {
	f.Seed += int64(node)
	_, err := r.remote.Admin(node).SetFaults(f)
	return err
}

func (r *remoteCluster) setSkew(node int, d time.Duration) error {
	_, err := r.remote.Admin(node).SetSkew(d)
	return err
}

func (r *remoteCluster) stop() {
	r.mu.Lock()
	for i, c := range r.clients {
		if c != nil {
			c.Close()
			r.clients[i] = nil
		}
	}
	r.mu.Unlock()
	r.remote.Close()
}

// levelString names a level as the prompt takes it.
func levelString(l hclog.Level) string { return strings.ToLower(l.String()) }
