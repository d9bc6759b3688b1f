package main

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"twopc/cluster"
)

// The demo as `make run` shows it: four commits coordinated by nodes 0, 1,
// 3 and 2, then value = 4 on every node; run again on the same data, 8.
func TestDemoTwiceContinuesFromTheLog(t *testing.T) {
	dir := t.TempDir()
	for run, want := range []int{4, 8} {
		c, err := startCluster(cluster.LocalConfig{Nodes: 4, DataDir: dir, Logger: hclog.NewNullLogger()})
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		ok := runDemo(c, &out)
		c.stop()
		if !ok {
			t.Fatalf("run %d failed:\n%s", run+1, out.String())
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) != 8 {
			t.Fatalf("run %d: want 8 lines, got:\n%s", run+1, out.String())
		}
		for i, via := range []int{0, 1, 3, 2} {
			re := regexp.MustCompile(fmt.Sprintf(`^transaction %d via node %d: committed %d\.%d\.1 \(\d+ ms\)$`, i+1, via, via, run+1))
			if !re.MatchString(lines[i]) {
				t.Errorf("run %d line %d = %q, want %s", run+1, i+1, lines[i], re)
			}
		}
		for n := 0; n < 4; n++ {
			if wantLine := fmt.Sprintf("node %d: value = %d", n, want); lines[4+n] != wantLine {
				t.Errorf("run %d: %q, want %q", run+1, lines[4+n], wantLine)
			}
		}
	}
}
