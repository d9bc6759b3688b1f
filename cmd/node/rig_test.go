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
	// wrap, if set, is the command line node id runs under, the node's
	// own following it (e.g. ip netns exec NAME: a network namespace).
	wrap func(id int) []string

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
	var http []string
	if withHTTP {
		http = freePorts(t, nodes)
	}
	return startProcClusterOn(t, freePorts(t, nodes), http, makeCerts(t, nodes), nil, note, extra...)
}

// startProcClusterOn starts a node process for each of peers, with the
// given certificates (naming those addresses), --http addresses (nil:
// none) and command wrapper (nil: none), and every node's extra flags.
func startProcClusterOn(t *testing.T, peers, http []string, certs *testCerts, wrap func(id int) []string, note string, extra ...string) *procCluster {
	t.Helper()
	bin := nodeBinary(t)
	tmp := t.TempDir() // removed after the cleanup below has printed the logs
	c := &procCluster{
		t: t, bin: bin, peers: peers, http: http, note: note, extra: extra, certs: certs, wrap: wrap,
		dataDir: filepath.Join(tmp, "data"), logDir: tmp, procs: make([]*nodeProc, len(peers)),
	}
	t.Cleanup(c.cleanup)
	for i := range peers {
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
	if c.wrap != nil {
		w := c.wrap(id)
		p.cmd = exec.Command(w[0], append(append(w[1:len(w):len(w)], c.bin), args...)...)
	} else {
		p.cmd = exec.Command(c.bin, args...)
	}
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
	hosts := make([]string, nodes)
	for i := range hosts {
		hosts[i] = "127.0.0.1"
	}
	return makeCertsFor(t, hosts)
}

// makeCertsFor is makeCerts for nodes on the given hosts, one per node:
// node i's certificate names hosts[i].
func makeCertsFor(t *testing.T, hosts []string) *testCerts {
	t.Helper()
	nodes := len(hosts)
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
		var names []string
		if p.IsNode() {
			names = []string{hosts[p.Node]}
		}
		c, k, err := ca.IssuePEM(p, names)
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

// ---------------------------------------------------------------------------
// network lab: hosts in Linux network namespaces on one bridge

// netLab is a Linux bridge with, per host, a network namespace joined to
// it by a veth pair: each host has its own address, and the test process
// its own on the bridge. Every name carries the test process's pid in hex
// (namespaces twopc-lab-<pid>-<i>, links tpl<pid>b, tpl<pid>h<i> on the
// host side), so two runs at once do not collide, and a run removes what
// an earlier run whose process is gone (it crashed, or was killed) left.
// Everything is removed when the test ends, passed or not.
type netLab struct {
	t      *testing.T
	tag    string // the pid, in hex
	bridge string
	self   string // the test process's address on the bridge
	hosts  []netHost
}

type netHost struct {
	ns   string // the namespace
	link string // the host-side end of its veth pair, on the bridge
	addr string // its address
}

const (
	labNSPrefix   = "twopc-lab-"
	labLinkPrefix = "tpl"
)

// labSkip says why this machine cannot run a network lab ("" if it can):
// it takes root, the ip command (iproute2), and a kernel and container
// that allow network namespaces.
func labSkip() string {
	if os.Geteuid() != 0 {
		return "needs root to make network namespaces, veth pairs and a bridge (run as root, as CI does)"
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		return "needs the ip command (iproute2) to make network namespaces"
	}
	probe := fmt.Sprintf("%s%x-probe", labNSPrefix, os.Getpid())
	if out, err := exec.Command(ip, "netns", "add", probe).CombinedOutput(); err != nil {
		return fmt.Sprintf("this machine refuses network namespaces (ip netns add: %v: %s)", err, strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command(ip, "netns", "del", probe).CombinedOutput(); err != nil {
		return fmt.Sprintf("ip netns del %s: %v: %s", probe, err, strings.TrimSpace(string(out)))
	}
	return ""
}

// ip runs ip with args and fails the test if it fails.
func (l *netLab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
}

// newNetLab makes a bridge and n hosts on a /24 of 198.18.0.0/15 (the
// range set aside for network tests) that no interface of this machine
// uses yet.
func newNetLab(t *testing.T, n int) *netLab {
	t.Helper()
	removeStaleLabs(t)
	pid := os.Getpid()
	l := &netLab{t: t, tag: fmt.Sprintf("%x", pid)}
	l.bridge = labLinkPrefix + l.tag + "b"
	net3 := freeLabNet(t, pid)
	t.Cleanup(l.remove) // registered first: runs after the processes are gone
	l.ip("link", "add", l.bridge, "type", "bridge")
	l.ip("link", "set", l.bridge, "up")
	l.self = net3 + ".254"
	l.ip("addr", "add", l.self+"/24", "dev", l.bridge)
	for i := range n {
		h := netHost{
			ns:   fmt.Sprintf("%s%s-%d", labNSPrefix, l.tag, i),
			link: fmt.Sprintf("%s%sh%d", labLinkPrefix, l.tag, i),
			addr: fmt.Sprintf("%s.%d", net3, i+1),
		}
		l.hosts = append(l.hosts, h)
		inner := fmt.Sprintf("%s%sn%d", labLinkPrefix, l.tag, i)
		l.ip("netns", "add", h.ns)
		l.ip("link", "add", h.link, "type", "veth", "peer", "name", inner)
		l.ip("link", "set", inner, "netns", h.ns)
		l.ip("link", "set", h.link, "master", l.bridge)
		l.ip("link", "set", h.link, "up")
		l.ip("-n", h.ns, "addr", "add", h.addr+"/24", "dev", inner)
		l.ip("-n", h.ns, "link", "set", inner, "up")
		l.ip("-n", h.ns, "link", "set", "lo", "up")
	}
	return l
}

// freeLabNet picks the first three octets of a /24 in 198.18.0.0/15 that
// no address of this machine is in, starting from one the pid chooses.
func freeLabNet(t *testing.T, pid int) string {
	t.Helper()
	out, err := exec.Command("ip", "-o", "addr", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip -o addr show: %v: %s", err, out)
	}
	for k := range 512 {
		idx := (pid + k) % 512
		net3 := fmt.Sprintf("198.%d.%d", 18+idx/256, idx%256)
		if !strings.Contains(string(out), " "+net3+".") {
			return net3
		}
	}
	t.Fatal("no free /24 left in 198.18.0.0/15")
	return ""
}

// remove deletes the lab's namespaces and links; what is already gone is
// no error.
func (l *netLab) remove() {
	for _, h := range l.hosts {
		exec.Command("ip", "link", "del", h.link).Run() // takes its peer in the namespace along
		if out, err := exec.Command("ip", "netns", "del", h.ns).CombinedOutput(); err != nil && !strings.Contains(string(out), "No such file") {
			l.t.Errorf("removing namespace %s: %v: %s", h.ns, err, out)
		}
	}
	if out, err := exec.Command("ip", "link", "del", l.bridge).CombinedOutput(); err != nil && !strings.Contains(string(out), "Cannot find device") {
		l.t.Errorf("removing bridge %s: %v: %s", l.bridge, err, out)
	}
}

// removeStaleLabs removes the namespaces and links of labs whose test
// process is gone.
func removeStaleLabs(t *testing.T) {
	t.Helper()
	alive := func(hexPid string) bool {
		pid, err := strconv.ParseInt(hexPid, 16, 64)
		if err != nil {
			return true // not one of ours: leave it
		}
		_, err = os.Stat(fmt.Sprintf("/proc/%d", pid))
		return err == nil
	}
	if out, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
			rest, ok := strings.CutPrefix(name, labNSPrefix)
			if !ok {
				continue
			}
			hexPid, _, _ := strings.Cut(rest, "-")
			if !alive(hexPid) {
				t.Logf("removing namespace %s, left by an earlier run", name)
				exec.Command("ip", "netns", "del", name).Run()
			}
		}
	}
	if out, err := exec.Command("ip", "-o", "link", "show").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			// "12: tpl1a2bh0@if11: <...": the name, before any @peer.
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			rest, ok := strings.CutPrefix(name, labLinkPrefix)
			if !ok || len(rest) < 2 {
				continue
			}
			// The pid, then a kind letter (b: bridge, h: a host's link)
			// and, for a host's link, its index.
			hexPid := strings.TrimRight(rest, "0123456789")
			if len(hexPid) < 2 {
				continue
			}
			hexPid = hexPid[:len(hexPid)-1]
			if !alive(hexPid) {
				t.Logf("removing link %s, left by an earlier run", name)
				exec.Command("ip", "link", "del", name).Run()
			}
		}
	}
}

// cut takes host i's link down: nothing reaches it or leaves it, on any
// connection, until heal.
func (l *netLab) cut(i int) { l.ip("link", "set", l.hosts[i].link, "down") }

// heal brings host i's link up again.
func (l *netLab) heal(i int) { l.ip("link", "set", l.hosts[i].link, "up") }

// exec is the command line that runs a program in host i's namespace.
func (l *netLab) exec(i int) []string { return []string{"ip", "netns", "exec", l.hosts[i].ns} }
