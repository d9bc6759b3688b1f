package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"twopc/actors/actortest"
	"twopc/identity"
)

// Every session stops its cluster and its signal handler: nothing of ours
// may be left running. Two goroutines of the line editor (readline v1.5.1)
// are exempt: its input loop, which after Close blocks for ever handing an
// EOF to a reader that is gone (harmless in the command, which exits), and
// its process-wide SIGWINCH watcher, started once by design.
func TestMain(m *testing.M) {
	actortest.VerifyNoLeaks(m,
		goleak.IgnoreAnyFunction("github.com/chzyer/readline.(*Operation).ioloop"),
		goleak.IgnoreAnyFunction("github.com/chzyer/readline.DefaultOnWidthChanged.func1.1"),
		goleak.Cleanup(func(int) { removeNodeBinary() }))
}

// Scripted sessions: the command run as `printf '...' | go run ./cmd/cluster`
// would run it, on free ports and a temporary data directory, with short
// protocol clocks so that timeouts come quickly.

// session runs the command with script on stdin and returns its output
// after the demo, line by line.
func session(t *testing.T, dir, script string, flags ...string) []string {
	t.Helper()
	args := append([]string{"--base-port", "0", "--data-dir", dir, "--history", "", "--log-level", "warn",
		"--vote-timeout", "500ms", "--in-doubt-after", "1s"}, flags...)
	var out, errOut bytes.Buffer
	code := run(args, strings.NewReader(script), &out, &errOut)
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if code != 0 {
		t.Fatalf("exit code %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
	if len(lines) < 8 || !strings.HasPrefix(lines[0], "transaction 1 via node 0: committed") {
		t.Fatalf("no demo first:\n%s", out.String())
	}
	t.Logf("session:\n%s", out.String())
	return lines[8:]
}

// expectLines checks got line by line against patterns (regular
// expressions matching whole lines).
func expectLines(t *testing.T, got []string, patterns ...string) {
	t.Helper()
	for i, p := range patterns {
		if i >= len(got) {
			t.Fatalf("output ended before line %d (want %s):\n%s", i+1, p, strings.Join(got, "\n"))
		}
		if !regexp.MustCompile("^" + p + "$").MatchString(got[i]) {
			t.Fatalf("line %d = %q, want %s\nwhole output:\n%s", i+1, got[i], p, strings.Join(got, "\n"))
		}
	}
	if len(got) > len(patterns) {
		t.Fatalf("unexpected lines after line %d:\n%s", len(patterns), strings.Join(got[len(patterns):], "\n"))
	}
}

// spawnLine parses `spawned <n>: committed <c>, aborted <a> (<ms> ms)`.
var spawnLine = regexp.MustCompile(`^spawned (\d+): committed (\d+), aborted (\d+) \(\d+ ms\)$`)

func spawnCounts(t *testing.T, line string) (n, committed, aborted int) {
	t.Helper()
	m := spawnLine.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("not a spawn line: %q", line)
	}
	n, _ = strconv.Atoi(m[1])
	committed, _ = strconv.Atoi(m[2])
	aborted, _ = strconv.Atoi(m[3])
	return
}

// traceStart is where the output of `trace <tx>` begins (len(got) if it
// is not there).
func traceStart(got []string, tx string) int {
	for i, l := range got {
		if strings.HasPrefix(l, "trace "+tx+": ") {
			return i
		}
	}
	return len(got)
}

// expectTrace checks a trace's first line, and that its event lines hold
// the given descriptions in that order; and that no Commit left the
// coordinator between its crash and its restart.
func expectTrace(t *testing.T, lines []string, header string, inOrder ...string) {
	t.Helper()
	if len(lines) < 3 || lines[0] != header {
		t.Fatalf("trace starts %q, want %q", strings.Join(lines, "\n"), header)
	}
	next := 0
	crashed := false
	for _, l := range lines[2:] {
		// The description ends the line, after the lanes and two spaces.
		if next < len(inOrder) && strings.HasSuffix(l, "  "+inOrder[next]) {
			next++
		}
		switch {
		case strings.HasSuffix(l, "  node 0 crashed (power cut)"):
			crashed = true
		case strings.HasSuffix(l, "  node 0 restarted (incarnation 2)"):
			crashed = false
		case crashed && strings.Contains(l, "  Commit 0 → "):
			t.Errorf("a Commit left the crashed coordinator: %q", l)
		}
	}
	if next < len(inOrder) {
		t.Fatalf("trace lacks %q (in this order: %q):\n%s", inOrder[next], inOrder, strings.Join(lines, "\n"))
	}
}

// prompt is the command's prompt driven one line at a time, after the
// demo, as a person at a terminal drives it: each command's output apart.
type prompt struct {
	t      *testing.T
	r      *repl
	stderr *actortest.Buffer // the nodes' log, shown when a test fails
}

// startPrompt starts the command's cluster on free ports and a temporary
// data directory with flags (after the rig's own), and runs the demo.
func startPrompt(t *testing.T, flags ...string) *prompt {
	t.Helper()
	args := append([]string{"--base-port", "0", "--data-dir", t.TempDir(), "--history", "", "--log-level", "warn"}, flags...)
	p := &prompt{t: t, stderr: &actortest.Buffer{}}
	o, err := parseFlags(args, p.stderr)
	if err != nil {
		t.Fatalf("flags %q: %v", args, err)
	}
	r, err := startREPL(o, p.stderr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.shutdown()
		if t.Failed() {
			t.Logf("the nodes' log:\n%s", p.stderr.String())
		}
	})
	var demo bytes.Buffer
	if !runDemo(r.c, &demo) {
		t.Fatalf("the demo failed:\n%s", demo.String())
	}
	r.out = &demo
	r.afterDemo(false)
	p.r = r
	return p
}

// exec runs one line and returns what it printed.
func (p *prompt) exec(line string) string {
	var out bytes.Buffer
	p.r.out = &out
	p.r.exec(line)
	return out.String()
}

// plainSession runs the command with args (after the rig's own data
// directory, ports and history) and script on stdin, and returns every
// line it printed; it fails unless the exit code is want.
func plainSession(t *testing.T, want int, script string, args ...string) []string {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, strings.NewReader(script), &out, &errOut)
	if code != want {
		t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, want, out.String(), errOut.String())
	}
	t.Logf("session:\n%s", out.String())
	if out.Len() == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
}

// localArgs are the flags of an in-process session on free ports and a
// temporary directory, with short protocol clocks.
func localArgs(t *testing.T, flags ...string) []string {
	return append([]string{"--base-port", "0", "--data-dir", t.TempDir(), "--history", "", "--log-level", "warn",
		"--vote-timeout", "500ms", "--in-doubt-after", "1s"}, flags...)
}

// The process-level rig of the --connect tests: the node binary, built
// once per test binary run, in a directory of its own that TestMain
// removes (no test's TempDir: the tests share it).
var (
	nodeBinOnce sync.Once
	nodeBinDir  string
	nodeBinPath string
	nodeBinErr  error
)

// nodeBinary builds cmd/node (without -race: the nodes are the system
// driven here, the prompt is the code under test) with the go command of
// the toolchain running the test, which go test puts first on PATH.
func nodeBinary(t *testing.T) string {
	t.Helper()
	nodeBinOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			nodeBinErr = err
			return
		}
		goTool, err := exec.LookPath("go")
		if err != nil {
			nodeBinErr = fmt.Errorf("no go command to build the node with: %w", err)
			return
		}
		if nodeBinDir, err = os.MkdirTemp("", "twopc-cluster-test-node-"); err != nil {
			nodeBinErr = err
			return
		}
		nodeBinPath = filepath.Join(nodeBinDir, "node")
		cmd := exec.Command(goTool, "build", "-o", nodeBinPath, "./cmd/node")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			nodeBinErr = fmt.Errorf("go build ./cmd/node: %v\n%s", err, out)
		}
	})
	if nodeBinErr != nil {
		t.Fatal(nodeBinErr)
	}
	return nodeBinPath
}

func removeNodeBinary() {
	if nodeBinDir != "" {
		os.RemoveAll(nodeBinDir)
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

// freePorts reserves n loopback addresses (never 3000-3003, where `make
// run` listens) by listening on port 0 and closing again.
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
		open = append(open, l)
		if p := l.Addr().(*net.TCPAddr).Port; p >= 3000 && p <= 3003 {
			continue
		}
		addrs = append(addrs, l.Addr().String())
	}
	return addrs
}

// writeCerts writes a cluster's certificates to a temporary directory as
// cmd/certs does (nodes on 127.0.0.1, a client and an admin).
func writeCerts(t *testing.T, nodes int) string {
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
	return dir
}

// nodeProcs are cmd/node processes on free ports, with --tls-dir and
// --http, sharing a data directory; every one still running is killed and
// reaped when the test ends, passed or not, and on failure the end of
// each node's log is shown.
type nodeProcs struct {
	t       *testing.T
	bin     string
	peers   []string
	http    []string
	tlsDir  string
	dataDir string
	logDir  string

	mu    sync.Mutex
	procs []*exec.Cmd
	done  []chan struct{}
}

func startNodeProcs(t *testing.T, n int) *nodeProcs {
	t.Helper()
	tmp := t.TempDir()
	c := &nodeProcs{t: t, bin: nodeBinary(t), peers: freePorts(t, n), http: freePorts(t, n), tlsDir: writeCerts(t, n),
		dataDir: filepath.Join(tmp, "data"), logDir: tmp, procs: make([]*exec.Cmd, n), done: make([]chan struct{}, n)}
	t.Cleanup(c.cleanup)
	for i := range n {
		c.start(i)
	}
	return c
}

func (c *nodeProcs) logPath(i int) string {
	return filepath.Join(c.logDir, fmt.Sprintf("node-%d.stderr", i))
}

// start runs node i and waits for its serving line.
func (c *nodeProcs) start(i int) {
	c.t.Helper()
	args := []string{"--id", strconv.Itoa(i), "--peers", strings.Join(c.peers, ","), "--data-dir", c.dataDir,
		"--tls-dir", c.tlsDir, "--http", c.http[i], "--log-level", "warn"}
	logf, err := os.OpenFile(c.logPath(i), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	stdout := &actortest.Buffer{}
	cmd := exec.Command(c.bin, args...)
	cmd.Stdout, cmd.Stderr = stdout, logf
	err = cmd.Start()
	logf.Close() // the child has its own descriptor
	if err != nil {
		c.t.Fatalf("start node %d: %v", i, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	c.mu.Lock()
	c.procs[i], c.done[i] = cmd, done
	c.mu.Unlock()
	want := fmt.Sprintf("node %d serving on %s (incarnation ", i, c.peers[i])
	deadline := time.After(30 * time.Second)
	for !strings.Contains(stdout.String(), want) {
		select {
		case <-done:
			c.t.Fatalf("node %d exited before serving; stdout %q\n%s", i, stdout.String(), tailFile(c.logPath(i), 20))
		case <-deadline:
			c.t.Fatalf("node %d not serving after 30s; stdout %q", i, stdout.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// kill ends node i with SIGKILL, as a crash would, and reaps it.
func (c *nodeProcs) kill(i int) {
	c.t.Helper()
	c.mu.Lock()
	cmd, done := c.procs[i], c.done[i]
	c.procs[i] = nil
	c.mu.Unlock()
	if cmd == nil {
		c.t.Fatalf("node %d is not running", i)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

func (c *nodeProcs) cleanup() {
	for i := range c.procs {
		c.mu.Lock()
		cmd, done := c.procs[i], c.done[i]
		c.procs[i] = nil
		c.mu.Unlock()
		if cmd != nil {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-done
		}
	}
	if c.t.Failed() {
		for i := range c.procs {
			c.t.Logf("last lines of node %d's stderr:\n%s", i, tailFile(c.logPath(i), 30))
		}
	}
}

// connectArgs are the prompt's flags to drive these nodes.
func (c *nodeProcs) connectArgs(flags ...string) []string {
	return append([]string{"--connect", strings.Join(c.peers, ","), "--tls-dir", c.tlsDir, "--history", ""}, flags...)
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
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

// metricValue is the value of the sample of /metrics whose line starts
// with series (name and labels exactly as served), or -1 if none.
func metricValue(t *testing.T, base, series string) float64 {
	t.Helper()
	code, body, err := httpGet(base + "/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("%s/metrics: %d %v", base, code, err)
	}
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatalf("%s: %q is not a number", series, rest)
			}
			return v
		}
	}
	return -1
}

// interruptedSpawn parses the partial line of a spawn that Ctrl-C stopped
// and the reason lines after it: how many were submitted, committed and
// had no known outcome.
var interruptedSpawn = regexp.MustCompile(`^spawned (\d+) of 10000 \(interrupted\): committed (\d+), aborted (\d+) \(\d+ ms\)$`)

func checkInterruptedSpawn(t *testing.T, lines []string) (committed int) {
	t.Helper()
	m := interruptedSpawn.FindStringSubmatch(lines[0])
	if m == nil {
		t.Fatalf("not an interrupted spawn's line: %q", lines[0])
	}
	submitted, _ := strconv.Atoi(m[1])
	committed, _ = strconv.Atoi(m[2])
	aborted, _ := strconv.Atoi(m[3])
	// Each transaction not committed has a reason line: the aborts' and
	// those whose outcome is unknown.
	notCommitted := 0
	for _, l := range lines[1:] {
		var n int
		if _, err := fmt.Sscanf(l, "  %d × ", &n); err != nil {
			t.Fatalf("not a reason line: %q", l)
		}
		notCommitted += n
	}
	if submitted <= 0 || submitted >= 10000 || committed+notCommitted != submitted || notCommitted < aborted {
		t.Fatalf("interrupted spawn: %d submitted, %d committed, %d aborted, %d not committed: %q", submitted, committed, aborted, notCommitted, lines)
	}
	return committed
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
