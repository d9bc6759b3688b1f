package main

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"twopc/actors/actortest"
)

// One session in a real pseudo-terminal: the prompt, tab completion, the
// history recalled with the up arrow and kept in the history file, quit.
func TestTerminalSessionWithCompletionAndHistory(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal here: %v", err)
	}
	defer ptmx.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 50, Cols: 160}); err != nil {
		t.Fatal(err)
	}
	history := filepath.Join(t.TempDir(), "history")
	args := []string{"--base-port", "0", "--data-dir", t.TempDir(), "--history", history, "--vote-timeout", "500ms"}
	var errOut actortest.Buffer
	done := make(chan int, 1)
	go func() { done <- run(args, tty, tty, &errOut) }()
	var screen actortest.Buffer
	copied := make(chan struct{})
	go func() {
		_, _ = io.Copy(&screen, ptmx)
		close(copied)
	}()

	waitFor := func(what string, count int) {
		t.Helper()
		actortest.Eventually(t, 60*time.Second, func() string {
			if n := strings.Count(screen.String(), what); n < count {
				return "waiting for " + what + " on the screen"
			}
			return ""
		})
	}
	typeIn := func(s string) {
		t.Helper()
		if _, err := ptmx.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}

	waitFor("twopc> ", 1)
	waitFor("`loglevel info` shows every step", 1) // the prompt lowered the demo's info log
	typeIn("hel\t")                                // completes to "help "
	waitFor("twopc> help", 1)
	typeIn("\r")
	waitFor("Steps for `crash <node> at <step>`:", 1)
	typeIn("get val\t") // completes to "get value "
	waitFor("get value", 1)
	typeIn("\r")
	waitFor("value = 4  (node 3)", 1)
	typeIn("\x1b[A") // up arrow: the last line again
	waitFor("twopc> get value", 2)
	typeIn("\r")
	waitFor("value = 4  (node 3)", 2)
	// A table comes out whole, not cell by cell between redrawn prompts.
	typeIn("status\r")
	waitFor("node  address ", 1)
	actortest.Eventually(t, 60*time.Second, func() string {
		if !regexp.MustCompile(`node  address +state +in-flight +locks +in-doubt +log +last snapshot +skew\r?\n0 +127\.0\.0\.1:\d+ +up `).MatchString(screen.String()) {
			return "waiting for the status table, whole"
		}
		return ""
	})
	typeIn("crash 9\r")
	waitFor(`error: no node "9" (nodes are 0-3)`, 1)
	typeIn("quit\r")

	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit code %d; screen:\n%s\nstderr:\n%s", code, screen.String(), errOut.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("quit did not end the session; screen:\n%s", screen.String())
	}
	tty.Close()
	ptmx.Close()
	<-copied

	kept, err := os.ReadFile(history)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(kept)), "\n") {
		lines = append(lines, strings.TrimSpace(l)) // completion leaves a space
	}
	// A line recalled unchanged is not kept twice. The last line, quit,
	// may or may not be written before the line editor closes.
	want := []string{"help", "get value", "status", "crash 9"}
	if len(lines) == 5 && lines[4] == "quit" {
		lines = lines[:4]
	}
	if strings.Join(lines, "|") != strings.Join(want, "|") {
		t.Errorf("history file holds %q, want %q", lines, want)
	}
}
