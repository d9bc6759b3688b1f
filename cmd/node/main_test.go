package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"twopc/actors/actortest"
	"twopc/cluster"
	"twopc/messages"
)

// Every test must leave nothing running, in this process (goleak) or as a
// child process (each test reaps its own). The binary the process-level
// tests build is removed once they are all done. protoactor's dead-letter
// throttle is let go, as in actortest.VerifyNoLeaks: it ends by itself.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"),
		goleak.Cleanup(func(int) { removeBinary() }))
}

func TestFlagErrors(t *testing.T) {
	const four = "127.0.0.1:4000,127.0.0.1:4001,127.0.0.1:4002,127.0.0.1:4003"
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no flags", nil, "missing --peers"},
		{"missing id", []string{"--peers", four}, "missing --id: this node's index in --peers (0-3)"},
		{"id not a number", []string{"--id", "one", "--peers", four}, `--id "one" is not a node id`},
		{"id negative", []string{"--id", "-1", "--peers", four}, "--id -1 is out of range: --peers lists 4 nodes, ids 0-3"},
		{"id too big", []string{"--id", "4", "--peers", four}, "--id 4 is out of range"},
		{"empty peers", []string{"--id", "0", "--peers", ""}, "missing --peers"},
		{"blank peers", []string{"--id", "0", "--peers", " "}, "missing --peers"},
		{"empty entry", []string{"--id", "0", "--peers", "127.0.0.1:4000,,127.0.0.1:4002"}, "--peers entry 1 is empty"},
		{"trailing comma", []string{"--id", "0", "--peers", "127.0.0.1:4000,"}, "--peers entry 1 is empty"},
		{"no port", []string{"--id", "0", "--peers", "127.0.0.1:4000,hostb"}, `--peers entry 1 "hostb" is not host:port`},
		{"no host", []string{"--id", "0", "--peers", ":4000"}, `--peers entry 0 ":4000" has no host`},
		{"bad port", []string{"--id", "0", "--peers", "a:4000,b:http"}, `--peers entry 1 "b:http": port "http"`},
		{"port zero", []string{"--id", "0", "--peers", "a:0"}, `--peers entry 0 "a:0": port "0" is not a number in 1-65535`},
		{"port too big", []string{"--id", "0", "--peers", "a:70000"}, `port "70000"`},
		{"duplicate", []string{"--id", "0", "--peers", "a:1,b:2,a:1"}, `--peers entries 0 and 2 are both "a:1"`},
		{"unknown flag", []string{"--id", "0", "--peers", "a:1", "--nodes", "4"}, "flag provided but not defined: -nodes"},
		{"stray argument", []string{"--id", "0", "--peers", "a:1", "extra"}, `unexpected argument "extra"`},
		{"bad log level", []string{"--id", "0", "--peers", "a:1", "--log-level", "loud"}, `--log-level "loud": want trace`},
		{"bad duration", []string{"--id", "0", "--peers", "a:1", "--vote-timeout", "soon"}, "-vote-timeout"},
		{"negative duration", []string{"--id", "0", "--peers", "a:1", "--in-doubt-after", "-1s"}, "--in-doubt-after -1s: must not be negative"},
		{"empty data dir", []string{"--id", "0", "--peers", "a:1", "--data-dir", ""}, "--data-dir is empty"},
		{"negative max conns", []string{"--id", "0", "--peers", "a:1", "--max-conns", "-1"}, "--max-conns -1: must not be negative"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(tc.args, &stdout, &stderr, nil)
			var ue *usageError
			if !errors.As(err, &ue) {
				t.Fatalf("want a usage error, got %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
			if stdout.Len() > 0 {
				t.Fatalf("stdout: %q", stdout.String())
			}
			var report bytes.Buffer
			if code := exitCode(err, &report); code != 2 || !strings.Contains(report.String(), tc.want) {
				t.Fatalf("exit code %d, report %q", code, report.String())
			}
		})
	}
}

func TestGoodFlags(t *testing.T) {
	o, err := parseArgs([]string{"--id", "2", "--peers", " h0:1, h1:2 ,h2:3", "--data-dir", "d",
		"--log-level", "WARN", "--vote-timeout", "1s", "--in-doubt-after", "500ms"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.id != 2 || strings.Join(o.peers, ",") != "h0:1,h1:2,h2:3" || o.dataDir != "d" ||
		o.level.String() != "warn" || o.timing.VoteTimeout != time.Second || o.timing.InDoubtAfter != 500*time.Millisecond {
		t.Fatalf("parsed %+v", o)
	}
	o, err = parseArgs([]string{"--id=0", "--peers=h0:1"}, io.Discard)
	if err != nil || o.dataDir != cluster.DefaultDataDir || o.level.String() != "info" || o.timing.VoteTimeout != 0 {
		t.Fatalf("defaults: %+v, %v", o, err)
	}
}

func TestHelp(t *testing.T) {
	var stderr bytes.Buffer
	err := run([]string{"-h"}, io.Discard, &stderr, nil)
	if !errors.Is(err, flag.ErrHelp) || exitCode(err, io.Discard) != 0 {
		t.Fatalf("-h: %v", err)
	}
	for _, f := range []string{"usage: node --id N --peers", "-data-dir", "-log-level", "-vote-timeout", "-in-doubt-after"} {
		if !strings.Contains(stderr.String(), f) {
			t.Errorf("usage lacks %q:\n%s", f, stderr.String())
		}
	}
}

// A node that cannot start (its port is taken) is a start failure, exit
// code 1, with the port named.
func TestStartFailureExitsOne(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	addr := lis.Addr().String()
	err = run(makeCerts(t, 1).args("--id", "0", "--peers", addr, "--data-dir", t.TempDir(), "--log-level", "off"), io.Discard, io.Discard, nil)
	var report bytes.Buffer
	if code := exitCode(err, &report); code != 1 || !strings.Contains(report.String(), "cannot listen on "+addr) {
		t.Fatalf("exit code %d: %s", code, report.String())
	}
}

// run in this process: it serves, commits, stops cleanly on a signal
// (goleak then proves its listener, connections and actors are gone), and
// a second run on the same data finds the commit.
func TestRunServesAndStopsOnSignal(t *testing.T) {
	addr := freePorts(t, 1)[0]
	dir := t.TempDir()
	certs := makeCerts(t, 1)
	args := certs.args("--id", "0", "--peers", addr, "--data-dir", dir, "--log-level", "warn")
	for inc, sig := range []os.Signal{syscall.SIGTERM, os.Interrupt} {
		var stdout, stderr actortest.Buffer
		signals := make(chan os.Signal, 2)
		done := make(chan error, 1)
		go func() { done <- run(args, &stdout, &stderr, signals) }()
		waitFor(t, &stdout, fmt.Sprintf("node 0 serving on %s (incarnation %d)\n", addr, inc+1), 10*time.Second)

		c, err := certs.dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		if inc == 0 {
			if o, err := c.Submit(messages.Set("n0/x", 42)); err != nil || !o.Committed {
				t.Fatalf("submit: %v %v", o, err)
			}
		} else if vals, err := c.Read("n0/x"); err != nil || len(vals) != 1 || vals[0].Value != 42 {
			t.Fatalf("after restart: n0/x = %v, %v", vals, err)
		}
		// The client stays connected: Stop must close accepted connections too.
		signals <- sig
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run after %v: %v\n%s", sig, err, stderr.String())
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("run did not return after %v", sig)
		}
		if !strings.HasSuffix(stdout.String(), "node 0 stopped\n") {
			t.Fatalf("stdout: %q", stdout.String())
		}
		if _, err := c.Read("n0/x"); err == nil {
			t.Fatal("the client's connection outlived the node")
		}
		c.Close()
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			conn.Close()
			t.Fatal("port still open after stop")
		}
	}
}

// A second signal abandons a shutdown that is taking its time; a closed
// signal channel does not count as one.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	signals := make(chan os.Signal, 1)
	got := make(chan error, 1)
	go func() { got <- shutdown(func() error { <-release; return nil }, signals) }()
	signals <- syscall.SIGTERM
	select {
	case err := <-got:
		if !errors.Is(err, errSecondSignal) || exitCode(err, io.Discard) != 1 {
			t.Fatalf("got %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("shutdown ignored the second signal")
	}

	closed := make(chan os.Signal)
	close(closed)
	if err := shutdown(func() error { time.Sleep(20 * time.Millisecond); return nil }, closed); err != nil {
		t.Fatalf("closed channel: %v", err)
	}
	if err := shutdown(func() error { return errors.New("flush failed") }, nil); err == nil || exitCode(err, io.Discard) != 1 {
		t.Fatalf("failed stop: %v", err)
	}
}

// TestPeersRefusesSameAddressSpelledTwice: --peers refuses a member listed
// twice ("a member listed twice would be two ids for one node") also when
// the same address is written another way — a port with a leading zero, an
// IPv6 address in another spelling, a host name in other case — as each
// entry is made canonical before the duplicate check. Passed as two
// members, both ids would name one listener (the second node cannot listen,
// or across hosts peers reach the wrong node), and nodes started with the
// two spellings would hash their member lists to different clusters.
func TestPeersRefusesSameAddressSpelledTwice(t *testing.T) {
	for _, peers := range []string{
		"127.0.0.1:4000,127.0.0.1:04000",
		"[::1]:4000,[0:0:0:0:0:0:0:1]:4000",
		"h0:4000,H0:4000",
	} {
		_, err := parseArgs([]string{"--id", "0", "--peers", peers}, io.Discard)
		var ue *usageError
		if !errors.As(err, &ue) {
			t.Errorf("--peers %s: accepted as two members (err %v); want a usage error naming the duplicate", peers, err)
		}
	}
}

// TestPeersIPv6KeepsBrackets: IPv6 members parse and keep their brackets (peers dial them as
// given), and spaces around entries are trimmed.
func TestPeersIPv6KeepsBrackets(t *testing.T) {
	o, err := parseArgs([]string{"--id", "1", "--peers", "[::1]:4000, [::1]:4001 ,[fe80::1%eth0]:4002"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.peers, ",") != "[::1]:4000,[::1]:4001,[fe80::1%eth0]:4002" || o.id != 1 {
		t.Fatalf("parsed %+v", o)
	}
	if _, err := parseArgs([]string{"--id", "0", "--peers", "::1:4000"}, io.Discard); err == nil {
		t.Fatal("an IPv6 address without brackets was accepted")
	}
}

// TestStartOnDamagedLogExitsOneAndChangesNothing: a log damaged in the middle stops the start with exit code 1 and
// an error naming the segment and the offset, and the data directory is
// left exactly as found (no trim, no new BOOT record, no new file).
func TestStartOnDamagedLogExitsOneAndChangesNothing(t *testing.T) {
	addr := freePorts(t, 1)[0]
	dir := t.TempDir()
	certs := makeCerts(t, 1)
	args := certs.args("--id", "0", "--peers", addr, "--data-dir", dir, "--log-level", "off")
	_, stop := serve(t, args)
	c, err := certs.dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if o, err := c.Submit(messages.Set("n0/x", int64(i))); err != nil || !o.Committed {
			t.Fatalf("submit: %v %v", o, err)
		}
	}
	c.Close()
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	seg := filepath.Join(dir, "node-0", "wal-0000000000000001.log")
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	data[10] ^= 0x40 // inside the first frame's payload (the BOOT record); intact frames follow
	if err := os.WriteFile(seg, data, 0o644); err != nil {
		t.Fatal(err)
	}
	before := dirState(t, dir)

	signals := make(chan os.Signal, 1)
	signals <- syscall.SIGTERM // should the start succeed after all, stop at once
	var stdout bytes.Buffer
	err = run(args, &stdout, io.Discard, signals)
	var report bytes.Buffer
	code := exitCode(err, &report)
	if code != 1 {
		t.Fatalf("exit code %d (%v), want 1", code, err)
	}
	for _, want := range []string{seg, "offset 0"} {
		if !strings.Contains(report.String(), want) {
			t.Errorf("the error does not name %q: %s", want, report.String())
		}
	}
	if strings.Contains(stdout.String(), "serving") {
		t.Errorf("stdout says it served: %q", stdout.String())
	}
	after := dirState(t, dir)
	for name, b := range before {
		if a, ok := after[name]; !ok {
			t.Errorf("%s vanished", name)
		} else if a != b {
			t.Errorf("%s changed", name)
		}
	}
	for name := range after {
		if _, ok := before[name]; !ok {
			t.Errorf("%s appeared", name)
		}
	}
}

// TestSignalDuringStartStopsCleanly: a SIGTERM that arrives while the node is still starting (the
// signal channel already holds it when run begins) is not lost: the node
// finishes starting, then stops cleanly, exit 0.
func TestSignalDuringStartStopsCleanly(t *testing.T) {
	addr := freePorts(t, 1)[0]
	signals := make(chan os.Signal, 2)
	signals <- syscall.SIGTERM
	var stdout actortest.Buffer
	err := run(makeCerts(t, 1).args("--id", "0", "--peers", addr, "--data-dir", t.TempDir(), "--log-level", "off"), &stdout, io.Discard, signals)
	if err != nil || exitCode(err, io.Discard) != 0 {
		t.Fatalf("run: %v", err)
	}
	if !strings.HasSuffix(stdout.String(), "node 0 stopped\n") {
		t.Fatalf("stdout %q", stdout.String())
	}
}

// TestSecondRunOnSameDataDirRefused: a second node process on the same data directory and id (on
// another port, so the port does not stop it first) fails to start with
// exit code 1, naming the directory in use, and the first keeps serving.
func TestSecondRunOnSameDataDirRefused(t *testing.T) {
	addrs := freePorts(t, 2)
	dir := t.TempDir()
	certs := makeCerts(t, 1)
	_, stop := serve(t, certs.args("--id", "0", "--peers", addrs[0], "--data-dir", dir, "--log-level", "off"))
	signals := make(chan os.Signal, 1)
	signals <- syscall.SIGTERM
	err := run(certs.args("--id", "0", "--peers", addrs[1], "--data-dir", dir, "--log-level", "off"), io.Discard, io.Discard, signals)
	var report bytes.Buffer
	if code := exitCode(err, &report); code != 1 || !strings.Contains(report.String(), "in use by another process") ||
		!strings.Contains(report.String(), filepath.Join(dir, "node-0")) {
		t.Fatalf("second run: exit %d: %s", code, report.String())
	}
	c, err := certs.dial(addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if o, err := c.Submit(messages.Set("n0/x", 1)); err != nil || !o.Committed {
		t.Fatalf("the first node after the refused second start: %v %v", o, err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// A log failure has its own exit code, distinct from usage (2) and start
// failures (1), and the report says what to do.
func TestLogFailureExitCode(t *testing.T) {
	disk := errors.New("write at offset 50: file too large")
	var report bytes.Buffer
	err := error(&logFailedError{id: 2, err: disk})
	if code := exitCode(err, &report); code != 3 {
		t.Fatalf("exit code %d, want 3", code)
	}
	want := "node: node 2 stopped: its log failed: write at offset 50: file too large; start it again to recover from its log\n"
	if report.String() != want || !errors.Is(err, disk) {
		t.Fatalf("report %q, want %q", report.String(), want)
	}
}
