package main

// Review 5: one node per process — start-up on a damaged log, --peers,
// signals before the node serves, the data directory's lock.

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"twopc/actors/actortest"
	"twopc/cluster"
	"twopc/messages"
)

// r5DirState is every file under dir: contents, mode and modification time.
func r5DirState(t *testing.T, dir string) map[string]string {
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

// r5Serve runs the node in this process until stop is called.
func r5Serve(t *testing.T, args []string) (stdout *actortest.Buffer, stop func() error) {
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

// Pinned: a log damaged in the middle stops the start with exit code 1 and
// an error naming the segment and the offset, and the data directory is
// left exactly as found (no trim, no new BOOT record, no new file).
func TestReview5DamagedLogAtStartExitsOneAndChangesNothing(t *testing.T) {
	addr := freePorts(t, 1)[0]
	dir := t.TempDir()
	args := []string{"--id", "0", "--peers", addr, "--data-dir", dir, "--log-level", "off"}
	_, stop := r5Serve(t, args)
	c, err := cluster.Dial(addr)
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
	before := r5DirState(t, dir)

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
	after := r5DirState(t, dir)
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

// --peers refuses a member listed twice ("a member listed twice would be
// two ids for one node"), but compares the strings as typed: the same
// address written another way — a port with a leading zero, an IPv6
// address in another spelling — passes as two members. Both ids then name
// one listener: the second node cannot listen (exit 1, "is another node
// using port ...?") or, across hosts, peers reach the wrong node; and the
// member lists of nodes started with the two spellings hash to different
// clusters, whose batches are refused.
//
// Fix: canonicalize each entry before the duplicate check (strconv port,
// net.ParseIP(host).String() for IP literals, lower-case host names) and
// store the canonical form, so every node also hashes the same list.
func TestReview5PeersSameAddressSpelledTwice(t *testing.T) {
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

// Pinned: IPv6 members parse and keep their brackets (peers dial them as
// given), and spaces around entries are trimmed.
func TestReview5PeersIPv6(t *testing.T) {
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

// Pinned: a SIGTERM that arrives while the node is still starting (the
// signal channel already holds it when run begins) is not lost: the node
// finishes starting, then stops cleanly, exit 0.
func TestReview5SignalDuringStartStopsCleanly(t *testing.T) {
	addr := freePorts(t, 1)[0]
	signals := make(chan os.Signal, 2)
	signals <- syscall.SIGTERM
	var stdout actortest.Buffer
	err := run([]string{"--id", "0", "--peers", addr, "--data-dir", t.TempDir(), "--log-level", "off"}, &stdout, io.Discard, signals)
	if err != nil || exitCode(err, io.Discard) != 0 {
		t.Fatalf("run: %v", err)
	}
	if !strings.HasSuffix(stdout.String(), "node 0 stopped\n") {
		t.Fatalf("stdout %q", stdout.String())
	}
}

// Pinned: a second node process on the same data directory and id (on
// another port, so the port does not stop it first) fails to start with
// exit code 1, naming the directory in use, and the first keeps serving.
func TestReview5SecondRunOnSameDataDirRefused(t *testing.T) {
	addrs := freePorts(t, 2)
	dir := t.TempDir()
	_, stop := r5Serve(t, []string{"--id", "0", "--peers", addrs[0], "--data-dir", dir, "--log-level", "off"})
	signals := make(chan os.Signal, 1)
	signals <- syscall.SIGTERM
	err := run([]string{"--id", "0", "--peers", addrs[1], "--data-dir", dir, "--log-level", "off"}, io.Discard, io.Discard, signals)
	var report bytes.Buffer
	if code := exitCode(err, &report); code != 1 || !strings.Contains(report.String(), "in use by another process") ||
		!strings.Contains(report.String(), filepath.Join(dir, "node-0")) {
		t.Fatalf("second run: exit %d: %s", code, report.String())
	}
	c, err := cluster.Dial(addrs[0])
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
