package main

import (
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"twopc/actors/actortest"
)

// Ctrl-C during a spawn: it stops submitting, waits for what is in
// flight, prints its partial line; the cluster goes on, everything
// submitted settles, and the values are what the commits add up to.
// Ctrl-C with no command running is not the command's to take.
func TestCtrlCStopsASpawnNotTheCluster(t *testing.T) {
	p := startPrompt(t)
	out := make(chan string, 1)
	go func() { out <- p.exec("spawn 10000 add 1") }()
	n0 := p.r.c.local().Node(0)
	actortest.Eventually(t, 60*time.Second, func() string {
		if cs, err := n0.CoordinatorStatus(); err != nil || cs.InFlight == 0 {
			return "no transaction of the spawn in flight yet"
		}
		return ""
	})
	if !p.r.interrupt() {
		t.Fatal("Ctrl-C found no command running during a spawn")
	}
	lines := strings.Split(strings.TrimRight(<-out, "\n"), "\n")
	committed := checkInterruptedSpawn(t, lines)
	if p.r.interrupt() {
		t.Fatal("Ctrl-C found a command running after the spawn ended")
	}
	if got := p.exec("wait settled"); !strings.HasPrefix(got, "settled: ") {
		t.Fatalf("wait settled: %q", got)
	}
	var want []string
	for i := range 4 {
		want = append(want, fmt.Sprintf(`value = %d  \(node %d\)`, 4+committed, i))
	}
	expectLines(t, strings.Split(strings.TrimRight(p.exec("get value"), "\n"), "\n"), want...)

	// A transaction command stops waiting for its outcome: node 1's vote
	// is lost, so the coordinator would wait for its vote timeout.
	if got := p.exec("faults 1 drop=1"); !strings.HasPrefix(got, "node 1 faults: drop=1 ") {
		t.Fatalf("faults 1 drop=1: %q", got)
	}
	out = make(chan string, 1)
	go func() { out <- p.exec("add 1 via 0") }()
	actortest.Eventually(t, 10*time.Second, func() string {
		if cs, err := n0.CoordinatorStatus(); err != nil || cs.InFlight == 0 {
			return "add 1 not in flight yet"
		}
		return ""
	})
	if !p.r.interrupt() {
		t.Fatal("Ctrl-C found no command running during add")
	}
	if got, want := <-out, "unknown: interrupted (Ctrl-C) before the outcome came; the transaction may still commit or abort (get, indoubt and trace show which)\n"; got != want {
		t.Fatalf("add interrupted: %q, want %q", got, want)
	}
	if got := p.exec("faults 1 off"); got != "node 1 faults off\n" {
		t.Fatalf("faults 1 off: %q", got)
	}
	if got := p.exec("wait settled"); !strings.HasPrefix(got, "settled: ") { // the add aborts at its vote timeout
		t.Fatalf("wait settled: %q", got)
	}

	// wait and sleep end at Ctrl-C too.
	for _, c := range []struct{ line, want string }{
		{"sleep 10m", "error: sleep interrupted (Ctrl-C)\n"},
		{"wait indoubt 3", "error: interrupted (Ctrl-C) while still 0 in doubt\n"},
	} {
		out := make(chan string, 1)
		go func() { out <- p.exec(c.line) }()
		actortest.Eventually(t, 10*time.Second, func() string {
			if !p.r.interrupt() {
				return c.line + " not running yet"
			}
			return ""
		})
		if got := <-out; got != c.want {
			t.Fatalf("%s, interrupted: %q, want %q", c.line, got, c.want)
		}
	}
}

// The same through the process's own signal: SIGINT while a piped spawn
// runs cancels the spawn; the session reads its next line and ends
// normally (exit 0, not 130).
func TestSIGINTDuringAPipedSpawn(t *testing.T) {
	// The default vote timeout: a thousand transactions begun at once on a
	// busy machine would mostly time out at 500ms, and aborting them costs
	// more than committing them.
	args := localArgs(t, "--no-demo", "--http", "127.0.0.1:0", "--vote-timeout", "2s")
	stdin, feed := io.Pipe()
	var out, errOut actortest.Buffer
	done := make(chan int, 1)
	go func() { done <- run(args, stdin, &out, &errOut) }()
	first := regexp.MustCompile(`^http: serving on (http://127\.0\.0\.1:\d+)\n`)
	var base string
	actortest.Eventually(t, 30*time.Second, func() string {
		m := first.FindStringSubmatch(out.String())
		if m == nil {
			return fmt.Sprintf("no URL line first; stdout %q", out.String())
		}
		base = m[1]
		return ""
	})
	if _, err := io.WriteString(feed, "spawn 10000 add 1\n"); err != nil {
		t.Fatal(err)
	}
	actortest.Eventually(t, 60*time.Second, func() string {
		if v := metricValue(t, base, `twopc_transactions_in_flight{node="0"}`); v <= 0 {
			return "no transaction of the spawn in flight yet"
		}
		return ""
	})
	// The signal handler is run's: it is installed while run runs, so the
	// test binary itself is not interrupted.
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	actortest.Eventually(t, 60*time.Second, func() string {
		if !strings.Contains(out.String(), "spawned ") {
			return "no spawn line yet"
		}
		return ""
	})
	if _, err := io.WriteString(feed, "wait settled\nget value\n"); err != nil {
		t.Fatal(err)
	}
	feed.Close()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit code %d after SIGINT during a command, want 0\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
		}
	case <-time.After(3 * time.Minute):
		t.Fatalf("the session did not end at the end of its input\nstdout:\n%s\nstderr (end):\n%s", out.String(), tail(errOut.String(), 40))
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")[1:] // after the URL line
	var spawned []string
	for len(lines) > 0 && !strings.HasPrefix(lines[0], "settled: ") {
		spawned, lines = append(spawned, lines[0]), lines[1:]
	}
	committed := checkInterruptedSpawn(t, spawned)
	var want []string
	for i := range 4 {
		want = append(want, fmt.Sprintf(`value = %d  \(node %d\)`, committed, i))
	}
	expectLines(t, lines, append([]string{`settled: .*`}, want...)...)
}
