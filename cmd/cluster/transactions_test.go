package main

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

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

// A key named twice is listed once: get reads keys, not names.
func TestGetListsEachKeyOnce(t *testing.T) {
	got := session(t, t.TempDir(), "set n1/a=3\nget value n1/a value n1/a\nget n1/a n1/a\n")
	expectLines(t, got,
		`committed 0\.1\.2 \(\d+ ms\)`,
		`value = 4  \(node 0\)`, `value = 4  \(node 1\)`, `value = 4  \(node 2\)`, `value = 4  \(node 3\)`,
		`n1/a = 3  \(node 1\)`,
		`n1/a = 3  \(node 1\)`,
	)
}
