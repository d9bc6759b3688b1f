package main

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"twopc/actors/actortest"
	"twopc/cluster"
	"twopc/internal/bank"
	"twopc/messages"
)

// The node binary, built once per test binary run and shared by the
// process-level tests; TestMain removes it.
var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

func nodeBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		if binDir, err = os.MkdirTemp("", "twopc-node-bin-"); err != nil {
			buildErr = err
			return
		}
		// The go command of the toolchain running this test, so the child
		// is built by the same Go; without -race: the nodes are the system
		// under test here, not the code the race detector should slow.
		goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(goTool); err != nil {
			if goTool, err = exec.LookPath("go"); err != nil {
				buildErr = fmt.Errorf("no go command to build the node with: %w", err)
				return
			}
		}
		binPath = filepath.Join(binDir, "node")
		cmd := exec.Command(goTool, "build", "-o", binPath, "./cmd/node")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/node: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func removeBinary() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}

// moduleRoot is the nearest directory above the test's own with a go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// nodeProc is one running node process.
type nodeProc struct {
	id      int
	cmd     *exec.Cmd
	stdout  *actortest.Buffer
	done    chan struct{} // closed once the process is reaped
	waitErr error         // set before done is closed
}

// exitCode is the process's exit code, -1 if a signal ended it.
func (p *nodeProc) exitCode() int {
	var ee *exec.ExitError
	if errors.As(p.waitErr, &ee) {
		return ee.ExitCode()
	}
	if p.waitErr != nil {
		return -2
	}
	return 0
}

// procCluster is a cluster of node processes on free loopback ports,
// sharing one data directory. Only the test goroutine starts and stops
// nodes; it reaps every one of them when the test ends, passed or not.
type procCluster struct {
	t       *testing.T
	bin     string
	peers   []string
	dataDir string
	logDir  string   // each node's stderr, appended across restarts
	extra   []string // flags every node gets
	note    string   // prefix of every failure (the seed)

	mu    sync.Mutex
	procs []*nodeProc // nil while down
}

func startProcCluster(t *testing.T, nodes int, note string, extra ...string) *procCluster {
	t.Helper()
	bin := nodeBinary(t)
	tmp := t.TempDir() // removed after the cleanup below has printed the logs
	c := &procCluster{
		t: t, bin: bin, peers: freePorts(t, nodes), note: note, extra: extra,
		dataDir: filepath.Join(tmp, "data"), logDir: tmp, procs: make([]*nodeProc, nodes),
	}
	t.Cleanup(c.cleanup)
	for i := 0; i < nodes; i++ {
		c.start(i)
	}
	return c
}

func (c *procCluster) fatalf(format string, args ...any) {
	c.t.Helper()
	c.t.Fatalf("%s: %s", c.note, fmt.Sprintf(format, args...))
}

func (c *procCluster) stderrPath(id int) string {
	return filepath.Join(c.logDir, fmt.Sprintf("node-%d.stderr", id))
}

// start runs node id and waits for its serving line.
func (c *procCluster) start(id int) *nodeProc {
	c.t.Helper()
	args := append([]string{"--id", strconv.Itoa(id), "--peers", strings.Join(c.peers, ","), "--data-dir", c.dataDir}, c.extra...)
	logf, err := os.OpenFile(c.stderrPath(id), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.fatalf("%v", err)
	}
	fmt.Fprintf(logf, "=== %s start %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(args, " "))
	p := &nodeProc{id: id, stdout: &actortest.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(c.bin, args...)
	p.cmd.Stdout = p.stdout
	p.cmd.Stderr = logf // the child writes the file itself: nothing to copy
	p.cmd.SysProcAttr = childAttr()
	err = p.cmd.Start()
	logf.Close() // the child has its own descriptor
	if err != nil {
		c.fatalf("start node %d: %v", id, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	c.mu.Lock()
	c.procs[id] = p
	c.mu.Unlock()

	want := fmt.Sprintf("node %d serving on %s (incarnation ", id, c.peers[id])
	deadline := time.After(20 * time.Second)
	for !strings.Contains(p.stdout.String(), want) {
		select {
		case <-p.done:
			c.fatalf("node %d exited (%v) before serving; stdout %q", id, p.waitErr, p.stdout.String())
		case <-deadline:
			c.fatalf("node %d not serving after 20s; stdout %q", id, p.stdout.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return p
}

func (c *procCluster) proc(id int) *nodeProc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.procs[id]
}

// kill ends node id with SIGKILL, as a crash would, and reaps it.
func (c *procCluster) kill(id int) {
	c.t.Helper()
	p := c.proc(id)
	if p == nil {
		c.fatalf("node %d is not running", id)
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	c.mu.Lock()
	c.procs[id] = nil
	c.mu.Unlock()
}

// signal sends sig to node id and waits for it to exit by itself.
func (c *procCluster) signal(id int, sig os.Signal) *nodeProc {
	c.t.Helper()
	p := c.proc(id)
	if p == nil {
		c.fatalf("node %d is not running", id)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		c.fatalf("signal node %d: %v", id, err)
	}
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		c.fatalf("node %d still running 20s after %v", id, sig)
	}
	c.mu.Lock()
	c.procs[id] = nil
	c.mu.Unlock()
	return p
}

// cleanup kills and reaps every node still running, and on failure shows
// the end of each node's log.
func (c *procCluster) cleanup() {
	for id := range c.procs {
		if p := c.proc(id); p != nil {
			p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.done
		}
	}
	if c.t.Failed() {
		for id := range c.procs {
			c.t.Logf("%s: last lines of node %d's stderr:\n%s", c.note, id, tail(c.stderrPath(id), 40))
		}
	}
}

func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// rpcClient is the bank's way into a cluster of processes: one net/rpc
// connection per node, dialled on first use and dropped on any error (the
// node may have died), so the next use dials again.
type rpcClient struct {
	peers []string

	mu      sync.Mutex
	conns   map[int]*cluster.Client
	readVia int // the node reads go through
}

func newRPCClient(peers []string, readVia int) *rpcClient {
	return &rpcClient{peers: peers, conns: map[int]*cluster.Client{}, readVia: readVia}
}

func (r *rpcClient) conn(via int) (*cluster.Client, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.conns[via]; c != nil {
		return c, nil
	}
	c, err := cluster.Dial(r.peers[via])
	if err != nil {
		return nil, err
	}
	r.conns[via] = c
	return c, nil
}

// connected says whether a connection to via is open: false after a
// failed call until the next dial.
func (r *rpcClient) connected(via int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns[via] != nil
}

func (r *rpcClient) drop(via int, c *cluster.Client) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conns[via] == c {
		delete(r.conns, via)
		c.Close()
	}
}

func (r *rpcClient) Submit(via int, ops ...messages.Op) (*messages.Outcome, error) {
	c, err := r.conn(via)
	if err != nil {
		return nil, err
	}
	o, err := c.Submit(ops...)
	if err != nil {
		r.drop(via, c)
	}
	return o, err
}

func (r *rpcClient) Read(keys ...string) (map[string]int64, error) {
	c, err := r.conn(r.readVia)
	if err != nil {
		return nil, err
	}
	vals, err := c.Read(keys...)
	if err != nil {
		r.drop(r.readVia, c)
		return nil, err
	}
	out := make(map[string]int64, len(vals))
	for _, v := range vals {
		out[v.Key] = v.Value
	}
	return out, nil
}

func (r *rpcClient) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for via, c := range r.conns {
		c.Close()
		delete(r.conns, via)
	}
}

// SIGTERM and SIGINT stop a node process cleanly: exit 0, "stopped" on
// stdout, its port closed; restarted on the same data, it still has what
// it committed.
func TestProcessCleanShutdown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	c := startProcCluster(t, 4, "clean shutdown")
	cl := newRPCClient(c.peers, 0)
	defer cl.Close()
	o, err := cl.Submit(0, messages.Set("n1/x", 42), messages.Set("n2/y", 7), messages.Add("n3/z", 5))
	if err != nil || !o.Committed {
		t.Fatalf("submit: %v %v", o, err)
	}
	for _, step := range []struct {
		id  int
		sig os.Signal
	}{{1, syscall.SIGTERM}, {2, os.Interrupt}} {
		p := c.signal(step.id, step.sig)
		if code := p.exitCode(); code != 0 {
			t.Fatalf("node %d exited with %d (%v) after %v", step.id, code, p.waitErr, step.sig)
		}
		out := p.stdout.String()
		if !strings.HasSuffix(out, fmt.Sprintf("node %d stopped\n", step.id)) {
			t.Fatalf("node %d stdout after %v: %q", step.id, step.sig, out)
		}
		if log := tail(c.stderrPath(step.id), 5); !strings.Contains(log, fmt.Sprintf("node-%d: node stopped", step.id)) {
			t.Fatalf("node %d's log does not end with its stop:\n%s", step.id, log)
		}
		if conn, err := net.DialTimeout("tcp", c.peers[step.id], time.Second); err == nil {
			conn.Close()
			t.Fatalf("node %d's port is open after it stopped", step.id)
		}
	}
	for _, id := range []int{1, 2} {
		p := c.start(id)
		if want := fmt.Sprintf("node %d serving on %s (incarnation 2)\n", id, c.peers[id]); p.stdout.String() != want {
			t.Fatalf("restart: %q, want %q", p.stdout.String(), want)
		}
	}
	// Read through node 0, whose links to 1 and 2 reconnect with backoff,
	// and through a restarted node itself.
	for _, via := range []int{0, 1} {
		r := newRPCClient(c.peers, via)
		actortest.Eventually(t, 10*time.Second, func() string {
			got, err := r.Read("n1/x", "n2/y", "n3/z")
			if err != nil || got["n1/x"] != 42 || got["n2/y"] != 7 || got["n3/z"] != 5 {
				return fmt.Sprintf("read via node %d after restarts: %v, %v", via, got, err)
			}
			return ""
		})
		r.Close()
	}
}

func testSeed(t *testing.T) int64 {
	seed, err := bank.Seed()
	if err != nil {
		t.Fatal(err)
	}
	return seed
}

// Transfers run through clients while nodes are killed with SIGKILL at
// random moments and restarted; once everything has settled, the bank's
// invariant holds. TWOPC_SOAK=1 runs many more rounds.
func TestProcessSIGKILLBank(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	seed := testSeed(t)
	// The seed fixes the kill schedule and the transfers each client picks,
	// not the interleaving: a replay is likely, not certain, to fail alike.
	note := fmt.Sprintf("seed %d (TWOPC_SEED=%d repeats the random choices)", seed, seed)
	t.Logf("%s", note)
	rounds, settle := 4, 30*time.Second
	if os.Getenv("TWOPC_SOAK") == "1" {
		rounds, settle = 40, 60*time.Second
	}
	const (
		nodes   = 4
		workers = 8
	)
	rng := rand.New(rand.NewSource(seed))
	// Short protocol clocks, so transactions a crash left in doubt are
	// asked about, and decided, within the test's time. Warn, not info:
	// info logs every protocol step of thousands of transfers.
	c := startProcCluster(t, nodes, note, "--vote-timeout", "1s", "--in-doubt-after", "1s", "--log-level", "warn")
	b := bank.New(bank.Config{Nodes: nodes, Prefix: "s" + strconv.FormatInt(seed, 36)})
	setup := newRPCClient(c.peers, 0)
	err := b.Setup(setup)
	setup.Close()
	if err != nil {
		c.fatalf("%v", err)
	}

	var live [nodes]atomic.Bool
	for i := range live {
		live[i].Store(true)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var transfers atomic.Int64
	for w := 0; w < workers; w++ {
		wrng := rand.New(rand.NewSource(rng.Int63()))
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := newRPCClient(c.peers, 0)
			defer cl.Close()
			for {
				select {
				case <-stop:
					return
				default:
				}
				via := wrng.Intn(nodes)
				for !live[via].Load() { // a node known dead is not asked; one dying now may be
					via = (via + 1) % nodes
				}
				b.Run(cl, b.Transfer(wrng, via))
				transfers.Add(1)
				if !cl.connected(via) {
					// The call failed (the node died under it, or is
					// down): pause rather than spin on refused dials.
					time.Sleep(time.Duration(10+wrng.Intn(40)) * time.Millisecond)
				}
			}
		}()
	}

	// Two readers read every account in one call while the transfers run
	// (through the nodes in turn): a read that returns must add up to the
	// bank's total — reads of several nodes are one snapshot.
	var goodReads, failedReads atomic.Int64
	var wrongMu sync.Mutex
	var wrongReads []error
	for rd := 0; rd < 2; rd++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := rd; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				cl := newRPCClient(c.peers, i%nodes)
				err := b.CheckTotal(cl)
				cl.Close()
				switch {
				case err == nil:
					goodReads.Add(1)
				case errors.Is(err, bank.ErrReadFailed):
					failedReads.Add(1)
					time.Sleep(20 * time.Millisecond) // a node down: do not spin
				default:
					wrongMu.Lock()
					wrongReads = append(wrongReads, err)
					wrongMu.Unlock()
				}
			}
		}()
	}

	kills := 0
	start := time.Now()
	// Each round: a kill after some transfers, a restart after some more,
	// and more transfers with every node up. The moments are counted in
	// transfers, drawn from the seed, so they mean the same on any machine.
	afterTransfers := func(n int64) {
		from := transfers.Load()
		actortest.Eventually(t, time.Minute, func() string {
			if got := transfers.Load() - from; got < n {
				return fmt.Sprintf("%s: %d of %d transfers done", c.note, got, n)
			}
			return ""
		})
	}
	for r := 0; r < rounds; r++ {
		afterTransfers(20 + rng.Int63n(150))
		id := rng.Intn(nodes)
		live[id].Store(false)
		c.kill(id)
		kills++
		afterTransfers(1 + rng.Int63n(50))
		c.start(id)
		live[id].Store(true)
		afterTransfers(30 + rng.Int63n(100))
	}
	close(stop)
	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(30 * time.Second):
		c.fatalf("clients still busy 30s after the last round")
	}
	load := time.Since(start)
	t.Logf("reads of every account during the transfers: %d added up, %d failed, %d wrong", goodReads.Load(), failedReads.Load(), len(wrongReads))
	for i, err := range wrongReads {
		if i == 5 {
			break
		}
		t.Errorf("%s: a read during the transfers: %v", c.note, err)
	}
	if goodReads.Load() == 0 {
		c.fatalf("no read of every account succeeded during the transfers: the snapshot check proves nothing")
	}

	// Transactions a kill left undecided are resolved by their
	// participants' questions and the coordinators' re-driven commits, a
	// few seconds after the restarts; until then reads wait or fail, and
	// a read may see one side decided and not the other. Retry until
	// quiet, then the invariant must hold.
	var lastErr error
	attempts := 0
	deadline := time.Now().Add(settle)
	for {
		attempts++
		r := newRPCClient(c.peers, attempts%nodes)
		lastErr = b.Check(r)
		r.Close()
		if lastErr == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	committed, aborted, unknown := b.Counts()
	t.Logf("%d rounds in %v: %d kills, %d transfers: %d committed, %d aborted, %d unknown; check run %d time(s)",
		rounds, load.Round(time.Millisecond), kills, transfers.Load(), committed, aborted, unknown, attempts)
	if lastErr != nil {
		c.fatalf("invariant broken (still, %v after the load stopped):\n%v", settle, lastErr)
	}
	if committed == 0 {
		c.fatalf("no transfer committed")
	}

	// Every node is up and coordinates again. A node restarted a moment
	// ago refuses transactions until the clock skew has passed since its
	// start (a predecessor may have voted on them): retry for a while.
	cl := newRPCClient(c.peers, 0)
	defer cl.Close()
	for via := 0; via < nodes; via++ {
		actortest.Eventually(t, 10*time.Second, func() string {
			o, err := cl.Submit(via, messages.Set(fmt.Sprintf("n%d/probe", via), 1), messages.Set(fmt.Sprintf("n%d/probe", (via+1)%nodes), 1))
			if err != nil || !o.Committed {
				return fmt.Sprintf("%s: after the crashes, node %d does not commit: %v %v", c.note, via, o, err)
			}
			return ""
		})
	}
}
