package main

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"twopc/actors/actortest"
	"twopc/cluster"
	"twopc/identity"
	"twopc/internal/bank"
	"twopc/messages"
)

// The cmd/node tests' rig, in one place: free ports, a node run in this
// process (serve) and its output, a data directory's contents, and the
// process-level rig: the node binary, a cluster of node processes and a
// client that follows them as they die and come back.

// freePorts reserves n loopback addresses by listening on port 0 and
// closing again. The OS does not hand the same port out again at once, so
// they stay free long enough for the nodes to take them; 3000-3003, where
// `make run` listens, are never picked.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	var open []net.Listener
	defer func() {
		for _, l := range open {
			l.Close()
		}
	}()
	for len(addrs) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, l) // held until all are picked: no duplicates
		if p := l.Addr().(*net.TCPAddr).Port; p >= 3000 && p <= 3003 {
			continue
		}
		addrs = append(addrs, l.Addr().String())
	}
	return addrs
}

// waitFor polls until out contains want, or fails.
func waitFor(t *testing.T, out *actortest.Buffer, want string, d time.Duration) {
	t.Helper()
	actortest.Eventually(t, d, func() string {
		if s := out.String(); !strings.Contains(s, want) {
			return fmt.Sprintf("no %q yet; output:\n%s", want, s)
		}
		return ""
	})
}

// dirState is every file under dir: contents, mode and modification time.
func dirState(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		desc := info.Mode().String() + " " + info.ModTime().String()
		if !d.IsDir() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += " " + string(data)
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// serve runs the node in this process until stop is called.
func serve(t *testing.T, args []string) (stdout *actortest.Buffer, stop func() error) {
	t.Helper()
	stdout = &actortest.Buffer{}
	var stderr actortest.Buffer
	signals := make(chan os.Signal, 2)
	done := make(chan error, 1)
	go func() { done <- run(args, stdout, &stderr, signals) }()
	select {
	case err := <-done:
		t.Fatalf("run ended at once: %v\n%s", err, stderr.String())
	case <-time.After(0):
	}
	waitFor(t, stdout, "serving on", 15*time.Second)
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		signals <- syscall.SIGTERM
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			t.Fatal("run did not stop")
			return nil
		}
	}
	t.Cleanup(func() { _ = stop() })
	return stdout, stop
}

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
		// is built by the same Go: go test puts that toolchain's GOROOT/bin
		// first on the test's PATH (since Go 1.19), so the PATH's go is it.
		// Without -race: the nodes are the system under test here, not the
		// code the race detector should slow.
		goTool, err := exec.LookPath("go")
		if err != nil {
			buildErr = fmt.Errorf("no go command to build the node with: %w", err)
			return
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
	certs   *testCerts
	http    []string // each node's --http address (nil: none)
	note    string   // prefix of every failure (the seed)

	mu    sync.Mutex
	procs []*nodeProc // nil while down
}

func startProcCluster(t *testing.T, nodes int, note string, extra ...string) *procCluster {
	t.Helper()
	return startProcClusterHTTP(t, nodes, note, false, extra...)
}

// startProcClusterHTTP is startProcCluster, with --http on a free port of
// its own for each node if withHTTP.
func startProcClusterHTTP(t *testing.T, nodes int, note string, withHTTP bool, extra ...string) *procCluster {
	t.Helper()
	bin := nodeBinary(t)
	tmp := t.TempDir() // removed after the cleanup below has printed the logs
	c := &procCluster{
		t: t, bin: bin, peers: freePorts(t, nodes), note: note, extra: extra, certs: makeCerts(t, nodes),
		dataDir: filepath.Join(tmp, "data"), logDir: tmp, procs: make([]*nodeProc, nodes),
	}
	if withHTTP {
		c.http = freePorts(t, nodes)
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
	args := append([]string{"--id", strconv.Itoa(id), "--peers", strings.Join(c.peers, ","), "--data-dir", c.dataDir, "--tls-dir", c.certs.dir}, c.extra...)
	if c.http != nil {
		args = append(args, "--http", c.http[id])
	}
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
	tls   *tls.Config // the client certificate's settings

	mu      sync.Mutex
	conns   map[int]*cluster.Client
	readVia int // the node reads go through
}

func newRPCClient(peers []string, certs *testCerts, readVia int) *rpcClient {
	return &rpcClient{peers: peers, tls: certs.client, conns: map[int]*cluster.Client{}, readVia: readVia}
}

func (r *rpcClient) conn(via int) (*cluster.Client, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.conns[via]; c != nil {
		return c, nil
	}
	c, err := cluster.Dial(r.peers[via], cluster.WithTLS(r.tls))
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

func testSeed(t *testing.T) int64 {
	seed, err := bank.Seed()
	if err != nil {
		t.Fatal(err)
	}
	return seed
}

// testCerts is a cluster's certificates written to a test's temporary
// directory as cmd/certs writes them (nodes on 127.0.0.1), and a client's
// settings to dial them with.
type testCerts struct {
	dir    string
	client *tls.Config
	admin  *tls.Config
}

func makeCerts(t *testing.T, nodes int) *testCerts {
	t.Helper()
	ca, err := identity.NewCA("test cluster")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, b []byte, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(dir, name), b, mode); err != nil {
			t.Fatal(err)
		}
	}
	write(identity.CAFile, ca.CertPEM(), 0o644)
	peers := []identity.Peer{identity.Client, identity.Admin}
	for i := range nodes {
		peers = append(peers, identity.Node(int32(i)))
	}
	for _, p := range peers {
		var hosts []string
		if p.IsNode() {
			hosts = []string{"127.0.0.1"}
		}
		c, k, err := ca.IssuePEM(p, hosts)
		if err != nil {
			t.Fatal(err)
		}
		write(p.FileBase()+".crt", c, 0o644)
		write(p.FileBase()+".key", k, 0o600)
	}
	client, err := identity.Load(dir, identity.Client)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := identity.Load(dir, identity.Admin)
	if err != nil {
		t.Fatal(err)
	}
	return &testCerts{dir: dir, client: client.ClientConfig(), admin: admin.ClientConfig()}
}

// args are the flags that make a node use these certificates.
func (c *testCerts) args(args ...string) []string { return append(args, "--tls-dir", c.dir) }

// dial connects a client with the client certificate.
func (c *testCerts) dial(addr string) (*cluster.Client, error) {
	return cluster.Dial(addr, cluster.WithTLS(c.client))
}

// httpGet returns the status and body of url, or err when nothing answers
// (no kept-alive connection is left behind).
func httpGet(url string) (int, string, error) {
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 20 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	return res.StatusCode, string(body), err
}

// scrapeMetrics parses a node's /metrics.
func scrapeMetrics(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body, err := httpGet(base + "/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("/metrics: %d %v\n%s", code, err, body)
	}
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, body)
	}
	return fams
}

// sample is the value of family name's sample whose labels include want
// (a counter's or gauge's value); ok is false if there is none.
func sample(fams map[string]*dto.MetricFamily, name string, want map[string]string) (v float64, ok bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, w := range want {
			if got[k] != w {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}
