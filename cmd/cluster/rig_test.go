package main

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"twopc/actors/actortest"

	"go.uber.org/goleak"
)

// Every session stops its cluster and its signal handler: nothing of ours
// may be left running. Two goroutines of the line editor (readline v1.5.1)
// are exempt: its input loop, which after Close blocks for ever handing an
// EOF to a reader that is gone (harmless in the command, which exits), and
// its process-wide SIGWINCH watcher, started once by design.
func TestMain(m *testing.M) {
	actortest.VerifyNoLeaks(m,
		goleak.IgnoreAnyFunction("github.com/chzyer/readline.(*Operation).ioloop"),
		goleak.IgnoreAnyFunction("github.com/chzyer/readline.DefaultOnWidthChanged.func1.1"))
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
