package main

import (
	"strings"
	"testing"
)

// faults on one node's outbound messages: shown, set, counted, kept
// across the node's restarts (as partitions are), and cleared; loglevel
// alone shows the level.
func TestFaultsAndLogLevelCommands(t *testing.T) {
	got := session(t, t.TempDir(), strings.Join([]string{
		"faults 1",
		"faults 1 drop=1",
		"set n1/f=1 via 0", // node 1's vote is lost: the coordinator times out
		"faults 1",
		"faults 1 dup=0.5 delay=0.5:20ms reorder=0.25",
		"add 1", // duplicated, held back a little, swapped: still one commit
		"crash 1",
		"faults 1",
		"restart 1",
		"faults 1",
		"faults 1 off",
		"faults 1",
		"add 1",
		"get value",
		"loglevel",
		"loglevel error",
		"loglevel",
		"loglevel warn",
	}, "\n")+"\n")
	expectLines(t, got,
		`node 1 faults off \(so far 0 dropped, 0 duplicated, 0 delayed, 0 reordered\)`,
		`node 1 faults: drop=1 dup=0 delay=0:50ms reorder=0`,
		`aborted 0\.1\.2: vote timeout: no vote from node\(s\) 1 within 500ms`,
		`node 1 faults: drop=1 dup=0 delay=0:50ms reorder=0 \(so far [1-9]\d* dropped, 0 duplicated, 0 delayed, 0 reordered\)`,
		`node 1 faults: drop=0 dup=0\.5 delay=0\.5:20ms reorder=0\.25`,
		`committed 0\.1\.3 \(\d+ ms\)`,
		`node 1 crashed \(power cut: log writes not yet synced are lost\)`,
		// Down, it shows what it will be given when it restarts.
		`node 1 faults: drop=0 dup=0\.5 delay=0\.5:20ms reorder=0\.25 \(so far 0 dropped, 0 duplicated, 0 delayed, 0 reordered\)`,
		`node 1 restarted \(incarnation 2\)`,
		`node 1 faults: drop=0 dup=0\.5 delay=0\.5:20ms reorder=0\.25 \(so far \d+ dropped, \d+ duplicated, \d+ delayed, \d+ reordered\)`,
		`node 1 faults off`,
		`node 1 faults off \(so far \d+ dropped, \d+ duplicated, \d+ delayed, \d+ reordered\)`,
		`committed 0\.1\.4 \(\d+ ms\)`,
		`value = 6  \(node 0\)`, `value = 6  \(node 1\)`, `value = 6  \(node 2\)`, `value = 6  \(node 3\)`,
		`log level is warn`,
		`log level is error`,
		`log level is error`,
		`log level is warn`,
	)
}

// --no-demo opens the prompt at once: nothing is printed before the first
// command's answer, and `value` starts where the log left it.
func TestNoDemoSkipsTheDemo(t *testing.T) {
	got := plainSession(t, 0, "get value\nadd 2\n", localArgs(t, "--no-demo")...)
	expectLines(t, got,
		`value = 0  \(node 0\)`, `value = 0  \(node 1\)`, `value = 0  \(node 2\)`, `value = 0  \(node 3\)`,
		`committed 0\.1\.1 \(\d+ ms\)`)
}
