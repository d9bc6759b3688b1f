package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"twopc/actors/actortest"
	"twopc/cluster"
	"twopc/messages"
)

// Secure by default: without --tls-dir the node does not start (exit 2,
// the flag named), and --tls-dir with --insecure is a contradiction.
func TestRefusesToStartWithoutTLSDir(t *testing.T) {
	addr := freePorts(t, 1)[0]
	base := []string{"--id", "0", "--peers", addr, "--data-dir", t.TempDir(), "--log-level", "off"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{base, "missing --tls-dir DIR"},
		{append(append([]string(nil), base...), "--tls-dir", t.TempDir(), "--insecure"), "--tls-dir and --insecure together"},
	} {
		var stdout bytes.Buffer
		err := run(tc.args, &stdout, io.Discard, nil)
		var report bytes.Buffer
		if code := exitCode(err, &report); code != 2 || !strings.Contains(report.String(), tc.want) {
			t.Errorf("%q: exit %d, %q; want 2 and %q", tc.args, code, report.String(), tc.want)
		}
		if stdout.Len() != 0 {
			t.Errorf("%q: stdout %q", tc.args, stdout.String())
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%q: the port was opened", tc.args)
		}
	}
	// A directory without this node's files is a failed start, naming it.
	err := run(append(append([]string(nil), base...), "--tls-dir", t.TempDir()), io.Discard, io.Discard, nil)
	var report bytes.Buffer
	if code := exitCode(err, &report); code != 1 || !strings.Contains(report.String(), "ca.crt") {
		t.Errorf("an empty --tls-dir: exit %d, %q", code, report.String())
	}
}

// --insecure serves plain TCP, after a loud warning.
func TestInsecureWarnsAndServesPlainTCP(t *testing.T) {
	addr := freePorts(t, 1)[0]
	var stderr actortest.Buffer
	stdout := &actortest.Buffer{}
	signals := make(chan os.Signal, 1)
	done := make(chan error, 1)
	go func() {
		done <- run([]string{"--id", "0", "--peers", addr, "--data-dir", t.TempDir(), "--log-level", "warn", "--insecure"}, stdout, &stderr, signals)
	}()
	waitFor(t, stdout, "serving on", 15*time.Second)
	if !strings.Contains(stderr.String(), "[WARN]") || !strings.Contains(stderr.String(), "INSECURE") {
		t.Errorf("no warning on stderr: %q", stderr.String())
	}
	c, err := cluster.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	if o, err := c.Submit(messages.Set("n0/x", 1)); err != nil || !o.Committed {
		t.Errorf("plain client of an insecure node: %v %v", o, err)
	}
	c.Close()
	signals <- syscall.SIGTERM
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// With --tls-dir a plaintext client gets nothing; a client with the
// cluster's client certificate is served, one with the admin's too.
func TestTLSNodeServesOnlyCertificates(t *testing.T) {
	addr := freePorts(t, 1)[0]
	certs := makeCerts(t, 1)
	serve(t, certs.args("--id", "0", "--peers", addr, "--data-dir", t.TempDir(), "--log-level", "off"))
	plain, err := cluster.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := plain.Submit(messages.Set("n0/x", 1)); err == nil {
		t.Error("a plaintext client was served")
	}
	for _, cfg := range []struct {
		who string
		c   func() (*cluster.Client, error)
	}{
		{"client", func() (*cluster.Client, error) { return certs.dial(addr) }},
		{"admin", func() (*cluster.Client, error) { return cluster.Dial(addr, cluster.WithTLS(certs.admin)) }},
	} {
		c, err := cfg.c()
		if err != nil {
			t.Fatal(err)
		}
		if o, err := c.Submit(messages.Add("n0/x", 1)); err != nil || !o.Committed {
			t.Errorf("%s: %v %v", cfg.who, o, err)
		}
		c.Close()
	}
}

// A node process run out of file descriptors (a low RLIMIT_NOFILE, then
// connections until accept fails) keeps its accept loop: once the
// connections close it accepts, and serves, again.
func TestNodeOutOfDescriptorsAcceptsAgain(t *testing.T) {
	bin := nodeBinary(t)
	addr := freePorts(t, 1)[0]
	certs := makeCerts(t, 1)
	dir := t.TempDir()
	// The shell lowers the limit for itself and the node it becomes. 64
	// descriptors: enough to start (log, listener, epoll, runtime), few
	// enough to run out of in a moment.
	cmd := exec.Command("/bin/sh", "-c", fmt.Sprintf("ulimit -n 64 && exec %s --id 0 --peers %s --data-dir %s --tls-dir %s --log-level warn", bin, addr, dir, certs.dir))
	stdout := &actortest.Buffer{}
	var stderr actortest.Buffer
	cmd.Stdout, cmd.Stderr, cmd.SysProcAttr = stdout, &stderr, childAttr()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-exited
	}()
	waitFor(t, stdout, "serving on", 20*time.Second)

	// Open connections until the node reports running out; the kernel
	// completes TCP connections the node cannot accept, so more than 64
	// are needed to be sure.
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := 0; i < 400 && !strings.Contains(stderr.String(), "out_of_descriptors=true"); i++ {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			break // the backlog is full: the node is surely out
		}
		held = append(held, c)
	}
	waitFor(t, &stderr, "out_of_descriptors=true", 20*time.Second)
	for _, c := range held {
		c.Close()
	}
	held = nil
	// Serving again: a client gets through (retried while the node is
	// still closing the strangers' connections).
	actortest.Eventually(t, 30*time.Second, func() string {
		c, err := certs.dial(addr)
		if err == nil {
			o, serr := c.Submit(messages.Set("n0/x", 7))
			c.Close()
			if serr == nil && o.Committed {
				return ""
			}
			err = serr
		}
		return fmt.Sprintf("the node does not serve after running out of descriptors: %v\nstderr:\n%s", err, stderr.String())
	})
	select {
	case err := <-exited:
		t.Fatalf("the node exited: %v", err)
	default:
	}
}
