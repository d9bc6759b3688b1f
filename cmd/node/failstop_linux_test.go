package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"twopc/actors/actortest"
	"twopc/messages"
)

// A node process whose log fails exits with exitLogFailed (3), so that a
// supervisor restarts it; restarted, it recovers. The failure is a real
// one: the test lowers the running node's RLIMIT_FSIZE (a full disk, as
// far as the node can tell), so its next segment write past the limit
// fails with EFBIG. Go ignores SIGXFSZ, so the write returns the error.
func TestProcessLogFailureExitsThree(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	c := startProcCluster(t, 3, "log failure", "--log-level", "warn")
	cl := newRPCClient(c.peers, c.certs, 0)
	defer cl.Close()
	if o, err := cl.Submit(0, messages.Set("n1/x", 7), messages.Set("n0/y", 7)); err != nil || !o.Committed {
		t.Fatalf("submit: %v %v", o, err)
	}

	p := c.proc(1)
	seg := filepath.Join(c.dataDir, "node-1", "wal-0000000000000001.log")
	limit := max(fileSizeOf(t, seg), fileSizeOf(t, c.stderrPath(1))) + 16<<10
	setFileSizeLimit(t, p.cmd.Process.Pid, limit)

	// Transactions on node 1 until its segment reaches the limit.
	var committed, attempted int64
	deadline := time.After(60 * time.Second)
	for running := true; running; {
		select {
		case <-p.done:
			running = false
			continue
		case <-deadline:
			c.fatalf("node 1 still running after %d transactions with its segment limited to %d bytes", attempted, limit)
		default:
		}
		attempted++
		if o, err := cl.Submit(0, messages.Add("n1/k", 1)); err == nil && o.Committed {
			committed++
		}
	}
	if code := p.exitCode(); code != exitLogFailed {
		c.fatalf("node 1 exited with %d (%v), want %d", code, p.waitErr, exitLogFailed)
	}
	c.mu.Lock()
	c.procs[1] = nil
	c.mu.Unlock()
	t.Logf("node 1's log failed after %d transactions (%d committed), its segment limited to %d bytes", attempted, committed, limit)
	log := tail(c.stderrPath(1), 10)
	for _, want := range []string{"log failed: node stopping (fail-stop)", "file too large", "node: node 1 stopped: its log failed: "} {
		if !strings.Contains(log, want) {
			c.fatalf("node 1's stderr does not say %q:\n%s", want, log)
		}
	}
	if conn, err := net.DialTimeout("tcp", c.peers[1], time.Second); err == nil {
		conn.Close()
		c.fatalf("node 1's port is open after it exited")
	}
	if committed == 0 {
		c.fatalf("no transaction committed before the log failed: the limit (%d bytes) was too low to test anything", limit)
	}

	// Restarted (without the limit), it recovers what it committed; a
	// transaction whose client heard nothing may have committed too.
	r := c.start(1)
	if want := fmt.Sprintf("node 1 serving on %s (incarnation 2)\n", c.peers[1]); r.stdout.String() != want {
		c.fatalf("restart: %q, want %q", r.stdout.String(), want)
	}
	actortest.Eventually(t, 20*time.Second, func() string {
		got, err := cl.Read("n1/x", "n1/k")
		if err != nil || got["n1/x"] != 7 || got["n1/k"] < committed || got["n1/k"] > attempted {
			return fmt.Sprintf("after the restart: %v %v, want n1/x=7 and n1/k in [%d, %d]", got, err, committed, attempted)
		}
		return ""
	})
	// It takes part in new transactions again, at once: no restart
	// window refuses what began before it (clocks decide nothing).
	if o, err := cl.Submit(0, messages.Add("n1/k", 1), messages.Set("n0/y", 8)); err != nil || !o.Committed {
		c.fatalf("submit after the restart: %v %v", o, err)
	}
}

func fileSizeOf(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// setFileSizeLimit sets RLIMIT_FSIZE of process pid (prlimit(2); the
// syscall package has no wrapper for another process).
func setFileSizeLimit(t *testing.T, pid int, bytes int64) {
	t.Helper()
	lim := syscall.Rlimit{Cur: uint64(bytes), Max: uint64(bytes)}
	if _, _, errno := syscall.RawSyscall6(syscall.SYS_PRLIMIT64, uintptr(pid), syscall.RLIMIT_FSIZE,
		uintptr(unsafe.Pointer(&lim)), 0, 0, 0); errno != 0 {
		t.Fatalf("prlimit(%d, RLIMIT_FSIZE, %d): %v", pid, bytes, errno)
	}
}
