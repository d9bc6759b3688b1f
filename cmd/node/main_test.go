package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
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
	err = run([]string{"--id", "0", "--peers", addr, "--data-dir", t.TempDir(), "--log-level", "off"}, io.Discard, io.Discard, nil)
	var report bytes.Buffer
	if code := exitCode(err, &report); code != 1 || !strings.Contains(report.String(), "cannot listen on "+addr) {
		t.Fatalf("exit code %d: %s", code, report.String())
	}
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

// run in this process: it serves, commits, stops cleanly on a signal
// (goleak then proves its listener, connections and actors are gone), and
// a second run on the same data finds the commit.
func TestRunServesAndStopsOnSignal(t *testing.T) {
	addr := freePorts(t, 1)[0]
	dir := t.TempDir()
	args := []string{"--id", "0", "--peers", addr, "--data-dir", dir, "--log-level", "warn"}
	for inc, sig := range []os.Signal{syscall.SIGTERM, os.Interrupt} {
		var stdout, stderr actortest.Buffer
		signals := make(chan os.Signal, 2)
		done := make(chan error, 1)
		go func() { done <- run(args, &stdout, &stderr, signals) }()
		waitFor(t, &stdout, fmt.Sprintf("node 0 serving on %s (incarnation %d)\n", addr, inc+1), 10*time.Second)

		c, err := cluster.Dial(addr)
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
