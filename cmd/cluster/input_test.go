package main

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// Malformed input of every kind: one error line each, naming what was
// wrong, and the session goes on.
func TestMalformedInputGetsAnErrorAndTheSessionGoesOn(t *testing.T) {
	bad := []struct{ line, want string }{
		{"frobnicate", `unknown command "frobnicate"`},
		{"add", `usage: add <delta>`},
		{"add x", `delta "x" is not an integer`},
		{"add 1 via 9", `no node "9" \(nodes are 0-3\)`},
		{"add 1 via", `usage: add`},
		{"set", `usage: set`},
		{"set a", `"a" is not <key>=<int>`},
		{"set a=b", `value of a "b" is not an integer`},
		{"set a=1 a=2", `key "a" is set twice`},
		{"set n7/a=1", `.*n7.*`},
		{"transfer a b", `usage: transfer`},
		{"transfer a a 1", `transfer from "a" to itself`},
		{"transfer a b -3", `amount must be positive, got -3`},
		{"transfer a b 1.5", `amount "1.5" is not an integer`},
		{"get", `usage: get`},
		{"spawn", `usage: spawn`},
		{"spawn x add 1", `spawn count "x" must be 1-10000`},
		{"spawn 0 add 1", `spawn count "0" must be 1-10000`},
		{"spawn 3 get value", `"get" is not a transaction command \(add, set or transfer\)`},
		{"spawn 10 foo", `"foo" is not a transaction command \(add, set or transfer\)`},
		{"status now", `status takes no arguments`},
		{"crash", `usage: crash`},
		{"crash 4", `no node "4" \(nodes are 0-3\)`},
		{"crash 1 at nowhere", `unknown step "nowhere" \(steps: prepare-sent, .*\)`},
		{"crash 1 when commit-logged", `usage: crash`},
		{"restart 1", `node 1 is up \(crash 1 first\)`},
		{"restart -1", `no node "-1"`},
		{"partition 1", `usage: partition`},
		{"partition 2 2", `cannot partition node 2 from itself`},
		{"heal all", `heal takes no arguments`},
		{"indoubt 1", `indoubt takes no arguments`},
		{"resolve 0.1.1", `usage: resolve`},
		{"resolve banana commit", `"banana" is not a transaction id .*`},
		{"resolve 9.1.1 commit", `transaction 9\.1\.1 names node 9, which does not exist \(nodes are 0-3\)`},
		{"resolve 0.1.1 maybe", `resolve 0\.1\.1: want commit or abort, got "maybe"`},
		{"resolve 0.1.1 commit", `0\.1\.1 is not in doubt on any running node`},
		{"trace", `usage: trace`},
		{"trace 1.2", `"1\.2" is not a transaction id .*`},
		{"trace 3.1.999", `no trace of 3\.1\.999.*`},
		{"loglevel loud", `unknown log level "loud" .*`},
		{"loglevel warn info", `usage: loglevel`},
		{"faults", `usage: faults`},
		{"faults 9", `no node "9" \(nodes are 0-3\)`},
		{"faults 1 drop=2", `drop=2: want a probability from 0 to 1, such as 0\.1`},
		{"faults 1 dup=x", `dup=x: want a probability from 0 to 1`},
		{"faults 1 loss=0.1", `unknown fault "loss" \(faults are drop, dup, delay and reorder\)`},
		{"faults 1 drop=0.1 drop=0.2", `fault drop is given twice`},
		{"faults 1 delay=0.1:forever", `delay=0\.1:forever: the longest hold "forever" must be a duration from 1ms to 1m0s, such as 50ms`},
		{"faults 1 delay=0.1:2m", `delay=0\.1:2m: the longest hold "2m" .*`},
		{"faults 1 drop", `"drop" is not <fault>=<probability> \(usage: faults .*\)`},
		{"faults 1 off now", `off stands alone: faults <node> off`},
		{"skew 1 +25h", `skew 25h0m0s is more than 24h0m0s either way`},
		{"help me", `help takes no arguments`},
		{"quit now", `quit takes no arguments`},
	}
	var script strings.Builder
	var want []string
	for _, b := range bad {
		script.WriteString(b.line + "\n")
		want = append(want, "error: "+b.want)
	}
	script.WriteString("add 1\nget value\n")
	got := session(t, t.TempDir(), script.String())
	if len(got) < len(want) {
		t.Fatalf("want %d error lines, got:\n%s", len(want), strings.Join(got, "\n"))
	}
	for i, w := range want {
		if !regexp.MustCompile("^" + w).MatchString(got[i]) {
			t.Errorf("%q: got %q, want %s", bad[i].line, got[i], w)
		}
	}
	expectLines(t, got[len(want):],
		`committed 0\.1\.2 \(\d+ ms\)`,
		`value = 5  \(node 0\)`, `value = 5  \(node 1\)`, `value = 5  \(node 2\)`, `value = 5  \(node 3\)`)
}

func TestHelpListsEveryCommand(t *testing.T) {
	got := session(t, t.TempDir(), "help\n")
	text := strings.Join(got, "\n")
	for _, c := range commands {
		if !strings.Contains(text, "  "+c.syntax+" ") {
			t.Errorf("help does not list %q:\n%s", c.syntax, text)
		}
	}
	for _, s := range crashSteps {
		if !strings.Contains(text, "  "+s.name+" ") {
			t.Errorf("help does not list crash step %q", s.name)
		}
	}
}

// Comments after a command, and a line too long to be one: the first runs,
// the second gets its error line, and the session goes on.
func TestCommentsAndOverlongLines(t *testing.T) {
	script := "add 2 # two more\n# a whole-line comment\n" + strings.Repeat("b", maxLine+1) + "\nget n1/a # the end\n"
	got := session(t, t.TempDir(), script)
	expectLines(t, got,
		`committed 0\.1\.2 \(\d+ ms\)`,
		fmt.Sprintf(`error: a line of %d bytes is too long \(at most %d\)`, maxLine+2, maxLine),
		`n1/a = 0  \(node 1\)`)
}

func TestFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--nodes", "0"}, "error: --nodes 0: a cluster needs at least one node"},
		{[]string{"--base-port", "65534"}, "error: --nodes 4 from --base-port 65534 does not fit in 1-65535"},
		{[]string{"--log-level", "loud"}, `error: unknown --log-level "loud" (want trace, debug, info, warn or error)`},
		{[]string{"--vote-timeout", "0s"}, "error: --vote-timeout and --in-doubt-after must be positive"},
		{[]string{"extra"}, `error: unexpected argument "extra"`},
		{[]string{"--demo", "--no-demo"}, "error: --demo and --no-demo together: choose one"},
		{[]string{"--connect", ""}, "error: --connect is empty: list every node's host:port in node-id order"},
		{[]string{"--connect", "127.0.0.1:4000,nohost", "--tls-dir", "x"}, `error: --connect entry 1 "nohost" is not host:port`},
		{[]string{"--connect", "127.0.0.1:4000,127.0.0.1:99999", "--tls-dir", "x"}, `error: --connect entry 1 "127.0.0.1:99999": port "99999" is not a number in 1-65535`},
		{[]string{"--connect", "127.0.0.1:4000,127.0.0.1:4000", "--tls-dir", "x"}, `error: --connect entries 0 and 1 are both "127.0.0.1:4000": each node has its own address`},
		{[]string{"--connect", "127.0.0.1:4000"}, "error: --connect needs --tls-dir DIR: the nodes' cluster's ca.crt and the admin certificate (admin.crt, admin.key), as cmd/certs writes them"},
		{[]string{"--connect", "127.0.0.1:4000", "--tls-dir", "x", "--nodes", "3"}, "error: --nodes does not apply with --connect: the nodes run in their own processes (give it to cmd/node)"},
		{[]string{"--connect", "127.0.0.1:4000", "--tls-dir", "x", "--http", "127.0.0.1:0"}, "error: --http does not apply with --connect"},
	} {
		var out, errOut bytes.Buffer
		if code := run(c.args, strings.NewReader(""), &out, &errOut); code != 2 {
			t.Errorf("%v: exit code %d, want 2", c.args, code)
		}
		if !strings.Contains(errOut.String(), c.want) {
			t.Errorf("%v: stderr %q, want %q", c.args, errOut.String(), c.want)
		}
	}
}

// wait and sleep: a script's ways to let the cluster move on. sleep prints
// nothing; wait prints the state it waited for; either refuses what it
// cannot wait for.
func TestWaitAndSleep(t *testing.T) {
	got := session(t, t.TempDir(), strings.Join([]string{
		"sleep 10ms",
		"add 1",
		"wait settled",
		"wait indoubt 0",
		"sleep",
		"sleep forever",
		"sleep -1s",
		"sleep 11m",
		"wait",
		"wait soon",
		"wait settled now",
		"wait indoubt",
		"wait indoubt x",
		"wait indoubt -1",
	}, "\n")+"\n")
	expectLines(t, got,
		`committed 0\.1\.2 \(\d+ ms\)`,
		`settled: nothing in flight, locked or in doubt on the running nodes`,
		`0 in doubt`,
		`error: usage: sleep <duration>`,
		`error: sleep "forever": want a duration from 1ms to 10m0s, such as 500ms or 2s`,
		`error: sleep "-1s": .*`,
		`error: sleep "11m": .*`,
		`error: usage: wait settled\|indoubt <n>`,
		`error: usage: wait settled\|indoubt <n>`,
		`error: usage: wait settled\|indoubt <n>`,
		`error: usage: wait settled\|indoubt <n>`,
		`error: in-doubt count "x" must be 0 or more`,
		`error: in-doubt count "-1" must be 0 or more`,
	)
}
