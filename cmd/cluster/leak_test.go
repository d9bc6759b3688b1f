package main

import (
	"testing"

	"go.uber.org/goleak"

	"twopc/actors/actortest"
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
