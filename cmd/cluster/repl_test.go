package main

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

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

// The README's first example: the demo, then the value on every node.
func TestPipeGetValueAfterTheDemo(t *testing.T) {
	got := session(t, t.TempDir(), "get value\n")
	expectLines(t, got,
		`value = 4  \(node 0\)`, `value = 4  \(node 1\)`, `value = 4  \(node 2\)`, `value = 4  \(node 3\)`)
}

func TestTransactionCommandsAndReads(t *testing.T) {
	got := session(t, t.TempDir(), strings.Join([]string{
		"add 3",
		"add -1 via 2",
		"set n1/a=10 n2/b=20 c=7",
		"transfer n1/a n2/b 4 via 3",
		"transfer n1/a n2/b 100",
		"get value n1/a n2/b c nothing-here",
		"# a comment, then a blank line",
		"",
		"loglevel error",
		"loglevel info",
		"loglevel warn",
	}, "\n")+"\n")
	expectLines(t, got,
		`committed 0\.1\.2 \(\d+ ms\)`,
		`committed 2\.1\.2 \(\d+ ms\)`,
		`committed 0\.1\.3 \(\d+ ms\)`,
		`committed 3\.1\.2 \(\d+ ms\)`,
		`aborted 0\.1\.4: node 1 voted no: .*n1/a.*`,
		`value = 6  \(node 0\)`, `value = 6  \(node 1\)`, `value = 6  \(node 2\)`, `value = 6  \(node 3\)`,
		`n1/a = 6  \(node 1\)`,
		`n2/b = 24  \(node 2\)`,
		`c = 7  \(node \d\)`,
		`nothing-here = 0  \(node \d\)`,
		`log level is error`, `log level is info`, `log level is warn`,
	)
}

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

// Two hundred conflicting transfers, both ways between two accounts on two
// nodes: the total stays, and each balance is exactly what the committed
// count says.
func TestSpawnedTransfersUnderConflictsKeepTheTotal(t *testing.T) {
	got := session(t, t.TempDir(), strings.Join([]string{
		"set n1/a=1000 n2/b=0",
		"spawn 100 transfer n1/a n2/b 7",
		"spawn 100 transfer n2/b n1/a 5",
		"get n1/a n2/b",
	}, "\n")+"\n")
	if !regexp.MustCompile(`^committed `).MatchString(got[0]) {
		t.Fatalf("set: %q", got[0])
	}
	var counts [][3]int
	var values []int64
	for _, l := range got[1:] {
		switch {
		case strings.HasPrefix(l, "spawned "):
			n, c, a := spawnCounts(t, l)
			if c+a != n {
				t.Errorf("%q: committed + aborted != spawned (an unknown outcome?)", l)
			}
			counts = append(counts, [3]int{n, c, a})
		case strings.HasPrefix(l, "  "):
			if !regexp.MustCompile(`^  \d+ × \S.*$`).MatchString(l) {
				t.Errorf("reason line %q is not `  <count> × <reason>`", l)
			}
		default:
			m := regexp.MustCompile(`^n[12]/[ab] = (-?\d+)  \(node [12]\)$`).FindStringSubmatch(l)
			if m == nil {
				t.Fatalf("unexpected line %q", l)
			}
			v, _ := strconv.ParseInt(m[1], 10, 64)
			values = append(values, v)
		}
	}
	if len(counts) != 2 || len(values) != 2 {
		t.Fatalf("want 2 spawn lines and 2 values, got %v %v", counts, values)
	}
	if counts[0][1] == 0 {
		t.Errorf("no transfer committed: %v", counts)
	}
	a, b := values[0], values[1]
	if a+b != 1000 {
		t.Errorf("total %d + %d = %d, want 1000", a, b, a+b)
	}
	wantA := 1000 - 7*int64(counts[0][1]) + 5*int64(counts[1][1])
	if a != wantA || a < 0 || b < 0 {
		t.Errorf("n1/a = %d, n2/b = %d; the committed counts say n1/a = %d", a, b, wantA)
	}
}

// A crashed node: transactions that need it abort at the vote timeout, its
// keys cannot be read, and a restart brings its state back.
func TestCrashAbortsAtTheTimeoutAndRestartRestores(t *testing.T) {
	got := session(t, t.TempDir(), strings.Join([]string{
		"set n2/x=5",
		"crash 2",
		"add 1",
		"set n2/x=6 via 1",
		"set n1/y=1",
		"get value n2/x",
		"status",
		"crash 2",
		"add 1 via 2",
		"restart 2",
		"get value n2/x",
		"add 1",
		"get value",
	}, "\n")+"\n")
	expectLines(t, got,
		`committed 0\.1\.2 \(\d+ ms\)`,
		`node 2 crashed \(power cut: log writes not yet synced are lost\)`,
		`aborted 0\.1\.3: vote timeout: no vote from node\(s\) 2 within 500ms`,
		`aborted 1\.1\.2: vote timeout: no vote from node\(s\) 2 within 500ms`,
		`committed 0\.1\.4 \(\d+ ms\)`,
		`value = 4  \(node 0\)`, `value = 4  \(node 1\)`, `error: value on node 2: node 2 is down`, `value = 4  \(node 3\)`,
		`error: n2/x on node 2: node 2 is down`,
		`node +address +state +in-flight +locks +in-doubt +log +last snapshot`,
		// A snapshot: 0.1.2's Commit to node 2 may be waiting for an ack
		// (in flight on node 0), and Aborts or acks may be on their way.
		`0 +127\.0\.0\.1:\d+ +up +\d +\d +\d +\d+(\.\d)? (B|KiB) +none`,
		`1 +127\.0\.0\.1:\d+ +up +\d +\d +\d +\d+(\.\d)? (B|KiB) +none`,
		`2 +127\.0\.0\.1:\d+ +down +- +- +- +- +-`,
		`3 +127\.0\.0\.1:\d+ +up +\d +\d +\d +\d+(\.\d)? (B|KiB) +none`,
		`error: node 2 is already down`,
		`error: node 2 is down \(restart 2 brings it back\)`,
		`node 2 restarted \(incarnation 2\)`,
		`value = 4  \(node 0\)`, `value = 4  \(node 1\)`, `value = 4  \(node 2\)`, `value = 4  \(node 3\)`,
		`n2/x = 5  \(node 2\)`,
		`committed 0\.1\.5 \(\d+ ms\)`,
		`value = 5  \(node 0\)`, `value = 5  \(node 1\)`, `value = 5  \(node 2\)`, `value = 5  \(node 3\)`,
	)
}

// A partition between two nodes: what needs that link aborts, what does not
// (node 3 coordinating both ends) commits; after heal it commits again.
func TestPartitionThenHeal(t *testing.T) {
	got := session(t, t.TempDir(), strings.Join([]string{
		"partition 0 2",
		"status",
		"set n2/x=1 via 0",
		"set n2/x=2 via 1",
		"add 1 via 3",
		"get n2/x value",
		"heal",
		"set n2/x=3 via 0",
		"get n2/x",
		"status",
	}, "\n")+"\n")
	expectLines(t, got,
		`partitioned node 0 from node 2`,
		`node .*`, `0 .* up .*`, `1 .* up .*`, `2 .* up .*`, `3 .* up .*`,
		`partitioned: 0-2`,
		`aborted 0\.1\.2: vote timeout: no vote from node\(s\) 2 within 500ms`,
		`committed 1\.1\.2 \(\d+ ms\)`,
		`committed 3\.1\.2 \(\d+ ms\)`,
		`n2/x = 2  \(node 2\)`,
		`value = 5  \(node 0\)`, `value = 5  \(node 1\)`, `value = 5  \(node 2\)`, `value = 5  \(node 3\)`,
		`healed: every link restored`,
		`committed 0\.1\.3 \(\d+ ms\)`,
		`n2/x = 3  \(node 2\)`,
		`node .*`, `0 .* up .*`, `1 .* up .*`, `2 .* up .*`, `3 .* up .*`,
	)
}

// The coordinator crashes between COMMIT and the acks: its client cannot
// know the outcome, the participants are in doubt and wait for it, and once
// it restarts it finishes the commit everywhere. The trace shows it all.
func TestCoordinatorCrashBetweenCommitAndAcks(t *testing.T) {
	got := session(t, t.TempDir(), strings.Join([]string{
		"crash 0 at commit-logged",
		"add 1 via 0",
		"indoubt",
		"get value",
		"restart 0",
		"get value",
		"trace 0.1.2",
	}, "\n")+"\n", "--in-doubt-after", "1m")
	// The trace: COMMIT durable, the crash, no Commit from the dead node,
	// the restart, then Commit to every participant, their COMMITTED
	// records and acks, and END.
	traceAt := traceStart(got, "0.1.2")
	expectTrace(t, got[traceAt:], "trace 0.1.2: committed; coordinator node 0, participants 0 1 2 3",
		"node 0 log COMMIT (forced)", "node 0 crashed (power cut)", "node 0 restarted (incarnation 2)",
		"Commit 0 → 1", "Commit 0 → 1 received", "node 1 log COMMITTED (forced)", "Ack 1 → 0 received", "node 0 log END (lazy)")
	got = got[:traceAt]
	expectLines(t, got,
		`node 0 will crash when it next reaches commit-logged \(coordinator: COMMIT durable, no Commit sent yet\)`,
		`node 0 crashed at commit-logged of 0\.1\.2 \(power cut\)`,
		`unknown 0\.1\.2: node crashed; the participants settle it \(see indoubt, trace 0\.1\.2\)`,
		`tx +node +age +waits for`,
		`0\.1\.2 +1 +\d.*s +coordinator node 0 \(down\); also asks node 0, 2, 3`,
		`0\.1\.2 +2 +\d.*s +coordinator node 0 \(down\); also asks node 0, 1, 3`,
		`0\.1\.2 +3 +\d.*s +coordinator node 0 \(down\); also asks node 0, 1, 2`,
		`error: value on node 0: node 0 is down`, `error: value on node 1: .*`, `error: value on node 2: .*`, `error: value on node 3: .*`,
		`node 0 restarted \(incarnation 2(, 1 in doubt)?\)`,
		`value = 5  \(node 0\)`, `value = 5  \(node 1\)`, `value = 5  \(node 2\)`, `value = 5  \(node 3\)`,
	)
}

// With the coordinator down and every participant in doubt, nobody knows
// the outcome: the operator may force one (a heuristic decision). Here it
// matches what the coordinator logged, so the restart agrees with it.
func TestResolveForcesAHeuristicDecisionWhenNobodyKnows(t *testing.T) {
	got := session(t, t.TempDir(), strings.Join([]string{
		"crash 0 at commit-logged",
		"add 1 via 0",
		"resolve 0.1.2 commit",
		"get value",
		"indoubt",
		"restart 0",
		"get value",
	}, "\n")+"\n", "--in-doubt-after", "1m")
	expectLines(t, got,
		`node 0 will crash .*`,
		`node 0 crashed at commit-logged of 0\.1\.2 \(power cut\)`,
		`unknown 0\.1\.2: .*`,
		`resolved 0\.1\.2: heuristic commit on node 1, 2, 3 \(the coordinator's decision was unknown; if it decided otherwise, the nodes now disagree\)`,
		`error: value on node 0: node 0 is down`, `value = 5  \(node 1\)`, `value = 5  \(node 2\)`, `value = 5  \(node 3\)`,
		`no transaction is in doubt`,
		`node 0 restarted \(incarnation 2(, 1 in doubt)?\)`,
		`value = 5  \(node 0\)`, `value = 5  \(node 1\)`, `value = 5  \(node 2\)`, `value = 5  \(node 3\)`,
	)
}

// Once the coordinator is back, its log decides (no COMMIT: presumed
// abort), and the operator may not decide otherwise — nor at all.
func TestResolveIsRefusedWhenTheOutcomeIsKnown(t *testing.T) {
	got := session(t, t.TempDir(), strings.Join([]string{
		"crash 0 at commit-decided",
		"add 1 via 0",
		"restart 0",
		"resolve 0.1.2 commit",
		"resolve 0.1.2 abort",
	}, "\n")+"\n", "--in-doubt-after", "1m")
	expectLines(t, got,
		`node 0 will crash .*`,
		`node 0 crashed at commit-decided of 0\.1\.2 \(power cut\)`,
		`unknown 0\.1\.2: .*`,
		`node 0 restarted \(incarnation 2(, 1 in doubt)?\)`,
		`refused: 0\.1\.2 is known to have aborted \(.*\).*`,
		`refused: 0\.1\.2 is known to have aborted \(.*\).*`,
	)
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

// The operator guesses wrong: a heuristic abort where the coordinator had
// logged COMMIT. Once the coordinator is back, the nodes disagree — and say
// so: the trace's summary reports the heuristic decision and the damage.
func TestWrongHeuristicDecisionIsReportedAsDamage(t *testing.T) {
	got := session(t, t.TempDir(), strings.Join([]string{
		"crash 0 at commit-logged",
		"add 1 via 0",
		"resolve 0.1.2 abort",
		"restart 0",
		"get value",
		"indoubt",
		"trace 0.1.2",
	}, "\n")+"\n", "--in-doubt-after", "1m")
	traceAt := traceStart(got, "0.1.2")
	expectTrace(t, got[traceAt:],
		"trace 0.1.2: committed (the operator forced a heuristic decision on node 1 2 3; heuristic damage on node 1 2 3); coordinator node 0, participants 0 1 2 3",
		"node 0 log COMMIT (forced)", "node 0 crashed (power cut)", "node 1 log HEURISTIC (forced)",
		"node 0 restarted (incarnation 2)", "Ack 1 → 0: heuristic damage")
	expectLines(t, got[:traceAt],
		`node 0 will crash .*`,
		`node 0 crashed at commit-logged of 0\.1\.2 \(power cut\)`,
		`unknown 0\.1\.2: .*`,
		`resolved 0\.1\.2: heuristic abort on node 1, 2, 3 .*`,
		`node 0 restarted \(incarnation 2(, 1 in doubt)?\)`,
		`value = 5  \(node 0\)`, `value = 4  \(node 1\)`, `value = 4  \(node 2\)`, `value = 4  \(node 3\)`,
		`no transaction is in doubt`,
	)
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

// A crash at a step that sends waits for the message to arrive: crashed
// at `voted`, both participants' yes votes count and the transaction
// commits; their restarts learn it. One armed crash per node: a second
// replaces the first, and a plain crash cancels it.
func TestCrashAtASendingStepLetsTheMessageArrive(t *testing.T) {
	got := session(t, t.TempDir(), strings.Join([]string{
		"crash 2 at voted",
		"crash 1 at voted",
		"add 1 via 0",
		"restart 1",
		"restart 2",
		"get value",
		"crash 3 at voted",
		"crash 3 at prepared-logged",
		"crash 3",
		"restart 3",
		"add 1 via 0",
	}, "\n")+"\n")
	expectLines(t, got,
		`node 2 will crash when it next reaches voted \(participant: its vote has reached the coordinator\)`,
		`node 1 will crash when it next reaches voted \(participant: its vote has reached the coordinator\)`,
		`node [12] crashed at voted of 0\.1\.2 \(power cut\)`,
		`node [12] crashed at voted of 0\.1\.2 \(power cut\)`,
		`committed 0\.1\.2 \(\d+ ms\)`,
		`node 1 restarted \(incarnation 2(, 1 in doubt)?\)`,
		`node 2 restarted \(incarnation 2(, 1 in doubt)?\)`,
		`value = 5  \(node 0\)`, `value = 5  \(node 1\)`, `value = 5  \(node 2\)`, `value = 5  \(node 3\)`,
		`node 3 will crash when it next reaches voted .*`,
		`node 3 will crash when it next reaches prepared-logged \(.*\); this replaces its crash at voted`,
		`node 3 crashed \(power cut: log writes not yet synced are lost\)`,
		`its crash armed at prepared-logged is cancelled`,
		`node 3 restarted \(incarnation 2\)`,
		`committed 0\.1\.3 \(\d+ ms\)`,
	)
}

// A crash at a sending step fires at the first message that arrives, even
// when the first one sent is lost (here to a partition).
func TestCrashAtASendingStepSkipsALostMessage(t *testing.T) {
	got := session(t, t.TempDir(), strings.Join([]string{
		"partition 0 1",
		"crash 0 at prepare-sent",
		"add 1 via 0",
		"heal",
		"restart 0",
		"add 1 via 0",
	}, "\n")+"\n")
	expectLines(t, got,
		`partitioned node 0 from node 1`,
		`node 0 will crash when it next reaches prepare-sent .*`,
		`node 0 crashed at prepare-sent of 0\.1\.2 \(power cut\)`,
		`unknown 0\.1\.2: .*`,
		`healed: every link restored`,
		`node 0 restarted \(incarnation 2(, 1 in doubt)?\)`,
		`committed 0\.2\.1 \(\d+ ms\)`,
	)
}
